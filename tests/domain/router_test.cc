#include "domain/router.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/domain/router_test_util.h"
#include "tests/fakes/fake_event_loop.h"
#include "tests/fakes/fake_provider.h"

namespace echelon {
namespace {

using testing::MakeChat;
using testing::MakeEchelon;
using testing::MakeModel;
using testing::MakeProvider;
using testing::MakeRoute;
using testing::RecordingSink;
using testing::Url;

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() : provider_(std::make_shared<FakeProvider>(loop_)) {
    config_.providers.push_back(MakeProvider("p1"));
    config_.models.push_back(MakeModel("m1", "p1", {"a", "b"}));
    config_.models.push_back(MakeModel("m2", "p1", {"c"}));
    TaskGroupConfig g;
    g.name = "fast";
    g.echelons.push_back(MakeEchelon("primary", 0, {"m1"}));
    g.echelons.push_back(MakeEchelon("backup", 1, {"m2"}));
    config_.task_groups.push_back(g);
    PoolConfig p;
    p.name = "pool";
    p.task_groups = {"fast"};
    config_.pools.push_back(p);
  }

  // Lets every request a test left hanging reach its deadline, so each
  // finishes and releases the router core (no leak under LeakSanitizer).
  void TearDown() override { loop_.AdvanceBy(absl::Hours(1)); }

  void Build(RouterOptions options = {}) {
    if (!options.random_seed) options.random_seed = 7;
    auto r =
        Router::Create(config_, loop_, {{"p1", provider_}, {"p2", provider_}},
                       nullptr, options);
    ASSERT_TRUE(r.ok()) << r.status();
    router_ = *std::move(r);
    loop_.RunUntilIdle();
  }

  RecordingSink& Run(RouteRequest req,
                     absl::Duration for_time = absl::Seconds(10)) {
    sinks_.push_back(std::make_unique<RecordingSink>());
    router_->Start(std::move(req), sinks_.back().get());
    loop_.AdvanceBy(for_time);
    return *sinks_.back();
  }

  // A second provider "p2" with model m3 (instance x), and group "other"
  // serving m3, and pool "pool2" over it.
  void AddOtherGroup() {
    config_.providers.push_back(MakeProvider("p2"));
    config_.models.push_back(MakeModel("m3", "p2", {"x"}));
    TaskGroupConfig g;
    g.name = "other";
    g.echelons.push_back(MakeEchelon("only", 0, {"m3"}));
    config_.task_groups.push_back(g);
    PoolConfig p;
    p.name = "pool2";
    p.task_groups = {"other.only"};
    config_.pools.push_back(p);
  }
  TaskGroupConfig& Group() { return config_.task_groups[0]; }
  EchelonConfig& Primary() { return config_.task_groups[0].echelons[0]; }
  EchelonConfig& Backup() { return config_.task_groups[0].echelons[1]; }
  void FailAlways(const std::string& url,
                  ErrorClass c = ErrorClass::kServerError) {
    provider_->SetDefault(url, FakeProvider::Fail(c));
  }
  std::vector<std::string> CalledUrls() const {
    std::vector<std::string> out;
    for (const auto& c : provider_->calls()) out.push_back(c->base_url());
    return out;
  }
  EchelonStatusView EchelonStatus(int i, const std::string& group = "fast") {
    auto st = router_->GetTaskGroupStatus(group);
    EXPECT_TRUE(st.ok());
    return (*st)[0].echelons[static_cast<size_t>(i)];
  }

  FakeEventLoop loop_;
  std::shared_ptr<FakeProvider> provider_;
  GatewayConfig config_;
  std::unique_ptr<Router> router_;
  std::vector<std::unique_ptr<RecordingSink>> sinks_;
};

TEST_F(RouterTest, ServesTaskGroupFromFirstEchelon) {
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  ASSERT_TRUE(s.done);
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.response.model, "m1");
  EXPECT_EQ(s.response.instance, "m1/a");
  EXPECT_EQ(s.response.response.message.content, "ok");
  ASSERT_EQ(s.response.attempts.size(), 1u);
  EXPECT_EQ(s.response.attempts[0].echelon, "fast.primary");
  EXPECT_EQ(s.response.request_id, "req-1");
}

TEST_F(RouterTest, NeverCompletesInsideStart) {
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink s;
  router_->Start(MakeRoute("nope"), &s);
  EXPECT_FALSE(s.done);
  loop_.RunUntilIdle();
  EXPECT_TRUE(s.done);
}

TEST_F(RouterTest, UnknownTargetIsNotFound) {
  Build();
  RecordingSink& s = Run(MakeRoute("nope"));
  ASSERT_TRUE(s.done);
  EXPECT_EQ(s.status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.status.message(), "unknown target 'nope'");
}

TEST_F(RouterTest, EmptyMessagesAreInvalidArgument) {
  Build();
  RouteRequest r = MakeRoute("fast");
  r.request->messages.clear();
  RecordingSink& s = Run(std::move(r));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(provider_->call_count(), 0u);
}

TEST_F(RouterTest, ResolvesPoolGroupEchelonAndModelTargets) {
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  EXPECT_TRUE(Run(MakeRoute("pool")).status.ok());
  RecordingSink& e = Run(MakeRoute("fast.backup"));
  EXPECT_TRUE(e.status.ok());
  EXPECT_EQ(e.response.instance, "m2/c");
  RecordingSink& m = Run(MakeRoute("m2"));
  EXPECT_TRUE(m.status.ok());
  EXPECT_EQ(m.response.instance, "m2/c");
  std::vector<TargetView> targets = router_->ListTargets();
  std::vector<std::string> names;
  for (const auto& t : targets) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"pool", "fast", "fast.primary",
                                             "fast.backup", "m1", "m2"}));
}

TEST_F(RouterTest, BuildsUpstreamCallFromProviderInstanceAndDefaults) {
  config_.task_groups[0].echelons[0].defaults.temperature = 0.3;
  config_.task_groups[0].echelons[0].defaults.max_tokens = 99;
  config_.task_groups[0].echelons[0].first_token_timeout = absl::Seconds(7);
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RouteRequest r = MakeRoute("fast");
  r.request->params.temperature = 0.9;  // the request wins
  Run(std::move(r));
  ASSERT_EQ(provider_->call_count(), 1u);
  const UpstreamCall& c = provider_->calls()[0]->call;
  EXPECT_EQ(c.endpoint->base_url, Url("m1", "a"));
  EXPECT_EQ(c.endpoint->api_key, "sk-secret");
  EXPECT_EQ(c.endpoint->upstream_model, "m1-upstream");
  EXPECT_EQ(*c.request->params.temperature, 0.9);
  EXPECT_EQ(*c.request->params.max_tokens, 99);
  EXPECT_EQ(c.timeouts.first_token, absl::Seconds(7));
  EXPECT_FALSE(c.stream);
}

TEST_F(RouterTest, RotatesRoundRobinOverInstances) {
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  std::vector<std::string> served;
  for (int i = 0; i < 4; ++i)
    served.push_back(Run(MakeRoute("fast")).response.instance);
  EXPECT_EQ(served, (std::vector<std::string>{"m1/a", "m1/b", "m1/a", "m1/b"}));
}

TEST_F(RouterTest, FailsOverToNextInstanceOnRetryableError) {
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.response.instance, "m1/b");
  ASSERT_EQ(s.response.attempts.size(), 2u);
  EXPECT_EQ(s.response.attempts[0].instance, "m1/a");
  EXPECT_EQ(s.response.attempts[0].outcome, ErrorClass::kServerError);
  EXPECT_EQ(s.response.attempts[0].next_action, "failover");
}

TEST_F(RouterTest, FallsDownToNextEchelonWhenFirstExhausted) {
  provider_->SetDefault(Url("m1", "a"),
                        FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetDefault(Url("m1", "b"),
                        FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  config_.task_groups[0].echelons[0].retry.max_retries = 1;
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.response.instance, "m2/c");
  ASSERT_EQ(s.response.fallbacks.size(), 1u);
  EXPECT_EQ(s.response.fallbacks[0].reason, "echelon_down");
  EXPECT_EQ(s.response.fallbacks[0].from, "fast.primary");
  EXPECT_EQ(s.response.fallbacks[0].to, "fast.backup");
}

TEST_F(RouterTest, StreamsDeltasToSink) {
  FakeProvider::Outcome o = FakeProvider::Ok();
  o.chunks = {"Hel", "lo"};
  provider_->SetFallbackDefault(o);
  Build();
  RecordingSink& s = Run(MakeRoute("fast", /*stream=*/true));
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.text, "Hello");
  EXPECT_TRUE(s.response.committed);
  EXPECT_TRUE(provider_->calls()[0]->call.stream);
}

TEST_F(RouterTest, CancelAbortsUpstreamAndCompletesCancelled) {
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  RecordingSink s;
  auto h = router_->Start(MakeRoute("fast"), &s);
  loop_.AdvanceBy(absl::Seconds(1));
  ASSERT_EQ(provider_->call_count(), 1u);
  h->Cancel();
  loop_.RunUntilIdle();
  ASSERT_TRUE(s.done);
  EXPECT_EQ(s.status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(provider_->calls()[0]->cancelled);
}

TEST_F(RouterTest, DeadlineCancelsUpstreamAndCompletesDeadlineExceeded) {
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  RecordingSink& s =
      Run(MakeRoute("fast", false, loop_.Now() + absl::Seconds(2)),
          absl::Seconds(1));
  EXPECT_FALSE(s.done);
  loop_.AdvanceBy(absl::Seconds(2));
  ASSERT_TRUE(s.done);
  EXPECT_EQ(s.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(provider_->calls()[0]->cancelled);
  EXPECT_EQ(provider_->calls()[0]->call.deadline,
            absl::FromUnixSeconds(1'000'000) + absl::Seconds(2));
}

TEST_F(RouterTest, RequestTimeoutBoundsTheDeadline) {
  config_.task_groups[0].request_timeout = absl::Seconds(3);
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"), absl::Seconds(5));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(RouterTest, CreateRejectsUnknownStrategyAndReferences) {
  GatewayConfig bad = config_;
  bad.pools[0].strategy = "fastest";
  auto r = Router::Create(bad, loop_, {{"p1", provider_}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  bad = config_;
  bad.task_groups[0].echelons[0].models = {"nope"};
  EXPECT_EQ(Router::Create(bad, loop_, {{"p1", provider_}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = config_;
  bad.pools[0].task_groups = {"fast.nope"};
  EXPECT_EQ(Router::Create(bad, loop_, {{"p1", provider_}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Router::Create(config_, loop_, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RouterTest, PoolStatusShowsInstancesWithoutSecrets) {
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("pool"));
  auto st = router_->GetPoolStatus("pool");
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->size(), 1u);
  const PoolStatusView& p = (*st)[0];
  EXPECT_EQ(p.strategy, "round_robin");
  EXPECT_EQ(p.requests, 1);
  EXPECT_EQ(p.successes, 1);
  ASSERT_EQ(p.instances.size(), 3u);
  EXPECT_EQ(p.instances[0].id, "m1/a");
  EXPECT_EQ(p.instances[0].requests, 1);
  EXPECT_EQ(router_->GetPoolStatus("nope").status().code(),
            absl::StatusCode::kNotFound);
}

// --- Fallback strategies ---------------------------------------------------

TEST_F(RouterTest, ModelRotateTriesNextModelOfSameEchelon) {
  AddOtherGroup();
  Primary().models = {"m1", "m3"};
  Primary().retry.max_retries = 1;
  FailAlways(Url("m1", "a"));
  FailAlways(Url("m1", "b"));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.response.instance, "m3/x");
  ASSERT_EQ(s.response.fallbacks.size(), 1u);
  EXPECT_EQ(s.response.fallbacks[0].reason, "model_rotate");
  EXPECT_EQ(s.response.attempts[1].next_action, "model_rotate");
}

TEST_F(RouterTest, StrategyListDecidesWhatHappensOnFailure) {
  AddOtherGroup();
  Primary().models = {"m1", "m3"};
  Primary().retry.max_retries = 0;
  Group().fallback.strategies = {FallbackStrategy::kEchelonDown};
  FailAlways(Url("m1", "a"));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  // No model_rotate: m3 in the same echelon is skipped.
  EXPECT_EQ(s.response.instance, "m2/c");
  EXPECT_EQ(s.response.fallbacks[0].reason, "echelon_down");
}

TEST_F(RouterTest, ProviderFailoverPrefersModelOfAnotherProvider) {
  AddOtherGroup();
  config_.models.push_back(MakeModel("m1b", "p1", {"y"}));
  Primary().models = {"m1", "m1b", "m3"};
  Primary().retry.max_retries = 0;
  Group().fallback.strategies = {FallbackStrategy::kProviderFailover};
  FailAlways(Url("m1", "a"));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_EQ(s.response.instance, "m3/x");
  EXPECT_EQ(s.response.fallbacks[0].reason, "provider_failover");
  EXPECT_EQ(provider_->CallsTo(Url("m1b", "y")), 0);
}

TEST_F(RouterTest, TaskGroupSwitchMovesToFallbackGroup) {
  AddOtherGroup();
  Group().fallback.strategies = {FallbackStrategy::kEchelonDown,
                                 FallbackStrategy::kTaskGroupSwitch};
  Group().fallback.fallback_groups = {"other"};
  Primary().retry.max_retries = 0;
  Backup().retry.max_retries = 0;
  FailAlways(Url("m1", "a"));
  FailAlways(Url("m2", "c"));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.response.instance, "m3/x");
  ASSERT_EQ(s.response.fallbacks.size(), 2u);
  EXPECT_EQ(s.response.fallbacks[0].reason, "echelon_down");
  EXPECT_EQ(s.response.fallbacks[1].reason, "task_group_switch");
  EXPECT_EQ(s.response.fallbacks[1].to, "other");
}

TEST_F(RouterTest, PoolSwitchMovesFromGroupToFallbackPool) {
  AddOtherGroup();
  Group().fallback.strategies = {FallbackStrategy::kPoolSwitch};
  Group().fallback.fallback_pools = {"pool2"};
  Primary().retry.max_retries = 0;
  FailAlways(Url("m1", "a"));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_EQ(s.response.instance, "m3/x");
  EXPECT_EQ(s.response.fallbacks[0].reason, "pool_switch");
}

TEST_F(RouterTest, PoolFailsOverInstancesThenSwitchesToFallbackPool) {
  AddOtherGroup();
  config_.pools[0].fallback_pools = {"pool2"};
  config_.pools[0].max_instance_attempts = 2;
  FailAlways(Url("m1", "a"));
  FailAlways(Url("m1", "b"));
  FailAlways(Url("m2", "c"));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("pool"));
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.response.instance, "m3/x");
  EXPECT_EQ(CalledUrls(), (std::vector<std::string>{
                              Url("m1", "a"), Url("m1", "b"), Url("m3", "x")}));
}

TEST_F(RouterTest, PoolMaxInstanceAttemptsBoundsFailover) {
  config_.pools[0].max_instance_attempts = 2;
  provider_->SetFallbackDefault(FakeProvider::Fail(ErrorClass::kServerError));
  Build();
  RecordingSink& s = Run(MakeRoute("pool"));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(provider_->call_count(), 2u);
  EXPECT_NE(s.status.message().find("server_error"), std::string::npos);
}

TEST_F(RouterTest, MaxAttemptsCapsEveryAttemptOfTheRequest) {
  Group().fallback.max_attempts = 2;
  provider_->SetFallbackDefault(FakeProvider::Fail(ErrorClass::kServerError));
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(provider_->call_count(), 2u);
  EXPECT_EQ(s.response.attempts.size(), 2u);
}

TEST_F(RouterTest, RetryDelayWaitsOnATimerBeforeFallback) {
  Group().fallback.retry_delay = absl::Seconds(1);
  Primary().retry.max_retries = 0;
  FailAlways(Url("m1", "a"));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  absl::Time t0 = loop_.Now();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_TRUE(s.status.ok());
  ASSERT_EQ(provider_->call_count(), 2u);
  EXPECT_EQ(provider_->calls()[1]->started,
            t0 + absl::Milliseconds(100) + absl::Seconds(1));
}

// --- Breakers ----------------------------------------------------------------

TEST_F(RouterTest, OpenEchelonBreakerIsSkippedThenProbedAndClosed) {
  Primary().breaker.failure_threshold = 1;
  Primary().breaker.recovery_time = absl::Seconds(10);
  Primary().retry.max_retries = 0;
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  EXPECT_EQ(Run(MakeRoute("fast"), absl::Seconds(1)).response.instance, "m2/c");
  EXPECT_EQ(EchelonStatus(0).breaker, BreakerPhase::kOpen);
  RecordingSink& skipped = Run(MakeRoute("fast"), absl::Seconds(1));
  EXPECT_EQ(skipped.response.instance, "m2/c");
  EXPECT_EQ(skipped.response.attempts.size(), 1u);  // primary not tried
  EXPECT_EQ(EchelonStatus(0).rejected, 1);
  loop_.AdvanceBy(absl::Seconds(8));  // opened at 0.1 s for 10 s
  EXPECT_EQ(EchelonStatus(0).breaker, BreakerPhase::kOpen);
  loop_.AdvanceBy(absl::Milliseconds(100));
  EXPECT_EQ(EchelonStatus(0).breaker, BreakerPhase::kHalfOpen);
  RecordingSink& probe = Run(MakeRoute("fast"));
  EXPECT_EQ(probe.response.model, "m1");
  EXPECT_EQ(EchelonStatus(0).breaker, BreakerPhase::kClosed);
}

TEST_F(RouterTest, AllBreakersOpenFailsFastWithRetryHint) {
  Primary().breaker.failure_threshold = 1;
  Backup().breaker.failure_threshold = 1;
  Primary().breaker.recovery_time = absl::Seconds(30);
  Backup().breaker.recovery_time = absl::Seconds(20);
  Primary().retry.max_retries = 0;
  Backup().retry.max_retries = 0;
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->Script(Url("m2", "c"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  EXPECT_FALSE(Run(MakeRoute("fast"), absl::Seconds(5)).status.ok());
  size_t calls = provider_->call_count();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.status.message().find("open circuit breaker"), std::string::npos);
  // The backup opened 100 ms after the primary, for 20 s.
  EXPECT_EQ(s.response.retry_after,
            absl::Seconds(20) + absl::Milliseconds(200) - absl::Seconds(5));
  EXPECT_EQ(provider_->call_count(), calls);
}

TEST_F(RouterTest, AllBreakersOpenUsesLastResortEchelonWhenConfigured) {
  Group().fallback.when_all_open = AllOpenPolicy::kLastResort;
  Group().fallback.last_resort_echelon = "backup";
  Primary().breaker.failure_threshold = 1;
  Backup().breaker.failure_threshold = 1;
  Primary().retry.max_retries = 0;
  Backup().retry.max_retries = 0;
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->Script(Url("m2", "c"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  EXPECT_FALSE(Run(MakeRoute("fast"), absl::Seconds(1)).status.ok());
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.response.instance, "m2/c");
  EXPECT_EQ(s.response.fallbacks[0].reason, "last_resort");
}

// --- Limits ------------------------------------------------------------------

TEST_F(RouterTest, ConcurrencyLimitRejectsWithRetryHint) {
  Primary().concurrency.max_concurrency = 1;
  Primary().rate_limit.algorithm = RateLimitAlgorithm::kSlidingWindow;
  Primary().rate_limit.requests_per_minute = 100;
  Primary().concurrency.on_overflow = OverflowPolicy::kReject;
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  RecordingSink& first = Run(MakeRoute("fast"), absl::Seconds(1));
  EXPECT_FALSE(first.done);
  RecordingSink& s = Run(MakeRoute("fast"), absl::Seconds(1));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GT(s.response.retry_after, absl::ZeroDuration());
  EXPECT_EQ(EchelonStatus(0).in_flight, 1);
  // Only the running request counts: the rejected one gave its rate-limit
  // reservation back.
  EXPECT_EQ(EchelonStatus(0).requests_used, 1);
}

TEST_F(RouterTest, ConcurrencyLimitSpillsToNextEchelon) {
  Primary().concurrency.max_concurrency = 1;
  Primary().concurrency.on_overflow = OverflowPolicy::kSpill;
  provider_->SetDefault(Url("m1", "a"), FakeProvider::Hang());
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("fast"), absl::Seconds(1));
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_TRUE(s.status.ok());
  EXPECT_EQ(s.response.instance, "m2/c");
}

TEST_F(RouterTest, ConcurrencyQueueWaitsForFreedSlot) {
  Primary().concurrency.max_concurrency = 1;
  Primary().concurrency.queue_size = 1;
  Primary().concurrency.queue_timeout = absl::Seconds(5);
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Seconds(2)));
  Build();
  sinks_.push_back(std::make_unique<RecordingSink>());
  router_->Start(MakeRoute("fast"), sinks_.back().get());
  RecordingSink& s = Run(MakeRoute("fast"), absl::Seconds(1));
  EXPECT_FALSE(s.done);
  EXPECT_EQ(EchelonStatus(0).queued, 1);
  loop_.AdvanceBy(absl::Seconds(5));
  EXPECT_TRUE(s.status.ok());
  EXPECT_EQ(s.response.model, "m1");
  EXPECT_EQ(provider_->calls()[1]->started,
            provider_->calls()[0]->started + absl::Seconds(2));
}

TEST_F(RouterTest, ConcurrencyQueueTimeoutRejects) {
  Primary().concurrency.max_concurrency = 1;
  Primary().concurrency.queue_size = 1;
  Primary().concurrency.queue_timeout = absl::Seconds(3);
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  Run(MakeRoute("fast"), absl::Seconds(1));
  RecordingSink& s = Run(MakeRoute("fast"), absl::Seconds(2));
  EXPECT_FALSE(s.done);
  loop_.AdvanceBy(absl::Seconds(1));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(EchelonStatus(0).queued, 0);
}

TEST_F(RouterTest, RpmLimitRejectsOrSpills) {
  Primary().rate_limit.requests_per_minute = 1;
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  EXPECT_EQ(Run(MakeRoute("fast")).response.model, "m1");
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GT(s.response.retry_after, absl::Seconds(40));
  EXPECT_LE(s.response.retry_after, absl::Seconds(60));
  EXPECT_EQ(EchelonStatus(0).requests_used, 1);

  Primary().concurrency.on_overflow = OverflowPolicy::kSpill;
  Build();
  EXPECT_EQ(Run(MakeRoute("fast")).response.model, "m1");
  EXPECT_EQ(Run(MakeRoute("fast")).response.model, "m2");
}

TEST_F(RouterTest, TpmReservesEstimateAndReconcilesWithUsage) {
  for (RateLimitAlgorithm a :
       {RateLimitAlgorithm::kTokenBucket, RateLimitAlgorithm::kSlidingWindow}) {
    Primary().rate_limit.algorithm = a;
    Primary().rate_limit.tokens_per_minute = 1000;
    provider_->SetFallbackDefault(FakeProvider::Hang());
    Build();
    RouteRequest r = MakeRoute("fast");
    r.request->params.max_tokens = 400;
    int64_t estimate = EstimatePromptTokens(*r.request) + 400;
    // No time passes, so the bucket does not refill in between.
    Run(std::move(r), absl::ZeroDuration());
    EXPECT_EQ(EchelonStatus(0).tokens_used, estimate);
    // The call answers with usage 15: the reservation shrinks to it.
    provider_->Finish(static_cast<int>(provider_->call_count()) - 1, [] {
      UpstreamResult res;
      res.response.usage = {10, 5, 15, 0};
      res.response.has_usage = true;
      return res;
    }());
    loop_.RunUntilIdle();
    EXPECT_EQ(EchelonStatus(0).tokens_used, 15);
    EXPECT_EQ(EchelonStatus(0).tokens_in, 10);
    EXPECT_EQ(EchelonStatus(0).tokens_out, 5);
    // 15 + estimate(990) > 1000: over the limit.
    RouteRequest big = MakeRoute("fast");
    big.request->params.max_tokens = 990;
    RecordingSink& s = Run(std::move(big), absl::ZeroDuration());
    EXPECT_EQ(s.status.code(), absl::StatusCode::kResourceExhausted);
  }
}

// --- Timeouts ----------------------------------------------------------------

TEST_F(RouterTest, EchelonTimeoutMovesToNextEchelon) {
  Primary().timeout = absl::Seconds(2);
  provider_->SetDefault(Url("m1", "a"), FakeProvider::Hang());
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  absl::Time t0 = loop_.Now();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.response.instance, "m2/c");
  EXPECT_TRUE(provider_->calls()[0]->cancelled);
  EXPECT_EQ(provider_->calls()[0]->call.deadline, t0 + absl::Seconds(2));
  EXPECT_EQ(s.response.attempts[0].outcome, ErrorClass::kTimeoutTotal);
}

TEST_F(RouterTest, ExpectedLatencySkipsEchelonWhenDeadlineTooShort) {
  Primary().expected_latency = absl::Seconds(10);
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s =
      Run(MakeRoute("fast", false, loop_.Now() + absl::Seconds(5)));
  EXPECT_EQ(s.response.instance, "m2/c");
  RecordingSink& roomy =
      Run(MakeRoute("fast", false, loop_.Now() + absl::Seconds(50)));
  EXPECT_EQ(roomy.response.model, "m1");
}

TEST_F(RouterTest, OneDeadlineCoversAllAttempts) {
  Group().request_timeout = absl::Seconds(1);
  provider_->SetDefault(
      Url("m1", "a"),
      FakeProvider::Fail(ErrorClass::kServerError, absl::Milliseconds(600)));
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  absl::Time t0 = loop_.Now();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_EQ(provider_->call_count(), 2u);
  EXPECT_EQ(provider_->calls()[1]->call.deadline, t0 + absl::Seconds(1));
}

// --- Retries -----------------------------------------------------------------

TEST_F(RouterTest, RetriesWithJitteredExponentialBackoff) {
  Backup().retry.max_retries = 2;
  Backup().retry.initial_backoff = absl::Seconds(1);
  Backup().retry.backoff_multiplier = 2;
  Backup().retry.max_backoff = absl::Seconds(10);
  provider_->SetFallbackDefault(FakeProvider::Fail(ErrorClass::kServerError));
  Build();
  RecordingSink& s = Run(MakeRoute("fast.backup"), absl::Seconds(30));
  EXPECT_FALSE(s.status.ok());
  ASSERT_EQ(provider_->call_count(), 3u);  // 1 + max_retries
  absl::Duration gap1 = provider_->calls()[1]->started -
                        provider_->calls()[0]->started -
                        absl::Milliseconds(100);
  absl::Duration gap2 = provider_->calls()[2]->started -
                        provider_->calls()[1]->started -
                        absl::Milliseconds(100);
  EXPECT_LE(gap1, absl::Seconds(1));
  EXPECT_LE(gap2, absl::Seconds(2));
  EXPECT_GT(gap1 + gap2, absl::ZeroDuration());
  EXPECT_EQ(s.response.attempts[0].next_action, "retry");
  EXPECT_EQ(EchelonStatus(1).retries, 2);
}

TEST_F(RouterTest, HonoursShortRetryAfterByWaiting) {
  provider_->Script(Url("m2", "c"), FakeProvider::Fail(ErrorClass::kRateLimited,
                                                       absl::Milliseconds(100),
                                                       absl::Seconds(2)));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast.backup"));
  EXPECT_TRUE(s.status.ok()) << s.status;
  ASSERT_EQ(provider_->call_count(), 2u);
  EXPECT_EQ(provider_->calls()[1]->started, provider_->calls()[0]->started +
                                                absl::Milliseconds(100) +
                                                absl::Seconds(2));
}

TEST_F(RouterTest, LongRetryAfterGoesElsewhere) {
  Primary().retry.max_retry_after = absl::Seconds(1);
  provider_->Script(Url("m1", "a"), FakeProvider::Fail(ErrorClass::kRateLimited,
                                                       absl::Milliseconds(100),
                                                       absl::Seconds(30)));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_EQ(s.response.instance, "m2/c");
  EXPECT_EQ(provider_->CallsTo(Url("m1", "b")), 0);
}

TEST_F(RouterTest, ExhaustedRetryBudgetFallsBackInsteadOfRetrying) {
  Primary().retry.budget_min_retries = 0;
  Primary().retry.budget_ratio = 0;
  FailAlways(Url("m1", "a"));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_EQ(s.response.instance, "m2/c");
  EXPECT_EQ(provider_->CallsTo(Url("m1", "b")), 0);
}

// --- Error classes -----------------------------------------------------------

TEST_F(RouterTest, ContextLengthMovesToLargerContextWindow) {
  config_.models[1].context_window = 32000;  // m2
  FailAlways(Url("m1", "a"), ErrorClass::kContextLengthExceeded);
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.response.instance, "m2/c");
  EXPECT_EQ(provider_->CallsTo(Url("m1", "b")), 0);  // same model: never
}

TEST_F(RouterTest, ContextLengthWithoutLargerModelIsInvalidArgument) {
  FailAlways(Url("m1", "a"), ErrorClass::kContextLengthExceeded);
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));  // m2 has the same window
  EXPECT_EQ(s.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(provider_->call_count(), 1u);
}

TEST_F(RouterTest, ContentFilterIsNeverRetriedAndKeepsProviderMessage) {
  provider_->SetFallbackDefault(
      FakeProvider::Fail(ErrorClass::kContentFiltered, absl::Milliseconds(10),
                         absl::ZeroDuration(), "flagged: violence"));
  Build();
  RecordingSink& s = Run(MakeRoute("fast"));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status.message().find("flagged: violence"), std::string::npos);
  EXPECT_EQ(provider_->call_count(), 1u);
}

TEST_F(RouterTest, BadRequestIsInvalidArgumentWithoutHealthImpact) {
  Primary().breaker.failure_threshold = 1;
  provider_->SetFallbackDefault(FakeProvider::Fail(ErrorClass::kBadRequest));
  Build();
  for (int i = 0; i < 3; ++i) {
    RecordingSink& s = Run(MakeRoute("fast"));
    EXPECT_EQ(s.status.code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(provider_->call_count(), 3u);
  EXPECT_EQ(EchelonStatus(0).breaker, BreakerPhase::kClosed);
  for (const auto& i : EchelonStatus(0).instances) {
    EXPECT_EQ(i.health, InstanceHealth::kHealthy);
    EXPECT_EQ(i.breaker, BreakerPhase::kClosed);
  }
}

// --- Streaming contract ------------------------------------------------------

TEST_F(RouterTest, StreamFailureBeforeFirstDeltaFailsOverInvisibly) {
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  FakeProvider::Outcome ok = FakeProvider::Ok();
  ok.chunks = {"Hel", "lo"};
  provider_->SetFallbackDefault(ok);
  Build();
  RecordingSink& s = Run(MakeRoute("fast", true));
  EXPECT_TRUE(s.status.ok());
  EXPECT_EQ(s.text, "Hello");
  EXPECT_EQ(s.response.instance, "m1/b");
}

TEST_F(RouterTest, StreamFailureAfterCommitIsAbortedPartialWithoutRetry) {
  FakeProvider::Outcome cut =
      FakeProvider::Fail(ErrorClass::kStreamCut, absl::Milliseconds(300));
  cut.chunks = {"Hel", "lo"};
  provider_->Script(Url("m1", "a"), cut);
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("fast", true));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kAborted);
  EXPECT_NE(s.status.message().find("partial"), std::string::npos);
  EXPECT_EQ(s.text, "Hello");  // each token exactly once
  EXPECT_TRUE(s.response.committed);
  EXPECT_EQ(provider_->call_count(), 1u);
}

TEST_F(RouterTest, NonVisibleDeltasBeforeCommitAreDroppedOnFailover) {
  Build();
  RecordingSink s;
  router_->Start(MakeRoute("fast", true), &s);
  loop_.RunUntilIdle();
  StreamDelta usage_only;
  usage_only.usage = Usage{1, 0, 1, 0};
  provider_->Deliver(0, usage_only);
  provider_->Fail(0, ErrorClass::kServerError);
  loop_.AdvanceBy(absl::Seconds(1));
  ASSERT_EQ(provider_->call_count(), 2u);
  StreamDelta d;
  d.content = "x";
  provider_->Deliver(1, d);
  provider_->Succeed(1);
  loop_.RunUntilIdle();
  EXPECT_TRUE(s.status.ok());
  ASSERT_EQ(s.deltas.size(), 1u);
  EXPECT_EQ(s.deltas[0].content, "x");
}

// --- Observer, status, traces ------------------------------------------------

class CountingObserver : public RouterObserver {
 public:
  void OnAttempt(const AttemptEvent& e) override { attempts.push_back(e); }
  void OnRequestDone(const RequestDoneEvent& e) override { done.push_back(e); }
  void OnFallback(const FallbackEvent& e) override { fallbacks.push_back(e); }
  void OnBreakerTransition(const BreakerEvent& e) override {
    breakers.push_back(e);
  }
  std::vector<AttemptEvent> attempts;
  std::vector<RequestDoneEvent> done;
  std::vector<FallbackEvent> fallbacks;
  std::vector<BreakerEvent> breakers;
};

TEST_F(RouterTest, ObserverSeesAttemptsFallbacksBreakersAndCompletion) {
  Primary().retry.max_retries = 0;
  Primary().breaker.failure_threshold = 1;
  FailAlways(Url("m1", "a"));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  CountingObserver obs;
  RouterOptions o;
  o.observer = &obs;
  Build(o);
  Run(MakeRoute("fast"));
  ASSERT_EQ(obs.attempts.size(), 2u);
  EXPECT_EQ(obs.attempts[0].instance, "m1/a");
  EXPECT_EQ(obs.attempts[0].outcome, ErrorClass::kServerError);
  EXPECT_EQ(obs.attempts[0].task_group, "fast");
  EXPECT_EQ(obs.attempts[0].echelon, "primary");
  EXPECT_EQ(obs.attempts[1].tokens_out, 5);
  EXPECT_TRUE(obs.attempts[1].is_retry);
  ASSERT_EQ(obs.fallbacks.size(), 1u);
  EXPECT_EQ(obs.fallbacks[0].reason, "echelon_down");
  EXPECT_EQ(obs.fallbacks[0].cause, ErrorClass::kServerError);
  ASSERT_EQ(obs.done.size(), 1u);
  EXPECT_EQ(obs.done[0].code, absl::StatusCode::kOk);
  EXPECT_EQ(obs.done[0].attempts, 2);
  ASSERT_EQ(obs.breakers.size(), 1u);
  EXPECT_EQ(obs.breakers[0].kind, "echelon");
  EXPECT_EQ(obs.breakers[0].name, "primary");
  EXPECT_EQ(obs.breakers[0].to, BreakerPhase::kOpen);
}

TEST_F(RouterTest, TaskGroupStatusShowsEchelonsAndCounters) {
  Primary().concurrency.max_concurrency = 4;
  Primary().rate_limit.requests_per_minute = 100;
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("fast"), absl::Milliseconds(100));
  auto st = router_->GetTaskGroupStatus("");
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->size(), 1u);
  const TaskGroupStatusView& g = (*st)[0];
  EXPECT_EQ(g.requests, 1);
  EXPECT_EQ(g.successes, 1);
  ASSERT_EQ(g.echelons.size(), 2u);
  EXPECT_EQ(g.echelons[0].name, "primary");
  EXPECT_EQ(g.echelons[0].max_concurrency, 4);
  EXPECT_EQ(g.echelons[0].requests_per_minute, 100);
  EXPECT_EQ(g.echelons[0].requests_used, 1);
  EXPECT_EQ(g.echelons[0].successes, 1);
  EXPECT_EQ(g.echelons[0].instances.size(), 2u);
  EXPECT_EQ(g.echelons[0].ewma_latency, absl::Milliseconds(100));
  EXPECT_EQ(router_->GetTaskGroupStatus("nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RouterTest, KeepsBoundedHistoryOfTraces) {
  provider_->SetFallbackDefault(FakeProvider::Ok());
  RouterOptions o;
  o.trace_history = 2;
  Build(o);
  Run(MakeRoute("fast"));
  Run(MakeRoute("m2"));
  Run(MakeRoute("nope"));
  std::vector<RoutingTrace> t = router_->RecentTraces();
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].target, "m2");
  EXPECT_EQ(t[0].instance, "m2/c");
  EXPECT_EQ(t[1].code, absl::StatusCode::kNotFound);
}

// --- Pools through the router ------------------------------------------------

TEST_F(RouterTest, PoolUsesConfiguredWeightedStrategy) {
  config_.models[0].instances[0].weight = 3;
  config_.pools[0].strategy = "weighted";
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  std::map<std::string, int> n;
  for (int i = 0; i < 500; ++i)
    n[Run(MakeRoute("pool"), absl::Seconds(1)).response.instance]++;
  EXPECT_EQ(n["m1/a"], 300);
  EXPECT_EQ(n["m1/b"], 100);
  EXPECT_EQ(n["m2/c"], 100);
  EXPECT_EQ((*router_->GetPoolStatus("pool"))[0].strategy, "weighted");
}

TEST_F(RouterTest, P2cEwmaSendsLittleToTenTimesSlowerInstance) {
  config_.pools[0].strategy = "p2c_ewma";
  provider_->SetDefault(Url("m2", "c"), FakeProvider::Ok(absl::Seconds(1)));
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(100)));
  Build();
  const int kRequests = 1000;
  for (int i = 0; i < kRequests; ++i) {
    sinks_.push_back(std::make_unique<RecordingSink>());
    router_->Start(MakeRoute("pool"), sinks_.back().get());
    loop_.AdvanceBy(absl::Milliseconds(50));
  }
  loop_.AdvanceBy(absl::Seconds(5));
  int slow = 0;
  for (const auto& s : sinks_) {
    ASSERT_TRUE(s->status.ok());
    slow += s->response.instance == "m2/c";
  }
  EXPECT_LT(slow, kRequests / 10);
}

TEST_F(RouterTest, InstanceMaxConcurrencyKeepsBusyInstanceOut) {
  config_.models[1].instances[0].max_concurrency = 1;
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  Run(MakeRoute("m2"), absl::Seconds(1));
  RecordingSink& s = Run(MakeRoute("m2"), absl::Seconds(1));
  // Overflow of the instance's own limit is a limit, not an outage.
  EXPECT_EQ(s.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(provider_->call_count(), 1u);
}

TEST_F(RouterTest, InstanceStatusShowsOwnLimitUsageAndUpstreamFigures) {
  config_.models[1].instances[0].requests_per_minute = 10;
  FakeProvider::Outcome ok = FakeProvider::Ok();
  ok.rate_limits.remaining_requests = 4999;
  ok.rate_limits.remaining_tokens = 123456;
  provider_->SetFallbackDefault(ok);
  Build();
  Run(MakeRoute("m2"));
  Run(MakeRoute("m2"));
  // The instance's figures are its own, whichever view shows it.
  auto groups = router_->GetTaskGroupStatus("");
  ASSERT_TRUE(groups.ok());
  const InstanceStatusView* seen = nullptr;
  for (const TaskGroupStatusView& g : *groups) {
    for (const EchelonStatusView& e : g.echelons) {
      for (const InstanceStatusView& i : e.instances) {
        if (i.id ==
            config_.models[1].name + "/" + config_.models[1].instances[0].id) {
          seen = &i;
        }
      }
    }
  }
  ASSERT_NE(seen, nullptr);
  EXPECT_EQ(seen->requests_per_minute, 10);
  EXPECT_EQ(seen->requests_used, 2);
  EXPECT_EQ(seen->upstream_remaining_requests, 4999);
  EXPECT_EQ(seen->upstream_remaining_tokens, 123456);
  EXPECT_NE(seen->upstream_limits_at, absl::InfinitePast());
}

TEST_F(RouterTest, PoolStatusShowsEjectionEndAsCooldown) {
  Group().health.passive.consecutive_failures = 1;
  Group().health.passive.jitter = 0;
  Group().health.passive.base_ejection_time = absl::Seconds(30);
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("fast"));
  auto st = router_->GetTaskGroupStatus("fast");
  ASSERT_TRUE(st.ok());
  const InstanceStatusView& a = (*st)[0].echelons[0].instances[0];
  ASSERT_EQ(a.health, InstanceHealth::kUnhealthy);
  EXPECT_GT(a.cooldown_until, loop_.Now() + absl::Seconds(20));
  EXPECT_LE(a.cooldown_until, loop_.Now() + absl::Seconds(31));
}

// --- Reload ------------------------------------------------------------------

TEST_F(RouterTest, ReloadCarriesStateOfUnchangedInstancesOnly) {
  Group().health.passive.consecutive_failures = 1;
  Primary().retry.max_retries = 1;
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("fast"));
  auto health_of_a = [&](const Router& r) {
    auto st = r.GetTaskGroupStatus("fast");
    return (*st)[0].echelons[0].instances[0].health;
  };
  ASSERT_EQ(health_of_a(*router_), InstanceHealth::kUnhealthy);
  auto same = Router::Create(
      config_, loop_, {{"p1", provider_}, {"p2", provider_}}, router_.get());
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(health_of_a(**same), InstanceHealth::kUnhealthy);
  GatewayConfig changed = config_;
  changed.models[0].instances[0].api_key = "sk-rotated";
  auto rotated = Router::Create(
      changed, loop_, {{"p1", provider_}, {"p2", provider_}}, router_.get());
  ASSERT_TRUE(rotated.ok());
  EXPECT_EQ(health_of_a(**rotated), InstanceHealth::kHealthy);
  loop_.RunUntilIdle();
}

// --- Remaining config keys ---------------------------------------------------

TEST_F(RouterTest, EchelonsRunInPriorityOrderNotFileOrder) {
  Primary().priority = 5;
  Backup().priority = 1;
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  EXPECT_EQ(Run(MakeRoute("fast")).response.model, "m2");
  EXPECT_EQ(EchelonStatus(0).name, "backup");
}

TEST_F(RouterTest, ModelWithoutInstancesGetsProviderDefaultInstance) {
  config_.providers[0].headers["X-Org"] = "team";
  config_.providers[0].timeouts.connect = absl::Seconds(2);
  config_.providers[0].timeouts.stall = absl::Seconds(9);
  config_.models[1].instances.clear();
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RecordingSink& s = Run(MakeRoute("m2"));
  EXPECT_EQ(s.response.instance, "m2/default");
  const UpstreamCall& c = provider_->calls()[0]->call;
  EXPECT_EQ(c.endpoint->base_url, "http://p1");
  EXPECT_EQ(c.endpoint->headers.at("X-Org"), "team");
  EXPECT_EQ(c.timeouts.connect, absl::Seconds(2));
  EXPECT_EQ(c.timeouts.stall, absl::Seconds(9));
}

TEST_F(RouterTest, MaxTokensIsCappedToModelMaxOutputTokens) {
  config_.models[0].max_output_tokens = 256;
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RouteRequest r = MakeRoute("fast");
  r.request->params.max_tokens = 1000;
  Run(std::move(r));
  EXPECT_EQ(*provider_->calls()[0]->call.request->params.max_tokens, 256);
}

TEST_F(RouterTest, EchelonDefaultsFillEveryUnsetGenerationParam) {
  GenerationParams& d = Primary().defaults;
  d.top_p = 0.5;
  d.stop = {"END"};
  d.seed = 4;
  d.presence_penalty = 0.1;
  d.frequency_penalty = 0.2;
  d.response_format.type = ResponseFormat::Type::kJsonObject;
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("fast"));
  const GenerationParams& p = provider_->calls()[0]->call.request->params;
  EXPECT_EQ(*p.top_p, 0.5);
  EXPECT_EQ(p.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(*p.seed, 4);
  EXPECT_EQ(*p.presence_penalty, 0.1);
  EXPECT_EQ(*p.frequency_penalty, 0.2);
  EXPECT_EQ(p.response_format.type, ResponseFormat::Type::kJsonObject);
  EXPECT_FALSE(p.temperature.has_value());
}

TEST_F(RouterTest, ToolRequestsSkipModelsWithoutToolSupport) {
  config_.models[0].supports_tools = false;
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RouteRequest r = MakeRoute("fast");
  r.request->tools.push_back({"lookup", "", "{}"});
  EXPECT_EQ(Run(std::move(r)).response.model, "m2");
  RouteRequest direct = MakeRoute("m1");
  direct.request->tools.push_back({"lookup", "", "{}"});
  RecordingSink& s = Run(std::move(direct));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status.message().find("tools"), std::string::npos);
}

TEST_F(RouterTest, PrefillNeedsSupportsPrefill) {
  config_.models[1].supports_prefill = true;
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  RouteRequest r = MakeRoute("pool");
  ChatMessage prefill;
  prefill.role = Role::kAssistant;
  prefill.content = "{";
  r.request->messages.push_back(prefill);
  for (int i = 0; i < 3; ++i) {
    RouteRequest copy = r;
    EXPECT_EQ(Run(std::move(copy)).response.model, "m2");
  }
}

TEST_F(RouterTest, PoolHealthAndBreakerConfigApplyToPoolMembers) {
  config_.pools[0].health.passive.consecutive_failures = 1;
  config_.pools[0].health.passive.max_ejection_percent = 100;
  config_.pools[0].instance_breaker.failure_threshold = 1;
  config_.pools[0].max_instance_attempts = 1;
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("pool"));
  PoolStatusView v = (*router_->GetPoolStatus("pool"))[0];
  EXPECT_EQ(v.instances[0].health, InstanceHealth::kUnhealthy);
  EXPECT_EQ(v.instances[0].breaker, BreakerPhase::kOpen);
  EXPECT_EQ(v.failures, 1);
  // The task group's own view of the same instance is unaffected.
  EXPECT_EQ(EchelonStatus(0).instances[0].health, InstanceHealth::kHealthy);
}

TEST_F(RouterTest, TaskGroupInstanceBreakerAppliesToGroupPools) {
  Group().instance_breaker.failure_threshold = 1;
  Primary().retry.max_retries = 0;
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("fast"));
  EXPECT_EQ(EchelonStatus(0).instances[0].breaker, BreakerPhase::kOpen);
  // While open, the instance is skipped.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Run(MakeRoute("fast"), absl::Seconds(1)).response.instance,
              "m1/b");
  }
}

TEST_F(RouterTest, PoolRetryConfigSpacesInstanceFailovers) {
  config_.pools[0].retry.initial_backoff = absl::Seconds(2);
  config_.pools[0].retry.max_backoff = absl::Seconds(2);
  provider_->SetFallbackDefault(FakeProvider::Fail(ErrorClass::kServerError));
  Build();
  Run(MakeRoute("pool"), absl::Seconds(30));
  ASSERT_EQ(provider_->call_count(), 3u);
  absl::Duration gap = provider_->calls()[1]->started -
                       provider_->calls()[0]->started - absl::Milliseconds(100);
  EXPECT_GT(gap, absl::ZeroDuration());
  EXPECT_LE(gap, absl::Seconds(2));
}

TEST_F(RouterTest, PoolRequestTimeoutBoundsTheDeadline) {
  config_.pools[0].request_timeout = absl::Seconds(2);
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  absl::Time t0 = loop_.Now();
  RecordingSink& s = Run(MakeRoute("pool"));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(provider_->calls()[0]->call.deadline, t0 + absl::Seconds(2));
}

TEST_F(RouterTest, DescriptionsAppearInTargets) {
  Group().description = "quick answers";
  config_.pools[0].description = "everything";
  Build();
  for (const TargetView& t : router_->ListTargets()) {
    if (t.name == "fast") {
      EXPECT_EQ(t.description, "quick answers");
    }
    if (t.name == "pool") {
      EXPECT_EQ(t.description, "everything");
    }
  }
}

TEST_F(RouterTest, StatusGettersAreSafeFromOtherThreads) {
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) {
      auto p = router_->GetPoolStatus("");
      auto g = router_->GetTaskGroupStatus("");
      auto t = router_->RecentTraces();
      ASSERT_TRUE(p.ok());
      ASSERT_TRUE(g.ok());
    }
  });
  for (int i = 0; i < 200; ++i)
    Run(MakeRoute(i % 2 ? "pool" : "fast"), absl::Milliseconds(200));
  stop = true;
  reader.join();
  EXPECT_EQ((*router_->GetPoolStatus("pool"))[0].requests, 100);
}

TEST_F(RouterTest, StatusViewsCarryTrafficStatistics) {
  Primary().retry.max_retries = 1;
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->Script(Url("m1", "b"),
                    FakeProvider::Fail(ErrorClass::kTimeoutFirstToken));
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(300)));
  Build();
  Run(MakeRoute("fast"));
  TaskGroupStatusView g = (*router_->GetTaskGroupStatus("fast"))[0];
  EXPECT_EQ(g.traffic.failures_by_class.at("server_error"), 1);
  EXPECT_EQ(g.traffic.failures_by_class.at("timeout_first_token"), 1);
  EXPECT_EQ(g.traffic.retries, 1);
  EXPECT_EQ(g.fallbacks_by_reason.at("echelon_down"), 1);
  EXPECT_EQ(g.recent_fallbacks[0].from, "fast.primary");
  EXPECT_EQ(g.traffic.tokens_out, 5);
  EXPECT_EQ(g.traffic.latency_histogram.size(),
            g.traffic.histogram_bounds_ms.size() + 1);
  EXPECT_EQ(g.echelons[0].traffic.failures_by_class.at("server_error"), 1);
  EXPECT_EQ(g.echelons[0].fallbacks_out, 1);
  EXPECT_EQ(g.echelons[1].traffic.latency_histogram[3], 1);  // 250-500 ms
  const InstanceStatusView& c = g.echelons[1].instances[0];
  EXPECT_EQ(c.id, "m2/c");
  EXPECT_EQ(c.traffic.ewma_latency, absl::Milliseconds(300));
  EXPECT_EQ(c.traffic.tokens_in, 10);
  EXPECT_NE(c.last_used, absl::InfinitePast());
}

TEST_F(RouterTest, ActiveHealthProbesRunThroughTheProviderOnLoopTimers) {
  Group().health.active.enabled = true;
  Group().health.active.interval = absl::Seconds(10);
  Group().health.active.jitter = 0;
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(5)));
  Build();
  EXPECT_EQ(provider_->call_count(), 0u);
  loop_.AdvanceBy(absl::Seconds(10));
  // One probe per instance of the group's pools (m1/a, m1/b, m2/c).
  ASSERT_EQ(provider_->call_count(), 3u);
  for (const auto& c : provider_->calls()) {
    EXPECT_FALSE(c->call.stream);
    EXPECT_EQ(c->call.request->request_id, "echelon-health-probe");
  }
  router_.reset();  // stops the probes
  loop_.AdvanceBy(absl::Minutes(1));
  EXPECT_EQ(provider_->call_count(), 3u);
}

TEST_F(RouterTest, ReloadCarriesEchelonBreakerState) {
  Primary().breaker.failure_threshold = 1;
  Primary().retry.max_retries = 0;
  provider_->Script(Url("m1", "a"),
                    FakeProvider::Fail(ErrorClass::kServerError));
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("fast"));
  ASSERT_EQ(EchelonStatus(0).breaker, BreakerPhase::kOpen);
  auto next = Router::Create(
      config_, loop_, {{"p1", provider_}, {"p2", provider_}}, router_.get());
  ASSERT_TRUE(next.ok());
  router_ = *std::move(next);
  EXPECT_EQ(EchelonStatus(0).breaker, BreakerPhase::kOpen);
  EXPECT_EQ(EchelonStatus(0).requests, 1);
  EXPECT_EQ(Run(MakeRoute("fast")).response.model, "m2");
}

TEST_F(RouterTest, CommittedStreamHittingDeadlineIsPartialNeverOk) {
  Build();
  RecordingSink s;
  router_->Start(MakeRoute("fast", true, loop_.Now() + absl::Seconds(3)), &s);
  loop_.RunUntilIdle();
  StreamDelta d;
  d.content = "Hel";
  provider_->Deliver(0, d);
  loop_.AdvanceBy(absl::Seconds(5));
  ASSERT_TRUE(s.done);
  EXPECT_EQ(s.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(s.status.message().find("partial"), std::string::npos);
  EXPECT_EQ(s.text, "Hel");
  EXPECT_TRUE(provider_->calls()[0]->cancelled);
  EXPECT_EQ(provider_->call_count(), 1u);
}

TEST_F(RouterTest, CommittedStreamCutByEchelonTimeoutIsAborted) {
  Primary().timeout = absl::Seconds(2);
  Build();
  RecordingSink s;
  router_->Start(MakeRoute("fast", true), &s);
  loop_.RunUntilIdle();
  StreamDelta d;
  d.content = "Hel";
  provider_->Deliver(0, d);
  loop_.AdvanceBy(absl::Seconds(3));
  ASSERT_TRUE(s.done);
  EXPECT_EQ(s.status.code(), absl::StatusCode::kAborted);
  EXPECT_NE(s.status.message().find("partial"), std::string::npos);
  EXPECT_EQ(provider_->call_count(), 1u);  // no failover after commit
}

TEST_F(RouterTest, QueueTimeoutWithSpillGoesToNextEchelon) {
  Primary().concurrency.max_concurrency = 1;
  Primary().concurrency.queue_size = 1;
  Primary().concurrency.queue_timeout = absl::Seconds(2);
  Primary().concurrency.on_overflow = OverflowPolicy::kSpill;
  provider_->SetDefault(Url("m1", "a"), FakeProvider::Hang());
  provider_->SetFallbackDefault(FakeProvider::Ok());
  Build();
  Run(MakeRoute("fast"), absl::Seconds(1));
  absl::Time queued_at = loop_.Now();
  RecordingSink& s = Run(MakeRoute("fast"), absl::Seconds(5));
  EXPECT_TRUE(s.status.ok());
  EXPECT_EQ(s.response.instance, "m2/c");
  EXPECT_EQ(provider_->calls()[1]->started, queued_at + absl::Seconds(2));
}

}  // namespace
}  // namespace echelon
