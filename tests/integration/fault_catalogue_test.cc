// Issue 4: every fault of the upstream simulator is exercised through the
// real echelond binary. Faults with their own scenario tests live in the
// other fault_*_test files; this one walks the rest of the catalogue (and a
// few again in the other dialect or call mode). Each case's primary echelon
// has the fault, a healthy backup echelon follows: the call must succeed
// from the backup, the simulator must have seen the faulty attempt, and the
// gateway must have counted it under the expected error class in
// echelon_upstream_attempts_total.
#include <memory>
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_fixture.h"

namespace echelon {
namespace {

using ::echelon::testing::GatewayProcesses;
using ::echelon::testing::MetricValue;
using ::echelon::testing::RunStream;
using ::echelon::testing::SetDeadline;
using ::echelon::testing::StreamResult;
using ::echelon::testing::UserRequest;

constexpr char kConfig[] =
    "tests/integration/testdata/fault_catalogue/gateway.yaml";

struct FaultCase {
  std::string name;     // task group c-<name>, model f-<name>, sim key <name>
  bool stream;          // call Stream instead of Execute
  std::string outcome;  // expected error class of the faulty attempt
  // Requests the simulator may see for the one gateway attempt. A reset
  // before any response byte on a reused keep-alive connection is re-sent
  // once by libcurl itself ("connection died, retrying a fresh connect"),
  // so those faults may show 2.
  int max_sim_attempts = 1;
};

std::ostream& operator<<(std::ostream& os, const FaultCase& c) {
  return os << c.name << (c.stream ? " (stream)" : " (unary)");
}

class FaultCatalogueTest : public ::testing::TestWithParam<FaultCase> {
 protected:
  static void SetUpTestSuite() {
    GatewayProcesses::Options options;
    options.config = kConfig;
    auto p = GatewayProcesses::Start(options);
    ASSERT_TRUE(p.ok()) << p.status();
    gw_ = p->release();
  }
  static void TearDownTestSuite() {
    delete gw_;
    gw_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(gw_, nullptr) << "processes not started"; }

  // Calls c-<name>; expects the backup to serve and the faulty attempt to be
  // seen by the simulator and counted with `c.outcome`.
  static void Check(const FaultCase& c);

  static GatewayProcesses* gw_;
};

GatewayProcesses* FaultCatalogueTest::gw_ = nullptr;

void FaultCatalogueTest::Check(const FaultCase& c) {
  const std::string target = absl::StrCat("c-", c.name);
  absl::Time start = absl::Now();
  if (c.stream) {
    StreamResult r = RunStream(gw_->stub(), UserRequest(target));
    ASSERT_TRUE(r.status.ok())
        << r.status.error_code() << " " << r.status.error_message();
    EXPECT_EQ(r.Joined(), "tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8");
    EXPECT_EQ(r.summary.model(), "backup");
  } else {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(20));
    v1::ExecuteResponse resp;
    grpc::Status s = gw_->stub().Execute(&ctx, UserRequest(target), &resp);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    EXPECT_EQ(resp.message().content(),
              "tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8");
    EXPECT_EQ(resp.model(), "backup");
    ASSERT_GE(resp.attempts_size(), 2);
    EXPECT_EQ(resp.attempts(0).outcome(), c.outcome);
  }
  // Timeout faults cost one 500 ms timeout, the rest almost nothing.
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  int64_t sim_attempts = gw_->KeyStats(c.name).attempts;
  EXPECT_GE(sim_attempts, 1);
  EXPECT_LE(sim_attempts, c.max_sim_attempts);

  auto metrics = gw_->ScrapeMetrics();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(MetricValue(*metrics, "echelon_upstream_attempts_total",
                        {{"instance", absl::StrCat("f-", c.name, "/a")},
                         {"outcome", c.outcome}}),
            1)
      << "instance f-" << c.name << "/a, outcome " << c.outcome;
}

TEST_P(FaultCatalogueTest, FaultyPrimaryIsCountedAndBackupServes) {
  Check(GetParam());
}

// stall_after on a unary call: the simulator reads the request and never
// answers (like hang), so the provider's 500 ms first-token timeout fires.
// DISABLED: bug in adapters/http_client.cc (first_byte_timer callback, and
// ClassifyCurlCode): it classifies the timeout as kTimeoutConnect when
// CURLINFO_CONNECT_TIME_T is 0, which is also the case on a reused
// keep-alive connection. Observed: attempts(0).outcome == "timeout_connect"
// and echelon_upstream_attempts_total{outcome="timeout_connect"} although
// the connection was up; expected "timeout_first_token".
TEST_F(FaultCatalogueTest, UnaryStallOnReusedConnectionIsFirstTokenTimeout) {
  // Leave an idle keep-alive connection to the simulator in the pool.
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(20));
  v1::ExecuteResponse resp;
  ASSERT_TRUE(
      gw_->stub().Execute(&ctx, UserRequest("backup-pool"), &resp).ok());
  Check(FaultCase{"unary-stall", false, "timeout_first_token"});
}

INSTANTIATE_TEST_SUITE_P(
    EverySimulatorFault, FaultCatalogueTest,
    ::testing::Values(
        FaultCase{"overloaded", false, "overloaded"},
        FaultCase{"overloaded-anthropic", false, "overloaded"},
        FaultCase{"http529", false, "overloaded"},
        FaultCase{"http502", false, "server_error"},
        FaultCase{"slow-first-token", true, "timeout_first_token"},
        FaultCase{"flap-reset", false, "connect_error", 2},
        FaultCase{"retry-after-ms", false, "rate_limited"},
        // Full Content-Length, half the body, then close: libcurl's
        // CURLE_PARTIAL_FILE, which the adapter classes as connect_error.
        FaultCase{"unary-cut", false, "connect_error"},
        FaultCase{"reset", true, "connect_error", 2},
        FaultCase{"hang", true, "timeout_first_token"},
        FaultCase{"anthropic-reset", false, "connect_error", 2}),
    [](const ::testing::TestParamInfo<FaultCase>& info) {
      std::string name;
      for (char ch : info.param.name) name += (ch == '-') ? '_' : ch;
      return name;
    });

}  // namespace
}  // namespace echelon
