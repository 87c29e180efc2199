#include "domain/circuit_breaker.h"

#include <algorithm>
#include <cmath>

namespace echelon {

CircuitBreaker::CircuitBreaker(const CircuitBreakerConfig& config)
    : config_(config), window_(config.window) {}

void CircuitBreaker::Reconfigure(const CircuitBreakerConfig& config) {
  if (config.window != config_.window) window_ = WindowCounter(config.window);
  config_ = config;
  if (!config_.enabled && phase_ != BreakerPhase::kClosed) {
    TransitionTo(BreakerPhase::kClosed);
  }
}

void CircuitBreaker::TransitionTo(BreakerPhase p) {
  if (p == phase_) return;
  BreakerPhase from = phase_;
  phase_ = p;
  if (listener_) listener_(from, p);
}

void CircuitBreaker::Advance(absl::Time now) {
  if (phase_ == BreakerPhase::kOpen && now >= open_until_) {
    probes_in_flight_ = 0;
    probe_successes_ = 0;
    TransitionTo(BreakerPhase::kHalfOpen);
  }
}

BreakerPhase CircuitBreaker::phase(absl::Time now) {
  Advance(now);
  return phase_;
}

bool CircuitBreaker::WouldAllow(absl::Time now) {
  if (!config_.enabled) return true;
  Advance(now);
  switch (phase_) {
    case BreakerPhase::kClosed:
      return true;
    case BreakerPhase::kOpen:
      return false;
    case BreakerPhase::kHalfOpen:
      return probes_in_flight_ < std::max(1, config_.half_open_requests);
  }
  return false;
}

bool CircuitBreaker::Allow(absl::Time now) {
  if (!WouldAllow(now)) return false;
  if (phase_ == BreakerPhase::kHalfOpen) ++probes_in_flight_;
  return true;
}

void CircuitBreaker::ClearCounts() {
  consecutive_failures_ = 0;
  probes_in_flight_ = 0;
  probe_successes_ = 0;
  window_.Clear();
}

void CircuitBreaker::Open(absl::Time now) {
  double factor = std::pow(std::max(1.0, config_.recovery_multiplier),
                           static_cast<double>(reopens_));
  absl::Duration open_for = config_.recovery_time * factor;
  if (open_for > config_.max_recovery_time)
    open_for = config_.max_recovery_time;
  open_until_ = now + open_for;
  ClearCounts();
  TransitionTo(BreakerPhase::kOpen);
}

void CircuitBreaker::ForceOpen(absl::Time now, absl::Time until) {
  if (!config_.enabled || until <= now) return;
  Advance(now);
  if (phase_ == BreakerPhase::kOpen && open_until_ >= until) return;
  open_until_ = until;
  ClearCounts();
  TransitionTo(BreakerPhase::kOpen);
}

void CircuitBreaker::ForceClose(absl::Time now) {
  Advance(now);
  if (phase_ == BreakerPhase::kClosed) return;
  reopens_ = 0;
  ClearCounts();
  TransitionTo(BreakerPhase::kClosed);
}

void CircuitBreaker::OnSuccess(absl::Time now) {
  if (!config_.enabled) return;
  Advance(now);
  switch (phase_) {
    case BreakerPhase::kClosed:
      consecutive_failures_ = 0;
      window_.Record(now, true);
      break;
    case BreakerPhase::kHalfOpen:
      probes_in_flight_ = std::max(0, probes_in_flight_ - 1);
      if (++probe_successes_ >= std::max(1, config_.success_threshold)) {
        reopens_ = 0;
        consecutive_failures_ = 0;
        window_.Clear();
        TransitionTo(BreakerPhase::kClosed);
      }
      break;
    case BreakerPhase::kOpen:
      break;  // a straggler from before the breaker opened
  }
}

void CircuitBreaker::OnFailure(absl::Time now) {
  if (!config_.enabled) return;
  Advance(now);
  switch (phase_) {
    case BreakerPhase::kClosed: {
      ++consecutive_failures_;
      window_.Record(now, false);
      bool by_count = config_.failure_threshold > 0 &&
                      consecutive_failures_ >= config_.failure_threshold;
      int64_t total = window_.total(now);
      bool by_rate = config_.failure_rate_threshold > 0 &&
                     total >= std::max(1, config_.min_requests) &&
                     static_cast<double>(window_.failures(now)) /
                             static_cast<double>(total) >
                         config_.failure_rate_threshold;
      if (by_count || by_rate) {
        reopens_ = 0;
        Open(now);
      }
      break;
    }
    case BreakerPhase::kHalfOpen:
      ++reopens_;
      Open(now);
      break;
    case BreakerPhase::kOpen:
      break;
  }
}

void CircuitBreaker::OnNeutral(absl::Time now) {
  Advance(now);
  if (phase_ == BreakerPhase::kHalfOpen) {
    probes_in_flight_ = std::max(0, probes_in_flight_ - 1);
  }
}

}  // namespace echelon
