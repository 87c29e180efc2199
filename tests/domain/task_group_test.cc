#include "domain/task_group.h"

#include <vector>

#include "gtest/gtest.h"
#include "tests/fakes/fake_event_loop.h"

namespace echelon {
namespace {

EchelonConfig Config() {
  EchelonConfig c;
  c.name = "primary";
  c.priority = 3;
  c.models = {"m1", "m2"};
  c.concurrency.max_concurrency = 2;
  c.rate_limit.requests_per_minute = 10;
  c.rate_limit.tokens_per_minute = 1000;
  c.breaker.failure_threshold = 1;
  c.breaker.recovery_time = absl::Seconds(5);
  return c;
}

TEST(TaskGroupTest, EchelonStatusShowsLimitsUsageAndBreaker) {
  FakeEventLoop loop;
  EchelonState e("g", Config(), loop);
  EXPECT_EQ(e.full_name(), "g.primary");
  std::vector<std::pair<BreakerPhase, BreakerPhase>> seen;
  e.set_breaker_listener([&](BreakerPhase f, BreakerPhase t) {
    seen.push_back({f, t});
  });
  absl::Time now = loop.Now();
  ASSERT_TRUE(e.concurrency().TryAcquire());
  ASSERT_TRUE(e.TryReserve(now, 300, nullptr));
  e.CountEntered();
  ASSERT_TRUE(e.BreakerAllow(now));
  e.BreakerFailure(now);
  e.CountFinished(false, absl::ZeroDuration(), absl::ZeroDuration(), 0, 0);
  EchelonStatusView v = e.GetStatus(now);
  EXPECT_EQ(v.name, "primary");
  EXPECT_EQ(v.priority, 3);
  EXPECT_EQ(v.models, (std::vector<std::string>{"m1", "m2"}));
  EXPECT_EQ(v.max_concurrency, 2);
  EXPECT_EQ(v.in_flight, 1);
  EXPECT_EQ(v.requests_per_minute, 10);
  EXPECT_EQ(v.requests_used, 1);
  EXPECT_EQ(v.tokens_per_minute, 1000);
  EXPECT_EQ(v.tokens_used, 300);
  EXPECT_EQ(v.breaker, BreakerPhase::kOpen);
  EXPECT_EQ(v.breaker_half_open_at, now + absl::Seconds(5));
  EXPECT_EQ(v.breaker_transitions, 1);
  EXPECT_EQ(v.requests, 1);
  EXPECT_EQ(v.failures, 1);
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_FALSE(e.BreakerWouldAllow(now));
  EXPECT_EQ(e.GetStatus(now + absl::Seconds(5)).breaker,
            BreakerPhase::kHalfOpen);
}

TEST(TaskGroupTest, CopyStateFromCarriesBreakerAndCounters) {
  FakeEventLoop loop;
  EchelonState old("g", Config(), loop);
  old.CountEntered();
  ASSERT_TRUE(old.BreakerAllow(loop.Now()));
  old.BreakerFailure(loop.Now());
  EchelonState next("g", Config(), loop);
  next.CopyStateFrom(old);
  EXPECT_EQ(next.GetStatus(loop.Now()).breaker, BreakerPhase::kOpen);
  EXPECT_EQ(next.GetStatus(loop.Now()).requests, 1);
  EXPECT_EQ(next.GetStatus(loop.Now()).in_flight, 0);
}

TEST(TaskGroupTest, IndexOfAndCounters) {
  TaskGroupConfig c;
  c.name = "g";
  c.description = "d";
  TaskGroup g(c);
  FakeEventLoop loop;
  g.echelons().push_back(std::make_unique<EchelonState>("g", Config(), loop));
  EXPECT_EQ(g.IndexOf("primary"), 0);
  EXPECT_EQ(g.IndexOf("nope"), -1);
  EXPECT_EQ(g.PoolFor("m1"), nullptr);
  g.CountRequest();
  g.CountFallback({"g.primary", "g.backup", "echelon_down"});
  g.CountAttemptFailure(ErrorClass::kServerError);
  g.CountRetry();
  EXPECT_EQ(g.GetStatus(loop.Now()).in_flight, 1);
  g.CountFinished(true, absl::Milliseconds(70), absl::Milliseconds(20), 3, 4);
  TaskGroupStatusView v = g.GetStatus(loop.Now());
  EXPECT_EQ(v.name, "g");
  EXPECT_EQ(v.description, "d");
  EXPECT_EQ(v.requests, 1);
  EXPECT_EQ(v.successes, 1);
  EXPECT_EQ(v.fallbacks, 1);
  EXPECT_EQ(v.in_flight, 0);
  EXPECT_EQ(v.fallbacks_by_reason.at("echelon_down"), 1);
  ASSERT_EQ(v.recent_fallbacks.size(), 1u);
  EXPECT_EQ(v.recent_fallbacks[0].to, "g.backup");
  EXPECT_EQ(v.traffic.failures_by_class.at("server_error"), 1);
  EXPECT_EQ(v.traffic.retries, 1);
  EXPECT_EQ(v.traffic.tokens_in, 3);
  EXPECT_EQ(v.traffic.tokens_out, 4);
  EXPECT_EQ(v.traffic.ewma_latency, absl::Milliseconds(70));
  EXPECT_EQ(v.traffic.latency_histogram[1], 1);  // 50 < 70 <= 100 ms
  EXPECT_EQ(v.traffic.ttft_histogram[0], 1);
  ASSERT_EQ(v.echelons.size(), 1u);
}

}  // namespace
}  // namespace echelon
