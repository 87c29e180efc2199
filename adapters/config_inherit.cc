#include "adapters/config_inherit.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace echelon {
namespace {

constexpr int kMaxDepth = 32;

void Resolve(ConfigNode* node, std::vector<std::string>* chain,
             std::vector<ConfigProblem>* problems);

// Loads one base file, resolved, or nullopt after a problem.
std::optional<ConfigNode> LoadBase(const ConfigNode& reference,
                                   std::vector<std::string>* chain,
                                   std::vector<ConfigProblem>* problems) {
  const std::string path =
      ResolveConfigPath(reference.location.file, reference.scalar);
  if (std::find(chain->begin(), chain->end(), path) != chain->end()) {
    std::vector<std::string> shown(
        std::find(chain->begin(), chain->end(), path), chain->end());
    shown.push_back(path);
    problems->push_back(
        {reference.location, kInheritsFromKey,
         absl::StrCat("inheritance cycle: ", absl::StrJoin(shown, " -> "))});
    return std::nullopt;
  }
  if (static_cast<int>(chain->size()) >= kMaxDepth) {
    problems->push_back(
        {reference.location, kInheritsFromKey,
         absl::StrCat("inheritance deeper than ", kMaxDepth, " files")});
    return std::nullopt;
  }
  size_t before = problems->size();
  std::optional<ConfigNode> base = ParseYamlFile(path, problems);
  if (!base.has_value()) {
    // Point at the inherits_from line as well as the file.
    for (size_t i = before; i < problems->size(); ++i) {
      if ((*problems)[i].location.line == 0) {
        (*problems)[i] = {reference.location, kInheritsFromKey,
                          absl::StrCat("cannot inherit from '", path,
                                       "': ", (*problems)[i].message)};
      }
    }
    return std::nullopt;
  }
  if (base->IsNull()) {
    base->kind = ConfigNode::Kind::kMap;
  }
  if (!base->IsMap()) {
    problems->push_back({base->location, "",
                         absl::StrCat("a file used by inherits_from must "
                                      "contain a map, not a ",
                                      ConfigNodeKindName(base->kind))});
    return std::nullopt;
  }
  chain->push_back(path);
  Resolve(&*base, chain, problems);
  chain->pop_back();
  return base;
}

void Resolve(ConfigNode* node, std::vector<std::string>* chain,
             std::vector<ConfigProblem>* problems) {
  if (node->IsSequence()) {
    for (ConfigNode& item : node->items) Resolve(&item, chain, problems);
    return;
  }
  if (!node->IsMap()) return;
  std::optional<ConfigNode> inherits;
  for (auto it = node->entries.begin(); it != node->entries.end(); ++it) {
    if (it->key == kInheritsFromKey) {
      inherits = std::move(it->value);
      node->entries.erase(it);
      break;
    }
  }
  for (ConfigMapEntry& entry : node->entries) {
    Resolve(&entry.value, chain, problems);
  }
  if (!inherits.has_value() || inherits->IsNull()) return;
  std::vector<const ConfigNode*> references;
  if (inherits->IsScalar()) {
    references.push_back(&*inherits);
  } else if (inherits->IsSequence()) {
    for (const ConfigNode& item : inherits->items) {
      if (!item.IsScalar()) {
        problems->push_back(
            {item.location, kInheritsFromKey, "expected a file name"});
        continue;
      }
      references.push_back(&item);
    }
  } else {
    problems->push_back({inherits->location, kInheritsFromKey,
                         "expected a file name or a list of file names"});
    return;
  }
  ConfigNode merged;
  merged.kind = ConfigNode::Kind::kMap;
  merged.location = node->location;
  for (const ConfigNode* reference : references) {
    std::optional<ConfigNode> base = LoadBase(*reference, chain, problems);
    if (base.has_value()) merged = MergeConfigNodes(merged, *base);
  }
  *node = MergeConfigNodes(merged, *node);
}

}  // namespace

ConfigNode MergeConfigNodes(const ConfigNode& base,
                            const ConfigNode& override) {
  if (!base.IsMap() || !override.IsMap()) return override;
  ConfigNode out = base;
  out.location = override.location;
  for (const ConfigMapEntry& entry : override.entries) {
    bool found = false;
    for (ConfigMapEntry& existing : out.entries) {
      if (existing.key != entry.key) continue;
      existing.value = MergeConfigNodes(existing.value, entry.value);
      existing.key_location = entry.key_location;
      found = true;
      break;
    }
    if (!found) out.entries.push_back(entry);
  }
  return out;
}

std::optional<ConfigNode> LoadYamlWithInheritance(
    const std::string& path, std::vector<ConfigProblem>* problems) {
  const std::string normalized = ResolveConfigPath("", path);
  std::optional<ConfigNode> root = ParseYamlFile(normalized, problems);
  if (!root.has_value()) return std::nullopt;
  std::vector<std::string> chain = {normalized};
  Resolve(&*root, &chain, problems);
  return root;
}

}  // namespace echelon
