// Bridges the Redis shared-state adapter's observer hooks to the Prometheus
// metrics (echelon_cluster_connected, echelon_cluster_decisions_total{result,
// reason}, echelon_cluster_events_total{direction,kind}) and remembers whether
// the store is reachable, for health (connected() is thread-safe). The hooks
// run on the loop thread. `metrics` must outlive it.
#pragma once

#include <atomic>
#include <string>

#include "adapters/metrics.h"
#include "adapters/redis_shared_state.h"

namespace echelon {

class ClusterMetricsObserver : public SharedStateObserver {
 public:
  explicit ClusterMetricsObserver(GatewayMetrics* metrics) : metrics_(metrics) {
    metrics_->OnClusterConnected(false);
  }

  void OnConnected() override {
    connected_.store(true);
    metrics_->OnClusterConnected(true);
  }
  void OnDisconnected(const std::string&) override {
    connected_.store(false);
    metrics_->OnClusterConnected(false);
  }
  void OnDecision(SharedDecision::Kind kind,
                  absl::string_view reason) override {
    metrics_->OnClusterDecision(
        SharedDecisionKindName(kind),
        kind == SharedDecision::Kind::kLocal ? reason : absl::string_view());
  }
  void OnEvent(Direction direction, SharedEventKind kind) override {
    metrics_->OnClusterEvent(SharedEventDirectionName(direction),
                             SharedEventKindName(kind));
  }

  // Whether the store answered last time it was tried. Any thread.
  bool connected() const { return connected_.load(); }

 private:
  GatewayMetrics* const metrics_;
  std::atomic<bool> connected_{false};
};

}  // namespace echelon
