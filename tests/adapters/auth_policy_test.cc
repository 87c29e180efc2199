#include "adapters/auth_policy.h"

#include <string>

#include "gtest/gtest.h"

namespace echelon {
namespace {

class FixedClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::FromUnixSeconds(1000); }
};

constexpr char kToken[] = "policy-token-77c1";

GatewayConfig Config() {
  GatewayConfig c;
  ModelConfig m;
  m.max_output_tokens = 100;
  c.models.push_back(m);
  c.auth.enabled = true;
  ClientTokenConfig t;
  t.name = "svc";
  t.sha256 = Sha256Hex(kToken);
  t.allowed_targets = {"fast-pool"};
  t.requests_per_minute = 1;
  c.auth.tokens.push_back(t);
  c.limits.max_metadata_entries = 3;
  return c;
}

ChatRequest Hello() {
  ChatRequest r;
  r.messages.push_back({});
  r.messages[0].content = "hello";
  return r;
}

TEST(EdgePolicyTest, AdmitCallChecksMetadataCapsBeforeTheToken) {
  FixedClock clock;
  auto policy = EdgePolicy::Create(Config(), clock, nullptr);
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ(AdmitCall(**policy, "", 4, 10, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AdmitCall(**policy, "", 3, 10, nullptr).code(),
            absl::StatusCode::kUnauthenticated);
  Principal p;
  EXPECT_TRUE(AdmitCall(**policy, kToken, 3, 10, &p).ok());
  EXPECT_EQ(p.name, "svc");
}

TEST(EdgePolicyTest, AdmitRequestChecksCapsThenTargetThenTheTokensLimit) {
  FixedClock clock;
  auto policy = EdgePolicy::Create(Config(), clock, nullptr);
  ASSERT_TRUE(policy.ok());
  ChatRequest big = Hello();
  big.params.max_tokens = 101;
  EXPECT_EQ(
      AdmitRequest(**policy, kToken, "fast-pool", big, nullptr, nullptr).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      AdmitRequest(**policy, kToken, "other", Hello(), nullptr, nullptr).code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(
      AdmitRequest(**policy, kToken, "fast-pool", Hello(), nullptr, nullptr)
          .ok());
  absl::Duration retry;
  EXPECT_EQ(
      AdmitRequest(**policy, kToken, "fast-pool", Hello(), nullptr, &retry)
          .code(),
      absl::StatusCode::kResourceExhausted);
  EXPECT_GT(retry, absl::ZeroDuration());
}

TEST(EdgePolicyTest, HttpHeadersGiveTheTokenAndCountAgainstTheCaps) {
  FixedClock clock;
  auto policy = EdgePolicy::Create(Config(), clock, nullptr);
  ASSERT_TRUE(policy.ok());
  std::string token;
  Principal p;
  EXPECT_TRUE(
      AdmitHttpHeaders(
          **policy,
          {{"host", "x"}, {"authorization", std::string("Bearer ") + kToken}},
          &token, &p)
          .ok());
  EXPECT_EQ(token, kToken);
  EXPECT_EQ(p.name, "svc");
  EXPECT_TRUE(
      AdmitHttpHeaders(**policy, {{"x-api-key", kToken}}, &token, nullptr)
          .ok());
  EXPECT_EQ(AdmitHttpHeaders(**policy, {{"x-api-key", "nope"}}, &token, nullptr)
                .code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(
      AdmitHttpHeaders(
          **policy, {{"a", "1"}, {"b", "2"}, {"c", "3"}, {"x-api-key", kToken}},
          &token, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(EdgePolicyTest, WithoutAuthOnlyTheCapsApply) {
  FixedClock clock;
  GatewayConfig c = Config();
  c.auth = AuthConfig();
  auto policy = EdgePolicy::Create(c, clock, nullptr);
  ASSERT_TRUE(policy.ok());
  EXPECT_TRUE(AdmitCall(**policy, "", 3, 10, nullptr).ok());
  EXPECT_TRUE(
      AdmitRequest(**policy, "", "any", Hello(), nullptr, nullptr).ok());
}

}  // namespace
}  // namespace echelon
