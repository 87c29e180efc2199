// The `cluster:` config section: decoding, validation, secrets from the
// environment, the registry layout and its documentation in configs/README.md.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "adapters/config_env.h"
#include "adapters/config_loader.h"
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
using ::testing::Not;

using testing::Decoded;

Decoded Decode(const std::string& extra, const EnvOptions* env = nullptr) {
  return testing::DecodeOnMinimalConfig(extra, env);
}

TEST(ClusterConfigTest, AbsentSectionKeepsDocumentedDefaults) {
  Decoded d = Decode("");
  ASSERT_THAT(d.problems, IsEmpty());
  const ClusterConfig& c = d.config.cluster;
  EXPECT_FALSE(c.enabled);
  EXPECT_EQ(c.address, "127.0.0.1:6379");
  EXPECT_EQ(c.password, "");
  EXPECT_EQ(c.database, 0);
  EXPECT_EQ(c.key_prefix, "echelon");
  EXPECT_EQ(c.decision_timeout, absl::Milliseconds(2));
  EXPECT_EQ(c.connect_timeout, absl::Milliseconds(500));
  EXPECT_EQ(c.reconnect_min, absl::Milliseconds(100));
  EXPECT_EQ(c.reconnect_max, absl::Seconds(5));
  EXPECT_EQ(c.local_share, 1.0);
  EXPECT_EQ(c.replica_id, "");
}

TEST(ClusterConfigTest, DecodesEveryKey) {
  Decoded d = Decode(
      "cluster:\n"
      "  enabled: true\n"
      "  address: redis.internal:7000\n"
      "  password: pw\n"
      "  database: 2\n"
      "  key_prefix: gw-prod\n"
      "  decision_timeout: 3ms\n"
      "  connect_timeout: 250ms\n"
      "  reconnect_min: 50ms\n"
      "  reconnect_max: 2s\n"
      "  local_share: 0.34\n"
      "  replica_id: gw-1\n");
  ASSERT_THAT(d.problems, IsEmpty());
  const ClusterConfig& c = d.config.cluster;
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.address, "redis.internal:7000");
  EXPECT_EQ(c.password, "pw");
  EXPECT_EQ(c.database, 2);
  EXPECT_EQ(c.key_prefix, "gw-prod");
  EXPECT_EQ(c.decision_timeout, absl::Milliseconds(3));
  EXPECT_EQ(c.connect_timeout, absl::Milliseconds(250));
  EXPECT_EQ(c.reconnect_min, absl::Milliseconds(50));
  EXPECT_EQ(c.reconnect_max, absl::Seconds(2));
  EXPECT_DOUBLE_EQ(c.local_share, 0.34);
  EXPECT_EQ(c.replica_id, "gw-1");
  EXPECT_THAT(Decode("cluster:\n  address: \"[::1]:6380\"\n").problems,
              IsEmpty());
}

TEST(ClusterConfigTest, ReportsBadValuesWithLocations) {
  Decoded d = Decode(
      "cluster:\n"                 // line 16
      "  enabled: yes-please\n"    // 17
      "  address: redis\n"         // 18
      "  database: -1\n"           // 19
      "  key_prefix: \"a b\"\n"    // 20
      "  decision_timeout: 0s\n"   // 21
      "  connect_timeout: -5ms\n"  // 22
      "  reconnect_min: 10s\n"     // 23
      "  reconnect_max: 1s\n"      // 24
      "  local_share: 0\n");       // 25
  EXPECT_THAT(
      d.problems,
      ElementsAre(
          HasSubstr("t.yaml:17:12: cluster.enabled: expected true or false"),
          HasSubstr("t.yaml:18:12: cluster.address: expected host:port"),
          HasSubstr("t.yaml:19:13: cluster.database: must be >= 0"),
          HasSubstr("t.yaml:20:15: cluster.key_prefix: must be non-empty"),
          HasSubstr("t.yaml:21:21: cluster.decision_timeout: must be > 0"),
          HasSubstr("t.yaml:22:20: cluster.connect_timeout: must be > 0"),
          HasSubstr("t.yaml:23:18: cluster.reconnect_min: reconnect_min "
                    "(10s) must not exceed reconnect_max (1s)"),
          HasSubstr("t.yaml:25:16: cluster.local_share: must be > 0")));
  EXPECT_THAT(Decode("cluster:\n  local_share: 1.5\n").problems,
              ElementsAre(HasSubstr("must be between 0 and 1")));
  for (const char* bad : {"redis:0", "redis:65536", ":6379", "::1:6379",
                          "redis:port", "red is:6379"}) {
    EXPECT_THAT(
        Decode(absl::StrCat("cluster:\n  address: \"", bad, "\"\n")).problems,
        ElementsAre(HasSubstr("expected host:port")))
        << bad;
  }
}

TEST(ClusterConfigTest, UnknownKeysGetASuggestion) {
  Decoded d = Decode(
      "cluster:\n"
      "  enabeld: true\n"
      "  local_shares: 0.5\n");
  EXPECT_THAT(d.problems,
              ElementsAre(HasSubstr("cluster.enabeld: unknown key 'enabeld'; "
                                    "did you mean 'enabled'?"),
                          HasSubstr("did you mean 'local_share'?")));
}

TEST(ClusterConfigTest, PasswordComesFromTheEnvironmentAndIsNeverEchoed) {
  EnvOptions env;
  env.lookup = [](const std::string& name) -> std::optional<std::string> {
    if (name == "REDIS_PASSWORD") return "hunter2-secret";
    if (name == "REDIS_ADDRESS") return "hunter2-secret";  // not host:port
    return std::nullopt;
  };
  Decoded ok = Decode("cluster:\n  password: ${REDIS_PASSWORD}\n", &env);
  ASSERT_THAT(ok.problems, IsEmpty());
  EXPECT_EQ(ok.config.cluster.password, "hunter2-secret");
  Decoded bad = Decode(
      "cluster:\n"
      "  password: ${REDIS_PASSWORD}\n"
      "  address: ${REDIS_ADDRESS}\n",
      &env);
  ASSERT_THAT(bad.problems, ElementsAre(HasSubstr("expected host:port")));
  EXPECT_THAT(bad.problems[0], Not(HasSubstr("hunter2")));
  Decoded unset =
      Decode("cluster:\n  password: ${REDIS_PASSWORD_UNSET}\n", &env);
  EXPECT_THAT(unset.problems, ElementsAre(HasSubstr("REDIS_PASSWORD_UNSET")));
}

TEST(ClusterConfigTest, RegistryHoldsTheClusterSection) {
  const std::string dir =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/cluster-registry");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/p.yaml") << "providers:\n"
                                    "  - name: sim\n"
                                    "    kind: openai\n"
                                    "    base_url: http://127.0.0.1:8700/v1\n";
  std::ofstream(dir + "/m.yaml") << "models:\n"
                                    "  - name: m1\n"
                                    "    provider: sim\n";
  std::ofstream(dir + "/t.yaml") << "task_groups:\n"
                                    "  - name: fast\n"
                                    "    echelons:\n"
                                    "      - name: primary\n"
                                    "        models: [m1]\n";
  std::ofstream(dir + "/q.yaml") << "pools:\n"
                                    "  - name: fast-pool\n"
                                    "    task_groups: [fast]\n";
  std::ofstream(dir + "/_registry.yaml") << "version: 1\n"
                                            "providers: [p.yaml]\n"
                                            "models: [m.yaml]\n"
                                            "task_groups: [t.yaml]\n"
                                            "pools: [q.yaml]\n"
                                            "cluster:\n"
                                            "  enabled: true\n"
                                            "  address: 10.0.0.5:6379\n"
                                            "  local_share: 0.5\n";
  absl::StatusOr<GatewayConfig> config = LoadConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->cluster.enabled);
  EXPECT_EQ(config->cluster.address, "10.0.0.5:6379");
  EXPECT_DOUBLE_EQ(config->cluster.local_share, 0.5);
}

TEST(ClusterConfigTest, ReadmeDocumentsEveryKey) {
  std::ifstream in(std::string(std::getenv("TEST_SRCDIR")) + "/" +
                   std::getenv("TEST_WORKSPACE") + "/configs/README.md");
  ASSERT_TRUE(in.good());
  std::stringstream readme;
  readme << in.rdbuf();
  for (const char* key :
       {"cluster:", "address:", "password:", "database:", "key_prefix:",
        "decision_timeout:", "connect_timeout:", "reconnect_min:",
        "reconnect_max:", "local_share:", "replica_id:"}) {
    EXPECT_THAT(readme.str(), HasSubstr(key)) << key;
  }
}

}  // namespace
}  // namespace echelon
