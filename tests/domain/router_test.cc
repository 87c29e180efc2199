#include "domain/router.h"

#include <memory>
#include <string>

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

  void Build(RouterOptions options = {}) {
    if (!options.random_seed) options.random_seed = 7;
    auto r =
        Router::Create(config_, loop_, {{"p1", provider_}}, nullptr, options);
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

}  // namespace
}  // namespace echelon
