// The port to upstream LLM providers. Adapters (adapters/openai_provider.h,
// adapters/anthropic_provider.h) implement it over real HTTP; unit tests use
// tests/fakes/fake_provider.h.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "domain/chat.h"
#include "domain/errors.h"

namespace echelon {

// How to reach one upstream instance. Built from config; immutable.
struct Endpoint {
  std::string base_url;        // e.g. "https://api.openai.com/v1"
  std::string api_key;         // secret: never log, never export
  std::string upstream_model;  // the provider's model id, e.g. "gpt-4o"
  std::map<std::string, std::string> headers;  // extra request headers
};

struct UpstreamTimeouts {
  absl::Duration connect = absl::Seconds(5);
  // From sending the request to the first byte of the body (unary) or the
  // first SSE event (stream).
  absl::Duration first_token = absl::Seconds(60);
  // Longest silence allowed between two stream chunks.
  absl::Duration stall = absl::Seconds(30);
};

struct UpstreamCall {
  std::shared_ptr<const Endpoint> endpoint;
  // The request after echelon defaults were applied. Shared so that retries
  // and fallbacks do not copy the conversation.
  std::shared_ptr<const ChatRequest> request;
  bool stream = false;
  // Hard end of this attempt (the request's total deadline or the echelon's
  // timeout, whichever is sooner). Past it the attempt fails kTimeoutTotal.
  absl::Time deadline = absl::InfiniteFuture();
  UpstreamTimeouts timeouts;
};

// What the upstream told us about its own rate limits, when its headers did.
// -1 means unknown.
struct UpstreamRateLimits {
  int64_t remaining_requests = -1;
  int64_t remaining_tokens = -1;
  absl::Duration reset_requests = absl::ZeroDuration();
  absl::Duration reset_tokens = absl::ZeroDuration();
};

struct UpstreamResult {
  UpstreamError error;  // error_class kNone on success
  // Unary: the whole response. Stream: finish reason and usage only (the
  // content went through OnDelta).
  ChatResponse response;
  UpstreamRateLimits rate_limits;
  // Time from start to the first byte (unary) or first visible delta
  // (stream); zero when none arrived.
  absl::Duration time_to_first_token = absl::ZeroDuration();

  bool ok() const { return error.ok(); }
};

// Receives the events of one upstream call. Callbacks run on the event loop
// thread, never synchronously inside Provider::Start() or
// UpstreamHandle::Cancel().
class UpstreamObserver {
 public:
  virtual ~UpstreamObserver() = default;
  // Streaming calls only: zero or more times, in order, before OnFinish.
  virtual void OnDelta(StreamDelta delta) = 0;
  // Exactly once, unless the call was cancelled first. After OnFinish no
  // other callback comes.
  virtual void OnFinish(UpstreamResult result) = 0;
};

// A running upstream call. Destroying it cancels the call.
class UpstreamHandle {
 public:
  virtual ~UpstreamHandle() = default;
  // Aborts the transfer at once and frees its connection slot. After Cancel
  // returns no observer callback comes. Loop thread only; idempotent.
  virtual void Cancel() = 0;
};

class Provider {
 public:
  virtual ~Provider() = default;
  // Starts a call. Loop thread only. `observer` must outlive the call (until
  // OnFinish, or until Cancel returns). Never fails synchronously: errors
  // arrive through OnFinish.
  virtual std::unique_ptr<UpstreamHandle> Start(UpstreamCall call,
                                                UpstreamObserver* observer) = 0;
};

}  // namespace echelon
