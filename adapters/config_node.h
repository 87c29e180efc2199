// A YAML document as a tree that remembers where every value was written.
// The configuration pipeline (inheritance, environment injection,
// validation) works on this tree instead of yaml-cpp nodes so that every
// problem can be reported as `file:line:column: key.path: message`, even
// after values from several files were merged.
//
// yaml-cpp throws; this is the edge where its exceptions become problems.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace echelon {

struct SourceLocation {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown (e.g. a file that is missing)
  int column = 0;  // 1-based; 0 when unknown
};

// One configuration problem. `key_path` is dotted, with list items named by
// their `name` (or `id`) when they have one: `pools.fast-pool.strategy`.
struct ConfigProblem {
  SourceLocation location;
  std::string key_path;  // may be empty (e.g. a YAML syntax error)
  std::string message;

  // `file:line:column: key.path: message`; parts that are unknown are left
  // out (`file: message` for a file that cannot be read).
  std::string ToString() const;
};

struct ConfigMapEntry;

struct ConfigNode {
  enum class Kind { kNull, kScalar, kSequence, kMap };

  Kind kind = Kind::kNull;
  SourceLocation location;
  std::string scalar;  // kScalar: the text as written (after unquoting)
  // kScalar: the value came (partly) from the environment or a secret file;
  // error messages then do not echo it.
  bool substituted = false;
  // kScalar: a reference in it could not be resolved (already reported);
  // `scalar` keeps the text as written and validation skips the value.
  bool unresolved = false;
  std::vector<ConfigNode> items;        // kSequence
  std::vector<ConfigMapEntry> entries;  // kMap, in file order

  bool IsNull() const { return kind == Kind::kNull; }
  bool IsScalar() const { return kind == Kind::kScalar; }
  bool IsSequence() const { return kind == Kind::kSequence; }
  bool IsMap() const { return kind == Kind::kMap; }

  // kMap: the first entry with this key, or nullptr.
  const ConfigNode* Find(const std::string& key) const;
  ConfigNode* Find(const std::string& key);
};

struct ConfigMapEntry {
  std::string key;
  SourceLocation key_location;
  ConfigNode value;
};

// Parses one YAML document. An empty document is a null node. Syntax errors,
// multiple documents and non-scalar keys become problems (then nullopt).
// `file` is only used for locations.
std::optional<ConfigNode> ParseYamlString(const std::string& text,
                                          const std::string& file,
                                          std::vector<ConfigProblem>* problems);

// Reads and parses `path`; an unreadable file is a problem.
std::optional<ConfigNode> ParseYamlFile(const std::string& path,
                                        std::vector<ConfigProblem>* problems);

// The kind as a word for messages: "null", "scalar", "list", "map".
const char* ConfigNodeKindName(ConfigNode::Kind kind);

}  // namespace echelon

namespace echelon {

// Resolves `relative` against the directory of `file` (absolute paths are
// kept) and normalizes `.`, `..` and repeated slashes lexically.
std::string ResolveConfigPath(const std::string& file,
                              const std::string& relative);

}  // namespace echelon
