#include "adapters/auth.h"

#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

class ManualClock final : public Clock {
 public:
  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

constexpr char kTeamA[] = "tok-team-a-3f9d2c71";
constexpr char kAdmin[] = "tok-admin-8b1e44a0";

ClientTokenConfig Token(const std::string& name, const std::string& token,
                        std::vector<std::string> targets) {
  ClientTokenConfig t;
  t.name = name;
  t.sha256 = Sha256Hex(token);
  t.allowed_targets = std::move(targets);
  return t;
}

AuthConfig TwoTokens() {
  AuthConfig c;
  c.enabled = true;
  c.tokens.push_back(Token("team-a", kTeamA, {"fast-pool", "fast.*", "plan"}));
  ClientTokenConfig admin = Token("ops", kAdmin, {});
  admin.admin = true;
  c.tokens.push_back(admin);
  return c;
}

TEST(Sha256HexTest, MatchesKnownVector) {
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TargetMatchesTest, ExactPrefixGlobAndStar) {
  EXPECT_TRUE(TargetMatches("fast-pool", "fast-pool"));
  EXPECT_FALSE(TargetMatches("fast-pool", "fast-pool2"));
  EXPECT_TRUE(TargetMatches("fast.*", "fast.primary"));
  EXPECT_FALSE(TargetMatches("fast.*", "fast"));
  EXPECT_TRUE(TargetMatches("fast*", "fast"));
  EXPECT_TRUE(TargetMatches("*", "anything"));
  EXPECT_FALSE(TargetMatches("plan", "plan.primary"));
}

TEST(ExtractTokenTest, BearerThenApiKey) {
  EXPECT_EQ(ExtractToken("Bearer abc", ""), "abc");
  EXPECT_EQ(ExtractToken("bearer   abc  ", "zzz"), "abc");
  EXPECT_EQ(ExtractToken("", " key1 "), "key1");
  EXPECT_EQ(ExtractToken("Basic dXNlcjpwYXNz", "key1"), "");
  EXPECT_EQ(ExtractToken("", ""), "");
  EXPECT_EQ(ExtractToken("Bearer ", ""), "");
}

TEST(AuthenticatorTest, DisabledLetsEveryoneThroughAsAnonymousAdmin) {
  ManualClock clock;
  auto auth = Authenticator::Create(AuthConfig(), clock);
  ASSERT_TRUE(auth.ok());
  Principal p;
  EXPECT_TRUE((*auth)->Check("", "any", 10, &p, nullptr).ok());
  EXPECT_TRUE(p.anonymous);
  EXPECT_TRUE((*auth)->CheckAdmin("", nullptr).ok());
  EXPECT_TRUE((*auth)->CheckStatus("", nullptr).ok());
}

TEST(AuthenticatorTest, MissingOrWrongTokenIsUnauthenticatedWithoutEcho) {
  ManualClock clock;
  auto auth = Authenticator::Create(TwoTokens(), clock);
  ASSERT_TRUE(auth.ok());
  absl::Status missing = (*auth)->Check("", "fast-pool", 0, nullptr, nullptr);
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  const std::string wrong = "tok-team-a-3f9d2c7X";
  absl::Status bad = (*auth)->Check(wrong, "fast-pool", 0, nullptr, nullptr);
  EXPECT_EQ(bad.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(std::string(bad.message()).find("3f9d2c7"), std::string::npos);
  EXPECT_EQ(std::string(bad.message()).find("tok-"), std::string::npos);
}

TEST(AuthenticatorTest, KnownTokenIsNamedAndLimitedToItsTargets) {
  ManualClock clock;
  auto auth = Authenticator::Create(TwoTokens(), clock);
  ASSERT_TRUE(auth.ok());
  Principal p;
  EXPECT_TRUE((*auth)->Check(kTeamA, "fast-pool", 0, &p, nullptr).ok());
  EXPECT_EQ(p.name, "team-a");
  EXPECT_FALSE(p.admin);
  EXPECT_TRUE((*auth)->Check(kTeamA, "fast.primary", 0, &p, nullptr).ok());
  EXPECT_TRUE((*auth)->Check(kTeamA, "plan", 0, &p, nullptr).ok());
  absl::Status denied = (*auth)->Check(kTeamA, "thinking-pool", 0, &p, nullptr);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(std::string(denied.message()).find("team-a"), std::string::npos);
  EXPECT_EQ(std::string(denied.message()).find(kTeamA), std::string::npos);
}

TEST(AuthenticatorTest, AdminRpcsNeedAnAdminToken) {
  ManualClock clock;
  auto auth = Authenticator::Create(TwoTokens(), clock);
  ASSERT_TRUE(auth.ok());
  EXPECT_EQ((*auth)->CheckAdmin(kTeamA, nullptr).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*auth)->CheckAdmin("nope", nullptr).code(),
            absl::StatusCode::kUnauthenticated);
  Principal p;
  EXPECT_TRUE((*auth)->CheckAdmin(kAdmin, &p).ok());
  EXPECT_EQ(p.name, "ops");
  // An admin-only token (no targets) cannot route.
  EXPECT_EQ((*auth)->Check(kAdmin, "fast-pool", 0, nullptr, nullptr).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AuthenticatorTest, StatusRpcsNeedAnyValidTokenWhenProtected) {
  ManualClock clock;
  AuthConfig config = TwoTokens();
  auto auth = Authenticator::Create(config, clock);
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE((*auth)->CheckStatus(kTeamA, nullptr).ok());
  EXPECT_EQ((*auth)->CheckStatus("", nullptr).code(),
            absl::StatusCode::kUnauthenticated);
  config.protect_status = false;
  auto open = Authenticator::Create(config, clock);
  ASSERT_TRUE(open.ok());
  EXPECT_TRUE((*open)->CheckStatus("", nullptr).ok());
}

TEST(AuthenticatorTest, PerTokenRequestLimitIsResourceExhaustedWithRetryHint) {
  ManualClock clock;
  AuthConfig config = TwoTokens();
  config.tokens[0].requests_per_minute = 2;
  auto auth = Authenticator::Create(config, clock);
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE((*auth)->Check(kTeamA, "fast-pool", 0, nullptr, nullptr).ok());
  EXPECT_TRUE((*auth)->Check(kTeamA, "fast-pool", 0, nullptr, nullptr).ok());
  absl::Duration retry = absl::ZeroDuration();
  absl::Status s = (*auth)->Check(kTeamA, "fast-pool", 0, nullptr, &retry);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GT(retry, absl::ZeroDuration());
  EXPECT_LE(retry, absl::Seconds(60));
  // The admin token has no limits and is unaffected.
  EXPECT_TRUE((*auth)->CheckAdmin(kAdmin, nullptr).ok());
  clock.Advance(absl::Seconds(31));
  EXPECT_TRUE((*auth)->Check(kTeamA, "fast-pool", 0, nullptr, nullptr).ok());
}

TEST(AuthenticatorTest, PerTokenTokenLimitCountsEstimatedTokens) {
  ManualClock clock;
  AuthConfig config = TwoTokens();
  config.tokens[0].tokens_per_minute = 1000;
  auto auth = Authenticator::Create(config, clock);
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE((*auth)->Check(kTeamA, "fast-pool", 800, nullptr, nullptr).ok());
  EXPECT_EQ((*auth)->Check(kTeamA, "fast-pool", 800, nullptr, nullptr).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(AuthenticatorTest, ReloadKeepsUsageOfUnchangedTokens) {
  ManualClock clock;
  AuthConfig config = TwoTokens();
  config.tokens[0].requests_per_minute = 1;
  auto first = Authenticator::Create(config, clock);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE((*first)->Check(kTeamA, "fast-pool", 0, nullptr, nullptr).ok());
  auto second = Authenticator::Create(config, clock, first->get());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->Check(kTeamA, "fast-pool", 0, nullptr, nullptr).code(),
            absl::StatusCode::kResourceExhausted);
  config.tokens[0].requests_per_minute = 5;  // changed: starts afresh
  auto third = Authenticator::Create(config, clock, second->get());
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE((*third)->Check(kTeamA, "fast-pool", 0, nullptr, nullptr).ok());
}

TEST(AuthenticatorTest, ReloadRevokesRemovedTokens) {
  ManualClock clock;
  auto first = Authenticator::Create(TwoTokens(), clock);
  ASSERT_TRUE(first.ok());
  AuthConfig config = TwoTokens();
  config.tokens.erase(config.tokens.begin());
  auto second = Authenticator::Create(config, clock, first->get());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->Check(kTeamA, "fast-pool", 0, nullptr, nullptr).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(AuthenticatorTest, MalformedHashIsRejectedWithoutEchoingIt) {
  ManualClock clock;
  AuthConfig config = TwoTokens();
  config.tokens[0].sha256 = "sk-live-not-a-hash";
  auto auth = Authenticator::Create(config, clock);
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(auth.status().message()).find("sk-live"),
            std::string::npos);
}

TEST(AuthenticatorTest, UppercaseHexHashIsAccepted) {
  ManualClock clock;
  AuthConfig config = TwoTokens();
  for (char& c : config.tokens[0].sha256) c = static_cast<char>(toupper(c));
  auto auth = Authenticator::Create(config, clock);
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE((*auth)->Check(kTeamA, "fast-pool", 0, nullptr, nullptr).ok());
}

}  // namespace
}  // namespace echelon
