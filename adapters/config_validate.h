// Turns the merged configuration tree into a GatewayConfig, checking
// everything on the way: unknown keys (with a "did you mean" suggestion),
// types, ranges, enum names, duplicate names, references (pool -> task group
// or group.echelon, echelon -> model, model -> provider, fallbacks) and
// timeout consistency. Every problem is collected; none stops the walk.
//
// The tree is a map with the sections `providers`, `models`, `task_groups`,
// `pools` (lists of maps, each with a `name`) and `defaults` (maps merged
// under every provider / model / instance / task_group / echelon / pool).
// configs/README.md documents every key and its default.
#pragma once

#include <string>
#include <vector>

#include "adapters/config_node.h"
#include "domain/config.h"

namespace echelon {

// Decodes `root`. Problems are appended; the result is only meaningful when
// none were.
GatewayConfig DecodeGatewayConfig(const ConfigNode& root,
                                  std::vector<ConfigProblem>* problems);

// Levenshtein distance, for suggestions.
int EditDistance(const std::string& a, const std::string& b);

// The candidate closest to `word` when it is close enough to be a likely
// typo, else "".
std::string SuggestClosest(const std::string& word,
                           const std::vector<std::string>& candidates);

}  // namespace echelon
