#include "domain/pool.h"

#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_event_loop.h"
#include "tests/fakes/fake_provider.h"

namespace echelon {
namespace {

class PoolTest : public ::testing::Test {
 protected:
  PoolTest() : rng_(std::seed_seq{11}) {
    health_.passive.consecutive_failures = 3;
    health_.passive.base_ejection_time = absl::Seconds(10);
    health_.passive.max_ejection_time = absl::Seconds(25);
    health_.passive.jitter = 0;
    health_.passive.max_ejection_percent = 100;
    breaker_.enabled = false;
  }

  void Build(int n, std::string strategy = "round_robin") {
    instances_.clear();
    for (int i = 0; i < n; ++i) {
      std::string id(1, static_cast<char>('a' + i));
      InstanceConfig c;
      c.id = id;
      auto ep = std::make_shared<Endpoint>();
      ep->base_url = "http://" + id;
      instances_.push_back(std::make_shared<Instance>(
          InstanceIdentity{"m", id, ep->base_url, ""}, "p", c, ep));
    }
    Pool::Options o;
    o.name = "pool";
    o.strategy = strategy;
    o.health = health_;
    o.instance_breaker = breaker_;
    o.on_breaker_transition = [this](const std::string&, const std::string& i,
                                     BreakerPhase, BreakerPhase to) {
      transitions_.push_back(i + ":" + std::to_string(static_cast<int>(to)));
    };
    auto p = Pool::Create(o, instances_, loop_, rng_, nullptr);
    ASSERT_TRUE(p.ok()) << p.status();
    pool_ = *std::move(p);
  }

  // Picks `instance` (by steering with the accept filter) and reports `c`.
  void Report(const std::string& instance, ErrorClass c,
              absl::Duration retry_after = absl::ZeroDuration()) {
    Pool::Member* m = pool_->Pick(
        loop_.Now(), 0, [&](const Instance& i) { return i.name() == instance; },
        nullptr);
    ASSERT_NE(m, nullptr) << instance << " not eligible";
    Pool::Outcome o;
    o.error.error_class = c;
    o.error.retry_after = retry_after;
    o.latency = absl::Milliseconds(100);
    o.max_retry_after = absl::Seconds(60);
    pool_->Report(m, loop_.Now(), o);
  }

  InstanceHealth Health(const std::string& i) {
    return pool_->HealthOf(i, loop_.Now());
  }
  bool Eligible(const std::string& instance) {
    Pool::Member* m = pool_->Pick(
        loop_.Now(), 0, [&](const Instance& i) { return i.name() == instance; },
        nullptr);
    if (m == nullptr) return false;
    Pool::Outcome o;
    o.error.error_class = ErrorClass::kCancelled;
    pool_->Report(m, loop_.Now(), o);
    return true;
  }

  FakeEventLoop loop_;
  absl::BitGen rng_;
  HealthConfig health_;
  CircuitBreakerConfig breaker_;
  std::vector<std::shared_ptr<Instance>> instances_;
  std::unique_ptr<Pool> pool_;
  std::vector<std::string> transitions_;
};

TEST_F(PoolTest, EjectsAfterConsecutiveFailuresForBaseTime) {
  Build(2);
  Report("m/a", ErrorClass::kServerError);
  Report("m/a", ErrorClass::kServerError);
  EXPECT_EQ(Health("m/a"), InstanceHealth::kHealthy);
  Report("m/a", ErrorClass::kServerError);
  EXPECT_EQ(Health("m/a"), InstanceHealth::kUnhealthy);
  EXPECT_FALSE(Eligible("m/a"));
  loop_.AdvanceBy(absl::Seconds(10));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kRecovering);
  EXPECT_TRUE(Eligible("m/a"));
  Report("m/a", ErrorClass::kNone);
  EXPECT_EQ(Health("m/a"), InstanceHealth::kHealthy);
}

TEST_F(PoolTest, NonHealthFailuresDoNotCountTowardsEjection) {
  Build(2);
  for (int i = 0; i < 5; ++i) Report("m/a", ErrorClass::kBadRequest);
  for (int i = 0; i < 5; ++i) Report("m/a", ErrorClass::kContentFiltered);
  EXPECT_EQ(Health("m/a"), InstanceHealth::kHealthy);
}

TEST_F(PoolTest, RecoveringFailureEjectsLongerCappedAtMax) {
  Build(2);
  for (int i = 0; i < 3; ++i) Report("m/a", ErrorClass::kServerError);
  loop_.AdvanceBy(absl::Seconds(10));
  Report("m/a", ErrorClass::kServerError);  // one failure while recovering
  EXPECT_EQ(Health("m/a"), InstanceHealth::kUnhealthy);
  loop_.AdvanceBy(absl::Seconds(19));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kUnhealthy);  // 2 x 10 s
  loop_.AdvanceBy(absl::Seconds(1));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kRecovering);
  Report("m/a", ErrorClass::kServerError);
  loop_.AdvanceBy(absl::Seconds(24));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kUnhealthy);  // 3 x 10 capped 25
  loop_.AdvanceBy(absl::Seconds(1));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kRecovering);
}

TEST_F(PoolTest, EjectionTimeIsJittered) {
  health_.passive.jitter = 0.5;
  std::set<int64_t> seen;
  for (int run = 0; run < 8; ++run) {
    Build(2);
    for (int i = 0; i < 3; ++i) Report("m/a", ErrorClass::kServerError);
    absl::Time start = loop_.Now();
    while (Health("m/a") == InstanceHealth::kUnhealthy) {
      loop_.AdvanceBy(absl::Milliseconds(500));
    }
    absl::Duration d = loop_.Now() - start;
    EXPECT_GE(d, absl::Seconds(5));
    EXPECT_LE(d, absl::Seconds(15) + absl::Milliseconds(500));
    seen.insert(absl::ToInt64Milliseconds(d));
  }
  EXPECT_GT(seen.size(), 1u);
}

TEST_F(PoolTest, NeverEjectsMoreThanMaxEjectionPercent) {
  health_.passive.max_ejection_percent = 50;
  Build(4);
  for (const char* i : {"m/a", "m/b", "m/c"}) {
    for (int k = 0; k < 3; ++k) Report(i, ErrorClass::kServerError);
  }
  EXPECT_EQ(Health("m/a"), InstanceHealth::kUnhealthy);
  EXPECT_EQ(Health("m/b"), InstanceHealth::kUnhealthy);
  // A third ejection would be 75% of the pool: degraded instead.
  EXPECT_EQ(Health("m/c"), InstanceHealth::kDegraded);
  EXPECT_TRUE(Eligible("m/c"));
}

TEST_F(PoolTest, PassiveDisabledNeverEjects) {
  health_.passive.enabled = false;
  Build(2);
  for (int k = 0; k < 10; ++k) Report("m/a", ErrorClass::kServerError);
  EXPECT_NE(Health("m/a"), InstanceHealth::kUnhealthy);
}

TEST_F(PoolTest, LowSuccessRateDegradesAndRecoveryRestores) {
  health_.passive.consecutive_failures = 0;  // no ejection
  health_.passive.degraded_success_rate = 0.8;
  breaker_.window = absl::Seconds(60);
  Build(2);
  for (int k = 0; k < 7; ++k) Report("m/a", ErrorClass::kNone);
  for (int k = 0; k < 3; ++k) Report("m/a", ErrorClass::kServerError);
  EXPECT_EQ(Health("m/a"), InstanceHealth::kDegraded);  // 70% < 80%
  // DEGRADED instances are only picked when nothing healthy is left.
  for (int k = 0; k < 5; ++k) {
    Pool::Member* m = pool_->Pick(loop_.Now(), 0, nullptr, nullptr);
    EXPECT_EQ(m->instance->name(), "m/b");
    Pool::Outcome o;
    pool_->Report(m, loop_.Now(), o);
  }
  for (int k = 0; k < 5; ++k) Report("m/a", ErrorClass::kNone);
  EXPECT_EQ(Health("m/a"), InstanceHealth::kHealthy);  // 12/15 = 80%
}

TEST_F(PoolTest, DegradedInstanceRecoversWhenFailuresLeaveTheWindow) {
  health_.passive.max_ejection_percent = 0;  // refuse every ejection
  breaker_.window = absl::Seconds(60);
  Build(2);
  for (int k = 0; k < 3; ++k) Report("m/a", ErrorClass::kServerError);
  EXPECT_EQ(Health("m/a"), InstanceHealth::kDegraded);
  loop_.AdvanceBy(absl::Seconds(50));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kDegraded);
  // The window slides in 6 s buckets; a minute later it is empty.
  loop_.AdvanceBy(absl::Seconds(16));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kHealthy);  // without traffic
}

TEST_F(PoolTest, RateLimitCoolsDownForRetryAfterWithoutHealthImpact) {
  health_.rate_limit_cooldown = absl::Seconds(5);
  Build(2);
  Report("m/a", ErrorClass::kRateLimited, absl::Seconds(2));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kHealthy);
  EXPECT_FALSE(Eligible("m/a"));
  loop_.AdvanceBy(absl::Seconds(2));
  EXPECT_TRUE(Eligible("m/a"));
  // No Retry-After: the configured cooldown.
  Report("m/a", ErrorClass::kRateLimited);
  loop_.AdvanceBy(absl::Seconds(4));
  EXPECT_FALSE(Eligible("m/a"));
  loop_.AdvanceBy(absl::Seconds(1));
  EXPECT_TRUE(Eligible("m/a"));
  // A Retry-After beyond max_retry_after (60 s here) is capped to it.
  Report("m/a", ErrorClass::kRateLimited, absl::Hours(1));
  loop_.AdvanceBy(absl::Seconds(59));
  EXPECT_FALSE(Eligible("m/a"));
  loop_.AdvanceBy(absl::Seconds(1));
  EXPECT_TRUE(Eligible("m/a"));
  for (int k = 0; k < 10; ++k) {
    Report("m/a", ErrorClass::kRateLimited, absl::Milliseconds(1));
    loop_.AdvanceBy(absl::Milliseconds(1));
  }
  EXPECT_EQ(Health("m/a"), InstanceHealth::kHealthy);
}

TEST_F(PoolTest, AuthErrorDisablesForDisableTime) {
  health_.disable_time = absl::Minutes(10);
  Build(2);
  Report("m/a", ErrorClass::kAuthError);
  EXPECT_EQ(Health("m/a"), InstanceHealth::kUnhealthy);
  loop_.AdvanceBy(absl::Minutes(9));
  EXPECT_FALSE(Eligible("m/a"));
  loop_.AdvanceBy(absl::Minutes(1));
  EXPECT_TRUE(Eligible("m/a"));
  Report("m/b", ErrorClass::kQuotaExhausted);
  EXPECT_FALSE(Eligible("m/b"));
}

TEST_F(PoolTest, InstanceBreakerOpensAndReportsTransitions) {
  breaker_.enabled = true;
  breaker_.failure_threshold = 2;
  breaker_.failure_rate_threshold = 0;
  breaker_.recovery_time = absl::Seconds(30);
  health_.passive.enabled = false;
  Build(2);
  Report("m/a", ErrorClass::kServerError);
  Report("m/a", ErrorClass::kServerError);
  EXPECT_EQ(pool_->BreakerOf("m/a", loop_.Now()), BreakerPhase::kOpen);
  EXPECT_FALSE(Eligible("m/a"));
  absl::Time earliest;
  pool_->Pick(
      loop_.Now(), 0, [](const Instance& i) { return i.name() == "m/a"; },
      &earliest);
  EXPECT_EQ(earliest, loop_.Now() + absl::Seconds(30));
  loop_.AdvanceBy(absl::Seconds(30));
  Report("m/a", ErrorClass::kNone);  // the half-open probe
  EXPECT_EQ(pool_->BreakerOf("m/a", loop_.Now()), BreakerPhase::kClosed);
  EXPECT_EQ(transitions_,
            (std::vector<std::string>{"m/a:1", "m/a:2", "m/a:0"}));
}

TEST_F(PoolTest, ActiveProbesMarkUnhealthyAndHealthyByThresholds) {
  health_.active.enabled = true;
  health_.active.interval = absl::Seconds(10);
  health_.active.jitter = 0;
  health_.active.timeout = absl::Seconds(2);
  health_.active.unhealthy_threshold = 2;
  health_.active.healthy_threshold = 2;
  Build(1);
  FakeProvider provider(loop_);
  std::map<std::string, std::shared_ptr<Provider>> providers = {
      {"p", std::shared_ptr<Provider>(&provider, [](Provider*) {})}};
  pool_->StartProbes(&providers);
  // The next probe starts `interval` after the previous one answered.
  provider.SetDefault("http://a", FakeProvider::Fail(ErrorClass::kServerError,
                                                     absl::Milliseconds(10)));
  loop_.AdvanceBy(absl::Seconds(10) + absl::Milliseconds(10));
  ASSERT_EQ(provider.call_count(), 1u);
  const UpstreamCall& probe = provider.calls()[0]->call;
  EXPECT_FALSE(probe.stream);
  EXPECT_EQ(*probe.request->params.max_tokens, 1);
  EXPECT_EQ(probe.deadline, provider.calls()[0]->started + absl::Seconds(2));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kHealthy);
  loop_.AdvanceBy(absl::Seconds(10) + absl::Milliseconds(10));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kUnhealthy);
  EXPECT_FALSE(Eligible("m/a"));
  provider.SetDefault("http://a", FakeProvider::Ok(absl::Milliseconds(10)));
  loop_.AdvanceBy(absl::Seconds(10) + absl::Milliseconds(10));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kRecovering);
  loop_.AdvanceBy(absl::Seconds(10) + absl::Milliseconds(10));
  EXPECT_EQ(Health("m/a"), InstanceHealth::kHealthy);
  EXPECT_EQ(provider.call_count(), 4u);
  pool_->Stop();
  loop_.AdvanceBy(absl::Minutes(5));
  EXPECT_EQ(provider.call_count(), 4u);
}

TEST_F(PoolTest, ActiveProbeIntervalIsJittered) {
  health_.active.enabled = true;
  health_.active.interval = absl::Seconds(10);
  health_.active.jitter = 0.5;
  Build(4);
  FakeProvider provider(loop_);
  provider.SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(1)));
  std::map<std::string, std::shared_ptr<Provider>> providers = {
      {"p", std::shared_ptr<Provider>(&provider, [](Provider*) {})}};
  pool_->StartProbes(&providers);
  loop_.AdvanceBy(absl::Seconds(30));
  std::set<int64_t> starts;
  for (const auto& c : provider.calls()) {
    starts.insert(absl::ToInt64Milliseconds(c->started - absl::UnixEpoch()));
  }
  EXPECT_GT(starts.size(), 4u);  // instances do not probe in lockstep
  pool_->Stop();
}

TEST_F(PoolTest, StatusShowsHealthBreakerAndCounters) {
  Build(2);
  Report("m/a", ErrorClass::kNone);
  Report("m/b", ErrorClass::kServerError);
  PoolStatusView v = pool_->GetStatus(loop_.Now());
  EXPECT_EQ(v.name, "pool");
  EXPECT_EQ(v.strategy, "round_robin");
  ASSERT_EQ(v.instances.size(), 2u);
  EXPECT_EQ(v.instances[0].successes, 1);
  EXPECT_EQ(v.instances[1].failures, 1);
  EXPECT_EQ(v.instances[1].success_rate, 0.0);
  EXPECT_EQ(v.instances[0].ewma_latency, absl::Milliseconds(100));
  EXPECT_NE(v.instances[1].last_error.find("server_error"), std::string::npos);
}

TEST_F(PoolTest, CarriesMemberStateOverToNextSnapshot) {
  Build(2);
  for (int i = 0; i < 3; ++i) Report("m/a", ErrorClass::kServerError);
  Pool::Options o = pool_->options();
  auto next = Pool::Create(o, instances_, loop_, rng_, pool_.get());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ((*next)->HealthOf("m/a", loop_.Now()), InstanceHealth::kUnhealthy);
  EXPECT_EQ((*next)->GetStatus(loop_.Now()).instances[0].failures, 3);
}

}  // namespace
}  // namespace echelon
