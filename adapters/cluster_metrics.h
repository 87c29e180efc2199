// Bridges the Redis shared-state adapter's observer hooks to the Prometheus
// metrics: echelon_cluster_connected, echelon_cluster_decisions_total{result}
// and echelon_cluster_events_total{direction,kind}. Loop thread, like the
// hooks. `metrics` must outlive it.
#pragma once

#include <string>

#include "adapters/metrics.h"
#include "adapters/redis_shared_state.h"

namespace echelon {

class ClusterMetricsObserver : public SharedStateObserver {
 public:
  explicit ClusterMetricsObserver(GatewayMetrics* metrics)
      : metrics_(metrics) {}

  void OnConnected() override { metrics_->OnClusterConnected(true); }
  void OnDisconnected(const std::string&) override {
    metrics_->OnClusterConnected(false);
  }
  void OnDecision(SharedDecision::Kind kind, absl::string_view) override {
    metrics_->OnClusterDecision(SharedDecisionKindName(kind));
  }
  void OnEvent(Direction direction, SharedEventKind kind) override {
    metrics_->OnClusterEvent(SharedEventDirectionName(direction),
                             SharedEventKindName(kind));
  }

 private:
  GatewayMetrics* metrics_;
};

}  // namespace echelon
