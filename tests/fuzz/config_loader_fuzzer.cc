// Fuzz target for the configuration loader (adapters/config_loader.h):
// YAML parsing, `inherits_from` resolution (adapters/config_inherit.h),
// `${VAR}` / `${file:...}` injection (adapters/config_env.h) and validation.
//
// Input layout: the text of one or more files. The first file is
// "main.yaml"; a line "#==> NAME" starts the file NAME (a relative path of
// at most two components of [A-Za-z0-9_.-], e.g. "providers/a.yaml",
// "_base.yaml", "secrets/key"). The files are written to a fresh temporary
// directory; when there is a "_registry.yaml" the directory is loaded (the
// registry layout), else main.yaml (the single-file layout).
//
// The environment is a fixed map (so runs are reproducible) holding a
// secret; `${file:...}` reads only inside the temporary directory.
// Properties besides "no crash, no sanitizer report": the secret value never
// appears in a problem report (unless the input itself contains it), and a
// result without problems validates again to no problems via CheckConfig.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "adapters/config_env.h"
#include "adapters/config_loader.h"
#include "adapters/config_node.h"

namespace {

constexpr char kSecret[] = "sk-fuzz-SECRET-4711";

bool ValidComponent(absl::string_view s) {
  if (s.empty() || s.size() > 64 || s == "." || s == "..") return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool ValidName(absl::string_view name) {
  size_t slash = name.find('/');
  if (slash == absl::string_view::npos) return ValidComponent(name);
  return ValidComponent(name.substr(0, slash)) &&
         ValidComponent(name.substr(slash + 1));
}

// Splits the input into named files; invalid names fold into the previous
// file's text.
std::map<std::string, std::string> SplitFiles(absl::string_view input) {
  std::map<std::string, std::string> files;
  std::string* current = &files["main.yaml"];
  while (!input.empty()) {
    size_t eol = input.find('\n');
    absl::string_view line = input.substr(
        0, eol == absl::string_view::npos ? input.size() : eol + 1);
    input.remove_prefix(line.size());
    if (absl::StartsWith(line, "#==> ")) {
      absl::string_view name = line.substr(5);
      while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) {
        name.remove_suffix(1);
      }
      if (ValidName(name)) {
        current = &files[std::string(name)];
        continue;
      }
    }
    current->append(line.data(), line.size());
  }
  return files;
}

const std::string& TempRoot() {
  static const std::string* root = [] {
    const char* test_tmpdir = getenv("TEST_TMPDIR");  // under bazel test
    std::filesystem::path base = test_tmpdir != nullptr
                                     ? std::filesystem::path(test_tmpdir)
                                     : std::filesystem::temp_directory_path();
    std::string pattern = (base / "config_fuzz.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) abort();
    auto* path = new std::string(pattern);
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(TempRoot(), ec);
    });
    return path;
  }();
  return *root;
}

echelon::LoadOptions Options(const std::string& dir) {
  echelon::LoadOptions options;
  options.env.lookup =
      [](const std::string& name) -> std::optional<std::string> {
    static const std::map<std::string, std::string> env = {
        {"API_KEY", kSecret},
        {"BASE_URL", "http://127.0.0.1:8700/v1"},
        {"EMPTY", ""},
        {"NUMBER", "3"},
        {"YAML_LOOKALIKE", "[a, b]: {c: d}"},
    };
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  options.env.read_file =
      [dir](const std::string& path,
            std::string* error) -> std::optional<std::string> {
    std::error_code ec;
    std::string canonical =
        std::filesystem::weakly_canonical(path, ec).string();
    if (ec || !absl::StartsWith(canonical, dir + "/")) {
      *error = "outside the fuzzing directory";
      return std::nullopt;
    }
    std::ifstream in(canonical, std::ios::binary);
    if (!in) {
      *error = "No such file or directory";
      return std::nullopt;
    }
    return std::string(std::istreambuf_iterator<char>(in),
                       std::istreambuf_iterator<char>());
  };
  return options;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  // Paths to devices or kernel files could make the loader read forever;
  // the configuration is trusted input, so that is not a finding.
  if (absl::StrContains(input, "/dev") || absl::StrContains(input, "/proc") ||
      absl::StrContains(input, "/sys")) {
    return 0;
  }
  std::map<std::string, std::string> files = SplitFiles(input);
  const std::string dir = TempRoot() + "/case";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) abort();
  for (const auto& [name, text] : files) {
    std::filesystem::path path = std::filesystem::path(dir) / name;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (std::filesystem::is_directory(path)) continue;  // "a" and "a/b"
    std::ofstream out(path, std::ios::binary);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
  const std::string path =
      files.count(echelon::kRegistryFileName) ? dir : dir + "/main.yaml";
  const echelon::LoadOptions options = Options(dir);
  echelon::ConfigLoadResult result =
      echelon::LoadConfigWithProblems(path, options);
  const bool input_has_secret = absl::StrContains(input, kSecret);
  for (const echelon::ConfigProblem& problem : result.problems) {
    if (!input_has_secret && absl::StrContains(problem.ToString(), kSecret)) {
      fprintf(stderr, "secret leaked into: %s\n", problem.ToString().c_str());
      abort();
    }
  }
  if (result.problems.empty()) {
    if (!echelon::CheckConfig(path, options).empty()) abort();
  }
  return 0;
}
