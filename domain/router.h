// The one entry point of the domain: route a chat request, named by a target,
// to an upstream instance through pools, task groups and echelons, with
// retries, fallback, breakers and limits. Replaces the seed's pool wrapper,
// task-group wrapper and direct wrapper with one call.
//
// How a request is routed (implementation: router.cc):
//  - Targets resolve in this order: pool, task group, "group.echelon",
//    catalogue model. The deadline is the sooner of the caller's and the
//    target's request_timeout; it bounds every attempt, wait and fallback.
//  - Task group: echelons in priority order. An echelon is skipped (and the
//    next one tried) when its breaker is open, less than expected_latency
//    remains, or its RPM/TPM or concurrency limit is reached with
//    on_overflow=spill (reject: RESOURCE_EXHAUSTED with retry_after; the
//    overflow policy covers both kinds of limit). A bounded queue, if
//    configured, waits up to queue_timeout for a slot first.
//    Inside an echelon the current model's instances (the group's rotation
//    pool for that model, round robin) get 1 + retry.max_retries attempts,
//    spaced by full-jitter backoff, while the retry budget allows. Then the
//    fallback strategies are consulted in order; the first that has
//    somewhere to go wins (after fallback.retry_delay): model_rotate (next
//    model of the echelon), provider_failover (a model of another provider,
//    this echelon first), echelon_down, task_group_switch, pool_switch.
//    fallback.max_attempts caps attempts over all of it.
//  - Pool: the pool's strategy picks over every instance its task-group
//    references reach (generation defaults of the first echelon naming the
//    model; echelon limits and breakers do not apply), up to
//    max_instance_attempts with the pool's retry backoff and budget, then
//    fallback_pools in order.
//  - Bare model: its instances, round robin, default retry policy.
//  - A 429 cools the instance down for its Retry-After capped at
//    max_retry_after (rate_limit_cooldown when absent). A Retry-After within
//    max_retry_after is honoured: the request waits for it if no other
//    instance is eligible; a longer one sends the request elsewhere at once.
//  - Not retried: content_filtered (FAILED_PRECONDITION with the provider's
//    message), bad_request (INVALID_ARGUMENT, no health impact), cancelled.
//    context_length_exceeded is never retried on the same model: it moves
//    to the first echelon with a model of a larger context_window, else
//    INVALID_ARGUMENT. Models without supports_tools / supports_prefill are
//    skipped for requests that need them.
//  - Streams: until the first visible delta reached the sink, failures fail
//    over invisibly (earlier non-visible deltas are dropped with the
//    attempt); afterwards the stream is committed and any failure completes
//    with ABORTED ("partial"), a deadline with DEADLINE_EXCEEDED ("partial").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "domain/chat.h"
#include "domain/config.h"
#include "domain/errors.h"
#include "domain/event_loop.h"
#include "domain/observer.h"
#include "domain/provider.h"
#include "domain/shared_state.h"
#include "domain/status.h"

namespace echelon {

// One try at one instance, as shown to the caller in the routing trace.
struct AttemptRecord {
  std::string instance;  // "model/instance"
  std::string model;
  std::string echelon;  // empty for a bare model or pool target
  ErrorClass outcome = ErrorClass::kNone;
  std::string detail;  // failure detail, no secrets
  absl::Duration duration = absl::ZeroDuration();
  // What the router did next: "", "retry", "failover", "model_rotate",
  // "echelon_down", "task_group_switch", "pool_switch".
  std::string next_action;
};

struct RoutedResponse {
  ChatResponse response;  // stream: finish reason and usage only
  std::string model;      // catalogue name that served
  std::string instance;   // "model/instance" that served
  std::vector<AttemptRecord> attempts;
  std::string request_id;
  // For RESOURCE_EXHAUSTED / UNAVAILABLE: when trying again makes sense.
  absl::Duration retry_after = absl::ZeroDuration();
  // Time spent waiting on upstreams (for the gateway-overhead metric).
  absl::Duration upstream_time = absl::ZeroDuration();
  // Stream only: whether any visible delta reached the caller.
  bool committed = false;
  // Fallback steps taken, in order.
  std::vector<FallbackView> fallbacks;
};

// A finished request as kept in the router's bounded history.
struct RoutingTrace {
  std::string request_id;
  std::string target;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string message;
  std::string model;
  std::string instance;
  std::vector<AttemptRecord> attempts;
  std::vector<FallbackView> fallbacks;
  absl::Time started = absl::InfinitePast();
  absl::Duration duration = absl::ZeroDuration();
  bool stream = false;
};

struct RouterOptions {
  // Not owned; must outlive the router. Null: no callbacks.
  RouterObserver* observer = nullptr;
  // Seeds the random source of rotation, jitter and backoff, for
  // deterministic tests. Unset: absl::BitGen's own seeding.
  std::optional<uint64_t> random_seed;
  // Finished requests kept for RecentTraces().
  size_t trace_history = 100;
  // State shared with other replicas (config `cluster:`); not owned, must
  // outlive the router. Null: everything stays in process. With a store,
  // the in-process RPM/TPM limiters enforce `local_share` of each limit and
  // only decide when the store cannot (SharedDecision::kLocal).
  SharedState* shared = nullptr;
  double local_share = 1.0;
};

// Receives the result of one routed request. All calls come on the event
// loop thread.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // Stream only: each delta the caller should see, in order. The first
  // visible delta commits the stream to its instance.
  virtual void OnDelta(const StreamDelta& delta) = 0;
  // Exactly once, last. Non-OK for failures; a stream that was committed
  // and then failed gets a non-OK status whose message says it is partial.
  virtual void OnComplete(absl::Status status, RoutedResponse response) = 0;
};

struct RouteRequest {
  // Pool, task group, "group.echelon", or catalogue model name.
  std::string target;
  std::shared_ptr<ChatRequest> request;
  bool stream = false;
  // The caller's deadline; InfiniteFuture when none. The effective deadline
  // is the sooner of this and the target's request_timeout.
  absl::Time deadline = absl::InfiniteFuture();
};

// A request in flight. Cancel() is thread-safe: it posts to the loop, where
// the upstream transfer is aborted and the sink gets OnComplete(CANCELLED)
// unless it already completed.
class RequestHandle {
 public:
  virtual ~RequestHandle() = default;
  virtual void Cancel() = 0;
};

class Router {
 public:
  virtual ~Router() = default;

  // Builds a router for a validated config. `providers` maps
  // ProviderConfig::name to its adapter. `previous` (may be null) is the
  // router of the prior config snapshot: state of instances whose identity
  // (model, instance id, base URL, key) did not change carries over.
  // Errors: INVALID_ARGUMENT for a config that references unknown names or
  // an unknown rotation strategy.
  static absl::StatusOr<std::unique_ptr<Router>> Create(
      const GatewayConfig& config, EventLoop& loop,
      std::map<std::string, std::shared_ptr<Provider>> providers,
      const Router* previous = nullptr);
  // As above, with options (observer, random seed, history size).
  static absl::StatusOr<std::unique_ptr<Router>> Create(
      const GatewayConfig& config, EventLoop& loop,
      std::map<std::string, std::shared_ptr<Provider>> providers,
      const Router* previous, const RouterOptions& options);

  // Starts routing `req`; results go to `sink`, which must stay alive until
  // its OnComplete. Thread-safe. Never completes synchronously. Errors
  // delivered through the sink: NOT_FOUND (unknown target),
  // INVALID_ARGUMENT (empty messages, bad parameters), RESOURCE_EXHAUSTED
  // (limits; retry_after set), UNAVAILABLE (nothing could serve; retry_after
  // set when known), DEADLINE_EXCEEDED, CANCELLED, and for a committed
  // stream that broke, ABORTED ("partial").
  virtual std::shared_ptr<RequestHandle> Start(RouteRequest req,
                                               ResponseSink* sink) = 0;

  // Live state. Thread-safe. `pool` empty means every pool.
  // Errors: NOT_FOUND for an unknown pool name.
  virtual absl::StatusOr<std::vector<PoolStatusView>> GetPoolStatus(
      absl::string_view pool) const = 0;

  // Every name Start() accepts, with its kind.
  virtual std::vector<TargetView> ListTargets() const = 0;

  // Live state of task groups, per echelon (breaker, limits, usage).
  // Thread-safe. `group` empty means every group.
  // Errors: NOT_FOUND for an unknown group name.
  virtual absl::StatusOr<std::vector<TaskGroupStatusView>> GetTaskGroupStatus(
      absl::string_view group) const {
    (void)group;
    return absl::UnimplementedError("task group status");
  }

  // The most recent finished requests, oldest first. Thread-safe.
  virtual std::vector<RoutingTrace> RecentTraces() const { return {}; }

  // Applies another replica's observation (cooldown, disablement,
  // ejection, breaker state) without publishing it again. Loop thread only.
  // Events naming unknown instances, pools or echelons are ignored.
  virtual void ApplySharedEvent(const SharedEvent& event) { (void)event; }
};

}  // namespace echelon
