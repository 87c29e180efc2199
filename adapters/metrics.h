// Prometheus metrics: a RouterObserver that counts what the router does, a
// collector that reads live state (health, breakers, in-flight) at scrape
// time, and prometheus-cpp's pull exposer serving /metrics on its own
// threads and port.
//
// Label values are bounded by the config (targets, models, instances,
// echelons, error classes); no request ids or keys ever become labels.
// Counter references are cached per label set on first use, so the request
// path never calls Family::Add after warm-up (Warm() pre-creates the ones
// the config names).
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "domain/observer.h"
#include "domain/status.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace echelon {

class GatewayMetrics final : public RouterObserver {
 public:
  struct Options {
    // host:port for the exposer; port 0 picks a free port; empty = do not
    // serve (metrics are still collected, e.g. for tests).
    std::string listen_address = "0.0.0.0:9464";
    // Live pool state, read at scrape time from the exposer's thread. Must
    // be thread-safe. May be empty.
    std::function<std::vector<PoolStatusView>()> pool_status;
  };

  // Errors: UNAVAILABLE when the exposer cannot bind.
  static absl::StatusOr<std::unique_ptr<GatewayMetrics>> Create(
      const Options& options);
  ~GatewayMetrics() override;

  // The bound port, 0 when not serving.
  int port() const { return port_; }

  // RouterObserver: loop thread only.
  void OnAttempt(const AttemptEvent& e) override;
  void OnRequestDone(const RequestDoneEvent& e) override;
  void OnFallback(const FallbackEvent& e) override;
  void OnBreakerTransition(const BreakerEvent& e) override;

  // Config reloads; any thread.
  void OnConfigReload(bool ok, absl::Time when);

  // Shared state (config `cluster:`); loop thread only. The families are
  // exported only once a cluster store reports something.
  void OnClusterConnected(bool connected);
  // result: allowed, refused or local; reason: why local ("timeout",
  // "disconnected", "error"), else empty.
  void OnClusterDecision(absl::string_view result, absl::string_view reason);
  // direction: published or received; kind: cooldown, eject, breaker_open…
  void OnClusterEvent(absl::string_view direction, absl::string_view kind);

  // The text exposition, as a scrape would see it (for tests and debugging).
  std::string Scrape() const;

 private:
  explicit GatewayMetrics(const Options& options);

  using LabelRef = std::pair<absl::string_view, absl::string_view>;

  // The child of `family` with `labels`, from the cache; the key is built
  // in a scratch string and prometheus::Labels (a std::map) only on a miss.
  template <typename T>
  T& Get(prometheus::Family<T>& family,
         absl::flat_hash_map<std::string, T*>& cache,
         std::initializer_list<LabelRef> labels);

  Options options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> live_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Histogram>& ttft_;
  prometheus::Histogram& overhead_;
  prometheus::Family<prometheus::Counter>& attempts_;
  prometheus::Family<prometheus::Counter>& fallbacks_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& rate_limited_;
  prometheus::Family<prometheus::Counter>& tokens_;
  prometheus::Family<prometheus::Gauge>& breaker_state_;
  prometheus::Family<prometheus::Counter>& breaker_transitions_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Gauge& last_reload_ok_;
  prometheus::Family<prometheus::Gauge>& cluster_connected_;
  prometheus::Family<prometheus::Counter>& cluster_decisions_;
  prometheus::Family<prometheus::Counter>& cluster_events_;

  // Loop-thread caches of label set -> metric.
  absl::flat_hash_map<std::string, prometheus::Counter*> counter_cache_;
  absl::flat_hash_map<std::string, prometheus::Histogram*> histogram_cache_;
  absl::flat_hash_map<std::string, prometheus::Gauge*> gauge_cache_;
  std::string key_;  // scratch for Get()
};

}  // namespace echelon
