// Client auth and request caps against the real binary: every refusal is
// decided at the edge, so the simulator must see zero attempts for it.
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "adapters/auth.h"
#include "curl/curl.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/security_env.h"

namespace echelon::testing {
namespace {

constexpr char kTeamA[] = "sec-team-a-5b1c9e77d2";
constexpr char kLimited[] = "sec-limited-0a4f6d31c8";
constexpr char kOps[] = "sec-ops-e29b7c1f44";

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SecurityEnvOptions options;
    options.config = "tests/integration/security_testdata/auth.yaml";
    options.env = {{"SEC_TEAM_A_SHA256", Sha256Hex(kTeamA)},
                   {"SEC_LIMITED_SHA256", Sha256Hex(kLimited)},
                   {"SEC_OPS_SHA256", Sha256Hex(kOps)}};
    auto p = StartSecurityProcesses(options);
    ASSERT_TRUE(p.ok()) << p.status();
    p_ = *std::move(p);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", p_->grpc_port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Gateway::NewStub(channel_);
  }

  int64_t Attempts() {
    auto json = p_->StatsJson();
    EXPECT_TRUE(json.ok()) << json.status();
    return json.ok() ? SimTotalAttempts(*json) : -1;
  }

  grpc::Status Execute(const std::string& token, const std::string& target,
                       v1::ExecuteRequest req = v1::ExecuteRequest(),
                       grpc::ClientContext* ctx = nullptr) {
    grpc::ClientContext local;
    if (ctx == nullptr) ctx = &local;
    if (req.messages_size() == 0) req = UserRequest(target);
    req.set_target(target);
    if (!token.empty()) {
      ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    }
    SetDeadline(ctx, absl::Seconds(10));
    v1::ExecuteResponse resp;
    return stub_->Execute(ctx, req, &resp);
  }

  std::unique_ptr<SecurityProcesses> p_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

// One HTTP request to the OpenAI-compatible front with an optional bearer
// token; returns the HTTP status (0 when the request failed).
long HttpCall(int port, const std::string& path, const std::string& token,
              const std::string& body) {
  CURL* curl = curl_easy_init();
  std::string url = absl::StrCat("http://127.0.0.1:", port, path);
  std::string sink;
  curl_slist* headers =
      curl_slist_append(nullptr, "content-type: application/json");
  if (!token.empty()) {
    headers = curl_slist_append(
        headers, absl::StrCat("authorization: Bearer ", token).c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (!body.empty()) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char* d, size_t s, size_t n, void* u) -> size_t {
        static_cast<std::string*>(u)->append(d, s * n);
        return s * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  long status = 0;
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return status;
}

std::string ChatBody(const std::string& model) {
  return absl::StrCat("{\"model\":\"", model,
                      "\",\"messages\":[{\"role\":\"user\",\"content\":"
                      "\"hi\"}]}");
}

TEST_F(SecurityTest, HttpFrontAppliesTheSameAuthWithoutUpstreamCall) {
  const int port = p_->http_port;
  const std::string chat = "/v1/chat/completions";
  EXPECT_EQ(HttpCall(port, chat, "", ChatBody("fast-pool")), 401);
  EXPECT_EQ(HttpCall(port, chat, "sec-team-a-wrong", ChatBody("fast-pool")),
            401);
  EXPECT_EQ(HttpCall(port, chat, kTeamA, ChatBody("secret-pool")), 403);
  EXPECT_EQ(HttpCall(port, "/v1/models", "", ""), 401);
  EXPECT_EQ(Attempts(), 0) << "a refused HTTP call reached the upstream";
  EXPECT_EQ(HttpCall(port, chat, kTeamA, ChatBody("fast-pool")), 200);
  EXPECT_EQ(HttpCall(port, "/v1/models", kTeamA, ""), 200);
  EXPECT_EQ(Attempts(), 1);
}

TEST_F(SecurityTest, MissingOrWrongTokenIsUnauthenticatedWithoutUpstreamCall) {
  grpc::Status missing = Execute("", "fast-pool");
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status wrong = Execute("sec-team-a-5b1c9e77d3", "fast-pool");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_FALSE(absl::StrContains(wrong.error_message(), "5b1c9e77"));
  StreamResult stream = RunStream(*stub_, UserRequest("fast-pool"));
  EXPECT_EQ(stream.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Attempts(), 0);
}

TEST_F(SecurityTest, TargetOutsideTheTokensListIsPermissionDenied) {
  grpc::Status s = Execute(kTeamA, "secret-pool");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "team-a"));
  EXPECT_EQ(Execute(kTeamA, "secret").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Execute(kOps, "fast-pool").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Attempts(), 0);
}

TEST_F(SecurityTest, AllowedTargetsAndGlobsReachTheUpstream) {
  EXPECT_TRUE(Execute(kTeamA, "fast-pool").ok());
  EXPECT_TRUE(Execute(kTeamA, "fast.primary").ok());
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-api-key", kTeamA);
  SetDeadline(&ctx, absl::Seconds(10));
  v1::ExecuteResponse resp;
  EXPECT_TRUE(stub_->Execute(&ctx, UserRequest("fast-pool"), &resp).ok());
  EXPECT_EQ(Attempts(), 3);
}

TEST_F(SecurityTest, PerTokenLimitIsResourceExhaustedWithRetryHint) {
  EXPECT_TRUE(Execute(kLimited, "secret-pool").ok());
  EXPECT_TRUE(Execute(kLimited, "fast-pool").ok());
  grpc::ClientContext ctx;
  grpc::Status s = Execute(kLimited, "fast-pool", v1::ExecuteRequest(), &ctx);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "limited"));
  EXPECT_FALSE(Trailer(ctx, "echelon-retry-after-ms").empty());
  // Other tokens are not affected.
  EXPECT_TRUE(Execute(kTeamA, "fast-pool").ok());
  EXPECT_EQ(Attempts(), 3);
}

TEST_F(SecurityTest, StatusRpcsNeedATokenAndReloadNeedsAnAdmin) {
  {
    grpc::ClientContext ctx;
    v1::ListTargetsResponse resp;
    EXPECT_EQ(stub_->ListTargets(&ctx, {}, &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    v1::GetPoolStatusResponse resp;
    EXPECT_EQ(stub_->GetPoolStatus(&ctx, {}, &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kTeamA));
    v1::GetTaskGroupStatusResponse resp;
    EXPECT_TRUE(stub_->GetTaskGroupStatus(&ctx, {}, &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kTeamA));
    v1::ReloadConfigResponse resp;
    EXPECT_EQ(stub_->ReloadConfig(&ctx, {}, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kOps));
    v1::ReloadConfigResponse resp;
    grpc::Status s = stub_->ReloadConfig(&ctx, {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(resp.applied());
  }
  // Still the same tokens after the reload.
  EXPECT_TRUE(Execute(kTeamA, "fast-pool").ok());
}

TEST_F(SecurityTest, RequestsOverACapAreInvalidArgumentWithoutUpstreamCall) {
  v1::ExecuteRequest many = UserRequest("fast-pool");
  for (int i = 0; i < 4; ++i) *many.add_messages() = many.messages(0);
  grpc::Status s = Execute(kTeamA, "fast-pool", many);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "too many messages"));

  v1::ExecuteRequest big = UserRequest("fast-pool", std::string(5000, 'x'));
  EXPECT_EQ(Execute(kTeamA, "fast-pool", big).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::ExecuteRequest tokens = UserRequest("fast-pool");
  tokens.mutable_params()->set_max_tokens(257);
  s = Execute(kTeamA, "fast-pool", tokens);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "max_tokens"));

  grpc::ClientContext ctx;
  for (int i = 0; i < 30; ++i) ctx.AddMetadata(absl::StrCat("x-m", i), "v");
  s = Execute(kTeamA, "fast-pool", v1::ExecuteRequest(), &ctx);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "metadata"));

  v1::ExecuteRequest md = UserRequest("fast-pool");
  (*md.mutable_metadata())["k"] = std::string(3000, 'v');
  EXPECT_EQ(Execute(kTeamA, "fast-pool", md).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Attempts(), 0);
}

}  // namespace
}  // namespace echelon::testing
