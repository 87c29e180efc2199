// The shared-state observer hooks as Prometheus metrics.
#include "adapters/cluster_metrics.h"

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

TEST(ClusterMetricsTest, CountsConnectionDecisionsAndEvents) {
  GatewayMetrics::Options o;
  o.listen_address = "";  // collect only
  auto m = GatewayMetrics::Create(o);
  ASSERT_TRUE(m.ok()) << m.status();
  ClusterMetricsObserver observer(m->get());
  EXPECT_TRUE(absl::StrContains((*m)->Scrape(), "echelon_cluster_connected 0"));
  observer.OnConnected();
  observer.OnDecision(SharedDecision::Kind::kAllowed, "");
  observer.OnDecision(SharedDecision::Kind::kAllowed, "");
  observer.OnDecision(SharedDecision::Kind::kRefused, "");
  observer.OnDecision(SharedDecision::Kind::kLocal, "timeout");
  observer.OnEvent(SharedStateObserver::Direction::kPublished,
                   SharedEventKind::kCooldown);
  observer.OnEvent(SharedStateObserver::Direction::kReceived,
                   SharedEventKind::kBreakerOpen);
  observer.OnEvent(SharedStateObserver::Direction::kReceived,
                   SharedEventKind::kBreakerOpen);
  std::string text = (*m)->Scrape();
  for (const char* line :
       {"echelon_cluster_connected 1",
        "echelon_cluster_decisions_total{result=\"allowed\"} 2",
        "echelon_cluster_decisions_total{result=\"refused\"} 1",
        "echelon_cluster_decisions_total{reason=\"timeout\",result="
        "\"local\"} 1",
        "echelon_cluster_events_total{direction=\"published\",kind="
        "\"cooldown\"} 1",
        "echelon_cluster_events_total{direction=\"received\",kind="
        "\"breaker_open\"} 2"}) {
    EXPECT_TRUE(absl::StrContains(text, line)) << line << "\n" << text;
  }
  EXPECT_TRUE(observer.connected());
  observer.OnDisconnected("connection refused");
  EXPECT_FALSE(observer.connected());
  EXPECT_TRUE(absl::StrContains((*m)->Scrape(), "echelon_cluster_connected 0"));
}

}  // namespace
}  // namespace echelon
