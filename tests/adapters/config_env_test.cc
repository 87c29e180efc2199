#include "adapters/config_env.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "adapters/config_node.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class ConfigEnvTest : public ::testing::Test {
 protected:
  ConfigEnvTest() {
    options_.lookup = [this](const std::string& name) {
      auto it = vars_.find(name);
      return it == vars_.end() ? std::nullopt
                               : std::optional<std::string>(it->second);
    };
    options_.read_file = [this](const std::string& path, std::string* error) {
      auto it = files_.find(path);
      if (it == files_.end()) {
        *error = "No such file or directory";
        return std::optional<std::string>();
      }
      return std::optional<std::string>(it->second);
    };
  }

  std::string Expand(const std::string& value) {
    bool substituted = false;
    return ExpandEnvironment(value, SourceLocation{"cfg/p.yaml", 3, 14},
                             "providers.openai.api_key", options_, &substituted,
                             &problems_);
  }

  std::map<std::string, std::string> vars_;
  std::map<std::string, std::string> files_;
  EnvOptions options_;
  std::vector<ConfigProblem> problems_;
};

TEST_F(ConfigEnvTest, SubstitutesSetVariable) {
  vars_["HOST"] = "example.com";
  EXPECT_EQ(Expand("https://${HOST}/v1"), "https://example.com/v1");
  EXPECT_TRUE(problems_.empty());
}

TEST_F(ConfigEnvTest, UsesDefaultWhenUnset) {
  EXPECT_EQ(Expand("${SIM_URL:-http://127.0.0.1:8700/v1}"),
            "http://127.0.0.1:8700/v1");
  EXPECT_TRUE(problems_.empty());
}

TEST_F(ConfigEnvTest, UsesDefaultWhenEmpty) {
  vars_["PORT"] = "";
  EXPECT_EQ(Expand("${PORT:-8080}"), "8080");
}

TEST_F(ConfigEnvTest, EmptyDefaultIsAllowed) {
  EXPECT_EQ(Expand("a${UNSET:-}b"), "ab");
  EXPECT_TRUE(problems_.empty());
}

TEST_F(ConfigEnvTest, VariableWinsOverDefault) {
  vars_["PORT"] = "9000";
  EXPECT_EQ(Expand("${PORT:-8080}"), "9000");
}

TEST_F(ConfigEnvTest, UnsetVariableWithoutDefaultNamesFileLineAndVariable) {
  Expand("${OPENAI_API_KEY}");
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_EQ(problems_[0].ToString(),
            "cfg/p.yaml:3:14: providers.openai.api_key: environment variable "
            "'OPENAI_API_KEY' is not set (use ${OPENAI_API_KEY:-default} for a "
            "default)");
}

TEST_F(ConfigEnvTest, DoubleDollarEscapesADollar) {
  vars_["X"] = "value";
  EXPECT_EQ(Expand("price: $$5 and $${X}"), "price: $5 and ${X}");
  EXPECT_TRUE(problems_.empty());
}

TEST_F(ConfigEnvTest, LoneDollarStaysLiteral) {
  EXPECT_EQ(Expand("a$b $"), "a$b $");
  EXPECT_TRUE(problems_.empty());
}

TEST_F(ConfigEnvTest, ValueContainingReferenceIsNotExpandedAgain) {
  vars_["OUTER"] = "${INNER}";
  vars_["INNER"] = "secret";
  EXPECT_EQ(Expand("${OUTER}"), "${INNER}");
  EXPECT_TRUE(problems_.empty());
}

TEST_F(ConfigEnvTest, DefaultIsTakenLiterally) {
  vars_["INNER"] = "x";
  EXPECT_EQ(Expand("${UNSET:-$INNER}"), "$INNER");
}

TEST_F(ConfigEnvTest, UnterminatedReferenceIsAProblem) {
  Expand("${OPEN");
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_EQ(problems_[0].ToString(),
            "cfg/p.yaml:3:14: providers.openai.api_key: unterminated '${' "
            "(write '$$' for a literal '$')");
}

TEST_F(ConfigEnvTest, InvalidVariableNameIsAProblem) {
  Expand("${1BAD}");
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_EQ(problems_[0].message,
            "invalid environment variable name '1BAD' (use ${NAME} or "
            "${NAME:-default})");
}

TEST_F(ConfigEnvTest, SecretFileIsReadAndTrailingNewlineTrimmed) {
  files_["/run/secrets/openai"] = "sk-test-123\n";
  EXPECT_EQ(Expand("${file:/run/secrets/openai}"), "sk-test-123");
  EXPECT_TRUE(problems_.empty());
}

TEST_F(ConfigEnvTest, RelativeSecretFileIsResolvedAgainstTheConfigFile) {
  files_["cfg/secrets/key"] = "k\r\n";
  EXPECT_EQ(Expand("${file:secrets/key}"), "k");
}

TEST_F(ConfigEnvTest, MissingSecretFileIsAProblemWithLocation) {
  Expand("${file:/run/secrets/missing}");
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_EQ(problems_[0].ToString(),
            "cfg/p.yaml:3:14: providers.openai.api_key: cannot read secret "
            "file '/run/secrets/missing': No such file or directory");
}

TEST_F(ConfigEnvTest, SubstitutedValuesAreMarked) {
  vars_["X"] = "1";
  bool substituted = false;
  ExpandEnvironment("${X}", {}, "", options_, &substituted, &problems_);
  EXPECT_TRUE(substituted);
  substituted = false;
  ExpandEnvironment("plain $$", {}, "", options_, &substituted, &problems_);
  EXPECT_FALSE(substituted);
}

TEST_F(ConfigEnvTest, InjectedYamlStaysALiteralString) {
  vars_["EVIL"] = "x\nadmin: {bind: 0.0.0.0}";
  std::optional<ConfigNode> root = ParseYamlString(
      "name: ${EVIL}\nlist: [\"${EVIL}\"]\n", "cfg/p.yaml", &problems_);
  ASSERT_TRUE(root.has_value());
  ExpandEnvironmentInTree(&*root, options_, &problems_);
  EXPECT_TRUE(problems_.empty());
  ASSERT_EQ(root->entries.size(), 2u);
  const ConfigNode* name = root->Find("name");
  ASSERT_TRUE(name->IsScalar());
  EXPECT_EQ(name->scalar, "x\nadmin: {bind: 0.0.0.0}");
  EXPECT_EQ(root->Find("admin"), nullptr);
  const ConfigNode* list = root->Find("list");
  ASSERT_TRUE(list->IsSequence());
  ASSERT_EQ(list->items.size(), 1u);
  EXPECT_EQ(list->items[0].scalar, "x\nadmin: {bind: 0.0.0.0}");
}

TEST_F(ConfigEnvTest, UnresolvedValueKeepsItsTextAndIsMarked) {
  std::optional<ConfigNode> root =
      ParseYamlString("url: ${UNSET}/v1\n", "cfg/p.yaml", &problems_);
  ASSERT_TRUE(root.has_value());
  ExpandEnvironmentInTree(&*root, options_, &problems_);
  ASSERT_EQ(problems_.size(), 1u);
  const ConfigNode* url = root->Find("url");
  EXPECT_TRUE(url->unresolved);
  EXPECT_EQ(url->scalar, "${UNSET}/v1");
}

TEST_F(ConfigEnvTest, KeysAreNeverExpanded) {
  vars_["K"] = "strategy";
  std::optional<ConfigNode> root =
      ParseYamlString("pool:\n  ${K}: round_robin\n", "cfg/p.yaml", &problems_);
  ASSERT_TRUE(root.has_value());
  ExpandEnvironmentInTree(&*root, options_, &problems_);
  EXPECT_EQ(root->Find("pool")->entries[0].key, "${K}");
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_EQ(problems_[0].ToString(),
            "cfg/p.yaml:2:3: pool.${K}: environment references are not "
            "allowed in keys");
}

TEST_F(ConfigEnvTest, TreeErrorsCarryTheValuesLocationAndPath) {
  std::optional<ConfigNode> root = ParseYamlString(
      "providers:\n  - name: openai\n    api_key: ${OPENAI_API_KEY}\n",
      "cfg/p.yaml", &problems_);
  ASSERT_TRUE(root.has_value());
  ExpandEnvironmentInTree(&*root, options_, &problems_);
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_EQ(problems_[0].location.line, 3);
  EXPECT_EQ(problems_[0].location.column, 14);
  EXPECT_EQ(problems_[0].key_path, "providers.openai.api_key");
}

TEST_F(ConfigEnvTest, ErrorsNeverContainSecretContents) {
  files_["/run/secrets/k"] = "sk-very-secret";
  vars_["TOKEN"] = "tok-very-secret";
  Expand("${file:/run/secrets/k}${TOKEN}${MISSING}");
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_THAT(problems_[0].ToString(), Not(HasSubstr("very-secret")));
}

}  // namespace
}  // namespace echelon
