// The router's use of the SharedState port: two routers on one fake loop
// stand for two replicas sharing one store (tests/fakes/fake_shared_state.h).
#include <memory>
#include <string>
#include <vector>

#include "domain/router.h"
#include "gtest/gtest.h"
#include "tests/domain/router_test_util.h"
#include "tests/fakes/fake_event_loop.h"
#include "tests/fakes/fake_provider.h"
#include "tests/fakes/fake_shared_state.h"

namespace echelon {
namespace {

using testing::MakeEchelon;
using testing::MakeModel;
using testing::MakeProvider;
using testing::MakeRoute;
using testing::RecordingSink;
using testing::Url;

constexpr char kPrimaryKey[] = "echelon/fast/primary";

class RouterSharedTest : public ::testing::Test {
 protected:
  RouterSharedTest()
      : provider_(std::make_shared<FakeProvider>(loop_)),
        store_(loop_),
        shared_a_(store_),
        shared_b_(store_) {
    config_.providers.push_back(MakeProvider("p1"));
    config_.models.push_back(MakeModel("m1", "p1", {"a", "b"}));
    config_.models.push_back(MakeModel("m2", "p1", {"c"}));
    TaskGroupConfig g;
    g.name = "fast";
    g.echelons.push_back(MakeEchelon("primary", 0, {"m1"}));
    g.echelons.push_back(MakeEchelon("backup", 1, {"m2"}));
    config_.task_groups.push_back(g);
  }

  void TearDown() override {
    loop_.AdvanceBy(absl::Hours(1));
    router_a_.reset();
    router_b_.reset();
    loop_.RunUntilIdle();
  }

  std::unique_ptr<Router> MakeRouter(FakeSharedState* shared, double share) {
    RouterOptions o;
    o.random_seed = 7;
    o.shared = shared;
    o.local_share = share;
    auto r = Router::Create(config_, loop_, {{"p1", provider_}}, nullptr, o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  void Build(double share = 0.5) {
    router_a_ = MakeRouter(&shared_a_, share);
    router_b_ = MakeRouter(&shared_b_, share);
    shared_a_.SetListener(
        [this](const SharedEvent& e) { router_a_->ApplySharedEvent(e); });
    shared_b_.SetListener(
        [this](const SharedEvent& e) { router_b_->ApplySharedEvent(e); });
    loop_.RunUntilIdle();
  }

  RecordingSink& Run(Router& r, RouteRequest req,
                     absl::Duration for_time = absl::Seconds(1)) {
    sinks_.push_back(std::make_unique<RecordingSink>());
    r.Start(std::move(req), sinks_.back().get());
    loop_.AdvanceBy(for_time);
    return *sinks_.back();
  }
  // Requests alternating over the two replicas; returns how many were
  // served by the primary echelon.
  int ServedByPrimary(int requests) {
    int served = 0;
    for (int i = 0; i < requests; ++i) {
      RecordingSink& s =
          Run(i % 2 == 0 ? *router_a_ : *router_b_, MakeRoute("fast"));
      if (s.status.ok() && s.response.model == "m1") ++served;
    }
    return served;
  }
  std::vector<std::string> CalledUrls() const {
    std::vector<std::string> out;
    for (const auto& c : provider_->calls()) out.push_back(c->base_url());
    return out;
  }
  EchelonConfig& Primary() { return config_.task_groups[0].echelons[0]; }

  FakeEventLoop loop_;
  std::shared_ptr<FakeProvider> provider_;
  FakeSharedStore store_;
  FakeSharedState shared_a_;
  FakeSharedState shared_b_;
  GatewayConfig config_;
  std::unique_ptr<Router> router_a_;
  std::unique_ptr<Router> router_b_;
  std::vector<std::unique_ptr<RecordingSink>> sinks_;
};

TEST_F(RouterSharedTest, EchelonRpmLimitIsGlobalAcrossReplicas) {
  Primary().rate_limit.requests_per_minute = 4;
  Primary().concurrency.on_overflow = OverflowPolicy::kSpill;
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  Build();
  // 10 requests over two replicas within a second: 4 fit the shared limit,
  // the rest spill to the backup echelon. Each replica alone would have
  // admitted 4 (8 in all) without sharing.
  EXPECT_EQ(ServedByPrimary(10), 4);
  EXPECT_EQ(store_.Usage(kPrimaryKey).requests_used, 4);
  EXPECT_EQ(shared_a_.acquires + shared_b_.acquires, 10);
}

TEST_F(RouterSharedTest, RefusalRejectsWithTheStoresRetryHint) {
  Primary().rate_limit.requests_per_minute = 1;
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  Build();
  EXPECT_TRUE(Run(*router_a_, MakeRoute("fast")).status.ok());
  RecordingSink& s = Run(*router_b_, MakeRoute("fast"));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GT(s.response.retry_after, absl::Seconds(50));
}

TEST_F(RouterSharedTest, UnreachableStoreFallsBackToTheLocalShare) {
  Primary().rate_limit.requests_per_minute = 4;
  Primary().concurrency.on_overflow = OverflowPolicy::kSpill;
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  Build(/*share=*/0.5);
  shared_a_.set_connected(false);
  shared_b_.set_connected(false);
  // Each replica enforces half of 4 on its own: 2 + 2.
  EXPECT_EQ(ServedByPrimary(10), 4);
  EXPECT_EQ(store_.Usage(kPrimaryKey).requests_used, 0);
  // The status still shows the configured (global) limit.
  auto st = router_a_->GetTaskGroupStatus("fast");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ((*st)[0].echelons[0].requests_per_minute, 4);
}

TEST_F(RouterSharedTest, TokenReservationIsReconciledInTheStore) {
  Primary().rate_limit.tokens_per_minute = 1000;
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  RouteRequest r = MakeRoute("fast");
  r.request->params.max_tokens = 400;
  int64_t estimate = EstimatePromptTokens(*r.request) + 400;
  Run(*router_a_, std::move(r), absl::Milliseconds(1));
  EXPECT_EQ(store_.Usage(kPrimaryKey).tokens_used, estimate);
  provider_->Finish(0, [] {
    UpstreamResult res;
    res.response.usage = {10, 5, 15, 0};
    res.response.has_usage = true;
    return res;
  }());
  loop_.RunUntilIdle();
  EXPECT_EQ(store_.Usage(kPrimaryKey).tokens_used, 15);
}

TEST_F(RouterSharedTest, ConcurrencyRefusalGivesTheSharedReservationBack) {
  Primary().rate_limit.requests_per_minute = 100;
  Primary().concurrency.max_concurrency = 1;
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  Run(*router_a_, MakeRoute("fast"), absl::Milliseconds(1));
  RecordingSink& s = Run(*router_a_, MakeRoute("fast"), absl::Milliseconds(1));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kResourceExhausted);
  // Only the admitted request still counts against the shared limit.
  EXPECT_EQ(store_.Usage(kPrimaryKey).requests_used, 1);
}

TEST_F(RouterSharedTest, RequestFinishedWhileDecidingGivesTheShareBack) {
  Primary().rate_limit.requests_per_minute = 100;
  provider_->SetFallbackDefault(FakeProvider::Ok());
  store_.latency = absl::Milliseconds(50);
  Build();
  RouteRequest r = MakeRoute("fast");
  r.deadline = loop_.Now() + absl::Milliseconds(10);
  RecordingSink& s = Run(*router_a_, std::move(r), absl::Milliseconds(100));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(provider_->calls().empty());
  EXPECT_EQ(store_.Usage(kPrimaryKey).requests_used, 0);
}

TEST_F(RouterSharedTest, CooldownSeenByOneReplicaStopsTheOther) {
  Primary().retry.max_retries = 1;
  provider_->Script(Url("m1", "a"), FakeProvider::Fail(ErrorClass::kRateLimited,
                                                       absl::Milliseconds(10),
                                                       absl::Seconds(30)));
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  Build();
  // Replica A: m1/a answers 429 (Retry-After 30 s), m1/b serves.
  RecordingSink& first = Run(*router_a_, MakeRoute("fast"));
  ASSERT_TRUE(first.status.ok());
  EXPECT_EQ(first.response.instance, "m1/b");
  ASSERT_FALSE(store_.published.empty());
  EXPECT_EQ(store_.published[0].kind, SharedEventKind::kCooldown);
  EXPECT_EQ(store_.published[0].name, "m1/a");
  // Replica B never sends to m1/a while the cooldown lasts.
  size_t before = provider_->calls().size();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(Run(*router_b_, MakeRoute("fast")).response.instance, "m1/b");
  }
  for (size_t i = before; i < provider_->calls().size(); ++i) {
    EXPECT_NE(provider_->calls()[i]->base_url(), Url("m1", "a"));
  }
}

TEST_F(RouterSharedTest, InstanceBreakerOpenedOnOneReplicaIsOpenOnAll) {
  config_.task_groups[0].instance_breaker.failure_threshold = 2;
  config_.task_groups[0].instance_breaker.recovery_time = absl::Seconds(30);
  config_.task_groups[0].health.passive.enabled = false;
  Primary().retry.max_retries = 0;
  provider_->SetDefault(
      Url("m1", "a"),
      FakeProvider::Fail(ErrorClass::kServerError, absl::Milliseconds(10)));
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  Build();
  for (int i = 0; i < 4; ++i) Run(*router_a_, MakeRoute("fast"));
  int opens = 0;
  for (const SharedEvent& e : store_.published) {
    if (e.kind == SharedEventKind::kBreakerOpen && e.name == "m1/a") {
      EXPECT_EQ(e.scope, "fast/m1");
      EXPECT_EQ(e.breaker_kind, "instance");
      EXPECT_EQ(e.until - loop_.Now() > absl::Seconds(25), true);
      ++opens;
    }
  }
  EXPECT_EQ(opens, 1);
  size_t before = provider_->calls().size();
  for (int i = 0; i < 4; ++i) Run(*router_b_, MakeRoute("fast"));
  for (size_t i = before; i < provider_->calls().size(); ++i) {
    EXPECT_NE(provider_->calls()[i]->base_url(), Url("m1", "a"));
  }
}

TEST_F(RouterSharedTest, EchelonBreakerOpensAndClosesOnAllReplicas) {
  Primary().breaker.failure_threshold = 1;
  Primary().breaker.recovery_time = absl::Seconds(10);
  Primary().retry.max_retries = 0;
  provider_->Script(Url("m1", "a"), FakeProvider::Fail(ErrorClass::kServerError,
                                                       absl::Milliseconds(10)));
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  Build();
  EXPECT_EQ(Run(*router_a_, MakeRoute("fast")).response.model, "m2");
  auto status_b = [this] {
    auto st = router_b_->GetTaskGroupStatus("fast");
    EXPECT_TRUE(st.ok());
    return (*st)[0].echelons[0].breaker;
  };
  EXPECT_EQ(status_b(), BreakerPhase::kOpen);
  // B skips the primary without trying it.
  RecordingSink& skipped = Run(*router_b_, MakeRoute("fast"));
  EXPECT_EQ(skipped.response.model, "m2");
  EXPECT_EQ(skipped.response.attempts.size(), 1u);
  // After the open time A probes, succeeds and closes: B closes too.
  loop_.AdvanceBy(absl::Seconds(10));
  EXPECT_EQ(Run(*router_a_, MakeRoute("fast")).response.model, "m1");
  EXPECT_EQ(status_b(), BreakerPhase::kClosed);
}

TEST_F(RouterSharedTest, AppliedEventsAreNotPublishedAgain) {
  Primary().breaker.failure_threshold = 1;
  Primary().retry.max_retries = 0;
  provider_->Script(Url("m1", "a"), FakeProvider::Fail(ErrorClass::kServerError,
                                                       absl::Milliseconds(10)));
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  Build();
  Run(*router_a_, MakeRoute("fast"));
  loop_.AdvanceBy(absl::Seconds(1));
  // A published its verdicts once; B applied them and published nothing.
  int echelon_opens = 0;
  for (const SharedEvent& e : store_.published) {
    if (e.kind == SharedEventKind::kBreakerOpen && e.breaker_kind == "echelon")
      ++echelon_opens;
  }
  EXPECT_EQ(echelon_opens, 1);
}

TEST_F(RouterSharedTest, UnknownNamesInEventsAreIgnored) {
  Build();
  SharedEvent e;
  e.kind = SharedEventKind::kBreakerOpen;
  e.breaker_kind = "echelon";
  e.scope = "nope";
  e.name = "x";
  e.until = loop_.Now() + absl::Seconds(5);
  router_a_->ApplySharedEvent(e);
  e.breaker_kind = "instance";
  e.scope = "fast/m1";
  e.name = "m9/z";
  router_a_->ApplySharedEvent(e);
  e.kind = SharedEventKind::kCooldown;
  router_a_->ApplySharedEvent(e);
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  EXPECT_TRUE(Run(*router_a_, MakeRoute("fast")).status.ok());
}

TEST_F(RouterSharedTest, InstanceRpmLimitsAreGlobalAcrossReplicas) {
  config_.models[0].instances[0].requests_per_minute = 2;
  config_.models[0].instances[1].requests_per_minute = 2;
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  Build(/*share=*/1.0);
  // Each replica alone would let 2 + 2 through (8 in all); shared, the two
  // instances take 4 between them and the rest falls to the backup echelon.
  EXPECT_EQ(ServedByPrimary(10), 4);
  int a = 0, b = 0;
  for (const std::string& url : CalledUrls()) {
    a += url == Url("m1", "a");
    b += url == Url("m1", "b");
  }
  EXPECT_EQ(a, 2);
  EXPECT_EQ(b, 2);
  EXPECT_EQ(store_.Usage("instance/m1/a").requests_used, 2);
}

TEST_F(RouterSharedTest, InstanceLimitFallsBackToLocalShareWithoutStore) {
  config_.models[0].instances[0].requests_per_minute = 2;
  config_.models[0].instances[1].requests_per_minute = 2;
  provider_->SetFallbackDefault(FakeProvider::Ok(absl::Milliseconds(10)));
  Build(/*share=*/0.5);
  shared_a_.set_connected(false);
  shared_b_.set_connected(false);
  EXPECT_EQ(ServedByPrimary(10), 4);  // 1 per instance per replica
  EXPECT_EQ(store_.Usage("instance/m1/a").requests_used, 0);
}

TEST_F(RouterSharedTest, InstanceTokensAreReconciledInTheStore) {
  config_.models[0].instances[0].tokens_per_minute = 100000;
  config_.models[0].instances.pop_back();  // only m1/a
  provider_->SetFallbackDefault(FakeProvider::Hang());
  Build();
  RouteRequest r = MakeRoute("fast");
  r.request->params.max_tokens = 400;
  Run(*router_a_, std::move(r), absl::Milliseconds(1));
  EXPECT_GT(store_.Usage("instance/m1/a").tokens_used, 400);
  provider_->Finish(0, [] {
    UpstreamResult res;
    res.response.usage = {10, 5, 15, 0};
    res.response.has_usage = true;
    return res;
  }());
  loop_.RunUntilIdle();
  EXPECT_NEAR(store_.Usage("instance/m1/a").tokens_used, 15, 2);
  // The pool's own counters are untouched by the refused or settled picks.
  EXPECT_TRUE(sinks_.back()->status.ok());
}

TEST_F(RouterSharedTest, PendingInstanceDecisionIsUndoneWhenTheCallEnds) {
  config_.models[0].instances[0].requests_per_minute = 10;
  config_.models[0].instances.pop_back();
  provider_->SetFallbackDefault(FakeProvider::Ok());
  store_.latency = absl::Milliseconds(50);
  Build();
  RouteRequest r = MakeRoute("fast");
  r.deadline = loop_.Now() + absl::Milliseconds(30);  // store: 50 ms
  RecordingSink& s = Run(*router_a_, std::move(r), absl::Milliseconds(200));
  EXPECT_EQ(s.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(provider_->calls().empty());
  EXPECT_EQ(store_.Usage("instance/m1/a").requests_used, 0);
  auto st = router_a_->GetTaskGroupStatus("fast");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ((*st)[0].echelons[0].in_flight, 0);
  // The abandoned pick left nothing behind: the instance still serves.
  store_.latency = absl::Microseconds(200);
  RecordingSink& next = Run(*router_a_, MakeRoute("fast"));
  EXPECT_TRUE(next.status.ok()) << next.status;
  EXPECT_EQ(next.response.instance, "m1/a");
}

}  // namespace
}  // namespace echelon
