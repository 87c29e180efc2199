// Environment injection for configuration values.
//
// In scalar VALUES (never keys; a substitution never produces structure):
//   ${VAR}            the variable; unset is an error naming file:line and VAR
//   ${VAR:-default}   the variable, or `default` when unset or empty
//   ${file:PATH}      the contents of PATH (a secret file), trailing newlines
//                     trimmed; PATH is relative to the YAML file using it
//   $$                a literal `$`
// Substitution runs after YAML parsing, once: a value containing `${X}` or
// YAML syntax stays a literal string. Errors never include variable values or
// file contents.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "adapters/config_node.h"

namespace echelon {

struct EnvOptions {
  // Looks a variable up; nullopt when unset. Default: getenv.
  std::function<std::optional<std::string>(const std::string&)> lookup;
  // Reads a secret file; nullopt (and an errno-style reason in `*error`) when
  // it cannot be read. Default: reads the file from disk.
  std::function<std::optional<std::string>(const std::string& path,
                                           std::string* error)>
      read_file;
};

// Expands one value written at `location`. Problems are appended; on error
// the result is unspecified. Sets `*substituted` when any reference was
// replaced.
std::string ExpandEnvironment(const std::string& value,
                              const SourceLocation& location,
                              const std::string& key_path,
                              const EnvOptions& options, bool* substituted,
                              std::vector<ConfigProblem>* problems);

// Expands every scalar value of the tree in place. Keys that look like
// references are reported as problems (they are never expanded).
void ExpandEnvironmentInTree(ConfigNode* root, const EnvOptions& options,
                             std::vector<ConfigProblem>* problems);

}  // namespace echelon
