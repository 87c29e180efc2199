// The edge admission of one config snapshot, shared by the gRPC front and
// the OpenAI-compatible HTTP front so both judge a call the same way:
//   1. AdmitCall()    before the body is decoded: header/metadata caps,
//                     then the client token (UNAUTHENTICATED);
//   2. AdmitRequest() after decoding: the request caps (INVALID_ARGUMENT),
//                     the target check (PERMISSION_DENIED) and the token's
//                     own limits (RESOURCE_EXHAUSTED + retry hint).
// Nothing here calls an upstream. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "adapters/auth.h"
#include "adapters/auth_limits.h"
#include "domain/chat.h"
#include "domain/clock.h"
#include "domain/config.h"

namespace echelon {

// Swapped on reload together with the router.
struct EdgePolicy {
  std::shared_ptr<Authenticator> auth;  // null = no authentication
  RequestLimits limits;

  // The policy of `config`; tokens whose limits did not change keep their
  // usage from `previous` (may be null). Errors: INVALID_ARGUMENT (a bad
  // token hash; the validator reports it first).
  static absl::StatusOr<std::shared_ptr<const EdgePolicy>> Create(
      const GatewayConfig& config, const Clock& clock,
      const EdgePolicy* previous);
};

// `entries` / `bytes`: the call's headers or gRPC metadata (keys + values).
// `token`: from ExtractToken(). Fills `*principal` when the token is known.
absl::Status AdmitCall(const EdgePolicy& policy, absl::string_view token,
                       int64_t entries, int64_t bytes, Principal* principal);

// AdmitCall() for an HTTP request: counts `headers` (names lower-case, as
// Http1Request keeps them) and takes the token from `authorization:
// Bearer` or `x-api-key`; `*token` receives it for AdmitRequest().
absl::Status AdmitHttpHeaders(
    const EdgePolicy& policy,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::string* token, Principal* principal);

// `target`: the pool / task group the request asks for (gRPC `target`,
// OpenAI `model`).
absl::Status AdmitRequest(const EdgePolicy& policy, absl::string_view token,
                          absl::string_view target, const ChatRequest& request,
                          Principal* principal, absl::Duration* retry_after);

}  // namespace echelon
