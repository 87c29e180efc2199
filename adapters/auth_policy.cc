#include "adapters/auth_policy.h"

#include <utility>

namespace echelon {

absl::StatusOr<std::shared_ptr<const EdgePolicy>> EdgePolicy::Create(
    const GatewayConfig& config, const Clock& clock,
    const EdgePolicy* previous) {
  auto policy = std::make_shared<EdgePolicy>();
  auto auth = Authenticator::Create(
      config.auth, clock, previous != nullptr ? previous->auth.get() : nullptr);
  if (!auth.ok()) return auth.status();
  policy->auth = *std::move(auth);
  policy->limits = RequestLimits::FromConfig(config);
  return std::shared_ptr<const EdgePolicy>(std::move(policy));
}

absl::Status AdmitCall(const EdgePolicy& policy, absl::string_view token,
                       int64_t entries, int64_t bytes, Principal* principal) {
  absl::Status s = CheckMetadataLimits(policy.limits, entries, bytes);
  if (!s.ok()) return s;
  if (policy.auth == nullptr || !policy.auth->enabled()) return s;
  absl::StatusOr<Principal> who = policy.auth->Authenticate(token);
  if (!who.ok()) return who.status();
  if (principal != nullptr) *principal = *who;
  return absl::OkStatus();
}

absl::Status AdmitHttpHeaders(
    const EdgePolicy& policy,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::string* token, Principal* principal) {
  absl::string_view authorization;
  absl::string_view api_key;
  int64_t bytes = 0;
  for (const auto& [name, value] : headers) {
    bytes += static_cast<int64_t>(name.size() + value.size());
    if (name == "authorization" && authorization.empty()) {
      authorization = value;
    } else if (name == "x-api-key" && api_key.empty()) {
      api_key = value;
    }
  }
  *token = ExtractToken(authorization, api_key);
  return AdmitCall(policy, *token, static_cast<int64_t>(headers.size()), bytes,
                   principal);
}

absl::Status AdmitRequest(const EdgePolicy& policy, absl::string_view token,
                          absl::string_view target, const ChatRequest& request,
                          Principal* principal, absl::Duration* retry_after) {
  absl::Status s = CheckRequestLimits(policy.limits, request);
  if (!s.ok() || policy.auth == nullptr) return s;
  const int64_t estimate =
      EstimatePromptTokens(request) + request.params.max_tokens.value_or(0);
  return policy.auth->Check(token, target, estimate, principal, retry_after);
}

}  // namespace echelon
