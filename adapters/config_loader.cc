#include "adapters/config_loader.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "adapters/config_inherit.h"
#include "adapters/config_validate.h"

namespace echelon {
namespace {

using Problems = std::vector<ConfigProblem>;

// The entity sections and the directory their files live in by default.
struct Section {
  const char* key;
  const char* directory;
};
constexpr Section kSections[] = {{"providers", "providers"},
                                 {"models", "models"},
                                 {"task_groups", "task-groups"},
                                 {"pools", "pools"}};

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// The files of one section: the registry's list, or every `*.yaml` in the
// section's directory whose name does not start with `_` (such files are
// bases for inherits_from).
// A file to load and, when the registry lists it, where.
struct ListedFile {
  std::string path;
  std::optional<SourceLocation> listed_at;
  std::string key_path;
};

std::vector<ListedFile> SectionFiles(const ConfigNode& registry,
                                     const std::string& registry_path,
                                     const Section& section,
                                     Problems* problems) {
  std::vector<ListedFile> files;
  const ConfigNode* listed = registry.Find(section.key);
  if (listed == nullptr || listed->IsNull()) {
    const std::string dir = ResolveConfigPath(registry_path, section.directory);
    if (!IsDirectory(dir)) return files;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
      const std::string name = entry.path().filename().string();
      if (absl::StartsWith(name, "_") || !absl::EndsWith(name, ".yaml")) {
        continue;
      }
      files.push_back({ResolveConfigPath(dir + "/", name), std::nullopt, ""});
    }
    std::sort(files.begin(), files.end(),
              [](const ListedFile& a, const ListedFile& b) {
                return a.path < b.path;
              });
    return files;
  }
  if (!listed->IsSequence()) {
    problems->push_back(
        {listed->location, section.key, "expected a list of files"});
    return files;
  }
  for (size_t i = 0; i < listed->items.size(); ++i) {
    const ConfigNode& item = listed->items[i];
    const std::string path = absl::StrCat(section.key, "[", i, "]");
    if (item.IsScalar()) {
      files.push_back(
          {ResolveConfigPath(registry_path, item.scalar), item.location, path});
      continue;
    }
    if (!item.IsMap()) {
      problems->push_back(
          {item.location, path,
           "expected a file name or {file: NAME, enabled: BOOL}"});
      continue;
    }
    const ConfigNode* file = nullptr;
    bool enabled = true;
    for (const ConfigMapEntry& entry : item.entries) {
      if (entry.key == "file" && entry.value.IsScalar()) {
        file = &entry.value;
      } else if (entry.key == "enabled" && entry.value.IsScalar() &&
                 (entry.value.scalar == "true" ||
                  entry.value.scalar == "false")) {
        enabled = entry.value.scalar == "true";
      } else if (entry.key == "file" || entry.key == "enabled") {
        problems->push_back({entry.value.location,
                             absl::StrCat(path, ".", entry.key),
                             entry.key == "file" ? "expected a file name"
                                                 : "expected true or false"});
      } else {
        const std::string suggestion =
            SuggestClosest(entry.key, {"file", "enabled"});
        problems->push_back(
            {entry.key_location, absl::StrCat(path, ".", entry.key),
             absl::StrCat(
                 "unknown key '", entry.key, "'",
                 suggestion.empty()
                     ? ""
                     : absl::StrCat("; did you mean '", suggestion, "'?"))});
      }
    }
    if (file == nullptr) {
      problems->push_back({item.location, path, "missing required key 'file'"});
      continue;
    }
    if (enabled) {
      files.push_back({ResolveConfigPath(registry_path, file->scalar),
                       file->location, path});
    }
  }
  return files;
}

void CheckTopLevelKeys(const ConfigNode& root,
                       const std::vector<std::string>& allowed,
                       const std::string& why, Problems* problems) {
  for (const ConfigMapEntry& entry : root.entries) {
    if (std::find(allowed.begin(), allowed.end(), entry.key) != allowed.end()) {
      continue;
    }
    const std::string suggestion = SuggestClosest(entry.key, allowed);
    problems->push_back(
        {entry.key_location, entry.key,
         absl::StrCat("unknown key '", entry.key, "'",
                      suggestion.empty() ? absl::StrCat(" (", why, ")")
                                         : absl::StrCat("; did you mean '",
                                                        suggestion, "'?"))});
  }
}

ConfigNode EmptyList(const SourceLocation& location) {
  ConfigNode list;
  list.kind = ConfigNode::Kind::kSequence;
  list.location = location;
  return list;
}

// Builds the combined document from the registry and the files it lists.
std::optional<ConfigNode> LoadDirectory(const std::string& dir,
                                        Problems* problems) {
  const std::string registry_path =
      ResolveConfigPath(dir + "/", kRegistryFileName);
  if (!Exists(registry_path)) {
    problems->push_back({SourceLocation{registry_path, 0, 0}, "",
                         "missing registry file (a configuration directory "
                         "needs _registry.yaml)"});
    return std::nullopt;
  }
  std::optional<ConfigNode> registry =
      LoadYamlWithInheritance(registry_path, problems);
  if (!registry.has_value()) return std::nullopt;
  if (registry->IsNull()) registry->kind = ConfigNode::Kind::kMap;
  if (!registry->IsMap()) {
    problems->push_back({registry->location, "", "the registry must be a map"});
    return std::nullopt;
  }
  CheckTopLevelKeys(*registry,
                    {"version", "providers", "models", "task_groups", "pools",
                     "defaults", "auth", "limits", "cluster"},
                    "the registry lists files and holds defaults", problems);
  if (const ConfigNode* version = registry->Find("version")) {
    if (!version->IsScalar() || version->scalar != "1") {
      problems->push_back({version->location, "version",
                           "unsupported registry version; expected 1"});
    }
  }

  ConfigNode combined;
  combined.kind = ConfigNode::Kind::kMap;
  combined.location = registry->location;
  if (const ConfigNode* defaults = registry->Find("defaults")) {
    combined.entries.push_back({"defaults", registry->location, *defaults});
    for (ConfigMapEntry& entry : registry->entries) {
      if (entry.key == "defaults")
        combined.entries.back().key_location = entry.key_location;
    }
  }
  // Global sections held by the registry itself.
  for (const char* key : {"auth", "limits", "cluster"}) {
    for (const ConfigMapEntry& entry : registry->entries) {
      if (entry.key == key) combined.entries.push_back(entry);
    }
  }
  for (const Section& section : kSections) {
    ConfigNode list = EmptyList(registry->location);
    for (const ListedFile& file :
         SectionFiles(*registry, registry_path, section, problems)) {
      if (file.listed_at.has_value() && !Exists(file.path)) {
        problems->push_back(
            {*file.listed_at, file.key_path,
             absl::StrCat("listed file '", file.path, "' does not exist")});
        continue;
      }
      std::optional<ConfigNode> root =
          LoadYamlWithInheritance(file.path, problems);
      if (!root.has_value() || root->IsNull()) continue;
      if (!root->IsMap()) {
        problems->push_back(
            {root->location, "",
             absl::StrCat("expected a map with a '", section.key,
                          "' list, got a ", ConfigNodeKindName(root->kind))});
        continue;
      }
      CheckTopLevelKeys(*root, {section.key},
                        absl::StrCat("a file listed under '", section.key,
                                     "' may only contain '", section.key, "'"),
                        problems);
      const ConfigNode* items = root->Find(section.key);
      if (items == nullptr || items->IsNull()) continue;
      if (!items->IsSequence()) {
        problems->push_back({items->location, section.key,
                             absl::StrCat("expected a list, got a ",
                                          ConfigNodeKindName(items->kind))});
        continue;
      }
      for (const ConfigNode& item : items->items) list.items.push_back(item);
    }
    combined.entries.push_back(
        {section.key, registry->location, std::move(list)});
  }
  return combined;
}

std::optional<ConfigNode> LoadSingleFile(const std::string& path,
                                         Problems* problems) {
  std::optional<ConfigNode> root = LoadYamlWithInheritance(path, problems);
  if (!root.has_value()) return std::nullopt;
  if (root->IsNull()) root->kind = ConfigNode::Kind::kMap;
  if (!root->IsMap()) {
    problems->push_back(
        {root->location, "", "the configuration file must be a map"});
    return std::nullopt;
  }
  // `version` is accepted for symmetry with the registry.
  for (auto it = root->entries.begin(); it != root->entries.end(); ++it) {
    if (it->key == "version") {
      root->entries.erase(it);
      break;
    }
  }
  return root;
}

void SortAndDeduplicate(Problems* problems) {
  std::stable_sort(
      problems->begin(), problems->end(),
      [](const ConfigProblem& a, const ConfigProblem& b) {
        return std::tie(a.location.file, a.location.line, a.location.column) <
               std::tie(b.location.file, b.location.line, b.location.column);
      });
  // A problem inside `defaults` is found once per entity using it.
  std::set<std::tuple<std::string, int, int, std::string>> seen;
  Problems unique;
  for (ConfigProblem& problem : *problems) {
    if (seen.emplace(problem.location.file, problem.location.line,
                     problem.location.column, problem.message)
            .second) {
      unique.push_back(std::move(problem));
    }
  }
  *problems = std::move(unique);
}

}  // namespace

ConfigLoadResult LoadConfigWithProblems(const std::string& path,
                                        const LoadOptions& options) {
  ConfigLoadResult result;
  std::optional<ConfigNode> root;
  if (!Exists(path)) {
    result.problems.push_back(
        {SourceLocation{path, 0, 0}, "", "no such file or directory"});
    return result;
  }
  if (IsDirectory(path)) {
    root = LoadDirectory(path, &result.problems);
  } else {
    root = LoadSingleFile(path, &result.problems);
  }
  if (root.has_value()) {
    ExpandEnvironmentInTree(&*root, options.env, &result.problems);
    result.config = DecodeGatewayConfig(*root, &result.problems);
  }
  SortAndDeduplicate(&result.problems);
  return result;
}

absl::StatusOr<GatewayConfig> LoadConfig(const std::string& path,
                                         const LoadOptions& options) {
  if (!Exists(path)) {
    return absl::NotFoundError(absl::StrCat("configuration not found: ", path));
  }
  ConfigLoadResult result = LoadConfigWithProblems(path, options);
  if (!result.problems.empty()) {
    std::vector<std::string> lines;
    for (const ConfigProblem& problem : result.problems) {
      lines.push_back(problem.ToString());
    }
    return absl::InvalidArgumentError(
        absl::StrCat(result.problems.size(), " configuration problem",
                     result.problems.size() == 1 ? "" : "s", ":\n",
                     absl::StrJoin(lines, "\n")));
  }
  return std::move(result.config);
}

std::vector<ConfigProblem> CheckConfig(const std::string& path,
                                       const LoadOptions& options) {
  return LoadConfigWithProblems(path, options).problems;
}

}  // namespace echelon
