// Fuzz target for the provider adapters' response decoding: the OpenAI and
// Anthropic dialects (adapters/openai_provider.h,
// adapters/anthropic_provider.h) as driven by adapters/provider_call.cc.
//
// Input layout: byte 0 picks the dialect (bit 0) and the mode (bits 1-2),
// byte 1 an HTTP status for error classification; the rest is
//   mode 0: a unary 2xx response body        -> Dialect::ParseResponse
//   mode 1: an SSE stream body               -> SseParser + StreamDecoder
//   mode 2: an error body                    -> Dialect::ClassifyHttpError
//   mode 3: response header lines "name: value" (then a blank line and an
//           error body)                      -> ParseRateLimits,
//                                               ClassifyHttpError
// Properties: no crash or sanitizer report; a stream stops being decoded
// once the decoder says kDone/kError (as ProviderCall does); an error result
// has an error class; Retry-After and rate-limit resets are never
// negative.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "adapters/anthropic_provider.h"
#include "adapters/http_client.h"
#include "adapters/openai_provider.h"
#include "adapters/provider_call.h"
#include "adapters/sse_parser.h"
#include "domain/chat.h"
#include "domain/errors.h"

namespace {

const absl::Time kNow = absl::FromUnixSeconds(1767225600);  // 2026-01-01

void CheckError(const echelon::UpstreamError& error) {
  if (error.retry_after < absl::ZeroDuration()) abort();
}

void Stream(const echelon::Dialect& dialect, absl::string_view body) {
  std::unique_ptr<echelon::StreamDecoder> decoder = dialect.NewStreamDecoder();
  echelon::SseParser sse;
  bool over = false;
  absl::Status status = sse.Feed(body, [&](const echelon::SseEvent& event) {
    if (over) return;
    echelon::StreamDelta delta;
    echelon::UpstreamError error;
    switch (decoder->OnEvent(event, &delta, &error)) {
      case echelon::StreamDecoder::Outcome::kContinue:
        break;
      case echelon::StreamDecoder::Outcome::kDone:
        over = true;
        break;
      case echelon::StreamDecoder::Outcome::kError:
        if (error.ok()) abort();
        CheckError(error);
        over = true;
        break;
    }
  });
  (void)status;
  (void)decoder->saw_finish_reason();
  const echelon::ChatResponse& summary = decoder->summary();
  (void)summary;
}

echelon::HttpHeaders ParseHeaders(absl::string_view* text) {
  echelon::HttpHeaders headers;
  while (!text->empty()) {
    size_t eol = text->find('\n');
    absl::string_view line = text->substr(0, eol);
    text->remove_prefix(eol == absl::string_view::npos ? text->size()
                                                       : eol + 1);
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    absl::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    headers.entries.emplace_back(std::string(line.substr(0, colon)),
                                 std::string(value));
  }
  return headers;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const echelon::openai::OpenAiDialect* openai =
      new echelon::openai::OpenAiDialect();
  static const echelon::anthropic::AnthropicDialect* anthropic =
      new echelon::anthropic::AnthropicDialect();
  const echelon::Dialect& dialect =
      (data[0] & 1) ? static_cast<const echelon::Dialect&>(*anthropic)
                    : static_cast<const echelon::Dialect&>(*openai);
  const int mode = (data[0] >> 1) & 3;
  const int status = 400 + data[1] % 200;  // 400..599
  absl::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);

  switch (mode) {
    case 0: {
      echelon::ChatResponse response;
      echelon::UpstreamError error = dialect.ParseResponse(body, &response);
      CheckError(error);
      break;
    }
    case 1:
      Stream(dialect, body);
      break;
    case 2: {
      echelon::UpstreamError error =
          dialect.ClassifyHttpError(status, echelon::HttpHeaders{}, body, kNow);
      if (error.ok()) abort();
      CheckError(error);
      break;
    }
    case 3: {
      echelon::HttpHeaders headers = ParseHeaders(&body);
      echelon::UpstreamRateLimits limits =
          dialect.ParseRateLimits(headers, kNow);
      if (limits.reset_requests < absl::ZeroDuration() ||
          limits.reset_tokens < absl::ZeroDuration()) {
        abort();
      }
      if (echelon::ParseRetryAfter(headers, kNow) < absl::ZeroDuration()) {
        abort();
      }
      echelon::UpstreamError error =
          dialect.ClassifyHttpError(status, headers, body, kNow);
      if (error.ok()) abort();
      CheckError(error);
      break;
    }
  }
  return 0;
}
