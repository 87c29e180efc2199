// Secret hygiene: canary upstream keys (from the environment) and canary
// client tokens must never show up in anything the gateway emits, whatever
// happens: successes, wrong client tokens (even ones sharing a canary's
// prefix), upstream 401s, 429s and timeouts, streams, status RPCs, metrics,
// a reload. The gateway runs with --log_level=debug --log_json and its
// stderr goes to a file; every line, every scrape, every status response and
// every error message is searched for each canary and for every 8-character
// substring of one. The simulator must have received the keys (so the test
// cannot pass because nothing was sent).
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "adapters/auth.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/security_env.h"

namespace echelon::testing {
namespace {

constexpr char kCanaryKey[] = "sk-canary-7f3a9c1e5b2d4680";
constexpr char kCanaryKey2[] = "sk-ant-canary-2c8e61b9d04f";
constexpr char kCanaryOrg[] = "org-canary-b5e07d2a93c1";
constexpr char kClientToken[] = "ck-canary-client-91d3f0a7b6e2";
constexpr char kAdminToken[] = "ck-canary-admin-4e7a28c5f019";

// Every canary and every 8-character window of one.
std::set<std::string> Needles() {
  std::set<std::string> out;
  for (const std::string c :
       {kCanaryKey, kCanaryKey2, kCanaryOrg, kClientToken, kAdminToken}) {
    out.insert(c);
    for (size_t i = 0; i + 8 <= c.size(); ++i) out.insert(c.substr(i, 8));
  }
  return out;
}

class SecurityHygieneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log_path_ = absl::StrCat(MakeTempDir("hygiene"), "/echelond.stderr");
    SecurityEnvOptions options;
    options.config = "tests/integration/security_testdata/hygiene.yaml";
    options.extra_flags = {"--log_level=debug", "--log_json"};
    options.stderr_file = log_path_;
    options.env = {
        {"ECHELON_CANARY_KEY", kCanaryKey},
        {"ECHELON_CANARY_KEY2", kCanaryKey2},
        {"ECHELON_CANARY_ORG", kCanaryOrg},
        {"ECHELON_CANARY_CLIENT_SHA256", Sha256Hex(kClientToken)},
        {"ECHELON_CANARY_ADMIN_SHA256", Sha256Hex(kAdminToken)},
    };
    auto p = StartSecurityProcesses(options);
    ASSERT_TRUE(p.ok()) << p.status();
    p_ = *std::move(p);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", p_->grpc_port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Gateway::NewStub(channel_);
  }

  // Everything the gateway said back is collected in `seen_`.
  void Note(const std::string& where, const std::string& text) {
    seen_.push_back({where, text});
  }

  void Auth(grpc::ClientContext* ctx, const std::string& token,
            bool api_key = false) {
    if (token.empty()) return;
    if (api_key) {
      ctx->AddMetadata("x-api-key", token);
    } else {
      ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    }
  }

  grpc::Status Execute(const std::string& token, const std::string& target,
                       bool api_key = false) {
    grpc::ClientContext ctx;
    Auth(&ctx, token, api_key);
    SetDeadline(&ctx, absl::Seconds(5));
    v1::ExecuteResponse resp;
    grpc::Status s = stub_->Execute(&ctx, UserRequest(target), &resp);
    Note(absl::StrCat("Execute ", target), s.error_message());
    Note(absl::StrCat("Execute ", target, " response"), resp.DebugString());
    for (const auto& [k, v] : ctx.GetServerTrailingMetadata()) {
      Note("trailer", absl::StrCat(std::string(k.data(), k.size()), "=",
                                   std::string(v.data(), v.size())));
    }
    return s;
  }

  grpc::Status Stream(const std::string& token, const std::string& target) {
    grpc::ClientContext ctx;
    Auth(&ctx, token);
    SetDeadline(&ctx, absl::Seconds(5));
    auto reader = stub_->Stream(&ctx, UserRequest(target));
    v1::StreamChunk chunk;
    while (reader->Read(&chunk)) Note("stream chunk", chunk.DebugString());
    grpc::Status s = reader->Finish();
    Note(absl::StrCat("Stream ", target), s.error_message());
    return s;
  }

  std::string log_path_;
  std::unique_ptr<SecurityProcesses> p_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
  std::vector<std::pair<std::string, std::string>> seen_;
};

TEST_F(SecurityHygieneTest, NoCanaryOrPartOfOneLeavesTheGateway) {
  // Successes, both dialects, both RPC shapes.
  EXPECT_TRUE(Execute(kClientToken, "ok-pool").ok());
  EXPECT_TRUE(Execute(kClientToken, "ok-pool", /*api_key=*/true).ok());
  EXPECT_TRUE(Stream(kClientToken, "ok-pool").ok());
  EXPECT_TRUE(Execute(kClientToken, "claude-pool").ok());
  EXPECT_TRUE(Stream(kClientToken, "claude-pool").ok());
  // Client auth failures with tokens that share a canary's parts.
  for (const std::string& wrong :
       {std::string(kCanaryKey), std::string(kClientToken) + "x",
        std::string(kClientToken).substr(0, 20), std::string("Bearer"),
        std::string(kCanaryKey2)}) {
    EXPECT_EQ(Execute(wrong, "ok-pool").error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Stream(wrong, "ok-pool").error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(Execute(kAdminToken, "limited-pool").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Upstream failures: 401, 429, a hang (timeout).
  for (int i = 0; i < 2; ++i) {
    EXPECT_FALSE(Execute(kClientToken, "unauthorized-pool").ok());
    EXPECT_FALSE(Execute(kClientToken, "limited-pool").ok());
    EXPECT_FALSE(Stream(kClientToken, "limited-pool").ok());
  }
  EXPECT_FALSE(Execute(kClientToken, "hangs-pool").ok());
  EXPECT_FALSE(Stream(kClientToken, "hangs-pool").ok());

  // Status RPCs and a reload.
  {
    grpc::ClientContext ctx;
    Auth(&ctx, kClientToken);
    v1::GetPoolStatusResponse resp;
    EXPECT_TRUE(stub_->GetPoolStatus(&ctx, {}, &resp).ok());
    EXPECT_GT(resp.pools_size(), 0);
    Note("GetPoolStatus", resp.DebugString());
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx, kClientToken);
    v1::GetTaskGroupStatusResponse resp;
    EXPECT_TRUE(stub_->GetTaskGroupStatus(&ctx, {}, &resp).ok());
    Note("GetTaskGroupStatus", resp.DebugString());
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx, kClientToken);
    v1::ListTargetsResponse resp;
    EXPECT_TRUE(stub_->ListTargets(&ctx, {}, &resp).ok());
    Note("ListTargets", resp.DebugString());
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx, kClientToken);
    v1::ReloadConfigResponse resp;
    grpc::Status s = stub_->ReloadConfig(&ctx, {}, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    Note("ReloadConfig denied", s.error_message());
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx, kAdminToken);
    v1::ReloadConfigResponse resp;
    grpc::Status s = stub_->ReloadConfig(&ctx, {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    Note("ReloadConfig", resp.DebugString() + s.error_message());
  }
  auto metrics = p_->Metrics();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  Note("metrics", *metrics);

  // The keys did reach the upstream.
  auto stats = p_->StatsJson();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(SimAuthHeadersSeen(*stats), 5) << *stats;

  // Let the log writer flush, then stop the gateway so its last lines land.
  p_->gateway->Signal(SIGTERM);
  auto exit_status = p_->gateway->Wait(absl::Seconds(20));
  EXPECT_TRUE(exit_status.ok()) << exit_status.status();
  const std::string log = ReadFileOrEmpty(log_path_);
  ASSERT_FALSE(log.empty());
  EXPECT_NE(log.find("unauthorized-pool"), std::string::npos)
      << "debug log should name the failing requests";
  EXPECT_NE(log.find("blue-team"), std::string::npos)
      << "refusals should name the client";
  Note("stderr", log);

  const std::set<std::string> needles = Needles();
  int hits = 0;
  for (const auto& [where, text] : seen_) {
    for (const std::string& needle : needles) {
      size_t at = text.find(needle);
      if (at == std::string::npos) continue;
      ++hits;
      // Show the neighbourhood, masked, to find the leak without spreading
      // the canary further than the test log.
      size_t from = at > 60 ? at - 60 : 0;
      ADD_FAILURE() << where << " contains '" << needle
                    << "' near: " << text.substr(from, 60) << "[...]";
      break;
    }
  }
  EXPECT_EQ(hits, 0);
}

}  // namespace
}  // namespace echelon::testing
