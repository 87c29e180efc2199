// A circuit breaker for one instance or one echelon.
//
// Phases and transitions:
//   CLOSED    -> OPEN       after `failure_threshold` consecutive health
//                           failures, or when the failure rate over `window`
//                           exceeds `failure_rate_threshold` with at least
//                           `min_requests` outcomes in the window.
//   OPEN      -> HALF_OPEN  once `recovery_time` (grown by reopens) passed;
//                           evaluated lazily on the next Allow()/phase().
//   HALF_OPEN -> CLOSED     after `success_threshold` successful probes
//                           (at most `half_open_requests` at once).
//   HALF_OPEN -> OPEN       on any probe failure; the n-th consecutive
//                           reopen stays open recovery_time *
//                           recovery_multiplier^n, capped at
//                           max_recovery_time.
// A disabled breaker (enabled=false) is always CLOSED.
// Not thread-safe: the owner serialises calls (loop thread) and guards
// reads from other threads.
#pragma once

#include <functional>

#include "absl/time/time.h"
#include "domain/config.h"
#include "domain/stats.h"
#include "domain/status.h"

namespace echelon {

class CircuitBreaker {
 public:
  using TransitionListener = std::function<void(BreakerPhase, BreakerPhase)>;

  explicit CircuitBreaker(const CircuitBreakerConfig& config);

  // Called on every phase change (after the change).
  void set_listener(TransitionListener l) { listener_ = std::move(l); }
  void Reconfigure(const CircuitBreakerConfig& config);

  // Whether a request may pass now. In HALF_OPEN this takes one of the
  // probe slots, which the request must give back through exactly one of
  // OnSuccess/OnFailure/OnNeutral.
  bool Allow(absl::Time now);
  // Whether Allow() would pass, without taking a slot.
  bool WouldAllow(absl::Time now);

  void OnSuccess(absl::Time now);
  void OnFailure(absl::Time now);
  // The request ended without a health verdict (rate limited, cancelled,
  // caller error): frees its half-open slot.
  void OnNeutral(absl::Time now);

  // Another replica's verdict (shared state): open until `until` unless
  // already open longer; or closed again. Neither changes reopen_count().
  void ForceOpen(absl::Time now, absl::Time until);
  void ForceClose(absl::Time now);

  BreakerPhase phase(absl::Time now);
  // The phase phase(now) would report, without transitioning (for status
  // readers on other threads, under the owner's lock).
  BreakerPhase PeekPhase(absl::Time now) const {
    if (phase_ == BreakerPhase::kOpen && now >= open_until_) {
      return BreakerPhase::kHalfOpen;
    }
    return phase_;
  }
  // When an OPEN breaker will let the first probe through; InfinitePast
  // when not open.
  absl::Time half_open_at() const {
    return phase_ == BreakerPhase::kOpen ? open_until_ : absl::InfinitePast();
  }
  int reopen_count() const { return reopens_; }
  const CircuitBreakerConfig& config() const { return config_; }

 private:
  void Advance(absl::Time now);
  void Open(absl::Time now);
  // Forgets failures, probes and the window (on every open or close).
  void ClearCounts();
  void TransitionTo(BreakerPhase p);

  CircuitBreakerConfig config_;
  BreakerPhase phase_ = BreakerPhase::kClosed;
  int consecutive_failures_ = 0;
  WindowCounter window_;
  absl::Time open_until_ = absl::InfinitePast();
  int reopens_ = 0;  // consecutive reopens from half-open
  int probes_in_flight_ = 0;
  int probe_successes_ = 0;
  TransitionListener listener_;
};

}  // namespace echelon
