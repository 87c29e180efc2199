#include "adapters/metrics.h"

#include <cctype>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace echelon {
namespace {

using prometheus::Histogram;

// Seconds; from sub-millisecond gateway work to minute-long generations.
const Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  return *b;
}

const Histogram::BucketBoundaries& OverheadBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05};
  return *b;
}

double BreakerValue(BreakerPhase p) {
  switch (p) {
    case BreakerPhase::kClosed:
      return 0;
    case BreakerPhase::kHalfOpen:
      return 1;
    case BreakerPhase::kOpen:
      return 2;
  }
  return 0;
}

double HealthValue(InstanceHealth h) {
  switch (h) {
    case InstanceHealth::kHealthy:
      return 0;
    case InstanceHealth::kDegraded:
      return 1;
    case InstanceHealth::kRecovering:
      return 2;
    case InstanceHealth::kUnhealthy:
      return 3;
  }
  return 0;
}

// Lower-case status code names, computed once.
absl::string_view CodeName(absl::StatusCode code) {
  static const auto* names = [] {
    auto* v = new std::vector<std::string>();
    for (int c = 0; c <= 16; ++c) {
      std::string s =
          c == 0 ? std::string("ok")
                 : absl::StatusCodeToString(static_cast<absl::StatusCode>(c));
      for (char& ch : s) ch = static_cast<char>(std::tolower(ch));
      v->push_back(std::move(s));
    }
    return v;
  }();
  int c = static_cast<int>(code);
  if (c >= 0 && c < static_cast<int>(names->size())) return (*names)[c];
  return "";  // absl::StatusCodeToString's answer for unknown codes
}

prometheus::ClientMetric Gauge(std::vector<prometheus::ClientMetric::Label> l,
                               double v) {
  prometheus::ClientMetric m;
  m.label = std::move(l);
  m.gauge.value = v;
  return m;
}

// Live state read at scrape time: instance health, breaker, in-flight.
class LiveCollector final : public prometheus::Collectable {
 public:
  explicit LiveCollector(std::function<std::vector<PoolStatusView>()> source)
      : source_(std::move(source)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    if (!source_) return {};
    prometheus::MetricFamily health{
        "echelon_instance_health",
        "Instance state per pool: 0 healthy, 1 degraded, 2 recovering, 3 "
        "unhealthy.",
        prometheus::MetricType::Gauge,
        {}};
    prometheus::MetricFamily breaker{
        "echelon_instance_breaker_state",
        "Per-instance circuit breaker: 0 closed, 1 half-open, 2 open.",
        prometheus::MetricType::Gauge,
        {}};
    prometheus::MetricFamily in_flight{"echelon_instance_in_flight",
                                       "Upstream attempts in flight.",
                                       prometheus::MetricType::Gauge,
                                       {}};
    prometheus::MetricFamily pool_in_flight{"echelon_in_flight_requests",
                                            "Requests in flight per pool.",
                                            prometheus::MetricType::Gauge,
                                            {}};
    for (const PoolStatusView& p : source_()) {
      pool_in_flight.metric.push_back(
          Gauge({{"pool", p.name}}, static_cast<double>(p.in_flight)));
      for (const InstanceStatusView& i : p.instances) {
        std::vector<prometheus::ClientMetric::Label> labels = {
            {"instance", i.id}, {"pool", p.name}};
        health.metric.push_back(Gauge(labels, HealthValue(i.health)));
        breaker.metric.push_back(Gauge(labels, BreakerValue(i.breaker)));
        in_flight.metric.push_back(
            Gauge(labels, static_cast<double>(i.in_flight)));
      }
    }
    return {std::move(health), std::move(breaker), std::move(in_flight),
            std::move(pool_in_flight)};
  }

 private:
  std::function<std::vector<PoolStatusView>()> source_;
};

}  // namespace

GatewayMetrics::GatewayMetrics(const Options& options)
    : options_(options),
      registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("echelon_requests_total")
                    .Help("Requests by target, serving model and outcome "
                          "(gRPC status code name).")
                    .Register(*registry_)),
      request_duration_(prometheus::BuildHistogram()
                            .Name("echelon_request_duration_seconds")
                            .Help("End-to-end request time, all attempts.")
                            .Register(*registry_)),
      ttft_(prometheus::BuildHistogram()
                .Name("echelon_time_to_first_token_seconds")
                .Help("Time to the first token of successful attempts.")
                .Register(*registry_)),
      overhead_(prometheus::BuildHistogram()
                    .Name("echelon_gateway_overhead_seconds")
                    .Help("Request time not spent waiting on upstreams.")
                    .Register(*registry_)
                    .Add({}, OverheadBuckets())),
      attempts_(prometheus::BuildCounter()
                    .Name("echelon_upstream_attempts_total")
                    .Help("Upstream attempts by instance and error class.")
                    .Register(*registry_)),
      fallbacks_(prometheus::BuildCounter()
                     .Name("echelon_fallbacks_total")
                     .Help("Fallbacks by target, from, to and reason.")
                     .Register(*registry_)),
      retries_(prometheus::BuildCounter()
                   .Name("echelon_retries_total")
                   .Help("Attempts that were not a request's first.")
                   .Register(*registry_)),
      rate_limited_(prometheus::BuildCounter()
                        .Name("echelon_rate_limited_requests_total")
                        .Help("Requests refused with RESOURCE_EXHAUSTED.")
                        .Register(*registry_)),
      tokens_(prometheus::BuildCounter()
                  .Name("echelon_tokens_total")
                  .Help("Tokens by model and direction (in, out).")
                  .Register(*registry_)),
      breaker_state_(prometheus::BuildGauge()
                         .Name("echelon_circuit_breaker_state")
                         .Help("Breaker state after its last transition: 0 "
                               "closed, 1 half-open, 2 open.")
                         .Register(*registry_)),
      breaker_transitions_(
          prometheus::BuildCounter()
              .Name("echelon_circuit_breaker_transitions_total")
              .Help("Breaker transitions by scope and state.")
              .Register(*registry_)),
      reloads_(prometheus::BuildCounter()
                   .Name("echelon_config_reloads_total")
                   .Help("Config reloads by result (ok, error).")
                   .Register(*registry_)),
      last_reload_ok_(
          prometheus::BuildGauge()
              .Name("echelon_config_last_reload_success_timestamp_seconds")
              .Help("Unix time of the last config load that was applied.")
              .Register(*registry_)
              .Add({})),
      cluster_connected_(
          prometheus::BuildGauge()
              .Name("echelon_cluster_connected")
              .Help("1 while the shared-state store (Redis) is reachable, "
                    "0 while this replica decides on its local share.")
              .Register(*registry_)),
      cluster_decisions_(
          prometheus::BuildCounter()
              .Name("echelon_cluster_decisions_total")
              .Help("Shared limit decisions by result (allowed, refused, "
                    "local) and, for local ones, the reason.")
              .Register(*registry_)),
      cluster_events_(prometheus::BuildCounter()
                          .Name("echelon_cluster_events_total")
                          .Help("Shared observations (cooldowns, ejections, "
                                "breakers) published or received.")
                          .Register(*registry_)) {
  reloads_.Add({{"result", "ok"}});
  reloads_.Add({{"result", "error"}});
  live_ = std::make_shared<LiveCollector>(options_.pool_status);
}

GatewayMetrics::~GatewayMetrics() = default;

absl::StatusOr<std::unique_ptr<GatewayMetrics>> GatewayMetrics::Create(
    const Options& options) {
  std::unique_ptr<GatewayMetrics> m(new GatewayMetrics(options));
  if (!options.listen_address.empty()) {
    try {
      m->exposer_ = std::make_unique<prometheus::Exposer>(
          options.listen_address, /*num_threads=*/1);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ",
                                                 options.listen_address, ": ",
                                                 e.what()));
    }
    m->exposer_->RegisterCollectable(m->registry_);
    m->exposer_->RegisterCollectable(m->live_);
    std::vector<int> ports = m->exposer_->GetListeningPorts();
    if (!ports.empty()) m->port_ = ports.front();
  }
  return m;
}

template <typename T>
T& GatewayMetrics::Get(prometheus::Family<T>& family,
                       absl::flat_hash_map<std::string, T*>& cache,
                       std::initializer_list<LabelRef> labels) {
  key_.clear();
  absl::StrAppend(&key_, reinterpret_cast<uintptr_t>(&family));
  for (const auto& [k, v] : labels) absl::StrAppend(&key_, "\x1f", k, "=", v);
  auto it = cache.find(key_);
  if (it != cache.end()) return *it->second;
  prometheus::Labels map;
  for (const auto& [k, v] : labels) map.emplace(std::string(k), std::string(v));
  T* metric;
  if constexpr (std::is_same_v<T, Histogram>) {
    metric = &family.Add(map, LatencyBuckets());
  } else {
    metric = &family.Add(map);
  }
  cache.emplace(key_, metric);
  return *metric;
}

void GatewayMetrics::OnAttempt(const AttemptEvent& e) {
  absl::string_view outcome = ErrorClassName(e.outcome);
  Get(attempts_, counter_cache_,
      {{"instance", e.instance}, {"outcome", outcome}})
      .Increment();
  if (e.is_retry) {
    Get(retries_, counter_cache_, {{"instance", e.instance}}).Increment();
  }
  if (e.outcome == ErrorClass::kNone && e.ttft > absl::ZeroDuration()) {
    Get(ttft_, histogram_cache_, {{"model", e.model}})
        .Observe(absl::ToDoubleSeconds(e.ttft));
  }
  if (e.tokens_in > 0) {
    Get(tokens_, counter_cache_, {{"model", e.model}, {"direction", "in"}})
        .Increment(static_cast<double>(e.tokens_in));
  }
  if (e.tokens_out > 0) {
    Get(tokens_, counter_cache_, {{"model", e.model}, {"direction", "out"}})
        .Increment(static_cast<double>(e.tokens_out));
  }
}

void GatewayMetrics::OnRequestDone(const RequestDoneEvent& e) {
  absl::string_view outcome = CodeName(e.code);
  Get(requests_, counter_cache_,
      {{"target", e.target}, {"model", e.model}, {"outcome", outcome}})
      .Increment();
  Get(request_duration_, histogram_cache_, {{"target", e.target}})
      .Observe(absl::ToDoubleSeconds(e.duration));
  absl::Duration overhead = e.duration - e.upstream_time;
  if (overhead < absl::ZeroDuration()) overhead = absl::ZeroDuration();
  overhead_.Observe(absl::ToDoubleSeconds(overhead));
  if (e.code == absl::StatusCode::kResourceExhausted) {
    Get(rate_limited_, counter_cache_, {{"target", e.target}}).Increment();
  }
}

void GatewayMetrics::OnFallback(const FallbackEvent& e) {
  Get(fallbacks_, counter_cache_,
      {{"target", e.target},
       {"from", e.from},
       {"to", e.to},
       {"reason", e.reason}})
      .Increment();
}

void GatewayMetrics::OnBreakerTransition(const BreakerEvent& e) {
  Get(breaker_state_, gauge_cache_,
      {{"kind", e.kind}, {"scope", e.scope}, {"name", e.name}})
      .Set(BreakerValue(e.to));
  absl::string_view to = e.to == BreakerPhase::kOpen       ? "open"
                         : e.to == BreakerPhase::kHalfOpen ? "half_open"
                                                           : "closed";
  // prometheus::Labels is a sorted map: keep the key in the same order.
  Get(breaker_transitions_, counter_cache_,
      {{"kind", e.kind}, {"name", e.name}, {"scope", e.scope}, {"to", to}})
      .Increment();
}

void GatewayMetrics::OnConfigReload(bool ok, absl::Time when) {
  // Both label sets were created in the constructor: Add() only finds them.
  reloads_.Add({{"result", ok ? "ok" : "error"}}).Increment();
  if (ok) last_reload_ok_.Set(absl::ToDoubleSeconds(when - absl::UnixEpoch()));
}

void GatewayMetrics::OnClusterConnected(bool connected) {
  Get(cluster_connected_, gauge_cache_, {}).Set(connected ? 1 : 0);
}

void GatewayMetrics::OnClusterDecision(absl::string_view result,
                                       absl::string_view reason) {
  if (reason.empty()) {
    Get(cluster_decisions_, counter_cache_, {{"result", result}}).Increment();
  } else {
    Get(cluster_decisions_, counter_cache_,
        {{"reason", reason}, {"result", result}})
        .Increment();
  }
}

void GatewayMetrics::OnClusterEvent(absl::string_view direction,
                                    absl::string_view kind) {
  Get(cluster_events_, counter_cache_,
      {{"direction", direction}, {"kind", kind}})
      .Increment();
}

std::string GatewayMetrics::Scrape() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto& f : live_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace echelon
