#include "adapters/config_loader.h"

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Runfile(const std::string& path) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" +
         std::getenv("TEST_WORKSPACE") + "/" + path;
}

LoadOptions EnvFrom(std::map<std::string, std::string> vars) {
  LoadOptions options;
  options.env.lookup =
      [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
  return options;
}

std::string ProblemsText(const std::vector<ConfigProblem>& problems) {
  std::string out;
  for (const ConfigProblem& p : problems) out += p.ToString() + "\n";
  return out;
}

const ModelConfig* FindModel(const GatewayConfig& config,
                             const std::string& name) {
  for (const ModelConfig& m : config.models) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

TEST(ConfigLoaderTest, DefaultConfigLoadsWithNoEnvironment) {
  ConfigLoadResult result =
      LoadConfigWithProblems(Runfile("configs/llms"), EnvFrom({}));
  ASSERT_TRUE(result.problems.empty()) << ProblemsText(result.problems);
  const GatewayConfig& config = result.config;
  ASSERT_EQ(config.providers.size(), 2u);
  EXPECT_EQ(config.providers[0].name, "local-sim");
  EXPECT_EQ(config.providers[0].kind, ProviderKind::kOpenAI);
  EXPECT_EQ(config.providers[0].base_url, "http://127.0.0.1:8700/v1");
  EXPECT_EQ(config.providers[0].api_key, "");
  EXPECT_EQ(config.providers[1].name, "local-sim-anthropic");
  EXPECT_EQ(config.providers[1].kind, ProviderKind::kAnthropic);
  EXPECT_EQ(config.providers[0].timeouts.connect, absl::Seconds(2));

  const ModelConfig* fast = FindModel(config, "sim-fast");
  ASSERT_NE(fast, nullptr);
  EXPECT_EQ(fast->upstream_model, "sim-fast");
  ASSERT_EQ(fast->instances.size(), 2u);
  EXPECT_EQ(fast->instances[0].id, "a");
  EXPECT_EQ(fast->instances[1].id, "b");
  const ModelConfig* smart = FindModel(config, "sim-smart");
  ASSERT_NE(smart, nullptr);
  ASSERT_EQ(smart->instances.size(), 1u);
  EXPECT_EQ(smart->instances[0].id, "default");
  ASSERT_NE(FindModel(config, "sim-claude"), nullptr);

  ASSERT_EQ(config.task_groups.size(), 3u);
  const TaskGroupConfig& group = config.task_groups[0];
  EXPECT_EQ(group.name, "fast");
  ASSERT_EQ(group.echelons.size(), 2u);
  EXPECT_EQ(group.echelons[0].name, "primary");
  EXPECT_THAT(group.echelons[0].models, ElementsAre("sim-fast"));
  EXPECT_EQ(group.echelons[1].name, "backup");
  EXPECT_THAT(group.echelons[1].models, ElementsAre("sim-smart"));
  // Inherited from task-groups/_base.yaml.
  EXPECT_EQ(group.instance_breaker.max_recovery_time, absl::Minutes(5));

  ASSERT_EQ(config.pools.size(), 3u);
  EXPECT_EQ(config.pools[0].name, "fast-pool");
  EXPECT_THAT(config.pools[0].task_groups, ElementsAre("fast"));
  EXPECT_EQ(config.pools[1].name, "thinking-pool");
  EXPECT_EQ(config.pools[2].name, "plan-pool");
}

TEST(ConfigLoaderTest, DefaultConfigFollowsSimulatorUrl) {
  absl::StatusOr<GatewayConfig> config =
      LoadConfig(Runfile("configs/llms"),
                 EnvFrom({{"ECHELON_SIM_URL", "http://127.0.0.1:41234/v1"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  for (const ProviderConfig& provider : config->providers) {
    EXPECT_EQ(provider.base_url, "http://127.0.0.1:41234/v1");
  }
}

std::string TestData(const std::string& path) {
  return Runfile("tests/adapters/testdata/config/" + path);
}

std::vector<std::string> Strings(const std::vector<ConfigProblem>& problems) {
  std::vector<std::string> out;
  for (const ConfigProblem& p : problems) out.push_back(p.ToString());
  return out;
}

TEST(ConfigLoaderTest, ReportsEveryProblemOfADirectoryWithFileLineColumn) {
  const std::string dir = TestData("typo");
  std::vector<ConfigProblem> problems = CheckConfig(dir, EnvFrom({}));
  EXPECT_THAT(
      Strings(problems),
      ElementsAre(
          dir + "/models/models.yaml:4:1: pools: unknown key 'pools' (a "
                "file listed under 'models' may only contain 'models')",
          dir + "/pools/fast.yaml:7:3: pools.fast-pool.stratgy: unknown key "
                "'stratgy'; did you mean 'strategy'?",
          dir +
              "/pools/other.yaml:2:11: pools.fast-pool.name: duplicate "
              "pool 'fast-pool' (first defined at " +
              dir + "/pools/fast.yaml:4:9)",
          // Written in the base file, found through inherits_from.
          dir + "/task-groups/_base.yaml:3:3: "
                "task_groups.fast.health.pasive: unknown key 'pasive'; did "
                "you mean 'passive'?"));
}

TEST(ConfigLoaderTest, LoadConfigListsEveryProblemInItsError) {
  absl::StatusOr<GatewayConfig> config =
      LoadConfig(TestData("typo"), EnvFrom({}));
  ASSERT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr("4 configuration problems:\n"));
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr("/pools/fast.yaml:7:3: pools.fast-pool.stratgy: "
                        "unknown key 'stratgy'; did you mean 'strategy'?"));
}

TEST(ConfigLoaderTest, RegistryWithoutListsLoadsEveryYamlOfEachDirectory) {
  ConfigLoadResult result = LoadConfigWithProblems(
      TestData("scan"), EnvFrom({{"SIM_URL", "http://sim:1/v1"}}));
  ASSERT_TRUE(result.problems.empty()) << ProblemsText(result.problems);
  ASSERT_EQ(result.config.models.size(), 2u);
  // Sorted by file name; files starting with '_' are skipped.
  EXPECT_EQ(result.config.models[0].name, "m1");
  EXPECT_EQ(result.config.models[1].name, "m2");
  EXPECT_EQ(result.config.providers[0].base_url, "http://sim:1/v1");
  ASSERT_EQ(result.config.pools.size(), 1u);
  EXPECT_EQ(result.config.pools[0].strategy, "random");  // registry defaults
  EXPECT_THAT(result.config.pools[0].task_groups, ElementsAre("g.e"));
}

TEST(ConfigLoaderTest, UnsetVariableIsReportedWithFileAndLine) {
  const std::string dir = TestData("scan");
  EXPECT_THAT(Strings(CheckConfig(dir, EnvFrom({}))),
              ElementsAre(dir + "/providers/sim.yaml:4:15: "
                                "providers.sim.base_url: environment variable "
                                "'SIM_URL' is not set (use ${SIM_URL:-default} "
                                "for a default)"));
}

TEST(ConfigLoaderTest, SecretFilesAreReadRelativeToTheirConfigFile) {
  const std::string dir = TestData("secret");
  ConfigLoadResult result = LoadConfigWithProblems(dir, EnvFrom({}));
  ASSERT_EQ(result.config.providers.size(), 2u);
  EXPECT_EQ(result.config.providers[0].api_key, "sk-from-file-123");
  EXPECT_THAT(
      Strings(result.problems),
      ElementsAre(dir +
                  "/providers/openai.yaml:9:14: "
                  "providers.other.api_key: cannot read secret "
                  "file '" +
                  dir + "/secrets/missing_key': No such file or directory"));
  for (const std::string& text : Strings(result.problems)) {
    EXPECT_THAT(text, Not(HasSubstr("sk-from-file")));
  }
}

TEST(ConfigLoaderTest, SingleFileConfigLoads) {
  absl::StatusOr<GatewayConfig> config =
      LoadConfig(TestData("single.yaml"), EnvFrom({}));
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->providers.size(), 1u);
  EXPECT_EQ(config->providers[0].kind, ProviderKind::kAnthropic);
  EXPECT_EQ(config->pools[0].name, "p");
}

TEST(ConfigLoaderTest, DirectoryWithoutRegistryIsAProblem) {
  const std::string dir = TestData("cycle");
  EXPECT_THAT(Strings(CheckConfig(dir, EnvFrom({}))),
              ElementsAre(dir + "/_registry.yaml: missing registry file (a "
                                "configuration directory needs "
                                "_registry.yaml)"));
}

TEST(ConfigLoaderTest, RegistryProblemsAreReportedAtTheRegistry) {
  const std::string dir = TestData("bad_registry");
  const std::string registry = dir + "/_registry.yaml";
  EXPECT_THAT(
      Strings(CheckConfig(dir, EnvFrom({}))),
      ElementsAre(
          registry + ":1:10: version: unsupported registry version; expected 1",
          registry + ":2:1: provider: unknown key 'provider'; did you mean "
                     "'providers'?",
          registry + ":4:11: pools[0]: listed file '" + dir +
              "/pools/p.yaml' does not exist",
          registry + ":5:5: pools[0].enabeld: unknown key 'enabeld'; did "
                     "you mean 'enabled'?",
          registry + ":6:5: pools[1]: missing required key 'file'",
          registry + ":7:5: pools[2]: expected a file name or {file: NAME, "
                     "enabled: BOOL}",
          registry + ":8:5: pools[3]: listed file '" + dir +
              "/missing.yaml' does not exist"));
}

// Every variable the examples use resolves to a dummy value and every secret
// file to a dummy key.
LoadOptions DummyEnvironment() {
  LoadOptions options;
  options.env.lookup = [](const std::string& name) {
    return std::optional<std::string>("dummy-" + name);
  };
  options.env.read_file = [](const std::string&, std::string*) {
    return std::optional<std::string>("dummy-secret\n");
  };
  return options;
}

TEST(ConfigLoaderTest, ProductionExampleLoadsWithDummyEnvironment) {
  LoadOptions options = DummyEnvironment();
  options.env.lookup = [](const std::string& name) {
    // URLs must stay URLs.
    if (name.find("URL") != std::string::npos) {
      return std::optional<std::string>("https://" + name + ".example/v1");
    }
    return std::optional<std::string>("dummy-" + name);
  };
  ConfigLoadResult result =
      LoadConfigWithProblems(Runfile("configs/examples/production"), options);
  ASSERT_TRUE(result.problems.empty()) << ProblemsText(result.problems);
  EXPECT_EQ(result.config.providers[0].api_key, "dummy-OPENAI_API_KEY");
  // batch-pool is disabled in the registry.
  EXPECT_EQ(result.config.pools.size(), 3u);
}

TEST(ConfigLoaderTest, EveryExampleLoadsWithDummyEnvironment) {
  LoadOptions options = DummyEnvironment();
  options.env.lookup = [](const std::string& name) {
    if (name.find("URL") != std::string::npos) {
      return std::optional<std::string>("https://" + name + ".example/v1");
    }
    return std::optional<std::string>("dummy-" + name);
  };
  int examples = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(Runfile("configs/examples"))) {
    const std::string path = entry.path().string();
    if (!entry.is_directory() && entry.path().extension() != ".yaml") continue;
    ++examples;
    ConfigLoadResult result = LoadConfigWithProblems(path, options);
    EXPECT_TRUE(result.problems.empty()) << path << ":\n"
                                         << ProblemsText(result.problems);
    EXPECT_FALSE(result.config.pools.empty()) << path;
  }
  EXPECT_GE(examples, 2);
}

TEST(ConfigLoaderTest, ProductionExampleNeedsTheApiKeys) {
  std::vector<ConfigProblem> problems =
      CheckConfig(Runfile("configs/examples/production"), EnvFrom({}));
  ASSERT_EQ(problems.size(), 2u) << ProblemsText(problems);
  EXPECT_THAT(problems[0].message, HasSubstr("'ANTHROPIC_API_KEY'"));
  EXPECT_THAT(problems[1].message, HasSubstr("'OPENAI_API_KEY'"));
}

TEST(ConfigLoaderTest, SingleFileExampleLoadsWithDummySecret) {
  ConfigLoadResult result = LoadConfigWithProblems(
      Runfile("configs/examples/single-file.yaml"), DummyEnvironment());
  ASSERT_TRUE(result.problems.empty()) << ProblemsText(result.problems);
  EXPECT_EQ(result.config.providers[0].api_key, "dummy-secret");
}

TEST(ConfigLoaderTest, MissingPathIsNotFound) {
  absl::StatusOr<GatewayConfig> config =
      LoadConfig("/nonexistent/echelon/config");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace echelon
