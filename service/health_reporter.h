// Publishes grpc.health.v1 status: the overall service ("") and one entry
// per target, NOT_SERVING when the target has no servable instance (every
// instance unhealthy, its breaker open, or cooling down). Recomputed every
// `interval` on its own thread from the router's thread-safe status views.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "domain/router.h"
#include "grpcpp/health_check_service_interface.h"
#include "service/router_holder.h"

namespace echelon {

class HealthReporter {
 public:
  // Name of the entry that reports the shared-state store (config
  // `cluster:`): SERVING while it is reachable.
  static constexpr char kClusterService[] = "echelon.cluster";

  // `health` and `routers` must outlive the reporter. `cluster_connected`
  // (thread-safe; null without a `cluster:` section) feeds the
  // kClusterService entry.
  HealthReporter(grpc::HealthCheckServiceInterface* health,
                 RouterHolder& routers, absl::Duration interval,
                 std::function<bool()> cluster_connected = nullptr);
  ~HealthReporter();  // stops the thread

  // From now on every entry says NOT_SERVING and stays so.
  void SetShuttingDown();

  // Target name -> whether it has a servable instance at `now`.
  static std::map<std::string, bool> ComputeServing(const Router& router,
                                                    absl::Time now);

 private:
  void Run();
  void Publish();

  grpc::HealthCheckServiceInterface* const health_;
  RouterHolder& routers_;
  const absl::Duration interval_;
  const std::function<bool()> cluster_connected_;
  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace echelon
