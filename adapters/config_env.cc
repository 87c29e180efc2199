#include "adapters/config_env.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace echelon {
namespace {

std::optional<std::string> GetEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

std::optional<std::string> ReadWholeFile(const std::string& path,
                                         std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = strerror(errno);
    return std::nullopt;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    *error = "read error";
    return std::nullopt;
  }
  return buffer.str();
}

bool IsValidVariableName(const std::string& name) {
  if (name.empty()) return false;
  if (absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return false;
    }
  }
  return true;
}

// List items are named like the validator names them: by `name` (or `id`)
// when they have one, else by index.
std::string ItemPath(const std::string& path, const ConfigNode& item,
                     size_t index) {
  if (item.IsMap()) {
    for (const char* key : {"name", "id"}) {
      const ConfigNode* name = item.Find(key);
      if (name != nullptr && name->IsScalar() && !name->scalar.empty() &&
          name->scalar.find_first_of("${}. ") == std::string::npos) {
        return absl::StrCat(path, ".", name->scalar);
      }
    }
  }
  return absl::StrCat(path, "[", index, "]");
}

void Walk(ConfigNode* node, const std::string& path, const EnvOptions& options,
          std::vector<ConfigProblem>* problems) {
  switch (node->kind) {
    case ConfigNode::Kind::kNull:
      return;
    case ConfigNode::Kind::kScalar: {
      bool substituted = false;
      const size_t before = problems->size();
      std::string expanded = ExpandEnvironment(
          node->scalar, node->location, path, options, &substituted, problems);
      if (problems->size() > before) {
        node->unresolved = true;  // keep the text as written
        return;
      }
      node->scalar = std::move(expanded);
      node->substituted = node->substituted || substituted;
      return;
    }
    case ConfigNode::Kind::kSequence:
      for (size_t i = 0; i < node->items.size(); ++i) {
        Walk(&node->items[i], ItemPath(path, node->items[i], i), options,
             problems);
      }
      return;
    case ConfigNode::Kind::kMap:
      for (ConfigMapEntry& entry : node->entries) {
        const std::string child =
            path.empty() ? entry.key : absl::StrCat(path, ".", entry.key);
        if (absl::StrContains(entry.key, "${")) {
          problems->push_back(
              {entry.key_location, child,
               "environment references are not allowed in keys"});
        }
        Walk(&entry.value, child, options, problems);
      }
      return;
  }
}

}  // namespace

std::string ExpandEnvironment(const std::string& value,
                              const SourceLocation& location,
                              const std::string& key_path,
                              const EnvOptions& options, bool* substituted,
                              std::vector<ConfigProblem>* problems) {
  std::string out;
  out.reserve(value.size());
  size_t i = 0;
  while (i < value.size()) {
    const char c = value[i];
    if (c != '$' || i + 1 >= value.size()) {
      out += c;
      ++i;
      continue;
    }
    if (value[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (value[i + 1] != '{') {
      out += c;
      ++i;
      continue;
    }
    const size_t close = value.find('}', i + 2);
    if (close == std::string::npos) {
      problems->push_back({location, key_path,
                           "unterminated '${' (write '$$' for a literal '$')"});
      return out;
    }
    const std::string body = value.substr(i + 2, close - i - 2);
    i = close + 1;
    if (absl::StartsWith(body, "file:")) {
      std::string path = body.substr(5);
      if (path.empty()) {
        problems->push_back({location, key_path, "empty path in ${file:}"});
        continue;
      }
      path = ResolveConfigPath(location.file, path);
      std::string error;
      std::optional<std::string> contents =
          options.read_file ? options.read_file(path, &error)
                            : ReadWholeFile(path, &error);
      if (!contents.has_value()) {
        problems->push_back(
            {location, key_path,
             absl::StrCat("cannot read secret file '", path, "': ", error)});
        continue;
      }
      while (!contents->empty() &&
             (contents->back() == '\n' || contents->back() == '\r')) {
        contents->pop_back();
      }
      out += *contents;
      *substituted = true;
      continue;
    }
    std::string name = body;
    std::optional<std::string> fallback;
    const size_t dash = body.find(":-");
    if (dash != std::string::npos) {
      name = body.substr(0, dash);
      fallback = body.substr(dash + 2);
    }
    if (!IsValidVariableName(name)) {
      problems->push_back(
          {location, key_path,
           absl::StrCat("invalid environment variable name '", name,
                        "' (use ${NAME} or ${NAME:-default})")});
      continue;
    }
    std::optional<std::string> env =
        options.lookup ? options.lookup(name) : GetEnv(name);
    if (env.has_value() && !(env->empty() && fallback.has_value())) {
      out += *env;
      *substituted = true;
    } else if (fallback.has_value()) {
      out += *fallback;
      *substituted = true;
    } else {
      problems->push_back(
          {location, key_path,
           absl::StrCat("environment variable '", name, "' is not set (use ${",
                        name, ":-default} for a default)")});
    }
  }
  return out;
}

void ExpandEnvironmentInTree(ConfigNode* root, const EnvOptions& options,
                             std::vector<ConfigProblem>* problems) {
  Walk(root, "", options, problems);
}

}  // namespace echelon
