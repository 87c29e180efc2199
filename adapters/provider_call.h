// The HTTP + SSE machinery shared by the provider adapters. A provider
// supplies a Dialect (how to build the request, read a response, decode a
// stream event and classify an error); ProviderCall drives one upstream call
// over the HttpClient and reports to the UpstreamObserver.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "adapters/http_client.h"
#include "adapters/sse_parser.h"
#include "domain/chat.h"
#include "domain/errors.h"
#include "domain/provider.h"

namespace echelon {

// Decodes the events of one stream. One instance per call.
class StreamDecoder {
 public:
  enum class Outcome {
    kContinue,  // more events expected; `delta` may carry something
    kDone,      // the stream ended properly ([DONE], message_stop)
    kError,     // `error` is set; the stream is over
  };
  virtual ~StreamDecoder() = default;
  // Decodes one SSE event into `delta` (left empty when the event carries
  // nothing for the caller). Malformed data is a kProtocolError.
  virtual Outcome OnEvent(const SseEvent& event, StreamDelta* delta,
                          UpstreamError* error) = 0;
  // Whether a finish reason was seen: a stream closed after it is complete
  // even without its end marker.
  virtual bool saw_finish_reason() const = 0;
  // Usage and finish reason gathered so far, for the final result.
  virtual const ChatResponse& summary() const = 0;
};

class Dialect {
 public:
  virtual ~Dialect() = default;
  // URL, headers and body for `call`. Headers may carry the API key.
  virtual HttpRequest BuildRequest(const UpstreamCall& call) const = 0;
  // Classifies a non-2xx answer. Must never echo request headers.
  virtual UpstreamError ClassifyHttpError(int status,
                                          const HttpHeaders& headers,
                                          absl::string_view body,
                                          absl::Time now) const = 0;
  virtual UpstreamRateLimits ParseRateLimits(const HttpHeaders& headers,
                                             absl::Time now) const = 0;
  // Decodes a unary 2xx body; on failure returns an error (kProtocolError,
  // or the class of an error object inside the body).
  virtual UpstreamError ParseResponse(absl::string_view body,
                                      ChatResponse* response) const = 0;
  virtual std::unique_ptr<StreamDecoder> NewStreamDecoder() const = 0;
};

// Starts `call` with `dialect` over `http`. Loop thread only. Implements the
// Provider::Start contract (callbacks never run inside Start or Cancel).
std::unique_ptr<UpstreamHandle> StartProviderCall(const Dialect& dialect,
                                                  HttpClient& http,
                                                  UpstreamCall call,
                                                  UpstreamObserver* observer);

// A Provider that speaks `DialectT` (stateless, default-constructible) over
// `http`, which must outlive the provider and every call it started.
template <typename DialectT>
class DialectProvider final : public Provider {
 public:
  explicit DialectProvider(HttpClient& http) : http_(http) {}

  std::unique_ptr<UpstreamHandle> Start(UpstreamCall call,
                                        UpstreamObserver* observer) override {
    static const DialectT* const kDialect = new DialectT();
    return StartProviderCall(*kDialect, http_, std::move(call), observer);
  }

 private:
  HttpClient& http_;
};

// Longest error body kept for classification.
inline constexpr size_t kMaxErrorBodyBytes = 64 * 1024;
// Longest unary response body accepted.
inline constexpr size_t kMaxResponseBodyBytes = 64 * 1024 * 1024;

}  // namespace echelon
