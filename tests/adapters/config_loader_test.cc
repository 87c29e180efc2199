#include "adapters/config_loader.h"

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

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

TEST(ConfigLoaderTest, MissingPathIsNotFound) {
  absl::StatusOr<GatewayConfig> config =
      LoadConfig("/nonexistent/echelon/config");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace echelon
