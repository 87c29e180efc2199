#include "adapters/config_node.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ConfigNodeTest, RecordsLineAndColumnOfKeysAndValues) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root = ParseYamlString(
      "# comment\npools:\n  - name: fast\n    strategy: random\n", "f.yaml",
      &problems);
  ASSERT_TRUE(root.has_value());
  ASSERT_TRUE(problems.empty());
  const ConfigNode* pools = root->Find("pools");
  ASSERT_NE(pools, nullptr);
  ASSERT_TRUE(pools->IsSequence());
  const ConfigNode& pool = pools->items[0];
  ASSERT_EQ(pool.entries.size(), 2u);
  EXPECT_EQ(pool.entries[1].key, "strategy");
  EXPECT_EQ(pool.entries[1].key_location.line, 4);
  EXPECT_EQ(pool.entries[1].key_location.column, 5);
  EXPECT_EQ(pool.entries[1].value.location.line, 4);
  EXPECT_EQ(pool.entries[1].value.location.column, 15);
  EXPECT_EQ(pool.entries[1].value.location.file, "f.yaml");
}

TEST(ConfigNodeTest, DistinguishesNullScalarListAndMap) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root = ParseYamlString(
      "a:\nb: ~\nc: text\nd: [1]\ne: {x: 1}\nf: ''\n", "f.yaml", &problems);
  ASSERT_TRUE(root.has_value());
  EXPECT_TRUE(root->Find("a")->IsNull());
  EXPECT_TRUE(root->Find("b")->IsNull());
  EXPECT_TRUE(root->Find("c")->IsScalar());
  EXPECT_TRUE(root->Find("d")->IsSequence());
  EXPECT_TRUE(root->Find("e")->IsMap());
  EXPECT_TRUE(root->Find("f")->IsScalar());
  EXPECT_EQ(root->Find("f")->scalar, "");
}

TEST(ConfigNodeTest, SyntaxErrorBecomesAProblemWithLocation) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      ParseYamlString("a: 1\nb: [1, 2\n", "bad.yaml", &problems);
  EXPECT_FALSE(root.has_value());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0].ToString(), StartsWith("bad.yaml:"));
  EXPECT_THAT(problems[0].message, StartsWith("YAML syntax error: "));
  EXPECT_GT(problems[0].location.line, 0);
}

TEST(ConfigNodeTest, DuplicateKeyIsAProblem) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      ParseYamlString("a: 1\nb: 2\na: 3\n", "dup.yaml", &problems);
  ASSERT_TRUE(root.has_value());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].ToString(),
            "dup.yaml:3:1: duplicate key 'a' (first written at line 1)");
  EXPECT_EQ(root->Find("a")->scalar, "1");
}

TEST(ConfigNodeTest, MultipleDocumentsAreRejected) {
  std::vector<ConfigProblem> problems;
  EXPECT_FALSE(ParseYamlString("a: 1\n---\nb: 2\n", "multi.yaml", &problems)
                   .has_value());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].message, "only one YAML document per file is allowed");
}

TEST(ConfigNodeTest, EmptyDocumentIsNull) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      ParseYamlString("# nothing\n", "empty.yaml", &problems);
  ASSERT_TRUE(root.has_value());
  EXPECT_TRUE(root->IsNull());
}

TEST(ConfigNodeTest, UnreadableFileIsAProblem) {
  std::vector<ConfigProblem> problems;
  EXPECT_FALSE(ParseYamlFile("/nonexistent/x.yaml", &problems).has_value());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].ToString(),
            "/nonexistent/x.yaml: cannot read file: No such file or directory");
}

TEST(ConfigNodeTest, ProblemToStringLeavesOutUnknownParts) {
  ConfigProblem p{{"f.yaml", 7, 3}, "pools.fast-pool.stratgy", "msg"};
  EXPECT_EQ(p.ToString(), "f.yaml:7:3: pools.fast-pool.stratgy: msg");
  p.key_path = "";
  EXPECT_EQ(p.ToString(), "f.yaml:7:3: msg");
  p.location.line = 0;
  EXPECT_EQ(p.ToString(), "f.yaml: msg");
}

TEST(ConfigNodeTest, ResolvesPathsRelativeToTheFile) {
  EXPECT_EQ(ResolveConfigPath("configs/llms/_registry.yaml", "pools/a.yaml"),
            "configs/llms/pools/a.yaml");
  EXPECT_EQ(ResolveConfigPath("configs/llms/pools/a.yaml", "../_base.yaml"),
            "configs/llms/_base.yaml");
  EXPECT_EQ(ResolveConfigPath("a/b.yaml", "/abs/c.yaml"), "/abs/c.yaml");
  EXPECT_EQ(ResolveConfigPath("", "./x//y.yaml"), "x/y.yaml");
  EXPECT_EQ(ResolveConfigPath("/etc/echelon/", "p.yaml"),
            "/etc/echelon/p.yaml");
}

}  // namespace
}  // namespace echelon
