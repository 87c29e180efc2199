#include "domain/pool.h"

#include <algorithm>
#include <utility>

#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"

namespace echelon {
namespace {

// Adds +-`share` of `d`, uniformly.
absl::Duration Jittered(absl::Duration d, double share, absl::BitGenRef rng) {
  if (share <= 0) return d;
  return d * (1.0 + absl::Uniform<double>(rng, -share, share));
}

std::shared_ptr<const ChatRequest> ProbeRequest() {
  auto r = std::make_shared<ChatRequest>();
  ChatMessage m;
  m.role = Role::kUser;
  m.content = "ping";
  r->messages.push_back(std::move(m));
  r->params.max_tokens = 1;
  r->request_id = "echelon-health-probe";
  return r;
}

}  // namespace

// Routes a probe's result back to its pool.
class ProbeObserver : public UpstreamObserver {
 public:
  ProbeObserver(std::function<void(const UpstreamResult&)> done)
      : done_(std::move(done)) {}
  void OnDelta(StreamDelta) override {}
  void OnFinish(UpstreamResult result) override { done_(result); }

 private:
  std::function<void(const UpstreamResult&)> done_;
};

Pool::Pool(Options options, std::unique_ptr<RotationStrategy> strategy,
           EventLoop& loop, absl::BitGenRef rng)
    : options_(std::move(options)),
      loop_(loop),
      rng_(rng),
      strategy_(std::move(strategy)) {}

Pool::~Pool() = default;

absl::StatusOr<std::unique_ptr<Pool>> Pool::Create(
    Options options, std::vector<std::shared_ptr<Instance>> instances,
    EventLoop& loop, absl::BitGenRef rng, const Pool* previous) {
  auto strategy = RotationStrategy::Create(options.strategy,
                                           static_cast<int>(instances.size()));
  if (!strategy.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool '", options.name, "': ", strategy.status().message()));
  }
  std::unique_ptr<Pool> pool(
      new Pool(std::move(options), *std::move(strategy), loop, rng));
  Pool* p = pool.get();
  for (size_t i = 0; i < instances.size(); ++i) {
    auto m = std::make_unique<Member>(instances[i], static_cast<int>(i),
                                      p->options_.instance_breaker,
                                      p->options_.instance_breaker.window);
    if (previous != nullptr) {
      absl::MutexLock l(&previous->mu_);
      for (const auto& old : previous->members_) {
        if (old->instance != instances[i]) continue;
        m->breaker = old->breaker;
        m->breaker.Reconfigure(p->options_.instance_breaker);
        m->window = old->window;
        m->health = old->health;
        m->consecutive_failures = old->consecutive_failures;
        m->times_ejected = old->times_ejected;
        m->ejected_until = old->ejected_until;
        m->last_ejection_end = old->last_ejection_end;
        m->requests = old->requests;
        m->successes = old->successes;
        m->failures = old->failures;
      }
    }
    std::string name = instances[i]->name();
    Member* mp = m.get();
    m->breaker.set_listener(
        [p, mp, name](BreakerPhase from, BreakerPhase to)
            ABSL_NO_THREAD_SAFETY_ANALYSIS {
              // Breaker calls happen under mu_.
              p->pending_transitions_.push_back({name, from, to});
              p->stats_.breaker_transitions++;
              if (to == BreakerPhase::kOpen) {
                p->QueueShared(SharedEventKind::kBreakerOpen, *mp,
                               mp->breaker.half_open_at());
              } else if (to == BreakerPhase::kClosed) {
                p->QueueShared(SharedEventKind::kBreakerClosed, *mp,
                               absl::InfinitePast());
              }
            });
    p->members_.push_back(std::move(m));
  }
  if (previous != nullptr) {
    absl::MutexLock l(&previous->mu_);
    absl::MutexLock l2(&p->mu_);
    p->stats_ = previous->stats_;
    p->stats_.in_flight = 0;
  }
  return pool;
}

void Pool::QueueShared(SharedEventKind kind, const Member& m,
                       absl::Time until) {
  if (applying_shared_ || !options_.on_shared_event) return;
  SharedEvent e;
  e.kind = kind;
  e.name = m.instance->name();
  e.until = until;
  if (kind != SharedEventKind::kCooldown && kind != SharedEventKind::kDisable) {
    e.scope = options_.name;
  }
  if (kind == SharedEventKind::kBreakerOpen ||
      kind == SharedEventKind::kBreakerClosed) {
    e.breaker_kind = "instance";
  }
  pending_shared_.push_back(std::move(e));
}

void Pool::FlushTransitions() {
  std::vector<Transition> t;
  std::vector<SharedEvent> shared;
  {
    absl::MutexLock l(&mu_);
    t.swap(pending_transitions_);
    shared.swap(pending_shared_);
  }
  if (options_.on_breaker_transition) {
    for (const Transition& x : t) {
      options_.on_breaker_transition(options_.name, x.instance, x.from, x.to);
    }
  }
  if (options_.on_shared_event) {
    for (const SharedEvent& e : shared) options_.on_shared_event(e);
  }
}

void Pool::ApplyShared(const SharedEvent& e, absl::Time now) {
  {
    absl::MutexLock l(&mu_);
    applying_shared_ = true;
    for (const auto& up : members_) {
      Member* m = up.get();
      if (m->instance->name() != e.name) continue;
      switch (e.kind) {
        case SharedEventKind::kEject:
          if (e.until > now) {
            m->health = InstanceHealth::kUnhealthy;
            m->ejected_until = std::max(m->ejected_until, e.until);
            m->consecutive_failures = 0;
          }
          break;
        case SharedEventKind::kBreakerOpen:
          m->breaker.ForceOpen(now, e.until);
          break;
        case SharedEventKind::kBreakerClosed:
          m->breaker.ForceClose(now);
          break;
        default:
          break;
      }
    }
    applying_shared_ = false;
  }
  FlushTransitions();
}

InstanceHealth Pool::EffectiveHealth(const Member& m, absl::Time now) const {
  if (m.health == InstanceHealth::kUnhealthy && now >= m.ejected_until) {
    return InstanceHealth::kRecovering;
  }
  if (m.health == InstanceHealth::kDegraded) {
    int64_t total = m.window.total(now);
    if (m.window.failures(now) == 0 ||
        (total >= kMinDegradedSamples &&
         m.window.SuccessRate(now) >=
             options_.health.passive.degraded_success_rate)) {
      return InstanceHealth::kHealthy;
    }
  }
  return m.health;
}

void Pool::Refresh(Member* m, absl::Time now) {
  InstanceHealth h = EffectiveHealth(*m, now);
  if (h != m->health) {
    if (m->health == InstanceHealth::kUnhealthy) {
      m->last_ejection_end = m->ejected_until;
    }
    m->health = h;
  }
  m->breaker.phase(now);
}

Pool::Member* Pool::Pick(absl::Time now, int64_t tokens,
                         const std::function<bool(const Instance&)>& accept,
                         absl::Time* earliest, absl::Time* earliest_cooldown,
                         bool* at_capacity, bool reserve_limits) {
  Member* chosen = nullptr;
  bool capacity = false;
  absl::Time soonest = absl::InfiniteFuture();
  absl::Time soonest_cooldown = absl::InfiniteFuture();
  {
    absl::MutexLock l(&mu_);
    std::vector<Member*> preferred, degraded;
    for (const auto& up : members_) {
      Member* m = up.get();
      Refresh(m, now);
      if (accept && !accept(*m->instance)) continue;
      if (m->health == InstanceHealth::kUnhealthy) {
        soonest = std::min(soonest, m->ejected_until);
        continue;
      }
      if (!m->breaker.WouldAllow(now)) {
        absl::Time t = m->breaker.half_open_at();
        if (t > now) soonest = std::min(soonest, t);
        continue;
      }
      std::string why = m->instance->Unavailable(now);
      if (!why.empty()) {
        absl::Time t = std::max(m->instance->cooldown_until(),
                                m->instance->disabled_until());
        if (t > now) soonest = std::min(soonest, t);
        if (why == "rate_limit_cooldown") {
          soonest_cooldown = std::min(soonest_cooldown, t);
        }
        if (why == "max_concurrency") capacity = true;
        continue;
      }
      (m->health == InstanceHealth::kDegraded ? degraded : preferred)
          .push_back(m);
    }
    std::vector<Member*>& set = preferred.empty() ? degraded : preferred;
    while (!set.empty()) {
      std::vector<Candidate> c;
      c.reserve(set.size());
      for (Member* m : set) {
        c.push_back({m->slot, m->instance->weight(), m->instance->in_flight(),
                     m->instance->cost_seconds(now), m->instance->last_used()});
      }
      size_t i = strategy_->Pick(c, rng_);
      Member* m = set[i];
      absl::Duration wait;
      if (!reserve_limits || m->instance->TryReserve(now, tokens, &wait)) {
        m->breaker.Allow(now);
        chosen = m;
        break;
      }
      soonest = std::min(soonest, now + wait);
      soonest_cooldown = std::min(soonest_cooldown, now + wait);
      capacity = true;  // the instance's own RPM/TPM limit
      set.erase(set.begin() + static_cast<std::ptrdiff_t>(i));
    }
    if (chosen != nullptr) {
      chosen->requests++;
      chosen->instance->AttemptStarted(now);
      stats_.in_flight++;
    }
  }
  FlushTransitions();
  if (chosen == nullptr && earliest != nullptr) *earliest = soonest;
  if (chosen == nullptr && earliest_cooldown != nullptr) {
    *earliest_cooldown = soonest_cooldown;
  }
  if (chosen == nullptr && at_capacity != nullptr && capacity) {
    *at_capacity = true;
  }
  return chosen;
}

void Pool::Unpick(Member* m, absl::Time now) {
  m->instance->AttemptAbandoned();
  {
    absl::MutexLock l(&mu_);
    if (m->requests > 0) m->requests--;
    if (stats_.in_flight > 0) stats_.in_flight--;
    m->breaker.OnNeutral(now);
  }
  FlushTransitions();
}

bool Pool::MayEject(const Member* m, absl::Time now) const {
  int ejected = 0;
  for (const auto& x : members_) {
    if (x.get() != m &&
        EffectiveHealth(*x, now) == InstanceHealth::kUnhealthy) {
      ++ejected;
    }
  }
  double after = 100.0 * (ejected + 1) / static_cast<double>(members_.size());
  return after <= options_.health.passive.max_ejection_percent;
}

void Pool::Eject(Member* m, absl::Time now, absl::Duration for_time) {
  m->health = InstanceHealth::kUnhealthy;
  m->ejected_until = now + for_time;
  m->consecutive_failures = 0;
  QueueShared(SharedEventKind::kEject, *m, m->ejected_until);
}

void Pool::Report(Member* m, absl::Time now, const Outcome& o) {
  const HealthConfig& hc = options_.health;
  ErrorClass c = o.error.error_class;
  m->instance->AttemptFinished(now, c, o.latency, o.ttft, o.error.message,
                               o.tokens_in, o.tokens_out);
  m->instance->RecordUpstreamLimits(now, o.upstream_limits);
  if (!o.limits_elsewhere &&
      (o.reserved_tokens > 0 || o.tokens_in + o.tokens_out > 0)) {
    m->instance->Reconcile(now, o.reserved_tokens,
                           o.tokens_in + o.tokens_out > 0
                               ? o.tokens_in + o.tokens_out
                               : o.reserved_tokens);
  }
  {
    absl::MutexLock l(&mu_);
    Refresh(m, now);
    if (stats_.in_flight > 0) stats_.in_flight--;
    stats_.tokens_in += o.tokens_in;
    stats_.tokens_out += o.tokens_out;
    if (c == ErrorClass::kNone) {
      m->successes++;
      m->consecutive_failures = 0;
      m->window.Record(now, true);
      m->breaker.OnSuccess(now);
      stats_.latency.Add(o.latency);
      stats_.latency_histogram.Add(o.latency);
      if (o.ttft > absl::ZeroDuration()) {
        stats_.ttft.Add(o.ttft);
        stats_.ttft_histogram.Add(o.ttft);
      }
      if (m->last_ejection_end != absl::InfinitePast() &&
          now - m->last_ejection_end > hc.passive.max_ejection_time) {
        m->times_ejected = 0;  // long enough since: forgive
      }
      double rate = m->window.SuccessRate(now);
      if (m->health == InstanceHealth::kRecovering) {
        m->health = InstanceHealth::kHealthy;
      } else if (m->health == InstanceHealth::kDegraded &&
                 rate >= hc.passive.degraded_success_rate) {
        m->health = InstanceHealth::kHealthy;
      }
    } else {
      m->failures++;
      stats_.failures_by_class[std::string(ErrorClassName(c))]++;
      if (c == ErrorClass::kRateLimited) {
        // Retry-After, capped at max_retry_after; rate_limit_cooldown when
        // the upstream gave none.
        absl::Duration cool = hc.rate_limit_cooldown;
        if (o.error.retry_after > absl::ZeroDuration()) {
          cool = std::min(o.error.retry_after, o.max_retry_after);
        }
        m->instance->CoolDown(now + cool);
        QueueShared(SharedEventKind::kCooldown, *m, now + cool);
        m->breaker.OnNeutral(now);
      } else if (c == ErrorClass::kAuthError ||
                 c == ErrorClass::kQuotaExhausted) {
        m->instance->Disable(now + hc.disable_time);
        QueueShared(SharedEventKind::kDisable, *m, now + hc.disable_time);
        m->breaker.OnNeutral(now);
        Eject(m, now, hc.disable_time);
      } else if (IsHealthFailure(c)) {
        m->window.Record(now, false);
        m->breaker.OnFailure(now);
        m->consecutive_failures++;
        const PassiveHealthConfig& p = hc.passive;
        bool eject = false;
        if (m->health == InstanceHealth::kRecovering) {
          eject = true;
        } else if (p.enabled && p.consecutive_failures > 0 &&
                   m->consecutive_failures >= p.consecutive_failures) {
          eject = MayEject(m, now);
          if (!eject) m->health = InstanceHealth::kDegraded;
        }
        if (eject && p.enabled) {
          m->times_ejected++;
          absl::Duration d = p.base_ejection_time * m->times_ejected;
          if (d > p.max_ejection_time) d = p.max_ejection_time;
          Eject(m, now, Jittered(d, p.jitter, rng_));
        } else if (m->health == InstanceHealth::kHealthy &&
                   m->window.total(now) >= kMinDegradedSamples &&
                   m->window.SuccessRate(now) < p.degraded_success_rate) {
          m->health = InstanceHealth::kDegraded;
        }
      } else {
        m->breaker.OnNeutral(now);  // caller's fault or cancelled
      }
    }
  }
  FlushTransitions();
}

void Pool::RequestStarted() {
  absl::MutexLock l(&mu_);
  stats_.requests++;
}

void Pool::CountRetry() {
  absl::MutexLock l(&mu_);
  stats_.retries++;
}

void Pool::RequestFinished(bool success) {
  absl::MutexLock l(&mu_);
  (success ? stats_.successes : stats_.failures)++;
}

void Pool::StartProbes(
    const std::map<std::string, std::shared_ptr<Provider>>* providers) {
  providers_ = providers;
  if (!options_.health.active.enabled) return;
  absl::MutexLock l(&mu_);
  for (auto& m : members_) ScheduleProbe(m.get());
}

void Pool::ScheduleProbe(Member* m) {
  if (stopped_) return;
  const ActiveHealthConfig& a = options_.health.active;
  absl::Duration d = Jittered(a.interval, a.jitter, rng_);
  m->probe_timer = loop_.RunAfter(d, [this, m] { RunProbe(m); });
}

void Pool::RunProbe(Member* m) {
  std::shared_ptr<Provider> provider;
  {
    absl::MutexLock l(&mu_);
    m->probe_timer = EventLoop::kNoTimer;
    if (stopped_) return;
    auto it =
        providers_ == nullptr
            ? std::map<std::string, std::shared_ptr<Provider>>::const_iterator()
            : providers_->find(m->instance->provider());
    if (providers_ == nullptr || it == providers_->end()) {
      ScheduleProbe(m);
      return;
    }
    provider = it->second;
    m->probes++;
    m->probe_handle.reset();
  }
  UpstreamCall call;
  call.endpoint = m->instance->endpoint();
  static const std::shared_ptr<const ChatRequest> kProbe = ProbeRequest();
  call.request = kProbe;
  call.stream = false;
  call.deadline = loop_.Now() + options_.health.active.timeout;
  m->probe_observer = std::make_unique<ProbeObserver>(
      [this, m](const UpstreamResult& r) { OnProbeResult(m, r); });
  m->probe_handle = provider->Start(std::move(call), m->probe_observer.get());
}

void Pool::OnProbeResult(Member* m, const UpstreamResult& r) {
  absl::Time now = loop_.Now();
  {
    absl::MutexLock l(&mu_);
    const ActiveHealthConfig& a = options_.health.active;
    Refresh(m, now);
    // A rate-limited probe says the instance is alive.
    bool ok = r.ok() || r.error.error_class == ErrorClass::kRateLimited;
    if (ok) {
      m->probe_failures = 0;
      m->probe_successes++;
      if (m->health == InstanceHealth::kUnhealthy &&
          m->instance->disabled_until() <= now) {
        m->health = InstanceHealth::kRecovering;
        m->last_ejection_end = now;
        m->ejected_until = now;
      }
      if (m->health == InstanceHealth::kRecovering &&
          m->probe_successes >= std::max(1, a.healthy_threshold)) {
        m->health = InstanceHealth::kHealthy;
      }
    } else {
      m->probe_successes = 0;
      m->probe_failures++;
      if (m->probe_failures >= std::max(1, a.unhealthy_threshold) &&
          m->health != InstanceHealth::kUnhealthy) {
        m->health = InstanceHealth::kUnhealthy;
        m->ejected_until = absl::InfiniteFuture();  // until a probe passes
      }
    }
    ScheduleProbe(m);
  }
  FlushTransitions();
  // The handle is freed at the next probe or Stop(), not inside its own
  // callback.
}

void Pool::Stop() {
  std::vector<std::unique_ptr<UpstreamHandle>> handles;
  {
    absl::MutexLock l(&mu_);
    stopped_ = true;
    for (auto& m : members_) {
      loop_.CancelTimer(m->probe_timer);
      m->probe_timer = EventLoop::kNoTimer;
      if (m->probe_handle) handles.push_back(std::move(m->probe_handle));
    }
  }
  for (auto& h : handles) h->Cancel();
}

PoolStatusView Pool::GetStatus(absl::Time now) const {
  absl::MutexLock l(&mu_);
  PoolStatusView v;
  v.name = options_.name;
  v.strategy = std::string(strategy_->name());
  v.requests = stats_.requests;
  v.successes = stats_.successes;
  v.failures = stats_.failures;
  v.in_flight = stats_.in_flight;
  v.traffic = ToTrafficView(stats_);
  for (const auto& m : members_) {
    Instance::Snapshot s = m->instance->GetSnapshot(now);
    InstanceStatusView i;
    i.id = m->instance->name();
    i.model = m->instance->model();
    i.provider = m->instance->provider();
    i.health = EffectiveHealth(*m, now);
    i.breaker = m->breaker.PeekPhase(now);
    i.cooldown_until = std::max(s.cooldown_until, s.disabled_until);
    // An ejection with a known end is a cooldown too (a probe-gated one,
    // InfiniteFuture, shows only as UNHEALTHY).
    if (i.health == InstanceHealth::kUnhealthy &&
        m->ejected_until != absl::InfiniteFuture() && m->ejected_until > now) {
      i.cooldown_until = std::max(i.cooldown_until, m->ejected_until);
    }
    i.in_flight = s.stats.in_flight;
    i.ewma_latency = s.stats.latency.value();
    i.ewma_ttft = s.stats.ttft.value();
    i.success_rate = m->window.SuccessRate(now);
    i.requests = m->requests;
    i.successes = m->successes;
    i.failures = m->failures;
    i.weight = m->instance->weight();
    i.last_error = s.last_error;
    i.last_used = s.last_used;
    i.requests_per_minute = s.usage.requests_per_minute;
    i.requests_used = s.usage.requests_used;
    i.tokens_per_minute = s.usage.tokens_per_minute;
    i.tokens_used = s.usage.tokens_used;
    i.upstream_remaining_requests = s.upstream_limits.remaining_requests;
    i.upstream_remaining_tokens = s.upstream_limits.remaining_tokens;
    i.upstream_limits_at = s.upstream_limits_at;
    i.traffic = ToTrafficView(s.stats);
    v.instances.push_back(std::move(i));
  }
  return v;
}

InstanceHealth Pool::HealthOf(const std::string& instance,
                              absl::Time now) const {
  absl::MutexLock l(&mu_);
  for (const auto& m : members_) {
    if (m->instance->name() == instance) return EffectiveHealth(*m, now);
  }
  return InstanceHealth::kHealthy;
}

BreakerPhase Pool::BreakerOf(const std::string& instance,
                             absl::Time now) const {
  absl::MutexLock l(&mu_);
  for (const auto& m : members_) {
    if (m->instance->name() == instance) return m->breaker.PeekPhase(now);
  }
  return BreakerPhase::kClosed;
}

}  // namespace echelon
