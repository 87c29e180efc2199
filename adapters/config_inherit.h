// Configuration inheritance: any YAML map may say
//   inherits_from: base.yaml            # or a list: [a.yaml, b.yaml]
// Paths are relative to the file the key is written in. The bases' root maps
// are merged in order (later bases win), then the map itself on top: maps
// merge deeply with the child winning, lists and scalars replace, and an
// explicit null resets a key to its default. Every merged value keeps the
// location of the file it was written in. Cycles are problems that show the
// chain (`a.yaml -> b.yaml -> a.yaml`).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "adapters/config_node.h"

namespace echelon {

inline constexpr char kInheritsFromKey[] = "inherits_from";

// `override` deep-merged onto `base` (see above).
ConfigNode MergeConfigNodes(const ConfigNode& base, const ConfigNode& override);

// Parses `path` and resolves every `inherits_from` in it. Problems are
// appended; nullopt when the file itself could not be parsed.
std::optional<ConfigNode> LoadYamlWithInheritance(
    const std::string& path, std::vector<ConfigProblem>* problems);

}  // namespace echelon
