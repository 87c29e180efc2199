#include "adapters/config_inherit.h"

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "adapters/config_node.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

using ::testing::HasSubstr;

std::string TestData(const std::string& path) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" +
         std::getenv("TEST_WORKSPACE") + "/tests/adapters/testdata/config/" +
         path;
}

const ConfigNode& At(const ConfigNode& map, const std::string& key) {
  const ConfigNode* node = map.Find(key);
  EXPECT_NE(node, nullptr) << key;
  static const ConfigNode kNull;
  return node != nullptr ? *node : kNull;
}

TEST(ConfigInheritTest, MapsMergeDeeplyAndChildWins) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      LoadYamlWithInheritance(TestData("inherit/child.yaml"), &problems);
  ASSERT_TRUE(root.has_value());
  ASSERT_TRUE(problems.empty()) << problems[0].ToString();
  EXPECT_EQ(root->Find("inherits_from"), nullptr);
  const ConfigNode& retry = At(*root, "retry");
  EXPECT_EQ(At(retry, "max_retries").scalar, "5");          // child
  EXPECT_EQ(At(retry, "initial_backoff").scalar, "100ms");  // base
  EXPECT_EQ(At(retry, "max_backoff").scalar, "4s");         // later base wins
  EXPECT_EQ(At(retry, "backoff_multiplier").scalar, "3");   // grand-base
  EXPECT_EQ(At(*root, "grand").scalar, "true");
  EXPECT_EQ(At(*root, "name").scalar, "from-base");
}

TEST(ConfigInheritTest, ListsReplaceInsteadOfMerging) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      LoadYamlWithInheritance(TestData("inherit/child.yaml"), &problems);
  ASSERT_TRUE(root.has_value());
  const ConfigNode& tags = At(*root, "tags");
  ASSERT_EQ(tags.items.size(), 1u);
  EXPECT_EQ(tags.items[0].scalar, "child");
}

TEST(ConfigInheritTest, MergedValuesKeepTheFileTheyWereWrittenIn) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      LoadYamlWithInheritance(TestData("inherit/child.yaml"), &problems);
  ASSERT_TRUE(root.has_value());
  const ConfigNode& retry = At(*root, "retry");
  const ConfigNode& max_retries = At(retry, "max_retries");
  EXPECT_THAT(max_retries.location.file, HasSubstr("inherit/child.yaml"));
  EXPECT_EQ(max_retries.location.line, 3);
  EXPECT_EQ(max_retries.location.column, 16);
  const ConfigNode& initial = At(retry, "initial_backoff");
  EXPECT_THAT(initial.location.file, HasSubstr("inherit/bases/base.yaml"));
  EXPECT_EQ(initial.location.line, 3);
  const ConfigNode& multiplier = At(retry, "backoff_multiplier");
  EXPECT_THAT(multiplier.location.file, HasSubstr("inherit/grand.yaml"));
  EXPECT_EQ(multiplier.location.line, 3);
}

TEST(ConfigInheritTest, InheritsFromWorksInsideListItems) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      LoadYamlWithInheritance(TestData("inherit/entity.yaml"), &problems);
  ASSERT_TRUE(root.has_value());
  ASSERT_TRUE(problems.empty()) << problems[0].ToString();
  const ConfigNode& pool = At(*root, "pools").items.at(0);
  EXPECT_EQ(At(pool, "name").scalar, "p1");
  EXPECT_EQ(At(At(pool, "retry"), "max_backoff").scalar, "2s");
  // An explicit null resets an inherited value.
  EXPECT_TRUE(At(pool, "tags").IsNull());
}

TEST(ConfigInheritTest, CycleIsReportedWithTheChain) {
  std::vector<ConfigProblem> problems;
  const std::string a = TestData("cycle/a.yaml");
  const std::string b = TestData("cycle/b.yaml");
  LoadYamlWithInheritance(a, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].ToString(),
            b + ":1:16: inherits_from: inheritance cycle: " + a + " -> " + b +
                " -> " + a);
}

TEST(ConfigInheritTest, SelfInheritanceIsACycle) {
  std::vector<ConfigProblem> problems;
  const std::string self = TestData("cycle/self.yaml");
  LoadYamlWithInheritance(self, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].message, "inheritance cycle: " + self + " -> " + self);
}

TEST(ConfigInheritTest, MissingBaseIsReportedAtTheInheritsFromLine) {
  std::vector<ConfigProblem> problems;
  const std::string child = TestData("bad_base/child.yaml");
  std::optional<ConfigNode> root = LoadYamlWithInheritance(child, &problems);
  ASSERT_TRUE(root.has_value());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].ToString(),
            child + ":2:16: inherits_from: cannot inherit from '" +
                TestData("bad_base/missing.yaml") +
                "': cannot read file: No such file or directory");
  EXPECT_EQ(At(*root, "a").scalar, "1");
}

TEST(ConfigInheritTest, MergeReplacesScalarsAndListsButMergesMaps) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> base =
      ParseYamlString("a: {x: 1, y: [1, 2]}\nb: 2\n", "base.yaml", &problems);
  std::optional<ConfigNode> child =
      ParseYamlString("a: {y: [3]}\nb: {z: 1}\n", "child.yaml", &problems);
  ASSERT_TRUE(base.has_value() && child.has_value());
  ConfigNode merged = MergeConfigNodes(*base, *child);
  const ConfigNode& a = At(merged, "a");
  EXPECT_EQ(At(a, "x").scalar, "1");
  ASSERT_EQ(At(a, "y").items.size(), 1u);
  EXPECT_EQ(At(a, "y").items[0].scalar, "3");
  EXPECT_TRUE(At(merged, "b").IsMap());
}

}  // namespace
}  // namespace echelon
