// domain::Provider for the Anthropic Messages API: POST <base_url>/messages
// with x-api-key and anthropic-version: 2023-06-01.
//
// Mapping notes: system and developer messages become the top-level
// `system`; assistant tool calls become `tool_use` blocks and tool messages
// become `tool_result` blocks in a user turn (consecutive ones merged);
// max_tokens is required (request's value, else 4096). Parameters the API
// lacks (seed, penalties, response_format) are dropped.
//
// Error classification (status plus error.type, and message text for the
// cases the API does not type):
//   overloaded_error, 529, 503                  -> kOverloaded
//   rate_limit_error, 429                       -> kRateLimited
//   "quota" / "credit balance" in the message   -> kQuotaExhausted
//   "prompt is too long" / "context length"     -> kContextLengthExceeded
//   "safety system" / "content policy|filter"   -> kContentFiltered
//   authentication_error, permission_error,
//   401, 403                                    -> kAuthError
//   api_error, other 5xx                        -> kServerError
//   other 4xx (invalid_request_error, ...)      -> kBadRequest
#pragma once

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "adapters/http_client.h"
#include "adapters/provider_call.h"
#include "domain/chat.h"
#include "domain/errors.h"
#include "domain/provider.h"

namespace echelon {
namespace anthropic {

inline constexpr int64_t kDefaultMaxTokens = 4096;

class AnthropicDialect : public Dialect {
 public:
  HttpRequest BuildRequest(const UpstreamCall& call) const override;
  UpstreamError ClassifyHttpError(int status, const HttpHeaders& headers,
                                  absl::string_view body,
                                  absl::Time now) const override;
  // anthropic-ratelimit-{requests,tokens}-{remaining,reset}; resets are
  // RFC 3339 times, turned into durations from `now`.
  UpstreamRateLimits ParseRateLimits(const HttpHeaders& headers,
                                     absl::Time now) const override;
  UpstreamError ParseResponse(absl::string_view body,
                              ChatResponse* response) const override;
  std::unique_ptr<StreamDecoder> NewStreamDecoder() const override;
};

std::string BuildRequestBody(const ChatRequest& request,
                             absl::string_view model, bool stream);

// `status` 0 means an `error` event inside a stream.
UpstreamError ClassifyError(int status, absl::string_view body);

FinishReason ParseStopReason(absl::string_view reason);

}  // namespace anthropic

// `http` must outlive the provider and every call it started.
using AnthropicProvider = DialectProvider<anthropic::AnthropicDialect>;

}  // namespace echelon
