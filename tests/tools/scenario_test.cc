#include "tools/upstream_sim/scenario.h"

#include "gtest/gtest.h"

namespace echelon {
namespace sim {
namespace {

TEST(ParseScenarioTest, ReadsKeyValuePairsWithWhitespaceAndEmptySegments) {
  absl::StatusOr<Scenario> s =
      ParseScenario(" tokens = 5 ;; itl_ms=20; fault=rate_limit;key=a b ;");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->tokens, 5);
  EXPECT_EQ(s->itl_ms, 20);
  EXPECT_EQ(s->fault, "rate_limit");
  EXPECT_EQ(s->key, "a b");
  EXPECT_FALSE(s->ttft_ms.has_value());
}

TEST(ParseScenarioTest, EmptyStringIsAnEmptyScenario) {
  absl::StatusOr<Scenario> s = ParseScenario("");
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->tokens.has_value());
  EXPECT_FALSE(s->fault.has_value());
}

TEST(ParseScenarioTest, LaterDuplicateWins) {
  absl::StatusOr<Scenario> s = ParseScenario("tokens=3;tokens=9");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->tokens, 9);
}

TEST(ParseScenarioTest, RejectsMalformedInput) {
  for (const char* bad :
       {"tokens", "tokens=abc", "tokens=-1", "tokens=", "nope=1",
        "fault=explode", "tool_call=2", "flap_mode=sideways", "status=42",
        "tokens=99999999999999999999"}) {
    absl::StatusOr<Scenario> s = ParseScenario(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParseScenarioTest, AcceptsEveryDocumentedFault) {
  for (const char* fault : {"ok",
                            "rate_limit",
                            "http_500_once",
                            "http_503",
                            "overloaded",
                            "http_529",
                            "http_502",
                            "reset",
                            "hang",
                            "slow_first_token",
                            "cut_after",
                            "stall_after",
                            "malformed_after",
                            "no_done",
                            "error_event_after",
                            "context_length",
                            "content_filter",
                            "insufficient_quota",
                            "auth",
                            "flap",
                            "fail_first"}) {
    EXPECT_TRUE(ParseScenario(std::string("fault=") + fault).ok()) << fault;
  }
}

TEST(ScenarioMergeTest, LaterSourceOverridesOnlyFieldsItSets) {
  Scenario base = *ParseScenario("tokens=3;itl_ms=10;fault=http_503");
  base.MergeFrom(*ParseScenario("tokens=7;fault=ok"));
  EXPECT_EQ(base.tokens, 7);
  EXPECT_EQ(base.itl_ms, 10);
  EXPECT_EQ(base.fault, "ok");
}

TEST(ResolveTest, AppliesDefaults) {
  Behaviour b = Resolve(Scenario());
  EXPECT_EQ(b.tokens, 8);
  EXPECT_EQ(b.latency_ms, 0);
  EXPECT_EQ(b.fault, Behaviour::Fault::kNone);
  EXPECT_EQ(b.fail_first, 0);
  EXPECT_EQ(b.cut_after, -1);
  EXPECT_EQ(b.retry_after, -1);
}

TEST(ResolveTest, CapsTokens) {
  EXPECT_EQ(Resolve(*ParseScenario("tokens=999999999999")).tokens, kMaxTokens);
}

TEST(ResolveTest, Http500OnceFailsTheFirstRequestWith500) {
  Behaviour b = Resolve(*ParseScenario("fault=http_500_once"));
  EXPECT_EQ(b.fail_first, 1);
  EXPECT_EQ(b.fail_status, 500);
  EXPECT_EQ(b.fault, Behaviour::Fault::kNone);
}

TEST(ResolveTest, FailFirstUsesGivenStatus) {
  Behaviour b = Resolve(*ParseScenario("fail_first=3;status=502"));
  EXPECT_EQ(b.fail_first, 3);
  EXPECT_EQ(b.fail_status, 502);
}

TEST(ResolveTest, StatusFaultsMapToTheirCodes) {
  EXPECT_EQ(Resolve(*ParseScenario("fault=rate_limit")).status, 429);
  EXPECT_EQ(Resolve(*ParseScenario("fault=insufficient_quota")).status, 429);
  EXPECT_EQ(Resolve(*ParseScenario("fault=http_503")).status, 503);
  EXPECT_EQ(Resolve(*ParseScenario("fault=overloaded")).status, 503);
  EXPECT_EQ(Resolve(*ParseScenario("fault=http_529")).status, 529);
  EXPECT_EQ(Resolve(*ParseScenario("fault=context_length")).status, 400);
  EXPECT_EQ(Resolve(*ParseScenario("fault=auth")).status, 401);
  EXPECT_EQ(Resolve(*ParseScenario("fault=http_504")).status, 504);
}

TEST(ResolveTest, SlowFirstTokenDefaultsTtftButKeepsAnExplicitOne) {
  EXPECT_EQ(Resolve(*ParseScenario("fault=slow_first_token")).ttft_ms, 5000);
  EXPECT_EQ(
      Resolve(*ParseScenario("fault=slow_first_token;ttft_ms=300")).ttft_ms,
      300);
}

TEST(ResolveTest, StreamFaultsWorkAsParametersOrFaultNames) {
  EXPECT_EQ(Resolve(*ParseScenario("cut_after=4")).cut_after, 4);
  EXPECT_EQ(Resolve(*ParseScenario("fault=cut_after")).cut_after, 1);
  EXPECT_EQ(
      Resolve(*ParseScenario("fault=stall_after;stall_after=2")).stall_after,
      2);
  EXPECT_EQ(Resolve(*ParseScenario("flap=250;flap_mode=reset")).flap_ms, 250);
  EXPECT_TRUE(Resolve(*ParseScenario("flap=250;flap_mode=reset")).flap_reset);
  EXPECT_EQ(Resolve(*ParseScenario("fault=flap")).flap_ms, 1000);
}

TEST(ResolveTest, RetryAfterParametersAreCarried) {
  Behaviour b = Resolve(
      *ParseScenario("fault=rate_limit;retry_after=2;retry_after_ms=1500"));
  EXPECT_EQ(b.retry_after, 2);
  EXPECT_EQ(b.retry_after_ms, 1500);
}

TEST(UrlDecodeTest, DecodesPercentEscapes) {
  EXPECT_EQ(*UrlDecode("fault%3Drate_limit%3Bretry_after%3d1"),
            "fault=rate_limit;retry_after=1");
  EXPECT_EQ(*UrlDecode("plain=1;x=2"), "plain=1;x=2");
}

TEST(UrlDecodeTest, RejectsBrokenEscapes) {
  EXPECT_EQ(UrlDecode("a%2").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UrlDecode("a%zz").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UrlDecode("%").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sim
}  // namespace echelon
