// Decodes a config section on top of a minimal valid config (one provider,
// model, task group and pool), for tests of one section's keys.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "adapters/config_env.h"
#include "adapters/config_node.h"
#include "adapters/config_validate.h"

namespace echelon::testing {

inline constexpr char kMinimalConfig[] =
    "providers:\n"
    "  - name: sim\n"
    "    kind: openai\n"
    "    base_url: http://127.0.0.1:8700/v1\n"
    "models:\n"
    "  - name: m1\n"
    "    provider: sim\n"
    "task_groups:\n"
    "  - name: fast\n"
    "    echelons:\n"
    "      - name: primary\n"
    "        models: [m1]\n"
    "pools:\n"
    "  - name: fast-pool\n"
    "    task_groups: [fast]\n";  // 15 lines

struct Decoded {
  GatewayConfig config;
  std::vector<std::string> problems;  // ConfigProblem::ToString()
};

// kMinimalConfig + `extra`, as file "t.yaml"; environment substitution
// with `env` when given.
inline Decoded DecodeOnMinimalConfig(const std::string& extra,
                                     const EnvOptions* env = nullptr) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      ParseYamlString(std::string(kMinimalConfig) + extra, "t.yaml", &problems);
  Decoded out;
  if (root.has_value()) {
    if (env != nullptr) ExpandEnvironmentInTree(&*root, *env, &problems);
    out.config = DecodeGatewayConfig(*root, &problems);
  }
  for (const ConfigProblem& p : problems) out.problems.push_back(p.ToString());
  return out;
}

}  // namespace echelon::testing
