#include "adapters/provider_factory.h"

#include <memory>

#include "adapters/anthropic_provider.h"
#include "adapters/event_loop.h"
#include "adapters/openai_provider.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

TEST(ProviderFactoryTest, BuildsTheAdapterOfEachKind) {
  auto loop = EpollEventLoop::Create({});
  ASSERT_TRUE(loop.ok());
  auto http = HttpClient::Create({}, **loop);
  ASSERT_TRUE(http.ok());
  ProviderConfig config;
  config.kind = ProviderKind::kOpenAI;
  auto openai = MakeProvider(config, **http);
  ASSERT_TRUE(openai.ok());
  EXPECT_NE(dynamic_cast<OpenAiProvider*>(openai->get()), nullptr);
  config.kind = ProviderKind::kAnthropic;
  auto claude = MakeProvider(config, **http);
  ASSERT_TRUE(claude.ok());
  EXPECT_NE(dynamic_cast<AnthropicProvider*>(claude->get()), nullptr);
}

}  // namespace
}  // namespace echelon
