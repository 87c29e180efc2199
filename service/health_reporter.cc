#include "service/health_reporter.h"

#include <vector>

#include "absl/time/clock.h"

namespace echelon {
namespace {

bool Servable(const InstanceStatusView& i, absl::Time now) {
  return i.health != InstanceHealth::kUnhealthy &&
         i.breaker != BreakerPhase::kOpen && i.cooldown_until <= now;
}

}  // namespace

std::map<std::string, bool> HealthReporter::ComputeServing(const Router& router,
                                                           absl::Time now) {
  std::map<std::string, bool> serving;
  // A model is servable when any of its instances is, as seen by any pool
  // or echelon that uses it.
  std::map<std::string, bool> models;
  auto note_model = [&](const InstanceStatusView& i) {
    bool ok = Servable(i, now);
    auto [it, inserted] = models.emplace(i.model, ok);
    if (!inserted) it->second = it->second || ok;
    return ok;
  };
  if (auto pools = router.GetPoolStatus(""); pools.ok()) {
    for (const PoolStatusView& p : *pools) {
      bool any = false;
      for (const InstanceStatusView& i : p.instances) any |= note_model(i);
      serving[p.name] = any;
    }
  }
  if (auto groups = router.GetTaskGroupStatus(""); groups.ok()) {
    for (const TaskGroupStatusView& g : *groups) {
      bool group_any = false;
      for (const EchelonStatusView& e : g.echelons) {
        bool any = false;
        for (const InstanceStatusView& i : e.instances) any |= note_model(i);
        any = any && e.breaker != BreakerPhase::kOpen;
        serving[g.name + "." + e.name] = any;
        group_any |= any;
      }
      serving[g.name] = group_any;
    }
  }
  for (const TargetView& t : router.ListTargets()) {
    if (serving.count(t.name) > 0) continue;
    auto it = models.find(t.name);
    // A target with no status view (e.g. a model no pool or group uses)
    // has no evidence against it.
    serving[t.name] = it == models.end() || it->second;
  }
  return serving;
}

HealthReporter::HealthReporter(grpc::HealthCheckServiceInterface* health,
                               RouterHolder& routers, absl::Duration interval,
                               std::function<bool()> cluster_connected)
    : health_(health),
      routers_(routers),
      interval_(interval),
      cluster_connected_(std::move(cluster_connected)) {
  Publish();
  thread_ = std::thread([this] { Run(); });
}

HealthReporter::~HealthReporter() {
  stop_.Notify();
  thread_.join();
}

void HealthReporter::SetShuttingDown() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  // Also flips every per-target entry to NOT_SERVING.
  health_->Shutdown();
}

void HealthReporter::Run() {
  while (!stop_.WaitForNotificationWithTimeout(interval_)) Publish();
}

void HealthReporter::Publish() {
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
  }
  std::shared_ptr<Router> router = routers_.Get();
  if (router == nullptr) return;
  health_->SetServingStatus("", true);
  if (cluster_connected_) {
    health_->SetServingStatus(kClusterService, cluster_connected_());
  }
  for (const auto& [name, ok] : ComputeServing(*router, absl::Now())) {
    health_->SetServingStatus(name, ok);
  }
}

}  // namespace echelon
