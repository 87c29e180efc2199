// The `auth:` and `limits:` config sections: decoding, validation and their
// documentation in configs/README.md.
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "adapters/config_node.h"
#include "adapters/config_validate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/adapters/config_decode_util.h"

namespace echelon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// SHA-256 of "abc".
constexpr char kHash[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

using testing::Decoded;

Decoded Decode(const std::string& extra) {
  return testing::DecodeOnMinimalConfig(extra);
}

TEST(AuthConfigTest, AbsentSectionsKeepDocumentedDefaults) {
  Decoded d = Decode("");
  ASSERT_THAT(d.problems, IsEmpty());
  EXPECT_FALSE(d.config.auth.enabled);
  EXPECT_TRUE(d.config.auth.protect_status);
  EXPECT_EQ(d.config.limits.max_messages, 1024);
  EXPECT_EQ(d.config.limits.max_content_bytes, 1 << 20);
  EXPECT_EQ(d.config.limits.max_metadata_entries, 64);
  EXPECT_EQ(d.config.limits.max_metadata_bytes, 16 << 10);
  EXPECT_EQ(d.config.limits.max_tokens, 0);
}

TEST(AuthConfigTest, DecodesTokensAndLimits) {
  Decoded d = Decode(absl::StrCat(
      "auth:\n"
      "  enabled: true\n"
      "  protect_status: false\n"
      "  tokens:\n"
      "    - name: team-a\n"
      "      sha256: \"",
      kHash,
      "\"\n"
      "      allowed_targets: [fast-pool, \"fast.*\", fast.primary]\n"
      "      requests_per_minute: 600\n"
      "      tokens_per_minute: 100000\n"
      "    - name: ops\n"
      "      sha256: \"",
      std::string(64, 'A'),
      "\"\n"
      "      admin: true\n"
      "limits:\n"
      "  max_messages: 10\n"
      "  max_content_bytes: 2000\n"
      "  max_metadata_entries: 5\n"
      "  max_metadata_bytes: 300\n"
      "  max_tokens: 512\n"));
  ASSERT_THAT(d.problems, IsEmpty());
  const AuthConfig& a = d.config.auth;
  EXPECT_TRUE(a.enabled);
  EXPECT_FALSE(a.protect_status);
  ASSERT_EQ(a.tokens.size(), 2u);
  EXPECT_EQ(a.tokens[0].name, "team-a");
  EXPECT_EQ(a.tokens[0].sha256, kHash);
  EXPECT_THAT(a.tokens[0].allowed_targets,
              ElementsAre("fast-pool", "fast.*", "fast.primary"));
  EXPECT_EQ(a.tokens[0].requests_per_minute, 600);
  EXPECT_EQ(a.tokens[0].tokens_per_minute, 100000);
  EXPECT_FALSE(a.tokens[0].admin);
  EXPECT_TRUE(a.tokens[1].admin);
  EXPECT_EQ(a.tokens[1].sha256, std::string(64, 'a'));  // lower-cased
  EXPECT_EQ(d.config.limits.max_messages, 10);
  EXPECT_EQ(d.config.limits.max_content_bytes, 2000);
  EXPECT_EQ(d.config.limits.max_metadata_entries, 5);
  EXPECT_EQ(d.config.limits.max_metadata_bytes, 300);
  EXPECT_EQ(d.config.limits.max_tokens, 512);
}

TEST(AuthConfigTest, BadHashIsReportedWithoutEchoingTheValue) {
  Decoded d = Decode(
      "auth:\n"
      "  enabled: true\n"
      "  tokens:\n"
      "    - name: team-a\n"
      "      sha256: sk-live-pasted-token-123\n"
      "      allowed_targets: [fast-pool]\n");
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_THAT(d.problems[0], HasSubstr("auth.tokens.team-a.sha256"));
  EXPECT_THAT(d.problems[0], HasSubstr("64 hex digits"));
  EXPECT_EQ(d.problems[0].find("sk-live"), std::string::npos);
}

TEST(AuthConfigTest, ReportsUnknownTargetsBadGlobsDuplicatesAndNoTokens) {
  Decoded d = Decode(absl::StrCat(
      "auth:\n"
      "  enabled: true\n"
      "  tokens:\n"
      "    - name: a\n"
      "      sha256: \"",
      kHash,
      "\"\n"
      "      allowed_targets: [fast-pol, \"*fast\", fast.primary]\n"
      "    - name: b\n"
      "      sha256: \"",
      kHash, "\"\n"));
  EXPECT_THAT(d.problems,
              ElementsAre(HasSubstr("unknown target 'fast-pol'; did you mean "
                                    "'fast-pool'?"),
                          HasSubstr("'*' is only allowed at the end"),
                          HasSubstr("the same token hash as token 'a'")));
  Decoded empty = Decode("auth:\n  enabled: true\n");
  EXPECT_THAT(empty.problems, ElementsAre(HasSubstr("lists no tokens")));
}

TEST(AuthConfigTest, UnknownKeysAndNegativeLimitsAreReported) {
  Decoded d = Decode(
      "auth:\n"
      "  enabeld: true\n"
      "limits:\n"
      "  max_messages: -1\n");
  EXPECT_THAT(d.problems,
              ElementsAre(HasSubstr("did you mean 'enabled'?"),
                          HasSubstr("limits.max_messages: must be >= 0")));
}

TEST(AuthConfigTest, ReadmeDocumentsEveryKey) {
  std::ifstream in(std::string(std::getenv("TEST_SRCDIR")) + "/" +
                   std::getenv("TEST_WORKSPACE") + "/configs/README.md");
  ASSERT_TRUE(in.good());
  std::stringstream readme;
  readme << in.rdbuf();
  for (const char* key :
       {"auth:", "enabled:", "protect_status:", "tokens:", "sha256:",
        "allowed_targets:", "admin:", "requests_per_minute:",
        "tokens_per_minute:", "limits:", "max_messages:", "max_content_bytes:",
        "max_metadata_entries:", "max_metadata_bytes:", "max_tokens:"}) {
    EXPECT_THAT(readme.str(), HasSubstr(key)) << key;
  }
}

}  // namespace
}  // namespace echelon
