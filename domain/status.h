// Read-only views of live state, for status RPCs and metrics. Plain values:
// copying one never exposes a secret (no keys, no URLs with credentials).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace echelon {

enum class InstanceHealth { kHealthy, kDegraded, kUnhealthy, kRecovering };
enum class BreakerPhase { kClosed, kOpen, kHalfOpen };

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
};

struct PoolStatusView {
  std::string name;
  std::string strategy;
  std::vector<InstanceStatusView> instances;
  int64_t requests = 0;
  int64_t successes = 0;
  int64_t failures = 0;
  int64_t in_flight = 0;
};

struct TargetView {
  enum class Kind { kPool, kTaskGroup, kEchelon, kModel };
  std::string name;
  Kind kind = Kind::kModel;
  std::string description;
};

}  // namespace echelon
