// Fault scenarios through the real echelond binary that depend on time:
// concurrency and rate limits, client deadlines, client cancellation, stream
// stalls and upstream hangs. Each test starts its own simulator and gateway
// on testdata/fault_timing/gateway.yaml. Time bounds are generous upper
// bounds: this runs on a busy 2-core CI machine.
#include <atomic>
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
using ::echelon::testing::RunStream;
using ::echelon::testing::SetDeadline;
using ::echelon::testing::SimKeyStats;
using ::echelon::testing::UserRequest;

constexpr char kConfig[] =
    "tests/integration/testdata/fault_timing/gateway.yaml";

class FaultTimingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GatewayProcesses::Options options;
    options.config = kConfig;
    auto p = GatewayProcesses::Start(options);
    ASSERT_TRUE(p.ok()) << p.status();
    gw_ = *std::move(p);
  }

  // Polls the simulator until `pred` holds for `key` or `timeout` passes;
  // returns the last stats seen.
  template <typename Pred>
  SimKeyStats WaitForKey(const std::string& key, Pred pred,
                         absl::Duration timeout) {
    absl::Time end = absl::Now() + timeout;
    SimKeyStats k = gw_->KeyStats(key);
    while (!pred(k) && absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(20));
      k = gw_->KeyStats(key);
    }
    return k;
  }

  std::unique_ptr<GatewayProcesses> gw_;
};

// Scenario 6: 20 concurrent calls against a 2 s upstream behind a limit of 2
// in flight: the upstream never sees more than 2 at once, overflow is refused
// with RESOURCE_EXHAUSTED quickly, and in-flight returns to 0. `target` is
// routed with the limit, `key` is the simulator key behind it.
void ExpectConcurrencyCapped(GatewayProcesses& gw, const std::string& target,
                             const std::string& key) {
  constexpr int kCalls = 20;
  std::vector<grpc::StatusCode> codes(kCalls);
  std::vector<absl::Duration> took(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext ctx;
      SetDeadline(&ctx, absl::Seconds(20));
      v1::ExecuteResponse resp;
      absl::Time start = absl::Now();
      codes[i] =
          gw.stub().Execute(&ctx, UserRequest(target), &resp).error_code();
      took[i] = absl::Now() - start;
    });
  }
  for (std::thread& t : threads) t.join();
  int ok = 0;
  int rejected = 0;
  for (int i = 0; i < kCalls; ++i) {
    if (codes[i] == grpc::StatusCode::OK) {
      ++ok;
    } else {
      EXPECT_EQ(codes[i], grpc::StatusCode::RESOURCE_EXHAUSTED) << "call " << i;
      EXPECT_LT(took[i], absl::Milliseconds(1500)) << "call " << i;
      ++rejected;
    }
  }
  EXPECT_GE(ok, 2);
  EXPECT_GE(rejected, kCalls / 2);
  SimKeyStats k = gw.KeyStats(key);
  EXPECT_LE(k.max_active, 2);
  EXPECT_EQ(k.attempts, ok);
}

// Scenario 6 with the echelon's concurrency limit (task group target).
TEST_F(FaultTimingTest, EchelonConcurrencyLimitCapsUpstreamAndRejectsFast) {
  ExpectConcurrencyCapped(*gw_, "conc", "s6");
  auto group = gw_->TaskGroupStatus("conc");
  ASSERT_TRUE(group.ok()) << group.status();
  ASSERT_EQ(group->echelons_size(), 1);
  EXPECT_EQ(group->echelons(0).in_flight(), 0);
  EXPECT_GT(group->echelons(0).rejected(), 0);
  for (const v1::InstanceStatus& i : group->echelons(0).instances()) {
    EXPECT_EQ(i.in_flight(), 0) << i.id();
  }
}

// Scenario 6 with the instance's max_concurrency (pool target).
// DISABLED: bug in domain/router.cc RouteCall::FinishExhausted(): when every
// instance is skipped because it is at max_concurrency (no attempt was made,
// last_error_ is kNone) the call ends UNAVAILABLE "no available instance for
// target 'conc-pool'" instead of RESOURCE_EXHAUSTED. Observed: 18 of 20 calls
// UNAVAILABLE within ~1 ms; the cap itself held (max_active <= 2, in_flight
// back to 0).
TEST_F(FaultTimingTest, InstanceConcurrencyLimitCapsUpstreamAndRejectsFast) {
  ExpectConcurrencyCapped(*gw_, "conc-pool", "s6i");
  auto pool = gw_->PoolStatus("conc-pool");
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->in_flight(), 0);
  for (const v1::InstanceStatus& i : pool->instances()) {
    EXPECT_EQ(i.in_flight(), 0) << i.id();
  }
}

// Scenario 7: 120 requests/minute with a bucket of 6 (burst 0.05 of a
// minute), offered at 3x the rate for ~5 s: the accepted count matches
// rate x time + burst within 5% (+1).
TEST_F(FaultTimingTest, RateLimitAcceptsRateTimesTimePlusBurst) {
  constexpr double kRatePerSecond = 2.0;
  constexpr double kBurst = 6.0;
  absl::Time start = absl::Now();
  int accepted = 0;
  int refused = 0;
  int sent = 0;
  while (absl::Now() - start < absl::Seconds(5)) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(10));
    v1::ExecuteResponse resp;
    grpc::Status s = gw_->stub().Execute(&ctx, UserRequest("rate"), &resp);
    ++sent;
    if (s.ok()) {
      ++accepted;
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << s.error_message();
      ++refused;
    }
    // 3x the rate: one call every 1/6 s, paced from the start.
    absl::Time next = start + absl::Seconds(sent / (3 * kRatePerSecond));
    absl::SleepFor(next - absl::Now());
  }
  double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  double expected = kRatePerSecond * elapsed + kBurst;
  EXPECT_NEAR(accepted, expected, expected * 0.05 + 1)
      << "sent " << sent << " in " << elapsed << " s";
  EXPECT_GT(refused, 0);
  EXPECT_EQ(gw_->KeyStats("s7").attempts, accepted);
}

// Scenario 8: a 500 ms client deadline against a 5 s upstream gives
// DEADLINE_EXCEEDED promptly, the upstream connection is closed right after
// the deadline, and no attempt starts after it.
TEST_F(FaultTimingTest, ClientDeadlineEndsCallAndClosesUpstream) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Milliseconds(500));
  v1::ExecuteResponse resp;
  absl::Time start = absl::Now();
  grpc::Status s = gw_->stub().Execute(&ctx, UserRequest("deadline"), &resp);
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << s.error_message();
  EXPECT_LT(took, absl::Milliseconds(1500));

  SimKeyStats k = WaitForKey(
      "s8", [](const SimKeyStats& k) { return k.last_close_ms >= 0; },
      absl::Seconds(3));
  EXPECT_EQ(k.attempts, 1);
  ASSERT_GE(k.last_start_ms, 0);
  ASSERT_GE(k.last_close_ms, 0) << "upstream connection never closed";
  // The attempt started shortly after the call, so the deadline is at most
  // ~500 ms after last_start_ms; the close must follow within 300 ms.
  EXPECT_LE(k.last_close_ms - k.last_start_ms, 500 + 300);
  EXPECT_EQ(k.client_closed, 1);

  // Nothing else reaches the upstream afterwards.
  absl::SleepFor(absl::Milliseconds(700));
  EXPECT_EQ(gw_->KeyStats("s8").attempts, 1);
}

// Scenario 8, streamed.
TEST_F(FaultTimingTest, ClientDeadlineEndsStreamAndClosesUpstream) {
  absl::Time start = absl::Now();
  auto result =
      RunStream(gw_->stub(), UserRequest("deadline"), absl::Milliseconds(500));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << result.status.error_message();
  EXPECT_TRUE(result.content.empty());
  SimKeyStats k = WaitForKey(
      "s8", [](const SimKeyStats& k) { return k.last_close_ms >= 0; },
      absl::Seconds(3));
  EXPECT_EQ(k.attempts, 1);
  EXPECT_LE(k.last_close_ms - k.last_start_ms, 500 + 300);
}

// Scenario 9: the client cancels a stream after 3 chunks; the simulator sees
// the client close the upstream connection soon after.
TEST_F(FaultTimingTest, ClientCancellationClosesUpstreamStream) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(20));
  auto reader = gw_->stub().Stream(&ctx, UserRequest("cancel"));
  v1::StreamChunk chunk;
  int chunks = 0;
  while (chunks < 3 && reader->Read(&chunk)) {
    if (chunk.chunk_case() == v1::StreamChunk::kContentDelta) ++chunks;
  }
  ASSERT_EQ(chunks, 3);
  ctx.TryCancel();
  auto at_cancel = gw_->Stats();
  ASSERT_TRUE(at_cancel.ok());
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  SimKeyStats k = WaitForKey(
      "s9", [](const SimKeyStats& k) { return k.client_closed >= 1; },
      absl::Seconds(3));
  EXPECT_EQ(k.client_closed, 1);
  EXPECT_EQ(k.completed, 0);
  EXPECT_EQ(k.active, 0);
  EXPECT_EQ(k.attempts, 1);
  EXPECT_LE(k.last_close_ms - at_cancel->now_ms, 300);
}

// Scenario 11: the upstream stalls after 2 chunks; the 500 ms stall timeout
// ends the call non-OK within a couple of seconds and frees the upstream.
TEST_F(FaultTimingTest, StalledStreamTimesOutAndFreesUpstream) {
  absl::Time start = absl::Now();
  auto result = RunStream(gw_->stub(), UserRequest("stall"));
  absl::Duration took = absl::Now() - start;
  EXPECT_FALSE(result.status.ok());
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_EQ(result.Joined(), "tok1 tok2");
  EXPECT_NE(result.status.error_message().find("partial"), std::string::npos)
      << result.status.error_code() << " " << result.status.error_message();
  SimKeyStats k = WaitForKey(
      "s11", [](const SimKeyStats& k) { return k.active == 0; },
      absl::Seconds(3));
  EXPECT_EQ(k.active, 0);
  EXPECT_EQ(k.attempts, 1);
}

// hang: the upstream reads the request and never answers; the 500 ms
// first-token timeout fails the attempt (retried once), the call ends
// non-OK, and no upstream connection is left open.
TEST_F(FaultTimingTest, HangingUpstreamHitsFirstTokenTimeout) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(20));
  v1::ExecuteResponse resp;
  absl::Time start = absl::Now();
  grpc::Status s = gw_->stub().Execute(&ctx, UserRequest("hang"), &resp);
  absl::Duration took = absl::Now() - start;
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << "the 20 s client deadline, not the first-token timeout, ended it";
  EXPECT_LT(took, absl::Seconds(5));
  SimKeyStats k = WaitForKey(
      "shang", [](const SimKeyStats& k) { return k.active == 0; },
      absl::Seconds(3));
  EXPECT_GE(k.attempts, 1);
  EXPECT_LE(k.attempts, 2);
  EXPECT_EQ(k.active, 0);
}

}  // namespace
}  // namespace echelon
