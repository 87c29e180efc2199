// Runtime state of task groups and their echelons: per-echelon breaker,
// concurrency limit (with queue), RPM/TPM limits, retry budget and
// counters. The routing decisions themselves live in the router; this is
// the state they read and update.
//
// Thread safety: mutated on the loop thread; guarded by each echelon's
// mutex so that GetStatus() may run on any thread.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "domain/circuit_breaker.h"
#include "domain/concurrency_limiter.h"
#include "domain/config.h"
#include "domain/errors.h"
#include "domain/event_loop.h"
#include "domain/pool.h"
#include "domain/rate_limiter.h"
#include "domain/retry.h"
#include "domain/shared_state.h"
#include "domain/stats.h"
#include "domain/status.h"

namespace echelon {

class EchelonState {
 public:
  using TransitionListener = std::function<void(BreakerPhase, BreakerPhase)>;

  // `local_share` scales the in-process RPM/TPM limiter (replicas sharing
  // the limit through SharedState); status still shows the configured
  // figures.
  EchelonState(std::string group, const EchelonConfig& config, EventLoop& loop,
               double local_share = 1.0);

  const std::string& group() const { return group_; }
  const std::string& name() const { return config_.name; }
  // "group.echelon"
  const std::string& full_name() const { return full_name_; }
  const EchelonConfig& config() const { return config_; }

  void set_breaker_listener(TransitionListener l);
  // Called (on the loop thread, under the echelon's lock: must not call
  // back) when the breaker opens or closes by a local verdict, for sharing
  // with other replicas.
  void set_shared_listener(std::function<void(const SharedEvent&)> l);
  // Applies another replica's breaker verdict without reporting it back.
  void ApplyShared(const SharedEvent& e, absl::Time now);
  // The limits the shared store enforces for this echelon.
  const SharedLimit& shared_limit() const { return shared_limit_; }
  // Carries breaker state and counters over from the prior snapshot.
  void CopyStateFrom(const EchelonState& old);

  // Breaker. Allow() takes a half-open probe slot; give it back with
  // exactly one Breaker{Success,Failure,Neutral}.
  bool BreakerWouldAllow(absl::Time now);
  bool BreakerAllow(absl::Time now);
  void BreakerSuccess(absl::Time now);
  void BreakerFailure(absl::Time now);
  void BreakerNeutral(absl::Time now);
  absl::Time BreakerHalfOpenAt() const;

  // Concurrency (loop thread).
  ConcurrencyLimiter& concurrency() { return concurrency_; }
  // RPM/TPM: reserves one request and `tokens`.
  bool TryReserve(absl::Time now, int64_t tokens, absl::Duration* retry_after);
  void Reconcile(absl::Time now, int64_t reserved, int64_t actual);
  void CancelReservation(absl::Time now, int64_t tokens);
  RetryBudget& retry_budget() { return retry_budget_; }

  // Counters.
  void CountEntered();
  void CountRejected();
  void CountRetry();
  void CountFallbackOut();
  // A failed attempt inside the echelon, by class.
  void CountAttemptFailure(ErrorClass c);
  void CountFinished(bool success, absl::Duration latency, absl::Duration ttft,
                     int64_t tokens_in, int64_t tokens_out);

  EchelonStatusView GetStatus(absl::Time now) const;

 private:
  const std::string group_;
  const EchelonConfig config_;
  const std::string full_name_;
  ConcurrencyLimiter concurrency_;
  RetryBudget retry_budget_;
  mutable absl::Mutex mu_;
  CircuitBreaker breaker_ ABSL_GUARDED_BY(mu_);
  // Mutable: reading usage advances the limiter's clock.
  mutable RateLimiter limiter_ ABSL_GUARDED_BY(mu_);
  TrafficStats stats_ ABSL_GUARDED_BY(mu_);
  TransitionListener listener_;
  std::function<void(const SharedEvent&)> shared_listener_;
  bool applying_shared_ ABSL_GUARDED_BY(mu_) = false;
  const SharedLimit shared_limit_;
  // Configured (unscaled) limits, for status.
  const RateLimitConfig status_limits_;

  void OnBreakerTransition(BreakerPhase from, BreakerPhase to)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
};

class TaskGroup {
 public:
  explicit TaskGroup(const TaskGroupConfig& config) : config_(config) {}

  const TaskGroupConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  // In priority order (stable for ties).
  std::vector<std::unique_ptr<EchelonState>>& echelons() { return echelons_; }
  const std::vector<std::unique_ptr<EchelonState>>& echelons() const {
    return echelons_;
  }
  // Index in echelons() of the named echelon; -1 when unknown.
  int IndexOf(const std::string& echelon) const;
  // The group's rotation pool over one model's instances.
  std::map<std::string, std::unique_ptr<Pool>>& pools() { return pools_; }
  Pool* PoolFor(const std::string& model) const;

  static constexpr size_t kRecentFallbacks = 32;

  void CountRequest();
  void CountFinished(bool success,
                     absl::Duration latency = absl::ZeroDuration(),
                     absl::Duration ttft = absl::ZeroDuration(),
                     int64_t tokens_in = 0, int64_t tokens_out = 0);
  // A fallback step taken by a request of this group.
  void CountFallback(const FallbackView& f);
  void CountAttemptFailure(ErrorClass c);
  void CountRetry();

  TaskGroupStatusView GetStatus(absl::Time now) const;

 private:
  TaskGroupConfig config_;
  std::vector<std::unique_ptr<EchelonState>> echelons_;
  std::map<std::string, std::unique_ptr<Pool>> pools_;
  mutable absl::Mutex mu_;
  TrafficStats stats_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> fallbacks_by_reason_ ABSL_GUARDED_BY(mu_);
  std::deque<FallbackView> recent_fallbacks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace echelon
