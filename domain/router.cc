#include "domain/router.h"

#include <algorithm>
#include <deque>
#include <random>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "domain/instance.h"
#include "domain/pool.h"
#include "domain/retry.h"
#include "domain/task_group.h"

namespace echelon {
namespace {

struct ModelEntry {
  ModelConfig config;
  std::shared_ptr<Provider> provider;
  UpstreamTimeouts timeouts;  // the provider's
  std::vector<std::shared_ptr<Instance>> instances;
  std::unique_ptr<Pool> pool;  // for bare-model targets
  std::unique_ptr<RetryBudget> budget;
};

struct PoolEntry {
  PoolConfig config;
  std::unique_ptr<Pool> pool;
  // Generation defaults and first-token timeout per model, from the first
  // echelon through which the pool reaches the model.
  std::map<std::string, const EchelonConfig*> echelon_of_model;
  std::unique_ptr<RetryBudget> budget;
};

const char* StrategyName(FallbackStrategy s) {
  switch (s) {
    case FallbackStrategy::kEchelonDown:
      return "echelon_down";
    case FallbackStrategy::kModelRotate:
      return "model_rotate";
    case FallbackStrategy::kProviderFailover:
      return "provider_failover";
    case FallbackStrategy::kTaskGroupSwitch:
      return "task_group_switch";
    case FallbackStrategy::kPoolSwitch:
      return "pool_switch";
  }
  return "unknown";
}

}  // namespace

// Everything a routed request needs, shared by the router and its requests
// (a request in flight keeps the snapshot it started with alive).
class RouterCore {
 public:
  RouterCore(EventLoop& loop, const RouterOptions& options)
      : loop(loop),
        options(options),
        rng(options.random_seed.has_value()
                ? absl::BitGen(std::seed_seq{*options.random_seed})
                : absl::BitGen()) {}

  EventLoop& loop;
  RouterOptions options;
  absl::BitGen rng;
  std::map<std::string, std::shared_ptr<Provider>> providers;
  std::map<std::string, std::shared_ptr<Instance>> instances;
  std::map<std::string, std::unique_ptr<ModelEntry>> models;
  std::map<std::string, std::unique_ptr<TaskGroup>> groups;
  std::map<std::string, std::unique_ptr<PoolEntry>> pools;
  std::unordered_map<const void*, std::shared_ptr<void>> active;
  // With a shared store: the global RPM/TPM limits of instances that have
  // any, by instance name.
  std::map<std::string, SharedLimit> instance_limits;
  bool shut_down = false;

  RouterObserver* observer() const { return options.observer; }
  SharedState* shared() const { return options.shared; }
  // Shares a local observation with the other replicas.
  void Publish(const SharedEvent& e) {
    if (options.shared != nullptr && !shut_down) options.shared->Publish(e);
  }

  std::vector<Pool*> AllPools() {
    std::vector<Pool*> out;
    for (auto& [n, m] : models) out.push_back(m->pool.get());
    for (auto& [n, g] : groups) {
      for (auto& [m, p] : g->pools()) out.push_back(p.get());
    }
    for (auto& [n, p] : pools) out.push_back(p->pool.get());
    return out;
  }

  void Shutdown() {
    if (shut_down) return;
    shut_down = true;
    for (Pool* p : AllPools()) p->Stop();
  }

  void RecordTrace(RoutingTrace t) {
    absl::MutexLock l(&traces_mu);
    traces.push_back(std::move(t));
    while (traces.size() > options.trace_history) traces.pop_front();
  }

  mutable absl::Mutex traces_mu;
  std::deque<RoutingTrace> traces ABSL_GUARDED_BY(traces_mu);
};

namespace {

// One routed request: a small state machine driven by loop callbacks.
class RouteCall : public RequestHandle,
                  public UpstreamObserver,
                  public std::enable_shared_from_this<RouteCall> {
 public:
  RouteCall(std::shared_ptr<RouterCore> core, RouteRequest req,
            ResponseSink* sink)
      : core_(std::move(core)), req_(std::move(req)), sink_(sink) {}

  void Cancel() override {
    std::weak_ptr<RouteCall> weak = shared_from_this();
    core_->loop.Post([weak] {
      if (auto self = weak.lock()) self->DoCancel();
    });
  }

  void Begin();
  void OnDelta(StreamDelta delta) override;
  void OnFinish(UpstreamResult result) override;

 private:
  enum class Mode { kNone, kGroup, kPool, kModel };

  absl::Time Now() const { return core_->loop.Now(); }
  EchelonState* CurrentEchelon() const {
    return group_ != nullptr && echelon_ >= 0
               ? group_->echelons()[static_cast<size_t>(echelon_)].get()
               : nullptr;
  }
  RetryConfig StageRetry() const;
  int StageMaxAttempts() const;
  std::string StageName() const;

  // Task groups.
  void EnterGroup(TaskGroup* g, int only_echelon);
  void EnterEchelon(int from, int preferred_model);
  // Takes echelon `index`'s RPM/TPM reservation (decided by the shared
  // store when `d` is set, else by the in-process limiter) and its
  // concurrency slot. True when the request stays with the echelon
  // (activated or queued) or finished; false: try the next one.
  bool AdmitEchelon(int index, int model, int64_t tokens,
                    std::optional<SharedDecision> d);
  // Asks the shared store about echelon `index`'s limits; continues in
  // AdmitEchelon when the answer comes.
  void AcquireShared(int index, int model, int64_t tokens);
  // Gives back / corrects the echelon's RPM/TPM reservation wherever it was
  // taken (shared store or in process).
  void CancelEchelonReservation(EchelonState* e, int64_t tokens);
  void ReconcileEchelon(EchelonState* e, int64_t reserved, int64_t actual);
  void ActivateEchelon(int index, int64_t tokens, int preferred_model);
  void AfterQueue(int index, int64_t tokens, int preferred_model, bool granted);
  void LeaveEchelon(bool success);
  void GroupExhausted();
  int FirstModel(int echelon, int from_model) const;
  int64_t EstimateTokens(const EchelonConfig* e, const ModelConfig* m) const;
  bool ModelUsable(int echelon, int model) const;
  // Whether the model can take this request at all (tools, prefill).
  std::string Incapable(const ModelConfig& m) const;

  // Pools and bare models.
  void EnterPool(PoolEntry* p);
  void EnterModel(ModelEntry* m);
  void LeavePoolStage(bool success);

  // Attempts.
  void TryAttempt(bool waited);
  // Sends the attempt to the picked member `m` of `pool`.
  void Dispatch(Pool* pool, Pool::Member* m, ModelEntry* model,
                const EchelonConfig* ec, int64_t tokens);
  // The shared store's answer for the picked member's own limits.
  void AfterInstanceDecision(Pool* pool, Pool::Member* m, ModelEntry* model,
                             const EchelonConfig* ec, int64_t tokens,
                             bool waited, SharedDecision d);
  // Gives the shared instance reservation of the attempt back / corrects it.
  void SettleInstanceShare(int64_t reserved, int64_t actual);
  void OnAttemptTimeout();
  void EndAttempt(UpstreamResult r);
  void AbortAttempt(ErrorClass c, const std::string& detail);
  void OnAttemptFailed(const UpstreamError& err, bool echelon_timeout);
  void Fallback(bool leave_echelon);
  bool ContextFallback();
  void Schedule(absl::Duration delay, absl::AnyInvocable<void()> fn);
  void NoteFallback(const std::string& from, const std::string& to,
                    const std::string& reason);
  void SetNextAction(const std::string& action);
  void CountAttemptFailure(ErrorClass c);

  void DoCancel();
  void OnDeadline();
  void FinishExhausted();
  void Finish(absl::Status status);

  std::shared_ptr<RouterCore> core_;
  RouteRequest req_;
  ResponseSink* sink_;
  Mode mode_ = Mode::kNone;
  bool done_ = false;
  absl::Time started_;
  absl::Time deadline_ = absl::InfiniteFuture();
  EventLoop::TimerId deadline_timer_ = EventLoop::kNoTimer;
  EventLoop::TimerId attempt_timer_ = EventLoop::kNoTimer;
  EventLoop::TimerId wait_timer_ = EventLoop::kNoTimer;
  RoutedResponse resp_;
  int attempts_ = 0;
  int max_attempts_ = 6;
  absl::Duration fallback_delay_ = absl::ZeroDuration();
  int64_t prompt_tokens_ = 0;

  // Task group state.
  TaskGroup* group_ = nullptr;
  int only_echelon_ = -1;
  int echelon_ = -1;
  int model_ = 0;
  bool echelon_held_ = false;
  bool echelon_breaker_taken_ = false;
  bool echelon_health_failed_ = false;
  bool forced_last_resort_ = false;
  int64_t echelon_reserved_tokens_ = 0;
  // The echelon's RPM/TPM reservation was taken in the shared store.
  bool echelon_shared_ = false;
  int64_t echelon_used_tokens_ = 0;
  absl::Time echelon_entered_;
  EchelonState* queued_on_ = nullptr;
  ConcurrencyLimiter::Ticket queue_ticket_ = ConcurrencyLimiter::kNoTicket;
  std::set<std::pair<std::string, std::string>> tried_models_;  // group, model
  std::set<std::string> visited_groups_;
  std::set<std::string> visited_pools_;
  int64_t min_context_window_ = 0;
  // Why echelons were skipped (for the final status).
  bool skipped_for_limits_ = false;
  bool skipped_for_breaker_ = false;
  bool skipped_for_latency_ = false;
  absl::Time retry_hint_ = absl::InfiniteFuture();
  ModelEntry* group_model_ = nullptr;

  // Pool / model state.
  PoolEntry* pool_entry_ = nullptr;
  ModelEntry* model_entry_ = nullptr;
  Pool* stage_pool_ = nullptr;  // counted by RequestStarted

  // Retry state of the current stage.
  RetryBudget* budget_ = nullptr;
  bool holding_retry_ = false;
  int stage_retries_ = 0;
  std::set<std::string> tried_instances_;
  absl::Time no_instance_until_ = absl::InfiniteFuture();
  // Instances whose own (shared) limit refused this request.
  std::set<std::string> refused_instances_;
  // A pick waiting for the shared store's decision on its instance limits.
  Pool* pending_pool_ = nullptr;
  Pool::Member* pending_member_ = nullptr;
  // The attempt's instance reservation lives in the shared store.
  const SharedLimit* attempt_shared_limit_ = nullptr;
  // Some instance was passed over only for its own concurrency/rate limits.
  bool at_capacity_ = false;

  // The attempt in flight.
  Pool* attempt_pool_ = nullptr;
  Pool::Member* member_ = nullptr;
  ModelEntry* attempt_model_ = nullptr;
  std::unique_ptr<UpstreamHandle> handle_;
  absl::Time attempt_started_;
  int64_t attempt_reserved_ = 0;
  bool attempt_echelon_timeout_ = false;
  bool committed_ = false;
  absl::Duration attempt_ttft_ = absl::ZeroDuration();
  std::vector<StreamDelta> pending_;
  std::optional<Usage> stream_usage_;
  UpstreamError last_error_;
  std::string last_provider_;
};

RetryConfig RouteCall::StageRetry() const {
  switch (mode_) {
    case Mode::kGroup:
      return CurrentEchelon() != nullptr ? CurrentEchelon()->config().retry
                                         : RetryConfig();
    case Mode::kPool:
      return pool_entry_->config.retry;
    default:
      return RetryConfig();
  }
}

int RouteCall::StageMaxAttempts() const {
  switch (mode_) {
    case Mode::kGroup:
      return StageRetry().max_retries + 1;
    case Mode::kPool:
      return std::max(1, pool_entry_->config.max_instance_attempts);
    default:
      return RetryConfig().max_retries + 1;
  }
}

std::string RouteCall::StageName() const {
  switch (mode_) {
    case Mode::kGroup:
      return CurrentEchelon() != nullptr ? CurrentEchelon()->full_name()
                                         : group_->name();
    case Mode::kPool:
      return pool_entry_->config.name;
    case Mode::kModel:
      return model_entry_->config.name;
    default:
      return "";
  }
}

void RouteCall::Begin() {
  if (done_) return;
  core_->active[this] = shared_from_this();
  started_ = Now();
  if (req_.request == nullptr || req_.request->messages.empty()) {
    Finish(absl::InvalidArgumentError("request has no messages"));
    return;
  }
  resp_.request_id = req_.request->request_id;
  prompt_tokens_ = EstimatePromptTokens(*req_.request);
  const std::string& t = req_.target;
  absl::Duration timeout = TaskGroupConfig().request_timeout;
  PoolEntry* pool = nullptr;
  TaskGroup* group = nullptr;
  int only = -1;
  ModelEntry* model = nullptr;
  if (auto it = core_->pools.find(t); it != core_->pools.end()) {
    pool = it->second.get();
    timeout = pool->config.request_timeout;
  } else if (auto g = core_->groups.find(t); g != core_->groups.end()) {
    group = g->second.get();
    timeout = group->config().request_timeout;
  } else if (auto m = core_->models.find(t); m != core_->models.end()) {
    model = m->second.get();
  } else {
    std::pair<std::string, std::string> parts =
        absl::StrSplit(t, absl::MaxSplits('.', 1));
    auto g2 = core_->groups.find(parts.first);
    if (g2 != core_->groups.end() && g2->second->IndexOf(parts.second) >= 0) {
      group = g2->second.get();
      only = group->IndexOf(parts.second);
      timeout = group->config().request_timeout;
    }
  }
  if (pool == nullptr && group == nullptr && model == nullptr) {
    Finish(absl::NotFoundError(absl::StrCat("unknown target '", t, "'")));
    return;
  }
  deadline_ = std::min(req_.deadline, started_ + timeout);
  if (deadline_ <= started_) {
    Finish(absl::DeadlineExceededError("deadline already passed"));
    return;
  }
  std::weak_ptr<RouteCall> weak = shared_from_this();
  deadline_timer_ = core_->loop.RunAt(deadline_, [weak] {
    if (auto self = weak.lock()) self->OnDeadline();
  });
  // A request no candidate model can take is the caller's problem.
  std::string incapable;
  auto check = [&](const std::string& model) {
    std::string why = Incapable(core_->models.at(model)->config);
    if (why.empty()) return true;
    incapable = why;
    return false;
  };
  bool any_capable = false;
  if (model != nullptr) {
    any_capable = check(model->config.name);
  } else if (group != nullptr) {
    for (const auto& e : group->echelons()) {
      for (const std::string& m : e->config().models) {
        any_capable = check(m) || any_capable;
      }
    }
  } else {
    for (const auto& [name, e] : pool->echelon_of_model) {
      any_capable = check(name) || any_capable;
    }
  }
  if (!any_capable) {
    Finish(absl::InvalidArgumentError(
        absl::StrCat("no model of target '", t, "' supports ", incapable)));
    return;
  }
  if (group != nullptr) {
    max_attempts_ = std::max(1, group->config().fallback.max_attempts);
    fallback_delay_ = group->config().fallback.retry_delay;
    EnterGroup(group, only);
  } else if (pool != nullptr) {
    max_attempts_ = std::max(1, pool->config.max_instance_attempts) *
                    static_cast<int>(1 + pool->config.fallback_pools.size());
    EnterPool(pool);
  } else {
    max_attempts_ = RetryConfig().max_retries + 1;
    EnterModel(model);
  }
}

// ---------------------------------------------------------------------------
// Task groups

void RouteCall::EnterGroup(TaskGroup* g, int only_echelon) {
  mode_ = Mode::kGroup;
  group_ = g;
  only_echelon_ = only_echelon;
  echelon_ = -1;
  visited_groups_.insert(g->name());
  g->CountRequest();
  absl::Time now = Now();
  const FallbackConfig& fb = g->config().fallback;
  if (only_echelon < 0) {
    bool any_closed = false;
    absl::Time earliest = absl::InfiniteFuture();
    for (auto& e : g->echelons()) {
      if (e->BreakerWouldAllow(now)) {
        any_closed = true;
        break;
      }
      earliest = std::min(earliest, e->BreakerHalfOpenAt());
    }
    if (!any_closed && !g->echelons().empty()) {
      int last = fb.when_all_open == AllOpenPolicy::kLastResort
                     ? g->IndexOf(fb.last_resort_echelon)
                     : -1;
      if (last >= 0) {
        forced_last_resort_ = true;
        only_echelon_ = last;
        NoteFallback(g->name(), g->echelons()[last]->full_name(),
                     "last_resort");
        EnterEchelon(last, -1);
        return;
      }
      if (earliest > now) resp_.retry_after = earliest - now;
      Finish(absl::UnavailableError(
          absl::StrCat("every echelon of task group '", g->name(),
                       "' has an open circuit breaker")));
      return;
    }
  }
  EnterEchelon(only_echelon_ >= 0 ? only_echelon_ : 0, -1);
}

bool RouteCall::ModelUsable(int echelon, int model) const {
  const EchelonConfig& e =
      group_->echelons()[static_cast<size_t>(echelon)]->config();
  const std::string& name = e.models[static_cast<size_t>(model)];
  if (tried_models_.count({group_->name(), name}) > 0) return false;
  auto it = core_->models.find(name);
  return it != core_->models.end() &&
         it->second->config.context_window >= min_context_window_ &&
         Incapable(it->second->config).empty();
}

std::string RouteCall::Incapable(const ModelConfig& m) const {
  const ChatRequest& r = *req_.request;
  if (!r.tools.empty() && !m.supports_tools) return "tools";
  if (!r.messages.empty() && r.messages.back().role == Role::kAssistant &&
      !m.supports_prefill) {
    return "assistant prefill";
  }
  return "";
}

int RouteCall::FirstModel(int echelon, int from_model) const {
  const EchelonConfig& e =
      group_->echelons()[static_cast<size_t>(echelon)]->config();
  for (int j = std::max(0, from_model); j < static_cast<int>(e.models.size());
       ++j) {
    if (ModelUsable(echelon, j)) return j;
  }
  return -1;
}

int64_t RouteCall::EstimateTokens(const EchelonConfig* e,
                                  const ModelConfig* m) const {
  int64_t max_tokens = 0;
  if (req_.request->params.max_tokens.has_value()) {
    max_tokens = *req_.request->params.max_tokens;
  } else if (e != nullptr && e->defaults.max_tokens.has_value()) {
    max_tokens = *e->defaults.max_tokens;
  } else if (m != nullptr) {
    max_tokens = m->max_output_tokens;
  }
  if (m != nullptr) max_tokens = std::min(max_tokens, m->max_output_tokens);
  return prompt_tokens_ + std::max<int64_t>(0, max_tokens);
}

void RouteCall::EnterEchelon(int from, int preferred_model) {
  if (done_) return;
  absl::Time now = Now();
  const auto& echelons = group_->echelons();
  for (int i = from; i < static_cast<int>(echelons.size()); ++i) {
    if (only_echelon_ >= 0 && i != only_echelon_) break;
    EchelonState* e = echelons[static_cast<size_t>(i)].get();
    const EchelonConfig& c = e->config();
    int model =
        preferred_model >= 0 && i == from && ModelUsable(i, preferred_model)
            ? preferred_model
            : FirstModel(i, 0);
    if (model < 0) continue;  // nothing usable (tried or context too small)
    if (!forced_last_resort_ && !e->BreakerWouldAllow(now)) {
      e->CountRejected();
      skipped_for_breaker_ = true;
      retry_hint_ = std::min(retry_hint_, e->BreakerHalfOpenAt());
      continue;
    }
    if (c.expected_latency > absl::ZeroDuration() &&
        deadline_ - now < c.expected_latency) {
      e->CountRejected();
      skipped_for_latency_ = true;
      continue;
    }
    const ModelConfig& mc =
        core_->models.at(c.models[static_cast<size_t>(model)])->config;
    int64_t tokens = EstimateTokens(&c, &mc);
    const RateLimitConfig& rl = c.rate_limit;
    if (core_->shared() != nullptr &&
        (rl.requests_per_minute > 0 || rl.tokens_per_minute > 0)) {
      AcquireShared(i, model, tokens);
      return;
    }
    if (AdmitEchelon(i, model, tokens, std::nullopt)) return;
  }
  echelon_ = -1;
  GroupExhausted();
}

void RouteCall::AcquireShared(int index, int model, int64_t tokens) {
  EchelonState* e = group_->echelons()[static_cast<size_t>(index)].get();
  SharedState* shared = core_->shared();
  SharedLimit limit = e->shared_limit();
  std::weak_ptr<RouteCall> weak = shared_from_this();
  shared->Acquire(
      limit, tokens,
      [weak, shared, limit, index, model, tokens](SharedDecision d) {
        auto self = weak.lock();
        if (self == nullptr || self->done_) {
          // Finished while waiting: give the share back.
          if (d.kind == SharedDecision::Kind::kAllowed) {
            shared->Adjust(limit, -1, -tokens);
          }
          return;
        }
        if (!self->AdmitEchelon(index, model, tokens, d)) {
          self->EnterEchelon(index + 1, -1);
        }
      });
}

bool RouteCall::AdmitEchelon(int i, int model, int64_t tokens,
                             std::optional<SharedDecision> d) {
  absl::Time now = Now();
  EchelonState* e = group_->echelons()[static_cast<size_t>(i)].get();
  const EchelonConfig& c = e->config();
  absl::Duration wait = absl::ZeroDuration();
  bool reserved = false;
  echelon_shared_ = false;
  if (d.has_value() && d->kind == SharedDecision::Kind::kAllowed) {
    reserved = true;
    echelon_shared_ = true;
  } else if (d.has_value() && d->kind == SharedDecision::Kind::kRefused) {
    wait = d->retry_after;
  } else {
    reserved = e->TryReserve(now, tokens, &wait);
  }
  if (!reserved) {
    e->CountRejected();
    retry_hint_ = std::min(retry_hint_, now + wait);
    if (c.concurrency.on_overflow == OverflowPolicy::kReject) {
      resp_.retry_after = wait;
      Finish(absl::ResourceExhaustedError(absl::StrCat(
          "rate limit of echelon '", e->full_name(), "' reached")));
      return true;
    }
    skipped_for_limits_ = true;
    return false;
  }
  if (!e->concurrency().TryAcquire()) {
    if (c.concurrency.queue_size > 0) {
      std::weak_ptr<RouteCall> weak = shared_from_this();
      queue_ticket_ =
          e->concurrency().Enqueue([weak, e, i, tokens, model](bool granted) {
            auto self = weak.lock();
            if (self == nullptr || self->done_) {
              if (granted) e->concurrency().Release();
              return;
            }
            self->AfterQueue(i, tokens, model, granted);
          });
      if (queue_ticket_ != ConcurrencyLimiter::kNoTicket) {
        queued_on_ = e;
        echelon_ = i;  // waiting here
        echelon_reserved_tokens_ = tokens;
        return true;
      }
    }
    CancelEchelonReservation(e, tokens);
    e->CountRejected();
    retry_hint_ = std::min(retry_hint_, now + c.concurrency.queue_timeout);
    if (c.concurrency.on_overflow == OverflowPolicy::kReject) {
      resp_.retry_after = c.concurrency.queue_timeout;
      Finish(absl::ResourceExhaustedError(absl::StrCat(
          "concurrency limit of echelon '", e->full_name(), "' reached")));
      return true;
    }
    skipped_for_limits_ = true;
    return false;
  }
  ActivateEchelon(i, tokens, model);
  return true;
}

void RouteCall::CancelEchelonReservation(EchelonState* e, int64_t tokens) {
  if (echelon_shared_) {
    core_->shared()->Adjust(e->shared_limit(), -1, -tokens);
  } else {
    e->CancelReservation(Now(), tokens);
  }
  echelon_shared_ = false;
}

void RouteCall::ReconcileEchelon(EchelonState* e, int64_t reserved,
                                 int64_t actual) {
  if (echelon_shared_) {
    if (actual != reserved) {
      core_->shared()->Adjust(e->shared_limit(), 0, actual - reserved);
    }
  } else {
    e->Reconcile(Now(), reserved, actual);
  }
  echelon_shared_ = false;
}

void RouteCall::AfterQueue(int index, int64_t tokens, int preferred_model,
                           bool granted) {
  EchelonState* e = group_->echelons()[static_cast<size_t>(index)].get();
  queue_ticket_ = ConcurrencyLimiter::kNoTicket;
  queued_on_ = nullptr;
  if (granted) {
    ActivateEchelon(index, tokens, preferred_model);
    return;
  }
  absl::Time now = Now();
  CancelEchelonReservation(e, tokens);
  e->CountRejected();
  echelon_ = -1;
  if (e->config().concurrency.on_overflow == OverflowPolicy::kReject) {
    resp_.retry_after = e->config().concurrency.queue_timeout;
    Finish(absl::ResourceExhaustedError(
        absl::StrCat("concurrency limit of echelon '", e->full_name(),
                     "' reached (queue timeout)")));
    return;
  }
  skipped_for_limits_ = true;
  retry_hint_ =
      std::min(retry_hint_, now + e->config().concurrency.queue_timeout);
  EnterEchelon(index + 1, -1);
}

void RouteCall::ActivateEchelon(int index, int64_t tokens,
                                int preferred_model) {
  EchelonState* e = group_->echelons()[static_cast<size_t>(index)].get();
  absl::Time now = Now();
  echelon_ = index;
  echelon_held_ = true;
  echelon_breaker_taken_ = !forced_last_resort_ && e->BreakerAllow(now);
  echelon_health_failed_ = false;
  echelon_reserved_tokens_ = tokens;
  echelon_used_tokens_ = 0;
  echelon_entered_ = now;
  e->CountEntered();
  budget_ = &e->retry_budget();
  budget_->RequestStarted();
  stage_retries_ = 0;
  tried_instances_.clear();
  refused_instances_.clear();
  model_ = preferred_model >= 0 ? preferred_model : FirstModel(index, 0);
  TryAttempt(false);
}

void RouteCall::LeaveEchelon(bool success) {
  if (queued_on_ != nullptr) {
    queued_on_->concurrency().Abandon(queue_ticket_);
    CancelEchelonReservation(queued_on_, echelon_reserved_tokens_);
    queued_on_ = nullptr;
    queue_ticket_ = ConcurrencyLimiter::kNoTicket;
  }
  if (!echelon_held_) return;
  echelon_held_ = false;
  EchelonState* e = CurrentEchelon();
  absl::Time now = Now();
  e->concurrency().Release();
  ReconcileEchelon(e, echelon_reserved_tokens_,
                   echelon_used_tokens_ > 0 ? echelon_used_tokens_
                   : success                ? echelon_reserved_tokens_
                                            : 0);
  if (echelon_breaker_taken_) {
    if (success) {
      e->BreakerSuccess(now);
    } else if (echelon_health_failed_) {
      e->BreakerFailure(now);
    } else {
      e->BreakerNeutral(now);
    }
  }
  echelon_breaker_taken_ = false;
  if (budget_ != nullptr) {
    if (holding_retry_) budget_->RetryFinished();
    holding_retry_ = false;
    budget_->RequestFinished();
    budget_ = nullptr;
  }
  e->CountFinished(
      success, success ? now - echelon_entered_ : absl::ZeroDuration(),
      success ? attempt_ttft_ : absl::ZeroDuration(),
      success && resp_.response.has_usage ? resp_.response.usage.prompt_tokens
                                          : 0,
      success && resp_.response.has_usage
          ? resp_.response.usage.completion_tokens
          : 0);
}

void RouteCall::GroupExhausted() {
  // Leaving the group: task_group_switch / pool_switch if configured.
  for (FallbackStrategy s : group_->config().fallback.strategies) {
    if (s == FallbackStrategy::kTaskGroupSwitch) {
      for (const std::string& name :
           group_->config().fallback.fallback_groups) {
        if (visited_groups_.count(name) > 0) continue;
        auto it = core_->groups.find(name);
        if (it == core_->groups.end()) continue;
        TaskGroup* next = it->second.get();
        group_->CountFinished(false);
        NoteFallback(group_->name(), name, StrategyName(s));
        Schedule(fallback_delay_, [this, next] {
          forced_last_resort_ = false;
          EnterGroup(next, -1);
        });
        return;
      }
    }
    if (s == FallbackStrategy::kPoolSwitch) {
      for (const std::string& name : group_->config().fallback.fallback_pools) {
        if (visited_pools_.count(name) > 0) continue;
        auto it = core_->pools.find(name);
        if (it == core_->pools.end()) continue;
        PoolEntry* next = it->second.get();
        group_->CountFinished(false);
        NoteFallback(group_->name(), name, StrategyName(s));
        Schedule(fallback_delay_, [this, next] { EnterPool(next); });
        return;
      }
    }
  }
  absl::Time now = Now();
  if (last_error_.error_class != ErrorClass::kNone) {
    FinishExhausted();
    return;
  }
  if (retry_hint_ != absl::InfiniteFuture() && retry_hint_ > now) {
    resp_.retry_after = retry_hint_ - now;
  }
  if (skipped_for_limits_) {
    Finish(absl::ResourceExhaustedError(
        absl::StrCat("limits of every echelon of task group '", group_->name(),
                     "' reached")));
  } else if (skipped_for_breaker_) {
    Finish(absl::UnavailableError(absl::StrCat(
        "circuit breakers open in task group '", group_->name(), "'")));
  } else if (skipped_for_latency_) {
    Finish(absl::DeadlineExceededError(
        "remaining deadline is shorter than the expected latency of every "
        "echelon"));
  } else {
    Finish(absl::UnavailableError(absl::StrCat(
        "no echelon of task group '", group_->name(), "' could serve")));
  }
}

// ---------------------------------------------------------------------------
// Pools and bare models

void RouteCall::EnterPool(PoolEntry* p) {
  mode_ = Mode::kPool;
  group_ = nullptr;
  echelon_ = -1;
  pool_entry_ = p;
  visited_pools_.insert(p->config.name);
  stage_pool_ = p->pool.get();
  stage_pool_->RequestStarted();
  budget_ = p->budget.get();
  budget_->RequestStarted();
  stage_retries_ = 0;
  tried_instances_.clear();
  refused_instances_.clear();
  TryAttempt(false);
}

void RouteCall::EnterModel(ModelEntry* m) {
  mode_ = Mode::kModel;
  model_entry_ = m;
  stage_pool_ = m->pool.get();
  stage_pool_->RequestStarted();
  budget_ = m->budget.get();
  budget_->RequestStarted();
  TryAttempt(false);
}

void RouteCall::LeavePoolStage(bool success) {
  if (stage_pool_ != nullptr) stage_pool_->RequestFinished(success);
  stage_pool_ = nullptr;
  if (mode_ != Mode::kGroup && budget_ != nullptr) {
    if (holding_retry_) budget_->RetryFinished();
    holding_retry_ = false;
    budget_->RequestFinished();
    budget_ = nullptr;
  }
}

// ---------------------------------------------------------------------------
// Attempts

void RouteCall::Schedule(absl::Duration delay, absl::AnyInvocable<void()> fn) {
  std::weak_ptr<RouteCall> weak = shared_from_this();
  auto task = std::make_shared<absl::AnyInvocable<void()>>(std::move(fn));
  // Always through the loop: never start an upstream call inside another
  // call's callback.
  wait_timer_ =
      core_->loop.RunAfter(std::max(delay, absl::ZeroDuration()), [weak, task] {
        auto self = weak.lock();
        if (self == nullptr || self->done_) return;
        self->wait_timer_ = EventLoop::kNoTimer;
        (*task)();
      });
}

void RouteCall::NoteFallback(const std::string& from, const std::string& to,
                             const std::string& reason) {
  resp_.fallbacks.push_back({from, to, reason});
  if (mode_ == Mode::kGroup && group_ != nullptr) {
    group_->CountFallback(resp_.fallbacks.back());
  }
  SetNextAction(reason);
  if (RouterObserver* o = core_->observer()) {
    o->OnFallback({req_.target, from, to, reason, last_error_.error_class});
  }
}

void RouteCall::CountAttemptFailure(ErrorClass c) {
  if (mode_ != Mode::kGroup || group_ == nullptr) return;
  if (EchelonState* e = CurrentEchelon()) e->CountAttemptFailure(c);
  group_->CountAttemptFailure(c);
}

void RouteCall::SetNextAction(const std::string& action) {
  if (!resp_.attempts.empty() && resp_.attempts.back().next_action.empty()) {
    resp_.attempts.back().next_action = action;
  }
}

void RouteCall::TryAttempt(bool waited) {
  if (done_) return;
  absl::Time now = Now();
  if (attempts_ >= max_attempts_) {
    FinishExhausted();
    return;
  }
  Pool* pool = nullptr;
  ModelEntry* model = nullptr;
  const EchelonConfig* ec = nullptr;
  switch (mode_) {
    case Mode::kGroup: {
      EchelonState* e = CurrentEchelon();
      ec = &e->config();
      if (model_ < 0) {
        Fallback(false);
        return;
      }
      const std::string& name = ec->models[static_cast<size_t>(model_)];
      model = core_->models.at(name).get();
      pool = group_->PoolFor(name);
      break;
    }
    case Mode::kPool:
      pool = pool_entry_->pool.get();
      break;
    case Mode::kModel:
      model = model_entry_;
      pool = model_entry_->pool.get();
      break;
    case Mode::kNone:
      return;
  }
  int64_t tokens =
      EstimateTokens(ec, model != nullptr ? &model->config : nullptr);
  absl::Time earliest = absl::InfiniteFuture();
  absl::Time cooldown = absl::InfiniteFuture();
  // Pools mix models: only those able to take the request.
  auto capable = [this](const Instance& i) {
    return refused_instances_.count(i.name()) == 0 &&
           (mode_ != Mode::kPool ||
            Incapable(core_->models.at(i.model())->config).empty());
  };
  auto untried = [this, &capable](const Instance& i) {
    return tried_instances_.count(i.name()) == 0 && capable(i);
  };
  // With a shared store the instances' own limits are decided there.
  const bool local_limits = core_->shared() == nullptr;
  Pool::Member* m = pool->Pick(now, tokens, untried, &earliest, &cooldown,
                               &at_capacity_, local_limits);
  if (m == nullptr && !tried_instances_.empty()) {
    absl::Time e2 = absl::InfiniteFuture(), c2 = absl::InfiniteFuture();
    m = pool->Pick(now, tokens, capable, &e2, &c2, &at_capacity_, local_limits);
    earliest = std::min(earliest, e2);
    cooldown = std::min(cooldown, c2);
  }
  if (m == nullptr) {
    // Wait for the end of a rate-limit cooldown (an honoured Retry-After)
    // if that fits the retry policy and the deadline; never for ejected or
    // broken instances: go elsewhere instead.
    RetryConfig rc = StageRetry();
    if (!waited && cooldown != absl::InfiniteFuture() && cooldown > now &&
        cooldown - now <= rc.max_retry_after && cooldown < deadline_) {
      Schedule(cooldown - now, [this] { TryAttempt(true); });
      return;
    }
    no_instance_until_ = earliest;
    if (earliest != absl::InfiniteFuture()) {
      retry_hint_ = std::min(retry_hint_, earliest);
    }
    if (mode_ == Mode::kGroup) {
      tried_models_.insert(
          {group_->name(), ec->models[static_cast<size_t>(model_)]});
    }
    Fallback(false);
    return;
  }
  if (mode_ == Mode::kPool) {
    model = core_->models.at(m->instance->model()).get();
    auto it = pool_entry_->echelon_of_model.find(model->config.name);
    ec = it == pool_entry_->echelon_of_model.end() ? nullptr : it->second;
  }
  if (!local_limits) {
    auto lim = core_->instance_limits.find(m->instance->name());
    if (lim != core_->instance_limits.end()) {
      pending_pool_ = pool;
      pending_member_ = m;
      SharedState* shared = core_->shared();
      const SharedLimit limit = lim->second;
      std::weak_ptr<RouteCall> weak = shared_from_this();
      shared->Acquire(limit, tokens,
                      [weak, shared, limit, pool, m, model, ec, tokens,
                       waited](SharedDecision d) {
                        auto self = weak.lock();
                        if (self == nullptr || self->done_) {
                          if (d.kind == SharedDecision::Kind::kAllowed) {
                            shared->Adjust(limit, -1, -tokens);
                          }
                          return;
                        }
                        self->AfterInstanceDecision(pool, m, model, ec, tokens,
                                                    waited, d);
                      });
      return;
    }
  }
  Dispatch(pool, m, model, ec, tokens);
}

void RouteCall::AfterInstanceDecision(Pool* pool, Pool::Member* m,
                                      ModelEntry* model,
                                      const EchelonConfig* ec, int64_t tokens,
                                      bool waited, SharedDecision d) {
  pending_pool_ = nullptr;
  pending_member_ = nullptr;
  absl::Time now = Now();
  absl::Duration wait = d.retry_after;
  bool ok = false;
  if (d.kind == SharedDecision::Kind::kAllowed) {
    ok = true;
    attempt_shared_limit_ = &core_->instance_limits.at(m->instance->name());
  } else if (d.kind == SharedDecision::Kind::kLocal) {
    // The store could not answer: the instance's local share decides.
    ok = m->instance->TryReserve(now, tokens, &wait);
  }
  if (ok) {
    Dispatch(pool, m, model, ec, tokens);
    return;
  }
  pool->Unpick(m, now);
  refused_instances_.insert(m->instance->name());
  at_capacity_ = true;
  retry_hint_ = std::min(retry_hint_, now + wait);
  TryAttempt(waited);
}

void RouteCall::SettleInstanceShare(int64_t reserved, int64_t actual) {
  const SharedLimit* limit = attempt_shared_limit_;
  attempt_shared_limit_ = nullptr;
  if (limit == nullptr || actual == reserved) return;
  core_->shared()->Adjust(*limit, 0, actual - reserved);
}

void RouteCall::Dispatch(Pool* pool, Pool::Member* m, ModelEntry* model,
                         const EchelonConfig* ec, int64_t tokens) {
  absl::Time now = Now();
  attempts_++;
  member_ = m;
  attempt_pool_ = pool;
  attempt_model_ = model;
  attempt_started_ = now;
  attempt_reserved_ = tokens;
  attempt_ttft_ = absl::ZeroDuration();
  pending_.clear();
  stream_usage_.reset();
  tried_instances_.insert(m->instance->name());
  last_provider_ = m->instance->provider();
  AttemptRecord rec;
  rec.instance = m->instance->name();
  rec.model = model->config.name;
  if (mode_ == Mode::kGroup) rec.echelon = CurrentEchelon()->full_name();
  resp_.attempts.push_back(std::move(rec));

  // The request with the echelon's defaults, capped to the model's output.
  std::shared_ptr<const ChatRequest> request = req_.request;
  const GenerationParams* d = ec != nullptr ? &ec->defaults : nullptr;
  bool cap = req_.request->params.max_tokens.has_value() &&
             *req_.request->params.max_tokens > model->config.max_output_tokens;
  if (d != nullptr || cap) {
    auto copy = std::make_shared<ChatRequest>(*req_.request);
    GenerationParams& p = copy->params;
    if (d != nullptr) {
      if (!p.temperature) p.temperature = d->temperature;
      if (!p.top_p) p.top_p = d->top_p;
      if (!p.max_tokens) p.max_tokens = d->max_tokens;
      if (p.stop.empty()) p.stop = d->stop;
      if (!p.seed) p.seed = d->seed;
      if (!p.presence_penalty) p.presence_penalty = d->presence_penalty;
      if (!p.frequency_penalty) p.frequency_penalty = d->frequency_penalty;
      if (p.response_format.type == ResponseFormat::Type::kUnspecified) {
        p.response_format = d->response_format;
      }
    }
    if (p.max_tokens && *p.max_tokens > model->config.max_output_tokens) {
      p.max_tokens = model->config.max_output_tokens;
    }
    request = std::move(copy);
  }
  UpstreamCall call;
  call.endpoint = m->instance->endpoint();
  call.request = std::move(request);
  call.stream = req_.stream;
  call.timeouts = model->timeouts;
  if (ec != nullptr && ec->first_token_timeout.has_value()) {
    call.timeouts.first_token = *ec->first_token_timeout;
  }
  absl::Time attempt_deadline = deadline_;
  attempt_echelon_timeout_ = false;
  if (mode_ == Mode::kGroup && ec->timeout > absl::ZeroDuration() &&
      echelon_entered_ + ec->timeout < deadline_) {
    attempt_deadline = echelon_entered_ + ec->timeout;
    std::weak_ptr<RouteCall> weak = shared_from_this();
    attempt_timer_ = core_->loop.RunAt(attempt_deadline, [weak] {
      if (auto self = weak.lock()) self->OnAttemptTimeout();
    });
  }
  call.deadline = attempt_deadline;
  handle_ = model->provider->Start(std::move(call), this);
}

void RouteCall::OnDelta(StreamDelta delta) {
  if (done_ || member_ == nullptr) return;
  if (delta.usage.has_value()) stream_usage_ = delta.usage;
  if (!committed_) {
    if (!delta.IsVisible()) {
      pending_.push_back(std::move(delta));
      return;
    }
    committed_ = true;
    resp_.committed = true;
    attempt_ttft_ = Now() - attempt_started_;
    for (const StreamDelta& p : pending_) sink_->OnDelta(p);
    pending_.clear();
  }
  sink_->OnDelta(delta);
}

void RouteCall::OnFinish(UpstreamResult result) {
  if (done_ || member_ == nullptr) return;
  core_->loop.CancelTimer(attempt_timer_);
  attempt_timer_ = EventLoop::kNoTimer;
  // Never free a handle inside its own callback.
  if (handle_ != nullptr) {
    auto h =
        std::make_shared<std::unique_ptr<UpstreamHandle>>(std::move(handle_));
    core_->loop.Post([h] {});
  }
  EndAttempt(std::move(result));
}

void RouteCall::OnAttemptTimeout() {
  attempt_timer_ = EventLoop::kNoTimer;
  if (done_ || member_ == nullptr) return;
  AbortAttempt(ErrorClass::kTimeoutTotal, "echelon timeout");
  UpstreamError e;
  e.error_class = ErrorClass::kTimeoutTotal;
  e.message = "echelon timeout";
  OnAttemptFailed(e, /*echelon_timeout=*/true);
}

// Cancels the attempt in flight and reports it with class `c`.
void RouteCall::AbortAttempt(ErrorClass c, const std::string& detail) {
  if (member_ == nullptr) return;
  core_->loop.CancelTimer(attempt_timer_);
  attempt_timer_ = EventLoop::kNoTimer;
  if (handle_ != nullptr) {
    handle_->Cancel();
    handle_.reset();
  }
  UpstreamResult r;
  r.error.error_class = c;
  r.error.message = detail;
  UpstreamError keep = last_error_;
  Pool::Member* m = member_;
  member_ = nullptr;
  // Report without routing decisions.
  absl::Time now = Now();
  Pool::Outcome o;
  o.error = r.error;
  o.latency = now - attempt_started_;
  o.reserved_tokens = attempt_reserved_;
  o.max_retry_after = StageRetry().max_retry_after;
  if (attempt_shared_limit_ != nullptr) {
    o.limits_elsewhere = true;
    SettleInstanceShare(attempt_reserved_, attempt_reserved_);
  }
  attempt_pool_->Report(m, now, o);
  if (c != ErrorClass::kCancelled) CountAttemptFailure(c);
  if (!resp_.attempts.empty()) {
    resp_.attempts.back().outcome = c;
    resp_.attempts.back().detail = detail;
    resp_.attempts.back().duration = o.latency;
  }
  resp_.upstream_time += o.latency;
  if (RouterObserver* obs = core_->observer()) {
    AttemptEvent ev;
    ev.target = req_.target;
    ev.pool = attempt_pool_->name();
    ev.model = attempt_model_->config.name;
    ev.instance = m->instance->name();
    ev.provider = m->instance->provider();
    ev.outcome = c;
    ev.latency = o.latency;
    ev.is_retry = attempts_ > 1;
    if (mode_ == Mode::kGroup && CurrentEchelon() != nullptr) {
      ev.task_group = group_->name();
      ev.echelon = CurrentEchelon()->name();
    }
    obs->OnAttempt(ev);
  }
  if (c != ErrorClass::kCancelled)
    last_error_ = r.error;
  else
    last_error_ = keep;
}

void RouteCall::EndAttempt(UpstreamResult r) {
  absl::Time now = Now();
  Pool::Member* m = member_;
  member_ = nullptr;
  absl::Duration latency = now - attempt_started_;
  absl::Duration ttft = r.time_to_first_token > absl::ZeroDuration()
                            ? r.time_to_first_token
                            : attempt_ttft_;
  if (!req_.stream && ttft == absl::ZeroDuration() && r.ok()) ttft = latency;
  attempt_ttft_ = ttft;
  Usage usage;
  bool has_usage = false;
  if (r.response.has_usage) {
    usage = r.response.usage;
    has_usage = true;
  } else if (stream_usage_.has_value()) {
    usage = *stream_usage_;
    has_usage = true;
    r.response.usage = usage;
    r.response.has_usage = true;
  }
  int64_t used = has_usage
                     ? (usage.total_tokens > 0
                            ? usage.total_tokens
                            : usage.prompt_tokens + usage.completion_tokens)
                     : 0;
  echelon_used_tokens_ += used;
  Pool::Outcome o;
  o.error = r.error;
  o.latency = latency;
  o.ttft = ttft;
  o.reserved_tokens = attempt_reserved_;
  o.tokens_in = has_usage ? usage.prompt_tokens : 0;
  o.tokens_out = has_usage ? usage.completion_tokens : 0;
  o.max_retry_after = StageRetry().max_retry_after;
  o.upstream_limits = r.rate_limits;
  if (attempt_shared_limit_ != nullptr) {
    o.limits_elsewhere = true;
    SettleInstanceShare(attempt_reserved_, o.tokens_in + o.tokens_out > 0
                                               ? o.tokens_in + o.tokens_out
                                               : attempt_reserved_);
  }
  attempt_pool_->Report(m, now, o);
  if (holding_retry_ && budget_ != nullptr) {
    budget_->RetryFinished();
    holding_retry_ = false;
  }
  if (!r.ok()) CountAttemptFailure(r.error.error_class);
  AttemptRecord& rec = resp_.attempts.back();
  rec.outcome = r.error.error_class;
  rec.detail = r.error.message;
  rec.duration = latency;
  resp_.upstream_time += latency;
  if (RouterObserver* obs = core_->observer()) {
    AttemptEvent ev;
    ev.target = req_.target;
    ev.pool = attempt_pool_->name();
    ev.model = attempt_model_->config.name;
    ev.instance = m->instance->name();
    ev.provider = m->instance->provider();
    ev.outcome = r.error.error_class;
    ev.latency = latency;
    ev.ttft = ttft;
    ev.tokens_in = o.tokens_in;
    ev.tokens_out = o.tokens_out;
    ev.is_retry = attempts_ > 1;
    if (mode_ == Mode::kGroup && CurrentEchelon() != nullptr) {
      ev.task_group = group_->name();
      ev.echelon = CurrentEchelon()->name();
    }
    obs->OnAttempt(ev);
  }
  if (r.ok()) {
    for (const StreamDelta& p : pending_) sink_->OnDelta(p);
    pending_.clear();
    resp_.response = std::move(r.response);
    resp_.model = attempt_model_->config.name;
    resp_.instance = m->instance->name();
    Finish(absl::OkStatus());
    return;
  }
  pending_.clear();
  OnAttemptFailed(r.error, false);
}

void RouteCall::OnAttemptFailed(const UpstreamError& err,
                                bool echelon_timeout) {
  if (done_) return;
  last_error_ = err;
  ErrorClass c = err.error_class;
  absl::Time now = Now();
  if (committed_) {
    Finish(absl::AbortedError(absl::StrCat(
        "partial stream: ", resp_.attempts.back().instance,
        " failed after content was sent: ", ToStatus(err).message())));
    return;
  }
  if (c == ErrorClass::kCancelled) {
    Finish(absl::CancelledError("upstream call cancelled"));
    return;
  }
  if (c == ErrorClass::kTimeoutTotal) {
    if (now >= deadline_) {
      Finish(absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded after ", attempts_, " attempt(s)")));
      return;
    }
    if (mode_ == Mode::kGroup) {
      // The echelon's budget is spent: it failed to serve in time (counts
      // for its breaker), go below it.
      echelon_health_failed_ = true;
      Fallback(/*leave_echelon=*/true);
      return;
    }
    (void)echelon_timeout;
  }
  if (!IsRetryable(c) && c != ErrorClass::kTimeoutTotal) {
    Finish(ToStatus(err));
    return;
  }
  if (IsHealthFailure(c)) echelon_health_failed_ = true;
  if (c == ErrorClass::kContextLengthExceeded) {
    if (attempt_model_ != nullptr) {
      min_context_window_ = std::max(min_context_window_,
                                     attempt_model_->config.context_window + 1);
    }
    if (!ContextFallback()) Finish(ToStatus(err));
    return;
  }
  if (attempts_ >= max_attempts_) {
    FinishExhausted();
    return;
  }
  RetryConfig rc = StageRetry();
  bool go_elsewhere =
      c == ErrorClass::kRateLimited && err.retry_after > rc.max_retry_after;
  if (!go_elsewhere && stage_retries_ + 1 < StageMaxAttempts() &&
      budget_ != nullptr && budget_->TryStartRetry()) {
    holding_retry_ = true;
    absl::Duration delay = FullJitterBackoff(rc, stage_retries_, core_->rng);
    stage_retries_++;
    if (EchelonState* e = CurrentEchelon(); mode_ == Mode::kGroup && e) {
      e->CountRetry();
      group_->CountRetry();
    } else if (stage_pool_ != nullptr) {
      stage_pool_->CountRetry();
    }
    SetNextAction(tried_instances_.size() < attempt_pool_->size() ? "failover"
                                                                  : "retry");
    Schedule(delay, [this] { TryAttempt(false); });
    return;
  }
  Fallback(false);
}

bool RouteCall::ContextFallback() {
  if (mode_ != Mode::kGroup) return false;
  const auto& echelons = group_->echelons();
  for (int i = 0; i < static_cast<int>(echelons.size()); ++i) {
    if (only_echelon_ >= 0 && i != only_echelon_) continue;
    int j = FirstModel(i, 0);
    if (j < 0) continue;
    tried_models_.insert({group_->name(), attempt_model_->config.name});
    std::string to = echelons[static_cast<size_t>(i)]->full_name();
    if (i == echelon_) {
      NoteFallback(StageName(), to, "model_rotate");
      Schedule(absl::ZeroDuration(), [this, j] {
        model_ = j;
        stage_retries_ = 0;
        tried_instances_.clear();
        refused_instances_.clear();
        TryAttempt(false);
      });
    } else {
      NoteFallback(StageName(), to, "echelon_down");
      CurrentEchelon()->CountFallbackOut();
      LeaveEchelon(false);
      Schedule(absl::ZeroDuration(), [this, i, j] { EnterEchelon(i, j); });
    }
    return true;
  }
  return false;
}

void RouteCall::Fallback(bool leave_echelon) {
  if (done_) return;
  if (mode_ == Mode::kGroup) {
    const auto& echelons = group_->echelons();
    EchelonState* cur = CurrentEchelon();
    if (!leave_echelon && model_ >= 0) {
      tried_models_.insert(
          {group_->name(), cur->config().models[static_cast<size_t>(model_)]});
    }
    for (FallbackStrategy s : group_->config().fallback.strategies) {
      switch (s) {
        case FallbackStrategy::kModelRotate: {
          if (leave_echelon) break;
          int j = FirstModel(echelon_, model_ + 1);
          if (j < 0) j = FirstModel(echelon_, 0);
          if (j < 0) break;
          NoteFallback(
              StageName(),
              absl::StrCat(cur->full_name(), "/",
                           cur->config().models[static_cast<size_t>(j)]),
              StrategyName(s));
          Schedule(fallback_delay_, [this, j] {
            model_ = j;
            stage_retries_ = 0;
            tried_instances_.clear();
            refused_instances_.clear();
            TryAttempt(false);
          });
          return;
        }
        case FallbackStrategy::kProviderFailover: {
          for (int i = std::max(0, echelon_);
               i < static_cast<int>(echelons.size()); ++i) {
            if (only_echelon_ >= 0 && i != only_echelon_) continue;
            if (leave_echelon && i == echelon_) continue;
            const EchelonConfig& ec =
                echelons[static_cast<size_t>(i)]->config();
            for (int j = 0; j < static_cast<int>(ec.models.size()); ++j) {
              if (!ModelUsable(i, j)) continue;
              const ModelEntry& me =
                  *core_->models.at(ec.models[static_cast<size_t>(j)]);
              if (me.config.provider == last_provider_) continue;
              NoteFallback(
                  StageName(),
                  absl::StrCat(echelons[static_cast<size_t>(i)]->full_name(),
                               "/", me.config.name),
                  StrategyName(s));
              if (i == echelon_) {
                Schedule(fallback_delay_, [this, j] {
                  model_ = j;
                  stage_retries_ = 0;
                  tried_instances_.clear();
                  refused_instances_.clear();
                  TryAttempt(false);
                });
              } else {
                cur->CountFallbackOut();
                LeaveEchelon(false);
                Schedule(fallback_delay_, [this, i, j] { EnterEchelon(i, j); });
              }
              return;
            }
          }
          break;
        }
        case FallbackStrategy::kEchelonDown: {
          if (only_echelon_ >= 0) break;
          int next = echelon_ + 1;
          if (next >= static_cast<int>(echelons.size())) break;
          NoteFallback(StageName(),
                       echelons[static_cast<size_t>(next)]->full_name(),
                       StrategyName(s));
          cur->CountFallbackOut();
          LeaveEchelon(false);
          Schedule(fallback_delay_, [this, next] { EnterEchelon(next, -1); });
          return;
        }
        case FallbackStrategy::kTaskGroupSwitch:
        case FallbackStrategy::kPoolSwitch: {
          bool has_target = false;
          const FallbackConfig& fb = group_->config().fallback;
          const auto& names = s == FallbackStrategy::kTaskGroupSwitch
                                  ? fb.fallback_groups
                                  : fb.fallback_pools;
          for (const std::string& n : names) {
            if (s == FallbackStrategy::kTaskGroupSwitch
                    ? visited_groups_.count(n) == 0
                    : visited_pools_.count(n) == 0) {
              has_target = true;
            }
          }
          if (!has_target) break;
          cur->CountFallbackOut();
          LeaveEchelon(false);
          echelon_ = -1;
          GroupExhausted();
          return;
        }
      }
    }
    FinishExhausted();
    return;
  }
  if (mode_ == Mode::kPool) {
    for (const std::string& n : pool_entry_->config.fallback_pools) {
      if (visited_pools_.count(n) > 0) continue;
      auto it = core_->pools.find(n);
      if (it == core_->pools.end()) continue;
      PoolEntry* next = it->second.get();
      NoteFallback(pool_entry_->config.name, n, "pool_switch");
      LeavePoolStage(false);
      Schedule(absl::ZeroDuration(), [this, next] { EnterPool(next); });
      return;
    }
  }
  FinishExhausted();
}

void RouteCall::DoCancel() {
  if (done_) return;
  AbortAttempt(ErrorClass::kCancelled, "cancelled by caller");
  Finish(absl::CancelledError("request cancelled by the caller"));
}

void RouteCall::OnDeadline() {
  deadline_timer_ = EventLoop::kNoTimer;
  if (done_) return;
  AbortAttempt(ErrorClass::kTimeoutTotal, "request deadline");
  Finish(absl::DeadlineExceededError(
      committed_ ? "deadline exceeded; the stream is partial"
                 : absl::StrCat("deadline exceeded after ", attempts_,
                                " attempt(s)")));
}

void RouteCall::FinishExhausted() {
  absl::Time now = Now();
  if (last_error_.error_class == ErrorClass::kNone) {
    if (no_instance_until_ != absl::InfiniteFuture() &&
        no_instance_until_ > now) {
      resp_.retry_after = no_instance_until_ - now;
    }
    if (at_capacity_) {
      Finish(absl::ResourceExhaustedError(
          absl::StrCat("every instance for target '", req_.target,
                       "' is at its concurrency or rate limit")));
      return;
    }
    Finish(absl::UnavailableError(
        absl::StrCat("no available instance for target '", req_.target, "'")));
    return;
  }
  absl::Status last = ToStatus(last_error_);
  if (last_error_.retry_after > absl::ZeroDuration()) {
    resp_.retry_after = last_error_.retry_after;
  } else if (retry_hint_ != absl::InfiniteFuture() && retry_hint_ > now) {
    resp_.retry_after = retry_hint_ - now;
  }
  Finish(absl::Status(
      last.code(), absl::StrCat("all ", attempts_,
                                " attempt(s) failed; last: ", last.message())));
}

void RouteCall::Finish(absl::Status status) {
  if (done_) return;
  done_ = true;
  std::shared_ptr<RouteCall> keep = shared_from_this();
  core_->loop.CancelTimer(deadline_timer_);
  core_->loop.CancelTimer(attempt_timer_);
  core_->loop.CancelTimer(wait_timer_);
  if (member_ != nullptr) AbortAttempt(ErrorClass::kCancelled, "finished");
  if (pending_member_ != nullptr) {
    pending_pool_->Unpick(pending_member_, Now());
    pending_member_ = nullptr;
    pending_pool_ = nullptr;
  }
  bool ok = status.ok();
  if (mode_ == Mode::kGroup) {
    LeaveEchelon(ok);
    if (group_ != nullptr) {
      bool u = ok && resp_.response.has_usage;
      group_->CountFinished(ok, Now() - started_, attempt_ttft_,
                            u ? resp_.response.usage.prompt_tokens : 0,
                            u ? resp_.response.usage.completion_tokens : 0);
    }
  }
  LeavePoolStage(ok);
  if (holding_retry_ && budget_ != nullptr) budget_->RetryFinished();
  holding_retry_ = false;
  absl::Time now = Now();
  if (RouterObserver* obs = core_->observer()) {
    RequestDoneEvent ev;
    ev.target = req_.target;
    ev.model = resp_.model;
    ev.instance = resp_.instance;
    ev.code = status.code();
    ev.attempts = attempts_;
    ev.stream = req_.stream;
    ev.committed = committed_;
    ev.duration = now - started_;
    ev.upstream_time = resp_.upstream_time;
    ev.request_id = resp_.request_id;
    if (status.ok()) {
      ev.tokens_in = resp_.response.usage.prompt_tokens;
      ev.tokens_out = resp_.response.usage.completion_tokens;
    } else {
      ev.message = std::string(status.message());
    }
    obs->OnRequestDone(ev);
  }
  RoutingTrace t;
  t.request_id = resp_.request_id;
  t.target = req_.target;
  t.code = status.code();
  t.message = std::string(status.message());
  t.model = resp_.model;
  t.instance = resp_.instance;
  t.attempts = resp_.attempts;
  t.fallbacks = resp_.fallbacks;
  t.started = started_;
  t.duration = now - started_;
  t.stream = req_.stream;
  core_->RecordTrace(std::move(t));
  ResponseSink* sink = sink_;
  sink_ = nullptr;
  core_->active.erase(this);
  sink->OnComplete(std::move(status), std::move(resp_));
}

// ---------------------------------------------------------------------------

class RouterImpl : public Router {
 public:
  explicit RouterImpl(std::shared_ptr<RouterCore> core)
      : core_(std::move(core)) {}
  ~RouterImpl() override {
    std::shared_ptr<RouterCore> core = core_;
    if (core->loop.InLoopThread()) {
      core->Shutdown();
    } else {
      core->loop.Post([core] { core->Shutdown(); });
    }
  }

  std::shared_ptr<RequestHandle> Start(RouteRequest req,
                                       ResponseSink* sink) override {
    auto call = std::make_shared<RouteCall>(core_, std::move(req), sink);
    core_->loop.Post([call] { call->Begin(); });
    return call;
  }

  absl::StatusOr<std::vector<PoolStatusView>> GetPoolStatus(
      absl::string_view pool) const override {
    std::vector<PoolStatusView> out;
    absl::Time now = core_->loop.Now();
    if (!pool.empty()) {
      auto it = core_->pools.find(std::string(pool));
      if (it == core_->pools.end()) {
        return absl::NotFoundError(absl::StrCat("unknown pool '", pool, "'"));
      }
      out.push_back(it->second->pool->GetStatus(now));
      return out;
    }
    for (const auto& [name, p] : core_->pools) {
      out.push_back(p->pool->GetStatus(now));
    }
    return out;
  }

  absl::StatusOr<std::vector<TaskGroupStatusView>> GetTaskGroupStatus(
      absl::string_view group) const override {
    std::vector<TaskGroupStatusView> out;
    absl::Time now = core_->loop.Now();
    if (!group.empty()) {
      auto it = core_->groups.find(std::string(group));
      if (it == core_->groups.end()) {
        return absl::NotFoundError(
            absl::StrCat("unknown task group '", group, "'"));
      }
      out.push_back(it->second->GetStatus(now));
      return out;
    }
    for (const auto& [name, g] : core_->groups) {
      out.push_back(g->GetStatus(now));
    }
    return out;
  }

  std::vector<TargetView> ListTargets() const override {
    std::vector<TargetView> out;
    for (const auto& [name, p] : core_->pools) {
      out.push_back({name, TargetView::Kind::kPool, p->config.description});
    }
    for (const auto& [name, g] : core_->groups) {
      out.push_back(
          {name, TargetView::Kind::kTaskGroup, g->config().description});
      for (const auto& e : g->echelons()) {
        out.push_back({e->full_name(), TargetView::Kind::kEchelon, ""});
      }
    }
    for (const auto& [name, m] : core_->models) {
      out.push_back({name, TargetView::Kind::kModel, m->config.upstream_model});
    }
    return out;
  }

  std::vector<RoutingTrace> RecentTraces() const override {
    absl::MutexLock l(&core_->traces_mu);
    return std::vector<RoutingTrace>(core_->traces.begin(),
                                     core_->traces.end());
  }

  void ApplySharedEvent(const SharedEvent& e) override {
    RouterCore& c = *core_;
    absl::Time now = c.loop.Now();
    switch (e.kind) {
      case SharedEventKind::kCooldown:
      case SharedEventKind::kDisable: {
        auto it = c.instances.find(e.name);
        if (it == c.instances.end() || e.until <= now) return;
        if (e.kind == SharedEventKind::kCooldown) {
          it->second->CoolDown(e.until);
        } else {
          it->second->Disable(e.until);
        }
        return;
      }
      case SharedEventKind::kEject:
      case SharedEventKind::kBreakerOpen:
      case SharedEventKind::kBreakerClosed:
        if (e.breaker_kind == "echelon") {
          auto g = c.groups.find(e.scope);
          if (g == c.groups.end()) return;
          int idx = g->second->IndexOf(e.name);
          if (idx < 0) return;
          g->second->echelons()[static_cast<size_t>(idx)]->ApplyShared(e, now);
          return;
        }
        for (Pool* p : c.AllPools()) {
          if (p->name() == e.scope) p->ApplyShared(e, now);
        }
        return;
    }
  }

  const RouterCore& core() const { return *core_; }

 private:
  std::shared_ptr<RouterCore> core_;
};

Pool::Options PoolOptions(RouterCore* core, std::string name,
                          std::string description, std::string strategy,
                          const HealthConfig& health,
                          const CircuitBreakerConfig& breaker) {
  Pool::Options o;
  o.name = std::move(name);
  o.description = std::move(description);
  o.strategy = std::move(strategy);
  o.health = health;
  o.instance_breaker = breaker;
  o.on_breaker_transition = [core](const std::string& pool,
                                   const std::string& instance,
                                   BreakerPhase from, BreakerPhase to) {
    if (RouterObserver* obs = core->observer()) {
      obs->OnBreakerTransition({"instance", pool, instance, from, to});
    }
  };
  if (core->shared() != nullptr) {
    o.on_shared_event = [core](const SharedEvent& e) { core->Publish(e); };
  }
  return o;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Router>> Router::Create(
    const GatewayConfig& config, EventLoop& loop,
    std::map<std::string, std::shared_ptr<Provider>> providers,
    const Router* previous) {
  return Create(config, loop, std::move(providers), previous, RouterOptions());
}

absl::StatusOr<std::unique_ptr<Router>> Router::Create(
    const GatewayConfig& config, EventLoop& loop,
    std::map<std::string, std::shared_ptr<Provider>> providers,
    const Router* previous, const RouterOptions& options) {
  auto core = std::make_shared<RouterCore>(loop, options);
  RouterCore* c = core.get();
  c->providers = std::move(providers);
  const RouterCore* old = nullptr;
  if (auto* p = dynamic_cast<const RouterImpl*>(previous)) old = &p->core();

  std::map<std::string, const ProviderConfig*> provider_configs;
  for (const ProviderConfig& p : config.providers) {
    provider_configs[p.name] = &p;
  }
  // Catalogue.
  for (const ModelConfig& m : config.models) {
    auto pc = provider_configs.find(m.provider);
    if (pc == provider_configs.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", m.name, "' names unknown provider '", m.provider, "'"));
    }
    auto adapter = c->providers.find(m.provider);
    if (adapter == c->providers.end() || adapter->second == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("no adapter for provider '", m.provider, "'"));
    }
    if (c->models.count(m.name) > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("duplicate model '", m.name, "'"));
    }
    auto entry = std::make_unique<ModelEntry>();
    entry->config = m;
    entry->provider = adapter->second;
    entry->timeouts = pc->second->timeouts;
    entry->budget = std::make_unique<RetryBudget>(RetryConfig());
    std::vector<InstanceConfig> instances = m.instances;
    if (instances.empty()) {
      InstanceConfig d;
      d.id = "default";
      instances.push_back(d);
    }
    for (InstanceConfig ic : instances) {
      if (c->shared() != nullptr &&
          (ic.requests_per_minute > 0 || ic.tokens_per_minute > 0)) {
        SharedLimit& l = c->instance_limits[absl::StrCat(m.name, "/", ic.id)];
        l.key = absl::StrCat("instance/", m.name, "/", ic.id);
        l.limits.requests_per_minute = ic.requests_per_minute;
        l.limits.tokens_per_minute = ic.tokens_per_minute;
      }
      if (c->shared() != nullptr) {
        // The instance's local limiter decides only when the store cannot:
        // then it enforces this replica's share.
        RateLimitConfig scaled;
        scaled.requests_per_minute = ic.requests_per_minute;
        scaled.tokens_per_minute = ic.tokens_per_minute;
        scaled = ScaleRateLimits(scaled, options.local_share);
        ic.requests_per_minute = scaled.requests_per_minute;
        ic.tokens_per_minute = scaled.tokens_per_minute;
      }
      auto ep = std::make_shared<Endpoint>();
      ep->base_url = ic.base_url.empty() ? pc->second->base_url : ic.base_url;
      ep->api_key = ic.api_key.empty() ? pc->second->api_key : ic.api_key;
      ep->upstream_model = m.upstream_model.empty() ? m.name : m.upstream_model;
      ep->headers = pc->second->headers;
      InstanceIdentity id{m.name, ic.id, ep->base_url, ep->api_key};
      std::string name = absl::StrCat(m.name, "/", ic.id);
      if (c->instances.count(name) > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("duplicate instance '", name, "'"));
      }
      std::shared_ptr<Instance> inst;
      if (old != nullptr) {
        auto it = old->instances.find(name);
        if (it != old->instances.end() && it->second->identity() == id) {
          inst = it->second;
          inst->Reconfigure(m.provider, ic, ep);
        }
      }
      if (inst == nullptr) {
        inst = std::make_shared<Instance>(id, m.provider, ic, ep);
      }
      c->instances[name] = inst;
      entry->instances.push_back(inst);
    }
    const Pool* prev_pool = nullptr;
    if (old != nullptr) {
      auto it = old->models.find(m.name);
      if (it != old->models.end()) prev_pool = it->second->pool.get();
    }
    auto pool =
        Pool::Create(PoolOptions(c, m.name, "", "round_robin", HealthConfig(),
                                 CircuitBreakerConfig()),
                     entry->instances, loop, c->rng, prev_pool);
    if (!pool.ok()) return pool.status();
    entry->pool = *std::move(pool);
    c->models[m.name] = std::move(entry);
  }
  // Task groups.
  for (const TaskGroupConfig& g : config.task_groups) {
    if (g.echelons.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("task group '", g.name, "' has no echelons"));
    }
    auto group = std::make_unique<TaskGroup>(g);
    std::vector<const EchelonConfig*> ordered;
    for (const EchelonConfig& e : g.echelons) ordered.push_back(&e);
    std::stable_sort(ordered.begin(), ordered.end(),
                     [](const EchelonConfig* a, const EchelonConfig* b) {
                       return a->priority < b->priority;
                     });
    const TaskGroup* old_group = nullptr;
    if (old != nullptr) {
      auto it = old->groups.find(g.name);
      if (it != old->groups.end()) old_group = it->second.get();
    }
    for (const EchelonConfig* e : ordered) {
      if (e->models.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("echelon '", g.name, ".", e->name, "' has no models"));
      }
      auto state = std::make_unique<EchelonState>(
          g.name, *e, loop, c->shared() != nullptr ? options.local_share : 1.0);
      if (c->shared() != nullptr) {
        state->set_shared_listener(
            [c](const SharedEvent& ev) { c->Publish(ev); });
      }
      std::string gname = g.name, ename = e->name;
      state->set_breaker_listener(
          [c, gname, ename](BreakerPhase from, BreakerPhase to) {
            if (RouterObserver* obs = c->observer()) {
              obs->OnBreakerTransition({"echelon", gname, ename, from, to});
            }
          });
      if (old_group != nullptr) {
        int idx = old_group->IndexOf(e->name);
        if (idx >= 0) state->CopyStateFrom(*old_group->echelons()[idx]);
      }
      for (const std::string& model : e->models) {
        auto me = c->models.find(model);
        if (me == c->models.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat("echelon '", g.name, ".", e->name,
                           "' names unknown model '", model, "'"));
        }
        if (group->PoolFor(model) != nullptr) continue;
        std::string pool_name = absl::StrCat(g.name, "/", model);
        const Pool* prev_pool =
            old_group != nullptr ? old_group->PoolFor(model) : nullptr;
        auto pool =
            Pool::Create(PoolOptions(c, pool_name, "", "round_robin", g.health,
                                     g.instance_breaker),
                         me->second->instances, loop, c->rng, prev_pool);
        if (!pool.ok()) return pool.status();
        group->pools()[model] = *std::move(pool);
      }
      group->echelons().push_back(std::move(state));
    }
    if (g.fallback.when_all_open == AllOpenPolicy::kLastResort &&
        group->IndexOf(g.fallback.last_resort_echelon) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task group '", g.name, "': unknown last_resort_echelon '",
          g.fallback.last_resort_echelon, "'"));
    }
    c->groups[g.name] = std::move(group);
  }
  for (const TaskGroupConfig& g : config.task_groups) {
    for (const std::string& f : g.fallback.fallback_groups) {
      if (c->groups.count(f) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "task group '", g.name, "' falls back to unknown group '", f, "'"));
      }
    }
  }
  // Pools.
  for (const PoolConfig& p : config.pools) {
    auto entry = std::make_unique<PoolEntry>();
    entry->config = p;
    entry->budget = std::make_unique<RetryBudget>(p.retry);
    std::vector<std::shared_ptr<Instance>> members;
    std::set<std::string> seen_models;
    auto add_echelon = [&](const EchelonConfig& e) {
      for (const std::string& model : e.models) {
        if (!seen_models.insert(model).second) continue;
        entry->echelon_of_model[model] = &e;
        for (auto& i : c->models.at(model)->instances) members.push_back(i);
      }
    };
    for (const std::string& ref : p.task_groups) {
      std::pair<std::string, std::string> parts =
          absl::StrSplit(ref, absl::MaxSplits('.', 1));
      auto g = c->groups.find(parts.first);
      if (g == c->groups.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pool '", p.name, "' references unknown task group '", ref, "'"));
      }
      bool found = false;
      for (const auto& e : g->second->echelons()) {
        if (!parts.second.empty() && e->name() != parts.second) continue;
        found = true;
        add_echelon(e->config());
      }
      if (!found) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pool '", p.name, "' references unknown echelon '", ref, "'"));
      }
    }
    if (members.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pool '", p.name, "' has no instances"));
    }
    const Pool* prev_pool = nullptr;
    if (old != nullptr) {
      auto it = old->pools.find(p.name);
      if (it != old->pools.end()) prev_pool = it->second->pool.get();
    }
    auto pool = Pool::Create(PoolOptions(c, p.name, p.description, p.strategy,
                                         p.health, p.instance_breaker),
                             members, loop, c->rng, prev_pool);
    if (!pool.ok()) return pool.status();
    entry->pool = *std::move(pool);
    c->pools[p.name] = std::move(entry);
  }
  for (const PoolConfig& p : config.pools) {
    for (const std::string& f : p.fallback_pools) {
      if (c->pools.count(f) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pool '", p.name, "' falls back to unknown pool '", f, "'"));
      }
    }
  }
  for (const TaskGroupConfig& g : config.task_groups) {
    for (const std::string& f : g.fallback.fallback_pools) {
      if (c->pools.count(f) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "task group '", g.name, "' falls back to unknown pool '", f, "'"));
      }
    }
  }
  // Active health checks start on the loop thread.
  std::weak_ptr<RouterCore> weak = core;
  loop.Post([weak] {
    auto core = weak.lock();
    if (core == nullptr || core->shut_down) return;
    for (Pool* p : core->AllPools()) p->StartProbes(&core->providers);
  });
  return std::unique_ptr<Router>(new RouterImpl(std::move(core)));
}

}  // namespace echelon
