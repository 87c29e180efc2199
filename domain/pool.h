// A set of instances that one strategy rotates over, with per-instance
// health, ejection, breaker and active probing scoped to this set. Pools
// come from config pools, from each (task group, model) pair and from each
// bare model target.
//
// Health state machine of a member (InstanceHealth):
//   HEALTHY    -> DEGRADED    success rate over the breaker window drops
//                             below passive.degraded_success_rate (with at
//                             least kMinDegradedSamples outcomes), or a
//                             passive ejection was refused by
//                             max_ejection_percent.
//   DEGRADED   -> HEALTHY     the windowed success rate is back at or above
//                             the threshold, or the window holds no failure
//                             any more (evaluated lazily, so an instance
//                             that gets no traffic still recovers).
//   HEALTHY/DEGRADED
//              -> UNHEALTHY   passive: `consecutive_failures` health failures
//                             in a row (unless that would eject more than
//                             max_ejection_percent of the pool); ejected for
//                             base_ejection_time x times ejected, capped at
//                             max_ejection_time, +-jitter.
//                             active: `unhealthy_threshold` failed probes in
//                             a row (out until a probe succeeds).
//                             auth_error / quota_exhausted: out for
//                             disable_time.
//   UNHEALTHY  -> RECOVERING  the ejection time passed (evaluated lazily),
//                             or an active probe succeeded.
//   RECOVERING -> HEALTHY     a successful request, or healthy_threshold
//                             successful probes in a row.
//   RECOVERING -> UNHEALTHY   a health failure (ejected again, longer).
// Rate limits (429) put the instance in cooldown (Retry-After capped at
// max_retry_after, rate_limit_cooldown when absent) and are not failures.
// DEGRADED members are only picked when no HEALTHY/RECOVERING one is
// eligible.
//
// Thread safety: mutated on the loop thread; every member's state is guarded
// by mu_ so that GetStatus() may run on any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "domain/circuit_breaker.h"
#include "domain/config.h"
#include "domain/errors.h"
#include "domain/event_loop.h"
#include "domain/instance.h"
#include "domain/provider.h"
#include "domain/rotation.h"
#include "domain/shared_state.h"
#include "domain/stats.h"
#include "domain/status.h"

namespace echelon {

class Pool {
 public:
  static constexpr int kMinDegradedSamples = 10;

  struct Options {
    std::string name;
    std::string description;
    std::string strategy = "round_robin";
    HealthConfig health;
    CircuitBreakerConfig instance_breaker;
    // Called (on the loop thread, under no pool lock) on every breaker
    // phase change of a member.
    std::function<void(const std::string& pool, const std::string& instance,
                       BreakerPhase from, BreakerPhase to)>
        on_breaker_transition;
    // Called (on the loop thread, under no pool lock) for local
    // observations other replicas should share: cooldowns, disablements,
    // passive ejections, breakers opening or closing. Never for events
    // applied through ApplyShared().
    std::function<void(const SharedEvent&)> on_shared_event;
  };

  // Errors: INVALID_ARGUMENT for an unknown strategy. `previous` (may be
  // null) is the same-named pool of the prior snapshot: members with the
  // same instance object keep health, breaker and counters.
  static absl::StatusOr<std::unique_ptr<Pool>> Create(
      Options options, std::vector<std::shared_ptr<Instance>> instances,
      EventLoop& loop, absl::BitGenRef rng, const Pool* previous);
  ~Pool();

  class Member;

  // Picks an eligible member that `accept` (may be null) allows, takes its
  // breaker slot and reserves one request and `tokens` on the instance's
  // own limits. Returns null when none is eligible; then `*earliest` (may be
  // null) is the soonest time one may become eligible for any reason
  // (ejection, breaker, cooldown, limits; InfiniteFuture if unknown) and
  // `*earliest_cooldown` (may be null) the soonest end of a rate-limit
  // cooldown or instance limit, the only waits worth spending in-request.
  // `*at_capacity` (may be null) is set when an otherwise eligible instance
  // was passed over only for its own concurrency or rate limits, so the
  // caller can answer RESOURCE_EXHAUSTED rather than UNAVAILABLE.
  // Every non-null pick must be followed by exactly one Report() or
  // Unpick(). With `reserve_limits` false the instance's own RPM/TPM limits
  // are left to the caller (shared across replicas).
  Member* Pick(absl::Time now, int64_t tokens,
               const std::function<bool(const Instance&)>& accept,
               absl::Time* earliest, absl::Time* earliest_cooldown = nullptr,
               bool* at_capacity = nullptr, bool reserve_limits = true);
  // Undoes a Pick() whose attempt never went out (its instance's limit
  // refused it): counters, in-flight and the breaker slot.
  void Unpick(Member* member, absl::Time now);

  struct Outcome {
    UpstreamError error;  // error_class kNone for success
    absl::Duration latency = absl::ZeroDuration();
    absl::Duration ttft = absl::ZeroDuration();
    int64_t reserved_tokens = 0;
    int64_t tokens_in = 0;
    int64_t tokens_out = 0;
    // The request's retry policy's max_retry_after: caps the cooldown a
    // 429's Retry-After imposes.
    absl::Duration max_retry_after = absl::Seconds(60);
    // What the upstream's headers said about its own limits (-1 unknown).
    UpstreamRateLimits upstream_limits;
    // The instance's RPM/TPM reservation was taken outside the instance
    // (shared store): leave its local limiter alone.
    bool limits_elsewhere = false;
  };
  void Report(Member* member, absl::Time now, const Outcome& outcome);

  // Starts active health checks (if enabled) through `providers` (keyed by
  // provider name). Loop thread only.
  void StartProbes(
      const std::map<std::string, std::shared_ptr<Provider>>* providers);
  // Stops probes and cancels their timers and calls. Loop thread only.
  void Stop();

  // Request-level counters (one per routed request that used this pool).
  void RequestStarted();
  void RequestFinished(bool success);
  void CountRetry();

  // Applies another replica's ejection or breaker verdict for one of this
  // pool's instances (kEject, kBreakerOpen, kBreakerClosed); other kinds and
  // unknown instances are ignored. Loop thread only.
  void ApplyShared(const SharedEvent& e, absl::Time now);

  PoolStatusView GetStatus(absl::Time now) const;
  InstanceHealth HealthOf(const std::string& instance, absl::Time now) const;
  BreakerPhase BreakerOf(const std::string& instance, absl::Time now) const;

  const std::string& name() const { return options_.name; }
  const std::string& description() const { return options_.description; }
  const Options& options() const { return options_; }
  size_t size() const { return members_.size(); }
  const std::vector<std::unique_ptr<Member>>& members() const {
    return members_;
  }

 private:
  Pool(Options options, std::unique_ptr<RotationStrategy> strategy,
       EventLoop& loop, absl::BitGenRef rng);
  void ScheduleProbe(Member* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunProbe(Member* m);
  void OnProbeResult(Member* m, const UpstreamResult& r);
  void Eject(Member* m, absl::Time now, absl::Duration for_time)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MayEject(const Member* m, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  InstanceHealth EffectiveHealth(const Member& m, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Refresh(Member* m, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushTransitions() ABSL_LOCKS_EXCLUDED(mu_);

  Options options_;
  EventLoop& loop_;
  absl::BitGenRef rng_;
  const std::map<std::string, std::shared_ptr<Provider>>* providers_ = nullptr;
  mutable absl::Mutex mu_;
  std::unique_ptr<RotationStrategy> strategy_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Member>> members_;  // fixed after Create
  TrafficStats stats_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  struct Transition {
    std::string instance;
    BreakerPhase from, to;
  };
  std::vector<Transition> pending_transitions_ ABSL_GUARDED_BY(mu_);
  std::vector<SharedEvent> pending_shared_ ABSL_GUARDED_BY(mu_);
  bool applying_shared_ ABSL_GUARDED_BY(mu_) = false;
  void QueueShared(SharedEventKind kind, const Member& m, absl::Time until)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
};

// Pool-scoped state of one instance. Fields are guarded by the owning
// pool's mutex.
class Pool::Member {
 public:
  Member(std::shared_ptr<Instance> instance, int slot,
         const CircuitBreakerConfig& breaker, absl::Duration window)
      : instance(std::move(instance)),
        slot(slot),
        breaker(breaker),
        window(window) {}

  const std::shared_ptr<Instance> instance;
  const int slot;
  CircuitBreaker breaker;
  WindowCounter window;
  InstanceHealth health = InstanceHealth::kHealthy;
  int consecutive_failures = 0;
  int times_ejected = 0;
  absl::Time ejected_until = absl::InfinitePast();
  absl::Time last_ejection_end = absl::InfinitePast();
  int probe_successes = 0;  // consecutive
  int probe_failures = 0;   // consecutive
  int64_t probes = 0;
  EventLoop::TimerId probe_timer = EventLoop::kNoTimer;
  std::unique_ptr<UpstreamHandle> probe_handle;
  std::unique_ptr<UpstreamObserver> probe_observer;
  int64_t requests = 0;
  int64_t successes = 0;
  int64_t failures = 0;
};

}  // namespace echelon
