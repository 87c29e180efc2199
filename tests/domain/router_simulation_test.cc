// A domain simulation: one task group with three echelons (gold, silver,
// bronze), one request per simulated second for two minutes, and faults
// scripted over time: a gold outage, a flapping silver instance, a short
// silver outage, and a 429 storm on gold. Asserts which echelon served each
// request and that the gold echelon's breaker opened, probed, reopened and
// closed as configured. Deterministic: fake loop, fake provider, seeded rng.
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "domain/router.h"
#include "gtest/gtest.h"
#include "tests/domain/router_test_util.h"
#include "tests/fakes/fake_event_loop.h"
#include "tests/fakes/fake_provider.h"

namespace echelon {
namespace {

using testing::MakeEchelon;
using testing::MakeModel;
using testing::MakeProvider;
using testing::MakeRoute;
using testing::RecordingSink;
using testing::Url;

struct Transition {
  double at;  // seconds since start
  std::string echelon;
  BreakerPhase from, to;
};

class Recorder : public RouterObserver {
 public:
  explicit Recorder(FakeEventLoop& loop, absl::Time t0)
      : loop_(loop), t0_(t0) {}
  void OnBreakerTransition(const BreakerEvent& e) override {
    if (e.kind != "echelon") return;
    transitions.push_back(
        {absl::ToDoubleSeconds(loop_.Now() - t0_), e.name, e.from, e.to});
  }
  std::vector<Transition> transitions;

 private:
  FakeEventLoop& loop_;
  absl::Time t0_;
};

class RouterSimulationTest : public ::testing::Test {
 protected:
  RouterSimulationTest() : provider_(std::make_shared<FakeProvider>(loop_)) {
    config_.providers = {MakeProvider("p1"), MakeProvider("p2")};
    config_.models = {MakeModel("gold", "p1", {"g1", "g2"}),
                      MakeModel("silver", "p2", {"s1", "s2"}),
                      MakeModel("bronze", "p1", {"b1"})};
    TaskGroupConfig g;
    g.name = "chat";
    EchelonConfig gold = MakeEchelon("gold", 0, {"gold"});
    gold.retry.max_retries = 1;
    gold.retry.max_retry_after = absl::Seconds(2);
    gold.breaker.failure_threshold = 3;
    gold.breaker.failure_rate_threshold = 0;
    gold.breaker.recovery_time = absl::Seconds(20);
    gold.breaker.recovery_multiplier = 1.5;
    EchelonConfig silver = MakeEchelon("silver", 1, {"silver"});
    silver.retry.max_retries = 1;
    silver.breaker.failure_threshold = 10;
    silver.breaker.failure_rate_threshold = 0;
    EchelonConfig bronze = MakeEchelon("bronze", 2, {"bronze"});
    bronze.retry.max_retries = 0;
    g.echelons = {gold, silver, bronze};
    g.health.passive.consecutive_failures = 2;
    g.health.passive.base_ejection_time = absl::Seconds(10);
    g.health.passive.max_ejection_time = absl::Seconds(60);
    g.health.passive.jitter = 0;
    g.health.passive.max_ejection_percent = 50;
    g.health.rate_limit_cooldown = absl::Seconds(3);
    config_.task_groups = {g};
  }

  // The scripted world: what each instance answers at time `t` seconds.
  std::optional<FakeProvider::Outcome> World(const std::string& url, double t) {
    using O = FakeProvider;
    bool gold = url == Url("gold", "g1") || url == Url("gold", "g2");
    bool silver = url == Url("silver", "s1") || url == Url("silver", "s2");
    if (gold && t >= 20 && t < 50) return O::Fail(ErrorClass::kServerError);
    if (gold && t >= 80 && t < 100) {
      return O::Fail(ErrorClass::kRateLimited, absl::Milliseconds(50),
                     absl::Seconds(5));
    }
    if (silver && t >= 55 && t < 60) {
      return O::Fail(ErrorClass::kServerError);
    }
    // s1 flaps during the gold outage: down two seconds, up two seconds.
    if (url == Url("silver", "s1") && t >= 20 && t < 50 &&
        static_cast<int>(t) % 4 < 2) {
      return O::Fail(ErrorClass::kConnectError, absl::Milliseconds(20));
    }
    return O::Ok(absl::Milliseconds(100));
  }

  FakeEventLoop loop_;
  std::shared_ptr<FakeProvider> provider_;
  GatewayConfig config_;
};

TEST_F(RouterSimulationTest, OutageFlappingAndRateLimitStorm) {
  const absl::Time t0 = loop_.Now();
  provider_->SetResponder([&](const FakeProvider::CallRecord& c) {
    return World(c.base_url(), absl::ToDoubleSeconds(loop_.Now() - t0));
  });
  Recorder rec(loop_, t0);
  RouterOptions o;
  o.observer = &rec;
  o.random_seed = 1;
  auto r = Router::Create(config_, loop_,
                          {{"p1", provider_}, {"p2", provider_}}, nullptr, o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::unique_ptr<Router> router = *std::move(r);

  const int kSeconds = 120;
  std::vector<std::unique_ptr<RecordingSink>> sinks;
  std::set<InstanceHealth> s1_states;
  std::set<InstanceHealth> gold_states_in_storm;
  for (int t = 0; t < kSeconds; ++t) {
    sinks.push_back(std::make_unique<RecordingSink>());
    router->Start(MakeRoute("chat"), sinks.back().get());
    loop_.AdvanceBy(absl::Seconds(1));
    auto st = router->GetTaskGroupStatus("chat");
    ASSERT_TRUE(st.ok());
    for (const InstanceStatusView& i : (*st)[0].echelons[1].instances) {
      if (i.id == "silver/s1" && t >= 20 && t < 50) s1_states.insert(i.health);
    }
    for (const InstanceStatusView& i : (*st)[0].echelons[0].instances) {
      if (t >= 80 && t < 100) gold_states_in_storm.insert(i.health);
    }
  }
  loop_.AdvanceBy(absl::Seconds(10));

  auto served = [&](int t) {
    return sinks[static_cast<size_t>(t)]->response.model;
  };
  auto tried_gold = [&](int t) {
    for (const AttemptRecord& a :
         sinks[static_cast<size_t>(t)]->response.attempts) {
      if (a.model == "gold") return true;
    }
    return false;
  };
  for (int t = 0; t < kSeconds; ++t) {
    ASSERT_TRUE(sinks[static_cast<size_t>(t)]->done) << t;
    EXPECT_TRUE(sinks[static_cast<size_t>(t)]->status.ok())
        << "t=" << t << " " << sinks[static_cast<size_t>(t)]->status;
  }

  // Healthy start: gold, alternating instances.
  for (int t = 0; t < 20; ++t) {
    EXPECT_EQ(sinks[static_cast<size_t>(t)]->response.instance,
              t % 2 == 0 ? "gold/g1" : "gold/g2")
        << t;
  }

  // Gold breaker: opens after three failed requests, probes after 20 s,
  // reopens for 30 s (x1.5) on a failed probe, closes on the next probe.
  using P = BreakerPhase;
  std::vector<Transition> gold;
  for (const Transition& x : rec.transitions) {
    if (x.echelon == "gold") gold.push_back(x);
  }
  ASSERT_EQ(gold.size(), 5u);
  EXPECT_EQ(gold[0].from, P::kClosed);
  EXPECT_EQ(gold[0].to, P::kOpen);
  EXPECT_GE(gold[0].at, 22);
  EXPECT_LT(gold[0].at, 23);
  EXPECT_EQ(gold[1].to, P::kHalfOpen);
  EXPECT_NEAR(gold[1].at, gold[0].at + 20, 1.0);
  EXPECT_EQ(gold[2].to, P::kOpen);  // the probe met the outage
  EXPECT_EQ(gold[3].to, P::kHalfOpen);
  EXPECT_NEAR(gold[3].at, gold[2].at + 30, 1.0);
  EXPECT_EQ(gold[4].to, P::kClosed);
  EXPECT_EQ(gold[4].at, gold[3].at + 0.1);  // the probe's own latency

  const int opened = static_cast<int>(gold[0].at);
  const int probe1 = static_cast<int>(gold[1].at);
  const int probe2 = static_cast<int>(gold[3].at);
  // Outage: the first three requests try gold, then silver serves.
  for (int t = 20; t <= opened; ++t) {
    EXPECT_TRUE(tried_gold(t)) << t;
    EXPECT_EQ(served(t), "silver") << t;
    EXPECT_EQ(sinks[static_cast<size_t>(t)]->response.fallbacks[0].reason,
              "echelon_down");
  }
  // While open, gold is not even tried.
  for (int t = opened + 1; t < probe2; ++t) {
    if (t == probe1) {
      EXPECT_TRUE(tried_gold(t)) << "half-open probe at " << t;
      continue;
    }
    EXPECT_FALSE(tried_gold(t)) << t;
  }
  // Silver's flapping instance was ejected and came back, but every
  // request of the outage was still served by silver.
  EXPECT_TRUE(s1_states.count(InstanceHealth::kUnhealthy));
  EXPECT_TRUE(s1_states.count(InstanceHealth::kRecovering) ||
              s1_states.count(InstanceHealth::kHealthy));
  for (int t = 20; t < 50; ++t) EXPECT_EQ(served(t), "silver") << t;
  // Gold's breaker still open and silver down: bronze serves.
  for (int t = 55; t < 60; ++t) EXPECT_EQ(served(t), "bronze") << t;
  // The closing probe and after: gold again.
  for (int t = probe2; t < 80; ++t) EXPECT_EQ(served(t), "gold") << t;
  // 429 storm: Retry-After 5 s is beyond max_retry_after 2 s, so requests
  // go below gold at once; rate limits are no health failures, so the gold
  // breaker stays closed and no gold instance is ejected.
  // Early in the storm silver is still out after its own outage (s1
  // ejected, s2's instance breaker open), so bronze serves; never gold.
  for (int t = 80; t < 100; ++t) EXPECT_NE(served(t), "gold") << t;
  for (int t = 90; t < 100; ++t) EXPECT_EQ(served(t), "silver") << t;
  EXPECT_EQ(gold_states_in_storm.count(InstanceHealth::kUnhealthy), 0u);
  // After the storm and its 3 s cooldown, gold serves again.
  for (int t = 103; t < kSeconds; ++t) EXPECT_EQ(served(t), "gold") << t;

  auto st = router->GetTaskGroupStatus("chat");
  EXPECT_EQ((*st)[0].echelons[0].breaker, P::kClosed);
  EXPECT_EQ((*st)[0].requests, kSeconds);
  EXPECT_EQ((*st)[0].successes, kSeconds);
}

}  // namespace
}  // namespace echelon
