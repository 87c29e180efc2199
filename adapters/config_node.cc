#include "adapters/config_node.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace echelon {
namespace {

SourceLocation FromMark(const YAML::Mark& mark, const std::string& file,
                        const SourceLocation& fallback) {
  if (mark.is_null() || mark.line < 0) return fallback;
  return SourceLocation{file, mark.line + 1, mark.column + 1};
}

// Bounds on one file's tree. YAML aliases make the node graph a DAG or even
// a cycle (`a: &x [*x]` is accepted by yaml-cpp), which a plain recursive
// copy turns into a stack overflow or an exponential tree (found by
// tests/fuzz/config_loader_fuzzer.cc). Real configurations are far below
// both limits.
constexpr int kMaxDepth = 64;
constexpr size_t kMaxNodes = 100000;

// Converts a yaml-cpp node. Returns false (after recording a problem) on
// constructs the configuration does not accept. `*nodes` counts the nodes
// converted so far.
bool Convert(const YAML::Node& in, const std::string& file,
             const SourceLocation& fallback, ConfigNode* out,
             std::vector<ConfigProblem>* problems, int depth, size_t* nodes) {
  out->location = FromMark(in.Mark(), file, fallback);
  if (depth > kMaxDepth || ++*nodes > kMaxNodes) {
    problems->push_back(
        {out->location, "",
         absl::StrCat("document nested deeper than ", kMaxDepth,
                      " levels or larger than ", kMaxNodes,
                      " nodes (a recursive or repeated alias?)")});
    *nodes = kMaxNodes + 1;  // one problem; every caller stops
    return false;
  }
  switch (in.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out->kind = ConfigNode::Kind::kNull;
      return true;
    case YAML::NodeType::Scalar:
      out->kind = ConfigNode::Kind::kScalar;
      out->scalar = in.Scalar();
      return true;
    case YAML::NodeType::Sequence: {
      out->kind = ConfigNode::Kind::kSequence;
      bool ok = true;
      for (const YAML::Node& item : in) {
        ConfigNode child;
        ok = Convert(item, file, out->location, &child, problems, depth + 1,
                     nodes) &&
             ok;
        if (!ok && *nodes > kMaxNodes) return false;
        out->items.push_back(std::move(child));
      }
      return ok;
    }
    case YAML::NodeType::Map: {
      out->kind = ConfigNode::Kind::kMap;
      bool ok = true;
      for (auto it = in.begin(); it != in.end(); ++it) {
        ConfigMapEntry entry;
        entry.key_location = FromMark(it->first.Mark(), file, out->location);
        if (!it->first.IsScalar()) {
          problems->push_back(
              {entry.key_location, "", "keys must be plain strings"});
          continue;
        }
        entry.key = it->first.Scalar();
        const ConfigMapEntry* first = nullptr;
        for (const ConfigMapEntry& seen : out->entries) {
          if (seen.key == entry.key) first = &seen;
        }
        if (first != nullptr) {
          problems->push_back({entry.key_location, "",
                               absl::StrCat("duplicate key '", entry.key,
                                            "' (first written at line ",
                                            first->key_location.line, ")")});
          continue;
        }
        ok = Convert(it->second, file, entry.key_location, &entry.value,
                     problems, depth + 1, nodes) &&
             ok;
        if (!ok && *nodes > kMaxNodes) return false;
        out->entries.push_back(std::move(entry));
      }
      return ok;
    }
  }
  return true;
}

// Records where each document of a YAML stream starts; builds nothing.
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    starts.push_back(mark);
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  std::vector<YAML::Mark> starts;
};

// Loads the first document of `text` into `*first` (left empty when there is
// none) and sets `*second` to where a second document starts, if any.
// Throws what yaml-cpp throws. Not YAML::LoadAll: yaml-cpp 0.7's LoadAll
// never returns on some malformed streams (a lone ",", found by
// tests/fuzz/config_loader_fuzzer.cc): its parser keeps reporting a new empty
// document without consuming a token and LoadAll appends a node per round
// until memory runs out (jbeder/yaml-cpp#1040, fixed upstream by #1319).
// Here at most two document starts are read, and a second document starting
// where the first did is that case, reported as a syntax error.
void LoadFirstDocument(const std::string& text,
                       std::optional<YAML::Node>* first,
                       std::optional<YAML::Mark>* second) {
  DocumentStarts handler;
  {
    std::istringstream stream(text);
    YAML::Parser parser(stream);
    while (handler.starts.size() < 2 && parser.HandleNextDocument(handler)) {
    }
  }
  if (handler.starts.empty()) return;
  if (handler.starts.size() == 2) {
    if (handler.starts[1].pos == handler.starts[0].pos) {
      throw YAML::ParserException(handler.starts[0], "unexpected token");
    }
    *second = handler.starts[1];
  }
  *first = YAML::Load(text);
}

}  // namespace

std::string ConfigProblem::ToString() const {
  std::string out = location.file;
  if (location.line > 0) {
    absl::StrAppend(&out, ":", location.line);
    if (location.column > 0) absl::StrAppend(&out, ":", location.column);
  }
  if (!out.empty()) out += ": ";
  if (!key_path.empty()) absl::StrAppend(&out, key_path, ": ");
  out += message;
  return out;
}

const ConfigNode* ConfigNode::Find(const std::string& key) const {
  for (const ConfigMapEntry& entry : entries) {
    if (entry.key == key) return &entry.value;
  }
  return nullptr;
}

ConfigNode* ConfigNode::Find(const std::string& key) {
  for (ConfigMapEntry& entry : entries) {
    if (entry.key == key) return &entry.value;
  }
  return nullptr;
}

const char* ConfigNodeKindName(ConfigNode::Kind kind) {
  switch (kind) {
    case ConfigNode::Kind::kNull:
      return "null";
    case ConfigNode::Kind::kScalar:
      return "scalar";
    case ConfigNode::Kind::kSequence:
      return "list";
    case ConfigNode::Kind::kMap:
      return "map";
  }
  return "?";
}

std::optional<ConfigNode> ParseYamlString(
    const std::string& text, const std::string& file,
    std::vector<ConfigProblem>* problems) {
  const SourceLocation start{file, 1, 1};
  std::optional<YAML::Node> document;
  std::optional<YAML::Mark> second_document;
  try {
    LoadFirstDocument(text, &document, &second_document);
  } catch (const YAML::Exception& e) {
    problems->push_back({FromMark(e.mark, file, SourceLocation{file, 0, 0}), "",
                         absl::StrCat("YAML syntax error: ", e.msg)});
    return std::nullopt;
  } catch (const std::exception& e) {
    problems->push_back({SourceLocation{file, 0, 0}, "",
                         absl::StrCat("YAML error: ", e.what())});
    return std::nullopt;
  }
  ConfigNode root;
  root.location = start;
  if (!document.has_value()) return root;
  if (second_document.has_value()) {
    problems->push_back({FromMark(*second_document, file, start), "",
                         "only one YAML document per file is allowed"});
    return std::nullopt;
  }
  try {
    size_t nodes = 0;
    if (!Convert(*document, file, start, &root, problems, 0, &nodes)) {
      return std::nullopt;
    }
  } catch (const YAML::Exception& e) {
    problems->push_back({FromMark(e.mark, file, start), "",
                         absl::StrCat("YAML error: ", e.msg)});
    return std::nullopt;
  }
  return root;
}

std::optional<ConfigNode> ParseYamlFile(const std::string& path,
                                        std::vector<ConfigProblem>* problems) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    problems->push_back({SourceLocation{path, 0, 0}, "",
                         absl::StrCat("cannot read file: ", strerror(errno))});
    return std::nullopt;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseYamlString(buffer.str(), path, problems);
}

}  // namespace echelon

namespace echelon {

std::string ResolveConfigPath(const std::string& file,
                              const std::string& relative) {
  std::string joined;
  if (!relative.empty() && relative[0] == '/') {
    joined = relative;
  } else {
    const size_t slash = file.rfind('/');
    joined = slash == std::string::npos ? relative
                                        : file.substr(0, slash + 1) + relative;
  }
  const bool absolute = !joined.empty() && joined[0] == '/';
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= joined.size()) {
    size_t end = joined.find('/', start);
    if (end == std::string::npos) end = joined.size();
    const std::string part = joined.substr(start, end - start);
    start = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == ".." && !parts.empty() && parts.back() != "..") {
      parts.pop_back();
      continue;
    }
    if (part == ".." && absolute) continue;
    parts.push_back(part);
  }
  std::string out = absolute ? "/" : "";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  if (out.empty()) out = ".";
  return out;
}

}  // namespace echelon
