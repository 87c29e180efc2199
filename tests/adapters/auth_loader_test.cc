// `auth:` and `limits:` live in _registry.yaml in the directory layout.
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "adapters/config_loader.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

std::string Runfile(const std::string& path) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" +
         std::getenv("TEST_WORKSPACE") + "/" + path;
}

TEST(AuthLoaderTest, RegistryHoldsAuthAndLimits) {
  absl::StatusOr<GatewayConfig> config =
      LoadConfig(Runfile("tests/adapters/auth_testdata/registry"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->auth.enabled);
  ASSERT_EQ(config->auth.tokens.size(), 1u);
  EXPECT_EQ(config->auth.tokens[0].name, "team-a");
  EXPECT_EQ(config->auth.tokens[0].sha256.size(), 64u);
  EXPECT_EQ(config->limits.max_messages, 7);
  EXPECT_EQ(config->limits.max_content_bytes, 1 << 20);
}

}  // namespace
}  // namespace echelon
