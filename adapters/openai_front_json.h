// The OpenAI Chat Completions wire format as spoken by Echelon's HTTP front
// (adapters/http_front.h): request JSON -> domain ChatRequest, and domain
// responses, stream deltas, errors and target lists -> response JSON.
// (The upstream direction, Echelon calling OpenAI-compatible providers, is
// a different adapter.)
//
// Parsing uses RapidJSON's DOM on the request body; writing streams straight
// into the caller's std::string with RapidJSON's Writer, no intermediate
// document. Unknown request fields are ignored; a present field of the wrong
// type is an INVALID_ARGUMENT naming the field.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "domain/chat.h"
#include "domain/status.h"

namespace echelon {

// A parsed POST /v1/chat/completions body.
struct OpenAiChatCall {
  std::string model;  // the Echelon target
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::shared_ptr<ChatRequest> request;
};

// Errors: INVALID_ARGUMENT with a message for the client; `*param` (if not
// null) receives the offending field's path, e.g. "messages[1].role", or
// stays empty when the body as a whole is bad.
absl::StatusOr<OpenAiChatCall> ParseOpenAiChatRequest(absl::string_view body,
                                                      std::string* param);

// An OpenAI-style error, ready to send.
struct OpenAiError {
  int http_status = 500;
  std::string type;   // "invalid_request_error", "rate_limit_error", ...
  std::string code;   // "model_not_found", "content_filter", ... or empty
  std::string param;  // or empty
  std::string message;
  int retry_after_seconds = 0;  // > 0: send a Retry-After header
};

// Maps a failed routing status to the HTTP status and error body:
// INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403,
// NOT_FOUND 404 (model_not_found), RESOURCE_EXHAUSTED 429 (Retry-After from
// `retry_after`, rounded up, at least 1 s), UNAVAILABLE 503 (Retry-After
// when `retry_after` > 0), DEADLINE_EXCEEDED 504, FAILED_PRECONDITION 400
// (content_filter), CANCELLED 499, anything else 500.
OpenAiError OpenAiErrorFromStatus(const absl::Status& status,
                                  absl::Duration retry_after);

// {"error":{"message":..,"type":..,"param":..,"code":..}}, appended.
void AppendOpenAiErrorJson(const OpenAiError& error, std::string* out);

// What every response object of one completion shares.
struct OpenAiCompletionMeta {
  std::string id;       // "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

absl::string_view OpenAiFinishReason(FinishReason reason);

// A non-streamed "chat.completion" object, appended.
void AppendOpenAiCompletionJson(const OpenAiCompletionMeta& meta,
                                const ChatResponse& response, std::string* out);

// "chat.completion.chunk" objects, appended (JSON only, no SSE framing).
// The first chunk of a stream: delta {"role":"assistant","content":""}.
void AppendOpenAiRoleChunk(const OpenAiCompletionMeta& meta, std::string* out);
// Content and tool-call fragments of `delta` (its usage and finish reason
// are not written here).
void AppendOpenAiDeltaChunk(const OpenAiCompletionMeta& meta,
                            const StreamDelta& delta, std::string* out);
// Empty delta with the finish reason.
void AppendOpenAiFinishChunk(const OpenAiCompletionMeta& meta,
                             FinishReason reason, std::string* out);
// "choices":[] with usage (stream_options.include_usage).
void AppendOpenAiUsageChunk(const OpenAiCompletionMeta& meta,
                            const Usage& usage, std::string* out);

// GET /v1/models: {"object":"list","data":[{"id":..,"object":"model",..}]}.
void AppendOpenAiModelListJson(const std::vector<TargetView>& targets,
                               std::string* out);
// GET /v1/models/{id}: one model object.
void AppendOpenAiModelJson(const TargetView& target, std::string* out);

}  // namespace echelon
