// Read-only views of live state, for status RPCs and metrics. Plain values:
// copying one never exposes a secret (no keys, no URLs with credentials).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace echelon {

enum class InstanceHealth { kHealthy, kDegraded, kUnhealthy, kRecovering };
enum class BreakerPhase { kClosed, kOpen, kHalfOpen };

// Traffic statistics of one scope (instance, pool, echelon, task group).
struct TrafficView {
  std::map<std::string, int64_t> failures_by_class;  // ErrorClassName
  int64_t retries = 0;
  int64_t fallbacks_out = 0;
  int64_t breaker_transitions = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  absl::Duration ewma_latency = absl::ZeroDuration();
  absl::Duration ewma_ttft = absl::ZeroDuration();
  // Histogram upper bounds in milliseconds; the counts have one more entry
  // (the unbounded last bucket).
  std::vector<int64_t> histogram_bounds_ms;
  std::vector<int64_t> latency_histogram;
  std::vector<int64_t> ttft_histogram;
};

struct InstanceStatusView {
  std::string id;  // "model/instance"
  std::string model;
  std::string provider;
  InstanceHealth health = InstanceHealth::kHealthy;
  BreakerPhase breaker = BreakerPhase::kClosed;
  absl::Time cooldown_until = absl::InfinitePast();
  int64_t in_flight = 0;
  absl::Duration ewma_latency = absl::ZeroDuration();
  absl::Duration ewma_ttft = absl::ZeroDuration();
  double success_rate = 1.0;
  int64_t requests = 0;
  int64_t successes = 0;
  int64_t failures = 0;
  int weight = 1;
  std::string last_error;  // error class and detail, no secrets
  absl::Time last_used = absl::InfinitePast();
  // The instance's own per-minute limits (0 = none) and what the current
  // window used of them.
  int64_t requests_per_minute = 0;
  int64_t requests_used = 0;
  int64_t tokens_per_minute = 0;
  int64_t tokens_used = 0;
  // The upstream's own figures from its rate-limit headers (-1 unknown),
  // and when they were seen.
  int64_t upstream_remaining_requests = -1;
  int64_t upstream_remaining_tokens = -1;
  absl::Time upstream_limits_at = absl::InfinitePast();
  TrafficView traffic;  // the instance's own, over every pool
};

struct PoolStatusView {
  std::string name;
  std::string strategy;
  std::vector<InstanceStatusView> instances;
  int64_t requests = 0;
  int64_t successes = 0;
  int64_t failures = 0;
  int64_t in_flight = 0;
  TrafficView traffic;
};

// One echelon of a task group: its breaker, limits and current usage.
struct EchelonStatusView {
  std::string name;
  int priority = 0;
  std::vector<std::string> models;
  BreakerPhase breaker = BreakerPhase::kClosed;
  // When an open breaker lets the first probe through; InfinitePast if not
  // open.
  absl::Time breaker_half_open_at = absl::InfinitePast();
  int max_concurrency = 0;  // 0 = unlimited
  int64_t in_flight = 0;
  int64_t queued = 0;
  int64_t requests_per_minute = 0;  // limit, 0 = none
  int64_t requests_used = 0;        // in the current minute / bucket
  int64_t tokens_per_minute = 0;    // limit, 0 = none
  int64_t tokens_used = 0;
  int64_t active_retries = 0;
  int64_t retry_budget = 0;  // concurrent retries allowed now
  int64_t requests = 0;      // requests that entered the echelon
  int64_t successes = 0;
  int64_t failures = 0;
  int64_t fallbacks_out = 0;
  int64_t rejected = 0;  // skipped for breaker, limits or deadline
  int64_t retries = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  int64_t breaker_transitions = 0;
  absl::Duration ewma_latency = absl::ZeroDuration();
  absl::Duration ewma_ttft = absl::ZeroDuration();
  std::vector<InstanceStatusView> instances;  // of the echelon's models
  TrafficView traffic;
};

// One fallback step of a routed request.
struct FallbackView {
  std::string from;  // "group.echelon", pool or model
  std::string to;
  std::string reason;  // strategy name, e.g. "echelon_down"
};

struct TaskGroupStatusView {
  std::string name;
  std::string description;
  std::vector<EchelonStatusView> echelons;  // in priority order
  int64_t requests = 0;
  int64_t successes = 0;
  int64_t failures = 0;
  int64_t fallbacks = 0;
  int64_t in_flight = 0;
  std::map<std::string, int64_t> fallbacks_by_reason;
  std::vector<FallbackView> recent_fallbacks;  // oldest first, bounded
  TrafficView traffic;
};

struct TargetView {
  enum class Kind { kPool, kTaskGroup, kEchelon, kModel };
  std::string name;
  Kind kind = Kind::kModel;
  std::string description;
};

}  // namespace echelon
