// Fuzz target for the HTTP front's request side: the HTTP/1.1 request parser
// (adapters/http1_parser.h) and the OpenAI request JSON mapping
// (adapters/openai_front_json.h).
//
// Input layout: byte 0 picks the mode and the split pattern; the rest is
//   bit 0 clear: raw bytes from a client connection, possibly several
//                pipelined requests; every parsed request's body goes to
//                ParseOpenAiChatRequest;
//   bit 0 set:   a request body (JSON) for ParseOpenAiChatRequest directly.
// Bit 1 selects tiny parser limits (so 431/413 paths are reached).
//
// Properties besides "no crash, no sanitizer report":
//   - the parser's output does not depend on how the bytes arrive: feeding
//     everything at once and in small pieces yields the same requests and
//     the same error status;
//   - an error has a 4xx/5xx status;
//   - a request body the front accepts maps to upstream request bodies
//     (OpenAI and Anthropic dialects) that are valid JSON, and every error
//     answer the front writes is valid JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "adapters/anthropic_provider.h"
#include "adapters/http1_parser.h"
#include "adapters/openai_front_json.h"
#include "adapters/openai_provider.h"
#include "rapidjson/document.h"

namespace {

void CheckValidJson(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError()) abort();
}

void CheckBody(absl::string_view body) {
  std::string param;
  absl::StatusOr<echelon::OpenAiChatCall> call =
      echelon::ParseOpenAiChatRequest(body, &param);
  if (!call.ok()) {
    if (call.status().code() != absl::StatusCode::kInvalidArgument) abort();
    echelon::OpenAiError error =
        echelon::OpenAiErrorFromStatus(call.status(), absl::ZeroDuration());
    if (error.http_status != 400) abort();
    error.param = param;
    std::string out;
    echelon::AppendOpenAiErrorJson(error, &out);
    CheckValidJson(out);
    return;
  }
  if (call->request == nullptr) abort();
  CheckValidJson(echelon::openai::BuildRequestBody(*call->request, call->model,
                                                   call->stream));
  CheckValidJson(echelon::anthropic::BuildRequestBody(
      *call->request, call->model, call->stream));
}

struct Parsed {
  std::vector<echelon::Http1Request> requests;
  int error_status = 0;
};

bool SameRequest(const echelon::Http1Request& a,
                 const echelon::Http1Request& b) {
  return a.method == b.method && a.target == b.target && a.path == b.path &&
         a.version_minor == b.version_minor && a.headers == b.headers &&
         a.body == b.body && a.keep_alive == b.keep_alive;
}

// Drains complete requests; false once the parser failed.
bool Drain(echelon::Http1RequestParser& parser, Parsed* parsed) {
  while (true) {
    echelon::Http1Request request;
    switch (parser.Next(&request)) {
      case echelon::Http1RequestParser::Result::kNeedMore:
        return true;
      case echelon::Http1RequestParser::Result::kRequest:
        parsed->requests.push_back(std::move(request));
        break;
      case echelon::Http1RequestParser::Result::kError:
        parsed->error_status = parser.error_status();
        if (parsed->error_status < 400 || parsed->error_status > 599) abort();
        return false;
    }
  }
}

Parsed Parse(absl::string_view input,
             const echelon::Http1RequestParser::Limits& limits, size_t piece) {
  echelon::Http1RequestParser parser(limits);
  Parsed parsed;
  size_t pos = 0;
  do {
    size_t n =
        piece == 0 ? input.size() - pos : std::min(piece, input.size() - pos);
    parser.Feed(input.substr(pos, n));
    (void)parser.TakeContinueRequest();
    pos += n;
    if (!Drain(parser, &parsed)) break;
  } while (pos < input.size());
  return parsed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t control = data[0];
  absl::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (control & 1) {
    CheckBody(input);
    return 0;
  }
  echelon::Http1RequestParser::Limits limits;
  if (control & 2) {
    limits.max_header_bytes = 64 + (control >> 2) * 4;
    limits.max_body_bytes = 16 + (control >> 2);
  }
  Parsed whole = Parse(input, limits, 0);
  Parsed pieces = Parse(input, limits, 1 + ((control >> 2) & 15));
  if (whole.error_status != pieces.error_status) abort();
  if (whole.requests.size() != pieces.requests.size()) abort();
  for (size_t i = 0; i < whole.requests.size(); ++i) {
    if (!SameRequest(whole.requests[i], pieces.requests[i])) abort();
  }
  for (const echelon::Http1Request& request : whole.requests) {
    if (request.method == "POST") CheckBody(request.body);
  }
  return 0;
}
