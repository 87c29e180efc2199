#include "domain/task_group.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace echelon {

EchelonState::EchelonState(std::string group, const EchelonConfig& config,
                           EventLoop& loop, double local_share)
    : group_(std::move(group)),
      config_(config),
      full_name_(absl::StrCat(group_, ".", config.name)),
      concurrency_(config.concurrency, loop),
      retry_budget_(config.retry),
      breaker_(config.breaker),
      limiter_(ScaleRateLimits(config.rate_limit, local_share)),
      shared_limit_{absl::StrCat("echelon/", group_, "/", config.name),
                    config.rate_limit},
      status_limits_(config.rate_limit) {}

void EchelonState::OnBreakerTransition(BreakerPhase from, BreakerPhase to) {
  stats_.breaker_transitions++;
  if (listener_) listener_(from, to);
  if (applying_shared_ || !shared_listener_) return;
  SharedEvent e;
  e.scope = group_;
  e.breaker_kind = "echelon";
  e.name = config_.name;
  if (to == BreakerPhase::kOpen) {
    e.kind = SharedEventKind::kBreakerOpen;
    e.until = breaker_.half_open_at();
    shared_listener_(e);
  } else if (to == BreakerPhase::kClosed) {
    e.kind = SharedEventKind::kBreakerClosed;
    shared_listener_(e);
  }
}

void EchelonState::set_breaker_listener(TransitionListener l) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(l);
  breaker_.set_listener(
      [this](BreakerPhase from, BreakerPhase to)
          ABSL_NO_THREAD_SAFETY_ANALYSIS { OnBreakerTransition(from, to); });
}

void EchelonState::set_shared_listener(
    std::function<void(const SharedEvent&)> l) {
  absl::MutexLock lock(&mu_);
  shared_listener_ = std::move(l);
}

void EchelonState::ApplyShared(const SharedEvent& e, absl::Time now) {
  absl::MutexLock l(&mu_);
  applying_shared_ = true;
  if (e.kind == SharedEventKind::kBreakerOpen) {
    breaker_.ForceOpen(now, e.until);
  } else if (e.kind == SharedEventKind::kBreakerClosed) {
    breaker_.ForceClose(now);
  }
  applying_shared_ = false;
}

void EchelonState::CopyStateFrom(const EchelonState& old) {
  absl::MutexLock l1(&old.mu_);
  absl::MutexLock l2(&mu_);
  CircuitBreaker b = old.breaker_;
  b.Reconfigure(config_.breaker);
  // Keep our own listener.
  b.set_listener(
      [this](BreakerPhase from, BreakerPhase to)
          ABSL_NO_THREAD_SAFETY_ANALYSIS { OnBreakerTransition(from, to); });
  breaker_ = std::move(b);
  stats_ = old.stats_;
  stats_.in_flight = 0;
}

bool EchelonState::BreakerWouldAllow(absl::Time now) {
  absl::MutexLock l(&mu_);
  return breaker_.WouldAllow(now);
}
bool EchelonState::BreakerAllow(absl::Time now) {
  absl::MutexLock l(&mu_);
  return breaker_.Allow(now);
}
void EchelonState::BreakerSuccess(absl::Time now) {
  absl::MutexLock l(&mu_);
  breaker_.OnSuccess(now);
}
void EchelonState::BreakerFailure(absl::Time now) {
  absl::MutexLock l(&mu_);
  breaker_.OnFailure(now);
}
void EchelonState::BreakerNeutral(absl::Time now) {
  absl::MutexLock l(&mu_);
  breaker_.OnNeutral(now);
}
absl::Time EchelonState::BreakerHalfOpenAt() const {
  absl::MutexLock l(&mu_);
  return breaker_.half_open_at();
}

bool EchelonState::TryReserve(absl::Time now, int64_t tokens,
                              absl::Duration* retry_after) {
  absl::MutexLock l(&mu_);
  return limiter_.TryAcquire(now, tokens, retry_after);
}

void EchelonState::Reconcile(absl::Time now, int64_t reserved, int64_t actual) {
  absl::MutexLock l(&mu_);
  limiter_.Reconcile(now, reserved, actual);
}

void EchelonState::CancelReservation(absl::Time now, int64_t tokens) {
  absl::MutexLock l(&mu_);
  limiter_.Cancel(now, tokens);
}

void EchelonState::CountEntered() {
  absl::MutexLock l(&mu_);
  stats_.requests++;
  stats_.in_flight++;
}
void EchelonState::CountRejected() {
  absl::MutexLock l(&mu_);
  stats_.rejected++;
}
void EchelonState::CountRetry() {
  absl::MutexLock l(&mu_);
  stats_.retries++;
}
void EchelonState::CountAttemptFailure(ErrorClass c) {
  absl::MutexLock l(&mu_);
  stats_.failures_by_class[std::string(ErrorClassName(c))]++;
}
void EchelonState::CountFallbackOut() {
  absl::MutexLock l(&mu_);
  stats_.fallbacks_out++;
}
void EchelonState::CountFinished(bool success, absl::Duration latency,
                                 absl::Duration ttft, int64_t tokens_in,
                                 int64_t tokens_out) {
  absl::MutexLock l(&mu_);
  if (stats_.in_flight > 0) stats_.in_flight--;
  (success ? stats_.successes : stats_.failures)++;
  stats_.tokens_in += tokens_in;
  stats_.tokens_out += tokens_out;
  if (success) {
    stats_.latency.Add(latency);
    stats_.latency_histogram.Add(latency);
    if (ttft > absl::ZeroDuration()) {
      stats_.ttft.Add(ttft);
      stats_.ttft_histogram.Add(ttft);
    }
  }
}

EchelonStatusView EchelonState::GetStatus(absl::Time now) const {
  absl::MutexLock l(&mu_);
  EchelonStatusView v;
  v.name = config_.name;
  v.priority = config_.priority;
  v.models = config_.models;
  v.breaker = breaker_.PeekPhase(now);
  v.breaker_half_open_at = v.breaker == BreakerPhase::kOpen
                               ? breaker_.half_open_at()
                               : absl::InfinitePast();
  v.max_concurrency = config_.concurrency.max_concurrency;
  v.in_flight = concurrency_.in_flight();
  v.queued = concurrency_.queued();
  RateLimiter::Usage u = limiter_.GetUsage(now);
  v.requests_per_minute = status_limits_.requests_per_minute;
  v.requests_used = u.requests_used;
  v.tokens_per_minute = status_limits_.tokens_per_minute;
  v.tokens_used = u.tokens_used;
  v.active_retries = retry_budget_.active_retries();
  v.retry_budget = retry_budget_.limit();
  v.requests = stats_.requests;
  v.successes = stats_.successes;
  v.failures = stats_.failures;
  v.fallbacks_out = stats_.fallbacks_out;
  v.rejected = stats_.rejected;
  v.retries = stats_.retries;
  v.tokens_in = stats_.tokens_in;
  v.tokens_out = stats_.tokens_out;
  v.breaker_transitions = stats_.breaker_transitions;
  v.ewma_latency = stats_.latency.value();
  v.ewma_ttft = stats_.ttft.value();
  v.traffic = ToTrafficView(stats_);
  return v;
}

int TaskGroup::IndexOf(const std::string& echelon) const {
  for (size_t i = 0; i < echelons_.size(); ++i) {
    if (echelons_[i]->name() == echelon) return static_cast<int>(i);
  }
  return -1;
}

Pool* TaskGroup::PoolFor(const std::string& model) const {
  auto it = pools_.find(model);
  return it == pools_.end() ? nullptr : it->second.get();
}

void TaskGroup::CountRequest() {
  absl::MutexLock l(&mu_);
  stats_.requests++;
  stats_.in_flight++;
}
void TaskGroup::CountFinished(bool success, absl::Duration latency,
                              absl::Duration ttft, int64_t tokens_in,
                              int64_t tokens_out) {
  absl::MutexLock l(&mu_);
  if (stats_.in_flight > 0) stats_.in_flight--;
  (success ? stats_.successes : stats_.failures)++;
  stats_.tokens_in += tokens_in;
  stats_.tokens_out += tokens_out;
  if (success) {
    stats_.latency.Add(latency);
    stats_.latency_histogram.Add(latency);
    if (ttft > absl::ZeroDuration()) {
      stats_.ttft.Add(ttft);
      stats_.ttft_histogram.Add(ttft);
    }
  }
}
void TaskGroup::CountFallback(const FallbackView& f) {
  absl::MutexLock l(&mu_);
  stats_.fallbacks_out++;
  fallbacks_by_reason_[f.reason]++;
  recent_fallbacks_.push_back(f);
  while (recent_fallbacks_.size() > kRecentFallbacks) {
    recent_fallbacks_.pop_front();
  }
}
void TaskGroup::CountAttemptFailure(ErrorClass c) {
  absl::MutexLock l(&mu_);
  stats_.failures_by_class[std::string(ErrorClassName(c))]++;
}
void TaskGroup::CountRetry() {
  absl::MutexLock l(&mu_);
  stats_.retries++;
}

TaskGroupStatusView TaskGroup::GetStatus(absl::Time now) const {
  TaskGroupStatusView v;
  v.name = config_.name;
  v.description = config_.description;
  for (const auto& e : echelons_) {
    EchelonStatusView ev = e->GetStatus(now);
    for (const std::string& m : e->config().models) {
      Pool* p = PoolFor(m);
      if (p == nullptr) continue;
      PoolStatusView pv = p->GetStatus(now);
      for (auto& i : pv.instances) ev.instances.push_back(std::move(i));
    }
    v.echelons.push_back(std::move(ev));
  }
  absl::MutexLock l(&mu_);
  v.requests = stats_.requests;
  v.successes = stats_.successes;
  v.failures = stats_.failures;
  v.fallbacks = stats_.fallbacks_out;
  v.in_flight = stats_.in_flight;
  v.fallbacks_by_reason = fallbacks_by_reason_;
  v.recent_fallbacks.assign(recent_fallbacks_.begin(), recent_fallbacks_.end());
  v.traffic = ToTrafficView(stats_);
  return v;
}

}  // namespace echelon
