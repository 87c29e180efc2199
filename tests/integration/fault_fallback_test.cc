// Fault scenarios through the real echelond binary: echelon fallback and
// recovery, passive ejection, and a flapping primary. Each test starts its
// own simulator and gateway on testdata/fault_fallback/gateway.yaml.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_fixture.h"

namespace echelon {
namespace {

using ::echelon::testing::GatewayProcesses;
using ::echelon::testing::SetDeadline;
using ::echelon::testing::UserRequest;

constexpr char kConfig[] =
    "tests/integration/testdata/fault_fallback/gateway.yaml";

class FaultFallbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GatewayProcesses::Options options;
    options.config = kConfig;
    auto p = GatewayProcesses::Start(options);
    ASSERT_TRUE(p.ok()) << p.status();
    gw_ = *std::move(p);
  }

  grpc::Status Execute(const std::string& target, v1::ExecuteResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(20));
    return gw_->stub().Execute(&ctx, UserRequest(target), resp);
  }

  std::unique_ptr<GatewayProcesses> gw_;
};

// Scenario 4: echelon 1 refuses connections, echelon 2 serves every call,
// echelon 3 is never used while 2 has capacity.
TEST_F(FaultFallbackTest, RefusedFirstEchelonFallsToSecondNotThird) {
  for (int i = 0; i < 5; ++i) {
    v1::ExecuteResponse resp;
    grpc::Status s = Execute("fallback", &resp);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    EXPECT_EQ(resp.model(), "mid");
  }
  EXPECT_EQ(gw_->KeyStats("s4mid").attempts, 5);
  EXPECT_EQ(gw_->KeyStats("s4last").attempts, 0);
}

// Scenario 4, capacity: echelon 1 refuses connections and echelon 2 holds
// one call at a time (on_overflow: spill); with 3 concurrent calls echelon 3
// takes only what echelon 2 has no room for.
TEST_F(FaultFallbackTest, ThirdEchelonTakesOnlyTheSecondsOverflow) {
  constexpr int kCalls = 3;
  std::vector<std::string> models(kCalls);
  std::vector<grpc::Status> statuses(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      v1::ExecuteResponse resp;
      statuses[i] = Execute("spill", &resp);
      models[i] = resp.model();
    });
  }
  for (std::thread& t : threads) t.join();
  int on_second = 0;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    if (models[i] == "mid-slow") ++on_second;
  }
  EXPECT_GE(on_second, 1);
  auto stats = gw_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->Key("s4spillmid").max_active, 1);
  EXPECT_EQ(stats->Key("s4spillmid").attempts, on_second);
  EXPECT_EQ(stats->Key("s4spilllast").attempts, kCalls - on_second);

  // One call alone: echelon 2 has room again, echelon 3 is not used.
  v1::ExecuteResponse resp;
  ASSERT_TRUE(Execute("spill", &resp).ok());
  EXPECT_EQ(resp.model(), "mid-slow");
}

// Scenario 4, recovery: echelon 1 answers 503 until its fault is cleared at
// run time; the backup serves meanwhile, and after the breaker's short
// recovery_time (1 s) traffic returns to echelon 1.
TEST_F(FaultFallbackTest, TrafficReturnsToFirstEchelonAfterRecovery) {
  ASSERT_TRUE(gw_->SetScenario("s4flip", "fault=http_503").ok());
  for (int i = 0; i < 4; ++i) {
    v1::ExecuteResponse resp;
    grpc::Status s = Execute("recover", &resp);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    EXPECT_EQ(resp.model(), "flip-backup");
  }
  int64_t failed_attempts = gw_->KeyStats("s4flip").attempts;
  EXPECT_GE(failed_attempts, 1);
  // The breaker opened: echelon 1 is no longer tried on every call.
  EXPECT_LT(failed_attempts, 4);

  ASSERT_TRUE(gw_->SetScenario("s4flip", "").ok());
  absl::Time healed = absl::Now();
  absl::Duration back_after = absl::InfiniteDuration();
  while (absl::Now() - healed < absl::Seconds(10)) {
    v1::ExecuteResponse resp;
    grpc::Status s = Execute("recover", &resp);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    if (resp.model() == "flip") {
      back_after = absl::Now() - healed;
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_LT(back_after, absl::Seconds(6)) << "never returned to echelon 1";
  // Once back, it stays there.
  for (int i = 0; i < 3; ++i) {
    v1::ExecuteResponse resp;
    ASSERT_TRUE(Execute("recover", &resp).ok());
    EXPECT_EQ(resp.model(), "flip");
  }
}

// Scenario 5: consecutive failures eject the failing instance; the pool
// status shows it unhealthy with a cooldown in the future, and the healthy
// instance serves.
TEST_F(FaultFallbackTest, ConsecutiveFailuresEjectTheInstance) {
  for (int i = 0; i < 8; ++i) {
    v1::ExecuteResponse resp;
    grpc::Status s = Execute("eject-pool", &resp);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    EXPECT_EQ(resp.instance(), "ejectable/b");
  }
  int64_t failures = gw_->KeyStats("s5a").attempts;
  EXPECT_GE(failures, 2);
  EXPECT_LE(failures, 3) << "still tried after ejection";

  auto pool = gw_->PoolStatus("eject-pool");
  ASSERT_TRUE(pool.ok()) << pool.status();
  bool found = false;
  for (const v1::InstanceStatus& i : pool->instances()) {
    if (i.id() != "ejectable/a" &&
        !(i.model() == "ejectable" && i.id() == "a")) {
      continue;
    }
    found = true;
    EXPECT_EQ(i.state(), v1::INSTANCE_STATE_UNHEALTHY) << i.DebugString();
  }
  EXPECT_TRUE(found) << pool->DebugString();
}

// Scenario 5, status: an ejected instance shows when its ejection ends.
// DISABLED: bug in domain/pool.cc Pool::Status(): InstanceStatusView
// cooldown_until is max(cooldown_until, disabled_until) of the Instance and
// ignores the pool member's ejected_until, so GetPoolStatus reports the
// ejected instance UNHEALTHY with cooldown_until_us == 0 (observed) instead
// of ~30 s ahead (base_ejection_time).
TEST_F(FaultFallbackTest, EjectedInstanceShowsCooldownInPoolStatus) {
  for (int i = 0; i < 8; ++i) {
    v1::ExecuteResponse resp;
    ASSERT_TRUE(Execute("eject-pool", &resp).ok());
  }
  auto pool = gw_->PoolStatus("eject-pool");
  ASSERT_TRUE(pool.ok()) << pool.status();
  bool found = false;
  for (const v1::InstanceStatus& i : pool->instances()) {
    if (i.id() != "ejectable/a" &&
        !(i.model() == "ejectable" && i.id() == "a")) {
      continue;
    }
    found = true;
    EXPECT_EQ(i.state(), v1::INSTANCE_STATE_UNHEALTHY) << i.DebugString();
    EXPECT_GT(i.cooldown_until_us(),
              absl::ToUnixMicros(absl::Now() + absl::Seconds(10)))
        << i.DebugString();
  }
  EXPECT_TRUE(found) << pool->DebugString();
}

// Scenario 14: the primary is down for 3 s after its first request. With a
// request every 200 ms the backup serves while it is down, the breaker only
// probes it, and traffic returns to it within a few seconds of recovery.
TEST_F(FaultFallbackTest, FlappingPrimaryFallsBackThenReturns) {
  absl::Time start = absl::Now();
  absl::Duration back_at = absl::InfiniteDuration();
  int requests = 0;
  while (absl::Now() - start < absl::Seconds(9)) {
    v1::ExecuteResponse resp;
    grpc::Status s = Execute("flap", &resp);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    ++requests;
    absl::Duration t = absl::Now() - start;
    if (t < absl::Milliseconds(2500)) {
      EXPECT_EQ(resp.model(), "steady") << "at " << t;
    }
    if (resp.model() == "flappy" && back_at == absl::InfiniteDuration()) {
      back_at = t;
      EXPECT_GE(t, absl::Milliseconds(2900));
    }
    if (back_at != absl::InfiniteDuration() && t > back_at + absl::Seconds(1)) {
      EXPECT_EQ(resp.model(), "flappy") << "at " << t;
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_LT(back_at, absl::Seconds(7)) << "never returned to the primary";
  // While down the primary only saw probes, not every request.
  auto stats = gw_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_LT(stats->Key("s14").attempts, requests);
}

}  // namespace
}  // namespace echelon
