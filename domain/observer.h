// Hooks through which adapters (metrics, logs) watch the router without the
// domain depending on them. All callbacks run on the event loop thread and
// must not block or call back into the router.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "domain/errors.h"
#include "domain/status.h"

namespace echelon {

struct AttemptEvent {
  std::string target;
  std::string task_group;  // empty unless routed through a task group
  std::string echelon;     // likewise
  std::string pool;        // the rotation pool the instance came from
  std::string model;
  std::string instance;  // "model/instance"
  std::string provider;
  ErrorClass outcome = ErrorClass::kNone;
  absl::Duration latency = absl::ZeroDuration();
  absl::Duration ttft = absl::ZeroDuration();
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  bool is_retry = false;  // not the first attempt of the request
};

struct RequestDoneEvent {
  std::string request_id;
  std::string target;
  std::string model;     // served, or empty
  std::string instance;  // served, or empty
  absl::StatusCode code = absl::StatusCode::kOk;
  int attempts = 0;
  bool stream = false;
  bool committed = false;
  absl::Duration duration = absl::ZeroDuration();
  absl::Duration upstream_time = absl::ZeroDuration();
  int64_t tokens_in = 0;  // usage of the serving attempt
  int64_t tokens_out = 0;
  std::string message;  // the final status message on failure (no secrets)
};

struct FallbackEvent {
  std::string target;
  std::string from;
  std::string to;
  std::string reason;  // e.g. "echelon_down", "model_rotate"
  ErrorClass cause = ErrorClass::kNone;
};

struct BreakerEvent {
  // "instance" (scope = pool name, instance set) or "echelon" (scope =
  // task group, name = echelon).
  std::string kind;
  std::string scope;
  std::string name;
  BreakerPhase from = BreakerPhase::kClosed;
  BreakerPhase to = BreakerPhase::kClosed;
};

class RouterObserver {
 public:
  virtual ~RouterObserver() = default;
  virtual void OnAttempt(const AttemptEvent&) {}
  virtual void OnRequestDone(const RequestDoneEvent&) {}
  virtual void OnFallback(const FallbackEvent&) {}
  virtual void OnBreakerTransition(const BreakerEvent&) {}
};

}  // namespace echelon
