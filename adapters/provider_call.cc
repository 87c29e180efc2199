#include "adapters/provider_call.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "adapters/redact.h"

namespace echelon {
namespace {

// State shared by the handle and the HTTP callbacks, so that either may go
// first.
struct CallState {
  const Dialect* dialect = nullptr;
  HttpClient* http = nullptr;
  UpstreamObserver* observer = nullptr;
  bool stream = false;
  absl::Time start;
  HttpClient::RequestId request_id = 0;
  bool finished = false;  // OnFinish delivered or call cancelled

  int status = 0;
  HttpHeaders headers;
  UpstreamRateLimits rate_limits;
  std::string body;  // unary body, or an error body
  absl::Duration ttft = absl::ZeroDuration();
  std::string api_key;  // for redacting upstream error messages only

  // Stream timers, run here rather than in the HTTP client because they
  // are about tokens, not bytes: Anthropic sends message_start and pings
  // long before the first token.
  UpstreamTimeouts timeouts;
  std::weak_ptr<CallState> self;
  bool first_token_seen = false;
  absl::Time last_event;
  EventLoop::TimerId first_token_timer = EventLoop::kNoTimer;
  EventLoop::TimerId stall_timer = EventLoop::kNoTimer;

  EventLoop& loop() { return http->loop(); }

  void StopTimers() {
    loop().CancelTimer(first_token_timer);
    loop().CancelTimer(stall_timer);
    first_token_timer = stall_timer = EventLoop::kNoTimer;
  }

  void ArmFirstTokenTimer() {
    if (timeouts.first_token == absl::InfiniteDuration()) return;
    std::weak_ptr<CallState> weak = self;
    first_token_timer = loop().RunAt(start + timeouts.first_token, [weak] {
      auto state = weak.lock();
      if (state == nullptr) return;
      state->first_token_timer = EventLoop::kNoTimer;
      state->Abort({ErrorClass::kTimeoutFirstToken, state->status,
                    "no first token within the first-token timeout"});
    });
  }

  void OnFirstToken() {
    first_token_seen = true;
    loop().CancelTimer(first_token_timer);
    first_token_timer = EventLoop::kNoTimer;
    ArmStallTimer(last_event + timeouts.stall);
  }

  void ArmStallTimer(absl::Time when) {
    if (timeouts.stall == absl::InfiniteDuration()) return;
    std::weak_ptr<CallState> weak = self;
    stall_timer = loop().RunAt(when, [weak] {
      auto state = weak.lock();
      if (state == nullptr) return;
      state->stall_timer = EventLoop::kNoTimer;
      absl::Time due = state->last_event + state->timeouts.stall;
      if (state->loop().Now() < due) {
        state->ArmStallTimer(due);
        return;
      }
      state->Abort({ErrorClass::kTimeoutStall, state->status,
                    "stream stalled longer than the stall timeout"});
    });
  }

  SseParser sse;
  std::unique_ptr<StreamDecoder> decoder;

  bool ok_status() const { return status >= 200 && status < 300; }

  // Delivers the final result exactly once.
  void Finish(UpstreamResult result) {
    if (finished) return;
    finished = true;
    StopTimers();
    result.rate_limits = rate_limits;
    result.time_to_first_token = ttft;
    // Whatever the upstream said goes to logs, traces and callers: never
    // with the key in it.
    if (!result.error.message.empty()) {
      result.error.message = RedactSecrets(result.error.message, api_key);
    }
    if (decoder != nullptr && result.ok()) {
      result.response.finish_reason = decoder->summary().finish_reason;
      result.response.usage = decoder->summary().usage;
      result.response.has_usage = decoder->summary().has_usage;
    }
    observer->OnFinish(std::move(result));
  }

  void FinishError(UpstreamError error) {
    UpstreamResult result;
    result.error = std::move(error);
    Finish(std::move(result));
  }

  // Stops the transfer (if it still runs) and reports `error`.
  void Abort(UpstreamError error) {
    http->Cancel(request_id);
    FinishError(std::move(error));
  }

  void OnHeaders(int s, const HttpHeaders& h) {
    status = s;
    headers = h;
    rate_limits = dialect->ParseRateLimits(h, http->loop().Now());
  }

  void OnData(absl::string_view bytes) {
    if (finished) return;
    if (!ok_status()) {
      if (body.size() < kMaxErrorBodyBytes) {
        body.append(bytes.data(),
                    std::min(bytes.size(), kMaxErrorBodyBytes - body.size()));
      }
      return;
    }
    if (!stream) {
      if (ttft == absl::ZeroDuration()) ttft = http->loop().Now() - start;
      if (body.size() + bytes.size() > kMaxResponseBodyBytes) {
        Abort({ErrorClass::kProtocolError, status, "response body too large"});
        return;
      }
      body.append(bytes.data(), bytes.size());
      return;
    }
    last_event = loop().Now();
    absl::Status parsed = sse.Feed(bytes, [this](const SseEvent& event) {
      if (finished) return;
      StreamDelta delta;
      UpstreamError error;
      StreamDecoder::Outcome outcome = decoder->OnEvent(event, &delta, &error);
      if (delta.IsVisible() || delta.usage.has_value() ||
          delta.finish_reason != FinishReason::kUnspecified) {
        if (delta.IsVisible() && ttft == absl::ZeroDuration()) {
          ttft = http->loop().Now() - start;
        }
        bool first = !first_token_seen &&
                     (delta.IsVisible() ||
                      delta.finish_reason != FinishReason::kUnspecified);
        observer->OnDelta(std::move(delta));
        if (finished) return;  // the observer cancelled
        if (first) OnFirstToken();
      }
      switch (outcome) {
        case StreamDecoder::Outcome::kContinue:
          return;
        case StreamDecoder::Outcome::kDone:
          // Let the transfer drain so the connection can be reused; its
          // remaining callbacks see `finished`.
          Finish(UpstreamResult{});
          return;
        case StreamDecoder::Outcome::kError:
          if (error.http_status == 0) error.http_status = status;
          Abort(std::move(error));
          return;
      }
    });
    if (!parsed.ok() && !finished) {
      Abort(
          {ErrorClass::kProtocolError, status, std::string(parsed.message())});
    }
  }

  void OnComplete(HttpResult http_result) {
    if (finished) return;
    if (status == 0) status = http_result.http_status;
    if (http_result.error_class != ErrorClass::kNone) {
      UpstreamError error;
      error.error_class = http_result.error_class;
      error.http_status = status;
      error.message = std::move(http_result.message);
      if (status != 0 && !ok_status()) {
        // The error answer itself was cut: classify what we have.
        error = dialect->ClassifyHttpError(status, headers, body,
                                           http->loop().Now());
      } else if (stream && decoder->saw_finish_reason()) {
        // Everything the caller needs arrived; only the end marker is
        // missing.
        Finish(UpstreamResult{});
        return;
      } else if (stream && error.error_class == ErrorClass::kConnectError &&
                 http_result.body_bytes > 0) {
        error.error_class = ErrorClass::kStreamCut;
      }
      FinishError(std::move(error));
      return;
    }
    if (!ok_status()) {
      FinishError(dialect->ClassifyHttpError(status, headers, body,
                                             http->loop().Now()));
      return;
    }
    if (stream) {
      if (decoder->saw_finish_reason()) {
        Finish(UpstreamResult{});
      } else {
        FinishError({ErrorClass::kStreamCut, status,
                     "stream ended before its end marker"});
      }
      return;
    }
    UpstreamResult result;
    result.error = dialect->ParseResponse(body, &result.response);
    if (result.error.http_status == 0 && !result.ok()) {
      result.error.http_status = status;
    }
    Finish(std::move(result));
  }
};

class Handle : public UpstreamHandle {
 public:
  explicit Handle(std::shared_ptr<CallState> state)
      : state_(std::move(state)) {}
  ~Handle() override { Cancel(); }

  void Cancel() override {
    if (state_->finished) return;
    state_->finished = true;
    state_->StopTimers();
    state_->http->Cancel(state_->request_id);
  }

 private:
  std::shared_ptr<CallState> state_;
};

}  // namespace

std::unique_ptr<UpstreamHandle> StartProviderCall(const Dialect& dialect,
                                                  HttpClient& http,
                                                  UpstreamCall call,
                                                  UpstreamObserver* observer) {
  auto state = std::make_shared<CallState>();
  state->dialect = &dialect;
  state->http = &http;
  state->observer = observer;
  state->stream = call.stream;
  state->start = http.loop().Now();
  state->self = state;
  state->timeouts = call.timeouts;
  if (call.endpoint != nullptr) state->api_key = call.endpoint->api_key;
  if (call.stream) state->decoder = dialect.NewStreamDecoder();

  HttpRequest request = dialect.BuildRequest(call);
  request.connect_timeout = call.timeouts.connect;
  request.first_byte_timeout = call.timeouts.first_token;
  // Streams: the HTTP first-byte timer still catches a silent connection;
  // first token and stall are watched per SSE event above.
  request.stall_timeout = absl::InfiniteDuration();
  request.deadline = call.deadline;

  HttpCallbacks callbacks;
  callbacks.on_headers = [state](int status, const HttpHeaders& headers) {
    state->OnHeaders(status, headers);
  };
  callbacks.on_data = [state](absl::string_view bytes) {
    state->OnData(bytes);
  };
  callbacks.on_complete = [state](HttpResult result) {
    state->OnComplete(std::move(result));
  };
  state->request_id = http.Start(std::move(request), std::move(callbacks));
  if (call.stream) state->ArmFirstTokenTimer();
  return std::make_unique<Handle>(std::move(state));
}

}  // namespace echelon
