// One upstream instance of a catalogue model (e.g. "gpt-4o/eu-1"): where it
// is, and the load and traffic state shared by every pool and task group
// that routes to it.
//
// Instance-wide availability (independent of the pool that asks):
//  - rate-limit cooldown: a 429 keeps the instance out until
//    min(Retry-After, cap) has passed (rate_limit_cooldown when absent);
//    not a health failure;
//  - disabled: auth_error / quota_exhausted keep it out for disable_time;
//  - max_concurrency and the instance's own RPM/TPM limits.
// The health state machine (HEALTHY/DEGRADED/UNHEALTHY/RECOVERING) and the
// per-instance breaker are per pool; see pool.h.
//
// Thread safety: mutated on the loop thread only; every member is guarded by
// a mutex so that status getters on other threads read a consistent view.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "domain/config.h"
#include "domain/errors.h"
#include "domain/provider.h"
#include "domain/rate_limiter.h"
#include "domain/stats.h"

namespace echelon {

// What makes two config snapshots' instances "the same" for carrying state
// over on reload.
struct InstanceIdentity {
  std::string model;
  std::string id;
  std::string base_url;
  std::string api_key;
  bool operator==(const InstanceIdentity& o) const {
    return model == o.model && id == o.id && base_url == o.base_url &&
           api_key == o.api_key;
  }
};

class Instance {
 public:
  Instance(InstanceIdentity identity, std::string provider,
           const InstanceConfig& config,
           std::shared_ptr<const Endpoint> endpoint);

  const std::string& name() const { return name_; }  // "model/id"
  const std::string& model() const { return identity_.model; }
  const std::string& provider() const { return provider_; }
  const InstanceIdentity& identity() const { return identity_; }
  std::shared_ptr<const Endpoint> endpoint() const;
  int weight() const;
  int max_concurrency() const;

  // On reload: new endpoint headers / weight / limits, same identity.
  void Reconfigure(std::string provider, const InstanceConfig& config,
                   std::shared_ptr<const Endpoint> endpoint);

  // Why the instance cannot take a request now; empty when it can.
  // Checks cooldown, disable and max_concurrency (not rate limits).
  std::string Unavailable(absl::Time now) const;
  // Reserves one request and `tokens` against the instance's RPM/TPM.
  bool TryReserve(absl::Time now, int64_t tokens, absl::Duration* retry_after);
  void Reconcile(absl::Time now, int64_t reserved, int64_t actual);

  void AttemptStarted(absl::Time now);
  // Takes back an AttemptStarted() whose attempt never went out.
  void AttemptAbandoned();
  // `latency` is the attempt's duration; `ttft` zero when unknown.
  void AttemptFinished(absl::Time now, ErrorClass outcome,
                       absl::Duration latency, absl::Duration ttft,
                       const std::string& detail, int64_t tokens_in,
                       int64_t tokens_out);

  void CoolDown(absl::Time until);
  void Disable(absl::Time until);

  int64_t in_flight() const;
  // Peak-EWMA latency in seconds, decayed to `now`.
  double cost_seconds(absl::Time now) const;
  absl::Time last_used() const;
  absl::Time cooldown_until() const;
  absl::Time disabled_until() const;

  struct Snapshot {
    TrafficStats stats;
    absl::Time cooldown_until;
    absl::Time disabled_until;
    absl::Time last_used;
    std::string last_error;
    double success_rate = 1.0;
    RateLimiter::Usage usage;            // this instance's own RPM/TPM limits
    UpstreamRateLimits upstream_limits;  // last seen in upstream headers
    absl::Time upstream_limits_at = absl::InfinitePast();
  };
  Snapshot GetSnapshot(absl::Time now) const;

  // Remembers what the upstream's rate-limit headers said, when they said
  // anything (fields of -1 leave the previous figure).
  void RecordUpstreamLimits(absl::Time now, const UpstreamRateLimits& l);

 private:
  const InstanceIdentity identity_;
  const std::string name_;
  mutable absl::Mutex mu_;
  std::string provider_ ABSL_GUARDED_BY(mu_);
  InstanceConfig config_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Endpoint> endpoint_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<RateLimiter> limiter_ ABSL_GUARDED_BY(mu_);
  TrafficStats stats_ ABSL_GUARDED_BY(mu_);
  PeakEwma peak_ ABSL_GUARDED_BY(mu_);
  WindowCounter window_ ABSL_GUARDED_BY(mu_);
  absl::Time cooldown_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time disabled_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_used_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  UpstreamRateLimits upstream_limits_ ABSL_GUARDED_BY(mu_);
  absl::Time upstream_limits_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace echelon
