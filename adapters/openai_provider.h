// domain::Provider for the OpenAI chat-completions API and compatible
// servers (vLLM, Ollama, Azure-style deployments): POST
// <base_url>/chat/completions, JSON in, JSON or SSE out.
//
// Error classification (HTTP status plus the body's error.code/error.type):
//   insufficient_quota (any status)              -> kQuotaExhausted
//   context_length_exceeded                      -> kContextLengthExceeded
//   content_policy_violation / content_filter    -> kContentFiltered
//   429                                          -> kRateLimited
//   503, 529, server_is_overloaded               -> kOverloaded
//   other 5xx                                    -> kServerError
//   401, 403                                     -> kAuthError
//   other 4xx                                    -> kBadRequest
// Retry-After (seconds or HTTP-date) or retry-after-ms sets retry_after.
// `x-should-retry: false` turns the transient classes (kRateLimited,
// kOverloaded, kServerError) into kBadRequest: the upstream says this very
// request will not succeed if repeated, and kBadRequest is the class that is
// neither retried nor counted against the instance's health. Instance-scoped
// classes (auth, quota, context length) are left alone because another
// instance or model may still serve the request.
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
namespace openai {

// The wire dialect; exposed for unit tests and benchmarks.
class OpenAiDialect : public Dialect {
 public:
  HttpRequest BuildRequest(const UpstreamCall& call) const override;
  UpstreamError ClassifyHttpError(int status, const HttpHeaders& headers,
                                  absl::string_view body,
                                  absl::Time now) const override;
  UpstreamRateLimits ParseRateLimits(const HttpHeaders& headers,
                                     absl::Time now) const override;
  UpstreamError ParseResponse(absl::string_view body,
                              ChatResponse* response) const override;
  std::unique_ptr<StreamDecoder> NewStreamDecoder() const override;
};

// The request body for `request` against `model`.
std::string BuildRequestBody(const ChatRequest& request,
                             absl::string_view model, bool stream);

// Classifies an error object (the value of "error") or a whole error body.
// `status` 0 means the error came inside a stream (default kServerError).
UpstreamError ClassifyError(int status, absl::string_view body);

FinishReason ParseFinishReason(absl::string_view reason);

}  // namespace openai

// `http` must outlive the provider and every call it started.
using OpenAiProvider = DialectProvider<openai::OpenAiDialect>;

}  // namespace echelon
