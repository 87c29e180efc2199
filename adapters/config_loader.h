// Loads the gateway configuration from YAML.
//
// `path` is either a directory holding `_registry.yaml` (which lists the
// provider, model, task group and pool files and holds global `defaults`;
// see configs/README.md) or a single YAML file with the sections
// `providers`, `models`, `task_groups`, `pools` and `defaults`.
//
// Pipeline: parse (yaml-cpp, exceptions caught here) -> resolve
// `inherits_from` -> inject `${VAR}` / `${VAR:-default}` / `${file:PATH}` into
// scalar values -> decode and validate (config_validate.h). Every problem is
// reported as `file:line:column: key.path: message`, all at once.
//
// Thread-safe: no shared state; reads the environment through EnvOptions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/config_env.h"
#include "adapters/config_node.h"
#include "domain/config.h"

namespace echelon {

inline constexpr char kRegistryFileName[] = "_registry.yaml";

struct LoadOptions {
  // Where `${VAR}` and `${file:...}` values come from. Default: the process
  // environment and the file system.
  EnvOptions env;
};

struct ConfigLoadResult {
  GatewayConfig config;  // meaningful only when `problems` is empty
  std::vector<ConfigProblem> problems;  // sorted by file, line, column
};

// Loads and validates. Never fails outright: problems are listed.
ConfigLoadResult LoadConfigWithProblems(const std::string& path,
                                        const LoadOptions& options = {});

// The validated configuration. Errors:
//   kNotFound         `path` does not exist;
//   kInvalidArgument  any problem; the message lists every one, one a line.
absl::StatusOr<GatewayConfig> LoadConfig(const std::string& path,
                                         const LoadOptions& options = {});

// Every problem of the configuration at `path` (empty when it is valid), for
// `echelond --check_config=DIR`.
std::vector<ConfigProblem> CheckConfig(const std::string& path,
                                       const LoadOptions& options = {});

}  // namespace echelon
