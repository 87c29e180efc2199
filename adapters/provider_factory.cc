#include "adapters/provider_factory.h"

#include "absl/strings/str_cat.h"
#include "adapters/anthropic_provider.h"
#include "adapters/openai_provider.h"

namespace echelon {

absl::StatusOr<std::shared_ptr<Provider>> MakeProvider(
    const ProviderConfig& config, HttpClient& http) {
  switch (config.kind) {
    case ProviderKind::kOpenAI:
      return std::make_shared<OpenAiProvider>(http);
    case ProviderKind::kAnthropic:
      return std::make_shared<AnthropicProvider>(http);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("provider ", config.name, ": unknown kind ",
                   static_cast<int>(config.kind)));
}

}  // namespace echelon
