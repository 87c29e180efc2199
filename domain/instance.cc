#include "domain/instance.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace echelon {
namespace {

RateLimitConfig InstanceLimits(const InstanceConfig& c) {
  RateLimitConfig r;
  r.algorithm = RateLimitAlgorithm::kSlidingWindow;
  r.requests_per_minute = c.requests_per_minute;
  r.tokens_per_minute = c.tokens_per_minute;
  return r;
}

}  // namespace

Instance::Instance(InstanceIdentity identity, std::string provider,
                   const InstanceConfig& config,
                   std::shared_ptr<const Endpoint> endpoint)
    : identity_(std::move(identity)),
      name_(absl::StrCat(identity_.model, "/", identity_.id)),
      provider_(std::move(provider)),
      config_(config),
      endpoint_(std::move(endpoint)),
      limiter_(std::make_unique<RateLimiter>(InstanceLimits(config))) {}

void Instance::Reconfigure(std::string provider, const InstanceConfig& config,
                           std::shared_ptr<const Endpoint> endpoint) {
  absl::MutexLock l(&mu_);
  provider_ = std::move(provider);
  if (config.requests_per_minute != config_.requests_per_minute ||
      config.tokens_per_minute != config_.tokens_per_minute) {
    limiter_ = std::make_unique<RateLimiter>(InstanceLimits(config));
  }
  config_ = config;
  endpoint_ = std::move(endpoint);
}

std::shared_ptr<const Endpoint> Instance::endpoint() const {
  absl::MutexLock l(&mu_);
  return endpoint_;
}
int Instance::weight() const {
  absl::MutexLock l(&mu_);
  return config_.weight;
}
int Instance::max_concurrency() const {
  absl::MutexLock l(&mu_);
  return config_.max_concurrency;
}

std::string Instance::Unavailable(absl::Time now) const {
  absl::MutexLock l(&mu_);
  if (disabled_until_ > now) return "disabled";
  if (cooldown_until_ > now) return "rate_limit_cooldown";
  if (config_.max_concurrency > 0 &&
      stats_.in_flight >= config_.max_concurrency) {
    return "max_concurrency";
  }
  return "";
}

bool Instance::TryReserve(absl::Time now, int64_t tokens,
                          absl::Duration* retry_after) {
  absl::MutexLock l(&mu_);
  return limiter_->TryAcquire(now, tokens, retry_after);
}

void Instance::Reconcile(absl::Time now, int64_t reserved, int64_t actual) {
  absl::MutexLock l(&mu_);
  limiter_->Reconcile(now, reserved, actual);
}

void Instance::AttemptStarted(absl::Time now) {
  absl::MutexLock l(&mu_);
  stats_.requests++;
  stats_.in_flight++;
  last_used_ = now;
}

void Instance::AttemptAbandoned() {
  absl::MutexLock l(&mu_);
  if (stats_.in_flight > 0) stats_.in_flight--;
  if (stats_.requests > 0) stats_.requests--;
}

void Instance::AttemptFinished(absl::Time now, ErrorClass outcome,
                               absl::Duration latency, absl::Duration ttft,
                               const std::string& detail, int64_t tokens_in,
                               int64_t tokens_out) {
  absl::MutexLock l(&mu_);
  if (stats_.in_flight > 0) stats_.in_flight--;
  stats_.tokens_in += tokens_in;
  stats_.tokens_out += tokens_out;
  if (outcome == ErrorClass::kNone) {
    stats_.successes++;
    stats_.latency.Add(latency);
    stats_.latency_histogram.Add(latency);
    peak_.Add(now, latency);
    if (ttft > absl::ZeroDuration()) {
      stats_.ttft.Add(ttft);
      stats_.ttft_histogram.Add(ttft);
    }
    window_.Record(now, true);
    return;
  }
  stats_.failures++;
  stats_.failures_by_class[std::string(ErrorClassName(outcome))]++;
  last_error_ = detail.empty()
                    ? std::string(ErrorClassName(outcome))
                    : absl::StrCat(ErrorClassName(outcome), ": ", detail);
  if (IsHealthFailure(outcome)) {
    // A failing instance must look expensive to p2c_ewma.
    peak_.Add(now, latency);
    window_.Record(now, false);
  }
}

void Instance::CoolDown(absl::Time until) {
  absl::MutexLock l(&mu_);
  if (until > cooldown_until_) cooldown_until_ = until;
}

void Instance::Disable(absl::Time until) {
  absl::MutexLock l(&mu_);
  if (until > disabled_until_) disabled_until_ = until;
}

int64_t Instance::in_flight() const {
  absl::MutexLock l(&mu_);
  return stats_.in_flight;
}
double Instance::cost_seconds(absl::Time now) const {
  absl::MutexLock l(&mu_);
  return peak_.SecondsAt(now);
}
absl::Time Instance::last_used() const {
  absl::MutexLock l(&mu_);
  return last_used_;
}
absl::Time Instance::cooldown_until() const {
  absl::MutexLock l(&mu_);
  return cooldown_until_;
}
absl::Time Instance::disabled_until() const {
  absl::MutexLock l(&mu_);
  return disabled_until_;
}

Instance::Snapshot Instance::GetSnapshot(absl::Time now) const {
  absl::MutexLock l(&mu_);
  Snapshot s;
  s.stats = stats_;
  s.cooldown_until = cooldown_until_;
  s.disabled_until = disabled_until_;
  s.last_used = last_used_;
  s.last_error = last_error_;
  s.success_rate = window_.SuccessRate(now);
  s.usage = limiter_->GetUsage(now);
  s.upstream_limits = upstream_limits_;
  s.upstream_limits_at = upstream_limits_at_;
  return s;
}

void Instance::RecordUpstreamLimits(absl::Time now,
                                    const UpstreamRateLimits& l) {
  if (l.remaining_requests < 0 && l.remaining_tokens < 0) return;
  absl::MutexLock lock(&mu_);
  if (l.remaining_requests >= 0) {
    upstream_limits_.remaining_requests = l.remaining_requests;
    upstream_limits_.reset_requests = l.reset_requests;
  }
  if (l.remaining_tokens >= 0) {
    upstream_limits_.remaining_tokens = l.remaining_tokens;
    upstream_limits_.reset_tokens = l.reset_tokens;
  }
  upstream_limits_at_ = now;
}

}  // namespace echelon
