#include "adapters/metrics.h"

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

std::unique_ptr<GatewayMetrics> Make(
    std::function<std::vector<PoolStatusView>()> status = nullptr) {
  GatewayMetrics::Options o;
  o.listen_address = "";  // collect only
  o.pool_status = std::move(status);
  auto m = GatewayMetrics::Create(o);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

bool Has(const std::string& text, const std::string& needle) {
  return absl::StrContains(text, needle);
}

TEST(MetricsTest, CountsRequestsByTargetModelAndOutcome) {
  auto m = Make();
  RequestDoneEvent e;
  e.target = "fast-pool";
  e.model = "sim-fast";
  e.duration = absl::Milliseconds(20);
  e.upstream_time = absl::Milliseconds(19);
  m->OnRequestDone(e);
  m->OnRequestDone(e);
  e.code = absl::StatusCode::kResourceExhausted;
  e.model = "";
  m->OnRequestDone(e);
  std::string text = m->Scrape();
  EXPECT_TRUE(Has(text,
                  "echelon_requests_total{model=\"sim-fast\",outcome=\"ok\","
                  "target=\"fast-pool\"} 2"))
      << text;
  EXPECT_TRUE(Has(text, "outcome=\"resource_exhausted\""));
  EXPECT_TRUE(Has(text,
                  "echelon_rate_limited_requests_total{target=\"fast-pool\"} "
                  "1"));
  EXPECT_TRUE(Has(text, "echelon_gateway_overhead_seconds_count 3"));
  EXPECT_TRUE(Has(text,
                  "echelon_request_duration_seconds_count{target=\"fast-pool\""
                  "} 3"));
}

TEST(MetricsTest, CountsAttemptsRetriesTokensAndFallbacks) {
  auto m = Make();
  AttemptEvent a;
  a.instance = "sim-fast/a";
  a.model = "sim-fast";
  a.outcome = ErrorClass::kServerError;
  m->OnAttempt(a);
  a.instance = "sim-fast/b";
  a.outcome = ErrorClass::kNone;
  a.is_retry = true;
  a.ttft = absl::Milliseconds(30);
  a.tokens_in = 12;
  a.tokens_out = 8;
  m->OnAttempt(a);
  FallbackEvent f;
  f.target = "fast";
  f.from = "fast.primary";
  f.to = "fast.backup";
  f.reason = "echelon_down";
  m->OnFallback(f);
  std::string text = m->Scrape();
  EXPECT_TRUE(Has(text,
                  "echelon_upstream_attempts_total{instance=\"sim-fast/a\","
                  "outcome=\"server_error\"} 1"))
      << text;
  EXPECT_TRUE(Has(text, "echelon_retries_total{instance=\"sim-fast/b\"} 1"));
  EXPECT_TRUE(Has(text,
                  "echelon_tokens_total{direction=\"in\",model=\"sim-fast\"} "
                  "12"));
  EXPECT_TRUE(Has(text,
                  "echelon_tokens_total{direction=\"out\",model=\"sim-fast\"} "
                  "8"));
  EXPECT_TRUE(Has(text, "reason=\"echelon_down\""));
  EXPECT_TRUE(Has(
      text, "echelon_time_to_first_token_seconds_count{model=\"sim-fast\"} 1"));
}

TEST(MetricsTest, BreakerTransitionsSetStateGauge) {
  auto m = Make();
  BreakerEvent b;
  b.kind = "instance";
  b.scope = "fast-pool";
  b.name = "sim-fast/a";
  b.to = BreakerPhase::kOpen;
  m->OnBreakerTransition(b);
  std::string text = m->Scrape();
  EXPECT_TRUE(Has(text,
                  "echelon_circuit_breaker_state{kind=\"instance\",name=\"sim-"
                  "fast/a\",scope=\"fast-pool\"} 2"))
      << text;
  b.from = BreakerPhase::kOpen;
  b.to = BreakerPhase::kHalfOpen;
  m->OnBreakerTransition(b);
  EXPECT_TRUE(Has(m->Scrape(),
                  "echelon_circuit_breaker_state{kind=\"instance\",name=\"sim-"
                  "fast/a\",scope=\"fast-pool\"} 1"));
}

TEST(MetricsTest, LiveStateIsReadAtScrapeTime) {
  int64_t in_flight = 0;
  auto m = Make([&] {
    PoolStatusView p;
    p.name = "fast-pool";
    p.in_flight = in_flight;
    InstanceStatusView i;
    i.id = "sim-fast/a";
    i.health = InstanceHealth::kUnhealthy;
    i.in_flight = in_flight;
    p.instances.push_back(i);
    return std::vector<PoolStatusView>{p};
  });
  in_flight = 3;
  std::string text = m->Scrape();
  EXPECT_TRUE(Has(text,
                  "echelon_instance_health{instance=\"sim-fast/a\",pool=\"fast-"
                  "pool\"} 3"))
      << text;
  EXPECT_TRUE(Has(text, "echelon_in_flight_requests{pool=\"fast-pool\"} 3"));
  in_flight = 0;
  EXPECT_TRUE(
      Has(m->Scrape(), "echelon_in_flight_requests{pool=\"fast-pool\"} 0"));
}

TEST(MetricsTest, ReloadsAreCountedByResult) {
  auto m = Make();
  m->OnConfigReload(true, absl::FromUnixSeconds(1700000000));
  m->OnConfigReload(false, absl::FromUnixSeconds(1700000100));
  std::string text = m->Scrape();
  EXPECT_TRUE(Has(text, "echelon_config_reloads_total{result=\"ok\"} 1"));
  EXPECT_TRUE(Has(text, "echelon_config_reloads_total{result=\"error\"} 1"));
  EXPECT_TRUE(Has(text,
                  "echelon_config_last_reload_success_timestamp_seconds "
                  "1700000000"));
}

TEST(MetricsTest, ServesOnAnEphemeralPort) {
  GatewayMetrics::Options o;
  o.listen_address = "127.0.0.1:0";
  auto m = GatewayMetrics::Create(o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT((*m)->port(), 0);
}

TEST(MetricsTest, ClusterMetricsAppearOnlyWithAStore) {
  auto m = Make();
  EXPECT_FALSE(Has(m->Scrape(), "echelon_cluster_connected "));
  m->OnClusterConnected(true);
  m->OnClusterDecision("allowed", "");
  m->OnClusterDecision("allowed", "");
  m->OnClusterDecision("local", "timeout");
  m->OnClusterEvent("published", "cooldown");
  std::string text = m->Scrape();
  EXPECT_TRUE(Has(text, "echelon_cluster_connected 1"));
  EXPECT_TRUE(
      Has(text, "echelon_cluster_decisions_total{result=\"allowed\"} 2"));
  EXPECT_TRUE(Has(text,
                  "echelon_cluster_decisions_total{reason=\"timeout\","
                  "result=\"local\"} 1"));
  EXPECT_TRUE(Has(text,
                  "echelon_cluster_events_total{direction=\"published\","
                  "kind=\"cooldown\"} 1"));
  m->OnClusterConnected(false);
  EXPECT_TRUE(Has(m->Scrape(), "echelon_cluster_connected 0"));
}

}  // namespace
}  // namespace echelon
