#include "adapters/config_validate.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "adapters/config_inherit.h"
#include "adapters/host_port.h"

namespace echelon {
namespace {

using Problems = std::vector<ConfigProblem>;

std::string JoinPath(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

// How a scalar is shown in messages: values that came from the environment
// or a secret file are not echoed.
std::string Shown(const ConfigNode& node) {
  if (node.substituted) return "a value from the environment";
  if (node.IsScalar()) return absl::StrCat("'", node.scalar, "'");
  return absl::StrCat("a ", ConfigNodeKindName(node.kind));
}

std::string Where(const SourceLocation& location) {
  return absl::StrCat(location.file, ":", location.line, ":", location.column);
}

bool IsValidName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_') {
      return false;
    }
  }
  return true;
}

std::string DidYouMean(const std::string& word,
                       const std::vector<std::string>& candidates) {
  const std::string best = SuggestClosest(word, candidates);
  if (best.empty()) return "";
  return absl::StrCat("; did you mean '", best, "'?");
}

// Reads the keys of one YAML map. Every key asked for counts as known; on
// destruction the keys nobody asked for are reported as unknown.
class MapReader {
 public:
  MapReader(const ConfigNode* node, std::string path, Problems* problems)
      : node_(node), path_(std::move(path)), problems_(problems) {
    if (node_ != nullptr && !node_->IsMap() && !node_->IsNull()) {
      problems_->push_back(
          {node_->location, path_,
           absl::StrCat("expected a map, got ", Shown(*node_))});
      node_ = nullptr;
    }
    if (node_ != nullptr && node_->IsNull()) node_ = nullptr;
  }

  ~MapReader() {
    if (node_ == nullptr) return;
    for (const ConfigMapEntry& entry : node_->entries) {
      if (known_.count(entry.key) > 0) continue;
      if (absl::StrContains(entry.key, "${")) continue;  // reported by env
      std::vector<std::string> candidates(known_.begin(), known_.end());
      problems_->push_back({entry.key_location, JoinPath(path_, entry.key),
                            absl::StrCat("unknown key '", entry.key, "'",
                                         DidYouMean(entry.key, candidates))});
    }
  }

  MapReader(const MapReader&) = delete;
  MapReader& operator=(const MapReader&) = delete;

  const std::string& path() const { return path_; }
  std::string Path(const std::string& key) const {
    return JoinPath(path_, key);
  }
  SourceLocation location() const {
    return node_ != nullptr ? node_->location : SourceLocation{};
  }
  bool present() const { return node_ != nullptr; }

  // Marks `key` known without reading it.
  void Allow(const std::string& key) { known_.insert(key); }

  // The value, or nullptr when absent or explicitly null.
  const ConfigNode* Get(const std::string& key) {
    known_.insert(key);
    if (node_ == nullptr) return nullptr;
    const ConfigNode* value = node_->Find(key);
    if (value == nullptr || value->IsNull()) return nullptr;
    return value;
  }

  void Problem(const ConfigNode& at, const std::string& key,
               std::string message) {
    problems_->push_back({at.location, Path(key), std::move(message)});
  }
  void Problem(const SourceLocation& at, const std::string& key,
               std::string message) {
    problems_->push_back({at, Path(key), std::move(message)});
  }
  // A problem about a key that is missing: reported at the map.
  void Missing(const std::string& key, const std::string& what) {
    SourceLocation at = location();
    problems_->push_back(
        {at, path_,
         absl::StrCat("missing required key '", key, "' (", what, ")")});
  }

  // The scalar value, or nullptr when absent, unresolved (already reported)
  // or not a scalar (reported here).
  const ConfigNode* Scalar(const std::string& key, const char* expected) {
    const ConfigNode* value = Get(key);
    if (value == nullptr || value->unresolved) return nullptr;
    if (!value->IsScalar()) {
      Problem(*value, key,
              absl::StrCat("expected ", expected, ", got ", Shown(*value)));
      return nullptr;
    }
    return value;
  }

  template <typename T>
  bool Int(const std::string& key, T* out, int64_t min,
           int64_t max = std::numeric_limits<T>::max()) {
    const ConfigNode* value = Scalar(key, "an integer");
    if (value == nullptr) return false;
    int64_t parsed = 0;
    if (!absl::SimpleAtoi(value->scalar, &parsed)) {
      Problem(*value, key,
              absl::StrCat("expected an integer, got ", Shown(*value)));
      return false;
    }
    if (parsed < min || parsed > max) {
      Problem(*value, key,
              RangeMessage(absl::StrCat(min), absl::StrCat(max),
                           max == std::numeric_limits<T>::max(),
                           absl::StrCat(parsed)));
      return false;
    }
    *out = static_cast<T>(parsed);
    return true;
  }

  bool Double(const std::string& key, double* out, double min, double max) {
    const ConfigNode* value = Scalar(key, "a number");
    if (value == nullptr) return false;
    double parsed = 0;
    if (!absl::SimpleAtod(value->scalar, &parsed) || !std::isfinite(parsed)) {
      Problem(*value, key,
              absl::StrCat("expected a number, got ", Shown(*value)));
      return false;
    }
    if (parsed < min || parsed > max) {
      Problem(*value, key,
              RangeMessage(absl::StrCat(min), absl::StrCat(max),
                           max == std::numeric_limits<double>::max(),
                           absl::StrCat(parsed)));
      return false;
    }
    *out = parsed;
    return true;
  }

  bool Bool(const std::string& key, bool* out) {
    const ConfigNode* value = Scalar(key, "true or false");
    if (value == nullptr) return false;
    if (value->scalar == "true") {
      *out = true;
    } else if (value->scalar == "false") {
      *out = false;
    } else {
      Problem(*value, key,
              absl::StrCat("expected true or false, got ", Shown(*value)));
      return false;
    }
    return true;
  }

  // Durations are written like "250ms", "30s", "5m", "1h" or "1h30m"; "0"
  // is zero. `positive` rejects zero.
  bool Duration(const std::string& key, absl::Duration* out, bool positive) {
    const ConfigNode* value = Scalar(key, "a duration");
    if (value == nullptr) return false;
    absl::Duration parsed;
    if (!absl::ParseDuration(value->scalar, &parsed) ||
        parsed == absl::InfiniteDuration()) {
      Problem(*value, key,
              absl::StrCat("expected a duration like '250ms', '30s', '5m' or "
                           "'1h', got ",
                           Shown(*value)));
      return false;
    }
    if (parsed < absl::ZeroDuration() ||
        (positive && parsed == absl::ZeroDuration())) {
      Problem(*value, key,
              absl::StrCat("must be ", positive ? "> 0" : ">= 0", ", got ",
                           Shown(*value)));
      return false;
    }
    *out = parsed;
    return true;
  }

  bool OptionalDuration(const std::string& key,
                        std::optional<absl::Duration>* out) {
    absl::Duration parsed;
    if (!Duration(key, &parsed, /*positive=*/true)) return false;
    *out = parsed;
    return true;
  }

  // An unresolved value is still returned (as written), so that it does not
  // look absent to later checks; the return value is false then.
  bool String(const std::string& key, std::string* out) {
    const ConfigNode* value = Get(key);
    if (value != nullptr && value->unresolved) {
      *out = value->scalar;
      return false;
    }
    value = Scalar(key, "a string");
    if (value == nullptr) return false;
    *out = value->scalar;
    return true;
  }

  // A name: required, letters, digits, '-' and '_'.
  bool Name(const std::string& key, std::string* out, const char* what) {
    const ConfigNode* value = Scalar(key, "a name");
    if (value == nullptr) {
      if (Get(key) == nullptr) Missing(key, what);
      return false;
    }
    if (!IsValidName(value->scalar)) {
      Problem(*value, key,
              absl::StrCat("invalid name ", Shown(*value),
                           ": use letters, digits, '-' and '_'"));
      return false;
    }
    *out = value->scalar;
    return true;
  }

  // A list of strings; a single string is accepted as a one-element list.
  // `locations` (optional) receives where each element was written.
  bool StringList(const std::string& key, std::vector<std::string>* out,
                  std::vector<SourceLocation>* locations = nullptr) {
    const ConfigNode* value = Get(key);
    if (value == nullptr) return false;
    std::vector<std::string> items;
    std::vector<SourceLocation> where;
    if (value->IsScalar()) {
      items.push_back(value->scalar);
      where.push_back(value->location);
    } else if (value->IsSequence()) {
      bool ok = true;
      for (size_t i = 0; i < value->items.size(); ++i) {
        const ConfigNode& item = value->items[i];
        if (!item.IsScalar()) {
          problems_->push_back(
              {item.location, absl::StrCat(Path(key), "[", i, "]"),
               absl::StrCat("expected a string, got ", Shown(item))});
          ok = false;
          continue;
        }
        items.push_back(item.scalar);
        where.push_back(item.location);
      }
      if (!ok) return false;
    } else {
      Problem(*value, key,
              absl::StrCat("expected a list of strings, got ", Shown(*value)));
      return false;
    }
    *out = std::move(items);
    if (locations != nullptr) *locations = std::move(where);
    return true;
  }

  bool StringMap(const std::string& key,
                 std::map<std::string, std::string>* out) {
    const ConfigNode* value = Get(key);
    if (value == nullptr) return false;
    if (!value->IsMap()) {
      Problem(*value, key,
              absl::StrCat("expected a map of strings, got ", Shown(*value)));
      return false;
    }
    bool ok = true;
    for (const ConfigMapEntry& entry : value->entries) {
      if (!entry.value.IsScalar()) {
        problems_->push_back(
            {entry.value.location, JoinPath(Path(key), entry.key),
             absl::StrCat("expected a string, got ", Shown(entry.value))});
        ok = false;
        continue;
      }
      (*out)[entry.key] = entry.value.scalar;
    }
    return ok;
  }

  template <typename E>
  bool Enum(const std::string& key, E* out,
            const std::vector<std::pair<std::string, E>>& names) {
    const ConfigNode* value = Scalar(key, "a name");
    if (value == nullptr) return false;
    return ParseEnum(*value, key, out, names);
  }

  template <typename E>
  bool ParseEnum(const ConfigNode& value, const std::string& key, E* out,
                 const std::vector<std::pair<std::string, E>>& names,
                 const std::string& shown_path = "") {
    std::vector<std::string> candidates;
    for (const auto& [name, e] : names) {
      if (name == value.scalar) {
        *out = e;
        return true;
      }
      candidates.push_back(name);
    }
    problems_->push_back(
        {value.location, shown_path.empty() ? Path(key) : shown_path,
         absl::StrCat("unknown value ", Shown(value), "; expected one of ",
                      absl::StrJoin(candidates, ", "),
                      DidYouMean(value.scalar, candidates))});
    return false;
  }

  // A nested map, or nullptr when absent (problems when not a map).
  const ConfigNode* Map(const std::string& key) {
    const ConfigNode* value = Get(key);
    if (value == nullptr) return nullptr;
    if (!value->IsMap()) {
      Problem(*value, key, absl::StrCat("expected a map, got ", Shown(*value)));
      return nullptr;
    }
    return value;
  }

  const ConfigNode* List(const std::string& key) {
    const ConfigNode* value = Get(key);
    if (value == nullptr) return nullptr;
    if (!value->IsSequence()) {
      Problem(*value, key,
              absl::StrCat("expected a list, got ", Shown(*value)));
      return nullptr;
    }
    return value;
  }

  // Where the value of `key` was written (the map when absent).
  SourceLocation ValueLocation(const std::string& key) const {
    if (node_ == nullptr) return {};
    const ConfigNode* value = node_->Find(key);
    return value != nullptr ? value->location : node_->location;
  }

  Problems* problems() { return problems_; }

 private:
  static std::string RangeMessage(const std::string& min,
                                  const std::string& max, bool unbounded,
                                  const std::string& got) {
    if (unbounded) return absl::StrCat("must be >= ", min, ", got ", got);
    return absl::StrCat("must be between ", min, " and ", max, ", got ", got);
  }

  const ConfigNode* node_;
  std::string path_;
  Problems* problems_;
  std::set<std::string> known_;
};

// "a (x) must not exceed b (y)" when both were set and a > b.
void CheckOrder(MapReader& r, const std::string& small_key,
                absl::Duration small, const std::string& large_key,
                absl::Duration large, bool both_set) {
  if (!both_set || small <= large) return;
  r.Problem(r.ValueLocation(small_key), small_key,
            absl::StrCat(small_key, " (", absl::FormatDuration(small),
                         ") must not exceed ", large_key, " (",
                         absl::FormatDuration(large), ")"));
}

// Reads a duration; returns whether the value now in `*out` can be trusted
// for consistency checks (read fine, or absent and left at its default).
bool ReadDuration(MapReader& r, const std::string& key, absl::Duration* out,
                  bool positive) {
  const bool present = r.Get(key) != nullptr;
  const bool ok = r.Duration(key, out, positive);
  return ok || !present;
}

void DecodeTimeouts(const ConfigNode* node, const std::string& path,
                    Problems* problems, UpstreamTimeouts* out) {
  if (node == nullptr) return;
  MapReader r(node, path, problems);
  const bool connect = ReadDuration(r, "connect", &out->connect, true);
  const bool first = ReadDuration(r, "first_token", &out->first_token, true);
  ReadDuration(r, "stall", &out->stall, true);
  CheckOrder(r, "connect", out->connect, "first_token", out->first_token,
             connect && first);
}

void DecodeBreaker(const ConfigNode* node, const std::string& path,
                   Problems* problems, CircuitBreakerConfig* out) {
  if (node == nullptr) return;
  MapReader r(node, path, problems);
  r.Bool("enabled", &out->enabled);
  r.Int("failure_threshold", &out->failure_threshold, 1);
  r.Double("failure_rate_threshold", &out->failure_rate_threshold, 0, 1);
  r.Int("min_requests", &out->min_requests, 1);
  ReadDuration(r, "window", &out->window, true);
  const bool recovery =
      ReadDuration(r, "recovery_time", &out->recovery_time, true);
  r.Double("recovery_multiplier", &out->recovery_multiplier, 1,
           std::numeric_limits<double>::max());
  const bool max_recovery =
      ReadDuration(r, "max_recovery_time", &out->max_recovery_time, true);
  r.Int("half_open_requests", &out->half_open_requests, 1);
  r.Int("success_threshold", &out->success_threshold, 1);
  CheckOrder(r, "recovery_time", out->recovery_time, "max_recovery_time",
             out->max_recovery_time, recovery && max_recovery);
}

const std::vector<std::pair<std::string, RateLimitAlgorithm>>&
RateLimitAlgorithms() {
  static const auto* names =
      new std::vector<std::pair<std::string, RateLimitAlgorithm>>{
          {"token_bucket", RateLimitAlgorithm::kTokenBucket},
          {"sliding_window", RateLimitAlgorithm::kSlidingWindow}};
  return *names;
}

void DecodeRateLimit(const ConfigNode* node, const std::string& path,
                     Problems* problems, RateLimitConfig* out) {
  if (node == nullptr) return;
  MapReader r(node, path, problems);
  r.Enum("algorithm", &out->algorithm, RateLimitAlgorithms());
  r.Int("requests_per_minute", &out->requests_per_minute, 0);
  r.Int("tokens_per_minute", &out->tokens_per_minute, 0);
  const ConfigNode* burst = r.Get("burst");
  if (r.Double("burst", &out->burst, 0, std::numeric_limits<double>::max()) &&
      out->burst == 0) {
    r.Problem(*burst, "burst", "must be > 0, got 0");
  }
}

void DecodeConcurrency(const ConfigNode* node, const std::string& path,
                       Problems* problems, ConcurrencyConfig* out) {
  if (node == nullptr) return;
  MapReader r(node, path, problems);
  r.Int("max_concurrency", &out->max_concurrency, 0);
  r.Enum("on_overflow", &out->on_overflow,
         std::vector<std::pair<std::string, OverflowPolicy>>{
             {"reject", OverflowPolicy::kReject},
             {"spill", OverflowPolicy::kSpill}});
  r.Int("queue_size", &out->queue_size, 0);
  ReadDuration(r, "queue_timeout", &out->queue_timeout, false);
}

void DecodeRetry(const ConfigNode* node, const std::string& path,
                 Problems* problems, RetryConfig* out) {
  if (node == nullptr) return;
  MapReader r(node, path, problems);
  r.Int("max_retries", &out->max_retries, 0, 100);
  const bool initial =
      ReadDuration(r, "initial_backoff", &out->initial_backoff, false);
  const bool max = ReadDuration(r, "max_backoff", &out->max_backoff, false);
  r.Double("backoff_multiplier", &out->backoff_multiplier, 1,
           std::numeric_limits<double>::max());
  ReadDuration(r, "max_retry_after", &out->max_retry_after, false);
  r.Double("budget_ratio", &out->budget_ratio, 0,
           std::numeric_limits<double>::max());
  r.Int("budget_min_retries", &out->budget_min_retries, 0);
  CheckOrder(r, "initial_backoff", out->initial_backoff, "max_backoff",
             out->max_backoff, initial && max);
}

void DecodeHealth(const ConfigNode* node, const std::string& path,
                  Problems* problems, HealthConfig* out) {
  if (node == nullptr) return;
  MapReader r(node, path, problems);
  if (const ConfigNode* passive = r.Map("passive")) {
    MapReader p(passive, r.Path("passive"), problems);
    PassiveHealthConfig& c = out->passive;
    p.Bool("enabled", &c.enabled);
    p.Int("consecutive_failures", &c.consecutive_failures, 1);
    const bool base =
        ReadDuration(p, "base_ejection_time", &c.base_ejection_time, true);
    const bool max =
        ReadDuration(p, "max_ejection_time", &c.max_ejection_time, true);
    p.Double("jitter", &c.jitter, 0, 1);
    p.Double("max_ejection_percent", &c.max_ejection_percent, 0, 100);
    p.Double("degraded_success_rate", &c.degraded_success_rate, 0, 1);
    CheckOrder(p, "base_ejection_time", c.base_ejection_time,
               "max_ejection_time", c.max_ejection_time, base && max);
  }
  if (const ConfigNode* active = r.Map("active")) {
    MapReader a(active, r.Path("active"), problems);
    ActiveHealthConfig& c = out->active;
    a.Bool("enabled", &c.enabled);
    const bool interval = ReadDuration(a, "interval", &c.interval, true);
    a.Double("jitter", &c.jitter, 0, 1);
    const bool timeout = ReadDuration(a, "timeout", &c.timeout, true);
    a.Int("healthy_threshold", &c.healthy_threshold, 1);
    a.Int("unhealthy_threshold", &c.unhealthy_threshold, 1);
    CheckOrder(a, "timeout", c.timeout, "interval", c.interval,
               interval && timeout);
  }
  ReadDuration(r, "rate_limit_cooldown", &out->rate_limit_cooldown, false);
  ReadDuration(r, "disable_time", &out->disable_time, false);
}

void DecodeGeneration(const ConfigNode* node, const std::string& path,
                      Problems* problems, GenerationParams* out) {
  if (node == nullptr) return;
  MapReader r(node, path, problems);
  double d = 0;
  int64_t i = 0;
  if (r.Double("temperature", &d, 0, 2)) out->temperature = d;
  if (r.Double("top_p", &d, 0, 1)) out->top_p = d;
  if (r.Int("max_tokens", &i, 1)) out->max_tokens = i;
  r.StringList("stop", &out->stop);
  if (r.Int("seed", &i, std::numeric_limits<int64_t>::min())) out->seed = i;
  if (r.Double("presence_penalty", &d, -2, 2)) out->presence_penalty = d;
  if (r.Double("frequency_penalty", &d, -2, 2)) out->frequency_penalty = d;
  if (const ConfigNode* format = r.Map("response_format")) {
    MapReader f(format, r.Path("response_format"), problems);
    f.Enum("type", &out->response_format.type,
           std::vector<std::pair<std::string, ResponseFormat::Type>>{
               {"text", ResponseFormat::Type::kText},
               {"json_object", ResponseFormat::Type::kJsonObject},
               {"json_schema", ResponseFormat::Type::kJsonSchema}});
    f.String("schema_name", &out->response_format.schema_name);
    f.String("json_schema", &out->response_format.json_schema);
    f.Bool("strict", &out->response_format.strict);
    if (out->response_format.type == ResponseFormat::Type::kJsonSchema &&
        out->response_format.json_schema.empty()) {
      f.Missing("json_schema", "required when type is json_schema");
    }
  }
}

// Names and where they were first defined, per section.
struct NameIndex {
  std::map<std::string, SourceLocation> providers;
  std::map<std::string, SourceLocation> models;
  std::map<std::string, SourceLocation> task_groups;
  std::map<std::string, SourceLocation> pools;
};

std::vector<std::string> Keys(const std::map<std::string, SourceLocation>& m) {
  std::vector<std::string> out;
  for (const auto& [name, location] : m) out.push_back(name);
  return out;
}

// Reports an unknown reference, with a suggestion.
void UnknownReference(Problems* problems, const SourceLocation& at,
                      const std::string& path, const std::string& what,
                      const std::string& name,
                      const std::vector<std::string>& candidates) {
  problems->push_back({at, path,
                       absl::StrCat("unknown ", what, " '", name, "'",
                                    DidYouMean(name, candidates))});
}

// The entity lists of one section. Items are merged onto `defaults` (from the
// `defaults` section) before decoding; duplicates are reported.
template <typename T, typename Decode>
std::vector<T> DecodeSection(const ConfigNode* list, const std::string& path,
                             const ConfigNode* defaults, const char* what,
                             const char* name_key, Problems* problems,
                             Decode decode) {
  std::vector<T> out;
  if (list == nullptr) return out;
  std::map<std::string, SourceLocation> seen;
  for (size_t i = 0; i < list->items.size(); ++i) {
    const ConfigNode& item = list->items[i];
    std::string item_path = absl::StrCat(path, "[", i, "]");
    if (!item.IsMap()) {
      problems->push_back({item.location, item_path,
                           absl::StrCat("expected a map describing one ", what,
                                        ", got ", Shown(item))});
      continue;
    }
    const ConfigNode* name = item.Find(name_key);
    if (name != nullptr && name->IsScalar() && IsValidName(name->scalar)) {
      item_path = JoinPath(path, name->scalar);
      auto [it, inserted] = seen.emplace(name->scalar, name->location);
      if (!inserted) {
        problems->push_back(
            {name->location, JoinPath(item_path, name_key),
             absl::StrCat("duplicate ", what, " '", name->scalar,
                          "' (first defined at ", Where(it->second), ")")});
        continue;
      }
    }
    T decoded;
    if (defaults != nullptr && defaults->IsMap()) {
      decode(MergeConfigNodes(*defaults, item), item_path, &decoded);
    } else {
      decode(item, item_path, &decoded);
    }
    out.push_back(std::move(decoded));
  }
  return out;
}

void CollectNames(const ConfigNode* list,
                  std::map<std::string, SourceLocation>* out) {
  if (list == nullptr || !list->IsSequence()) return;
  for (const ConfigNode& item : list->items) {
    if (!item.IsMap()) continue;
    const ConfigNode* name = item.Find("name");
    if (name != nullptr && name->IsScalar()) {
      out->emplace(name->scalar, name->location);
    }
  }
}

const ConfigNode* DefaultsFor(const ConfigNode* defaults, const char* key) {
  if (defaults == nullptr || !defaults->IsMap()) return nullptr;
  const ConfigNode* node = defaults->Find(key);
  return node != nullptr && node->IsMap() ? node : nullptr;
}

// `auth:`: client tokens (hashed), their targets and limits.
void DecodeAuth(const ConfigNode* node, const std::string& path,
                const NameIndex& names, Problems* problems, AuthConfig* out) {
  MapReader r(node, path, problems);
  if (!r.present()) return;
  r.Bool("enabled", &out->enabled);
  r.Bool("protect_status", &out->protect_status);
  std::map<std::string, std::string> hashes;  // sha256 -> token name
  out->tokens = DecodeSection<ClientTokenConfig>(
      r.List("tokens"), r.Path("tokens"), nullptr, "token", "name", problems,
      [&](const ConfigNode& item, const std::string& item_path,
          ClientTokenConfig* token) {
        MapReader t(&item, item_path, problems);
        t.Name("name", &token->name, "the token's name, shown in logs");
        if (t.String("sha256", &token->sha256)) {
          token->sha256 = absl::AsciiStrToLower(token->sha256);
          const bool hex =
              token->sha256.size() == 64 &&
              std::all_of(token->sha256.begin(), token->sha256.end(),
                          [](char c) { return absl::ascii_isxdigit(c); });
          if (!hex) {
            // Never echo the value: it may be a token pasted by mistake.
            t.Problem(t.ValueLocation("sha256"), "sha256",
                      "expected 64 hex digits (the SHA-256 of the token, "
                      "e.g. from `printf %s TOKEN | sha256sum`)");
          } else {
            auto [it, inserted] = hashes.emplace(token->sha256, token->name);
            if (!inserted) {
              t.Problem(t.ValueLocation("sha256"), "sha256",
                        absl::StrCat("the same token hash as token '",
                                     it->second, "'"));
            }
          }
        } else if (t.Get("sha256") == nullptr) {
          t.Missing("sha256", "hex SHA-256 of the token");
        }
        std::vector<SourceLocation> where;
        t.StringList("allowed_targets", &token->allowed_targets, &where);
        for (size_t i = 0; i < token->allowed_targets.size(); ++i) {
          const std::string& target = token->allowed_targets[i];
          if (target.empty()) {
            problems->push_back(
                {where[i], absl::StrCat(t.Path("allowed_targets"), "[", i, "]"),
                 "empty target"});
            continue;
          }
          const size_t star = target.find('*');
          if (star != std::string::npos) {
            if (star != target.size() - 1) {
              problems->push_back(
                  {where[i],
                   absl::StrCat(t.Path("allowed_targets"), "[", i, "]"),
                   absl::StrCat("'*' is only allowed at the end (a prefix "
                                "glob), got '",
                                target, "'")});
            }
            continue;
          }
          const std::string group = target.substr(0, target.find('.'));
          if (names.pools.count(target) == 0 &&
              names.task_groups.count(group) == 0) {
            std::vector<std::string> candidates = Keys(names.pools);
            for (const std::string& g : Keys(names.task_groups)) {
              candidates.push_back(g);
            }
            UnknownReference(
                problems, where[i],
                absl::StrCat(t.Path("allowed_targets"), "[", i, "]"), "target",
                target, candidates);
          }
        }
        t.Bool("admin", &token->admin);
        t.Int("requests_per_minute", &token->requests_per_minute, 0);
        t.Int("tokens_per_minute", &token->tokens_per_minute, 0);
      });
  if (out->enabled && out->tokens.empty()) {
    r.Problem(r.location(), "tokens",
              "auth is enabled but lists no tokens: every call would be "
              "refused");
  }
}

// `limits:`: per-request caps shared by both fronts.
void DecodeLimits(const ConfigNode* node, const std::string& path,
                  Problems* problems, LimitsConfig* out) {
  MapReader r(node, path, problems);
  if (!r.present()) return;
  r.Int("max_messages", &out->max_messages, 0);
  r.Int("max_content_bytes", &out->max_content_bytes, 0);
  r.Int("max_metadata_entries", &out->max_metadata_entries, 0);
  r.Int("max_metadata_bytes", &out->max_metadata_bytes, 0);
  r.Int("max_tokens", &out->max_tokens, 0);
}

// "host:port" or "[v6]:port", port 1..65535.
bool IsHostPort(const std::string& address) {
  std::string host;
  int port = 0;
  return ParseHostPort(address, &host, &port);
}

// `cluster:`: replicas sharing limits and observations through Redis.
void DecodeCluster(const ConfigNode* node, const std::string& path,
                   Problems* problems, ClusterConfig* out) {
  MapReader r(node, path, problems);
  if (!r.present()) return;
  r.Bool("enabled", &out->enabled);
  if (r.String("address", &out->address) && !IsHostPort(out->address)) {
    r.Problem(r.ValueLocation("address"), "address",
              absl::StrCat("expected host:port (e.g. 'redis:6379' or "
                           "'[::1]:6379'), got ",
                           Shown(*r.Get("address"))));
  }
  // A secret: never echoed (a problem only says what is wrong).
  r.String("password", &out->password);
  r.Int("database", &out->database, 0);
  if (r.String("key_prefix", &out->key_prefix) &&
      (out->key_prefix.empty() ||
       std::any_of(out->key_prefix.begin(), out->key_prefix.end(), [](char c) {
         return absl::ascii_isspace(static_cast<unsigned char>(c));
       }))) {
    r.Problem(r.ValueLocation("key_prefix"), "key_prefix",
              absl::StrCat("must be non-empty and without spaces, got ",
                           Shown(*r.Get("key_prefix"))));
  }
  ReadDuration(r, "decision_timeout", &out->decision_timeout, true);
  ReadDuration(r, "connect_timeout", &out->connect_timeout, true);
  const bool min_ok =
      ReadDuration(r, "reconnect_min", &out->reconnect_min, true);
  const bool max_ok =
      ReadDuration(r, "reconnect_max", &out->reconnect_max, true);
  CheckOrder(r, "reconnect_min", out->reconnect_min, "reconnect_max",
             out->reconnect_max, min_ok && max_ok);
  double share = out->local_share;
  if (r.Double("local_share", &share, 0, 1)) {
    if (share <= 0) {
      r.Problem(r.ValueLocation("local_share"), "local_share",
                absl::StrCat("must be > 0 and <= 1, got ",
                             Shown(*r.Get("local_share"))));
    } else {
      out->local_share = share;
    }
  }
  r.String("replica_id", &out->replica_id);
}

struct Decoder {
  Problems* problems = nullptr;
  NameIndex names;
  const ConfigNode* defaults = nullptr;
  std::map<std::string, ProviderConfig> providers;     // decoded, by name
  std::map<std::string, std::string> model_providers;  // model -> provider

  void DecodeProvider(const ConfigNode& node, const std::string& path,
                      ProviderConfig* out) {
    MapReader r(&node, path, problems);
    r.Name("name", &out->name, "the provider's name");
    r.Enum("kind", &out->kind,
           std::vector<std::pair<std::string, ProviderKind>>{
               {"openai", ProviderKind::kOpenAI},
               {"anthropic", ProviderKind::kAnthropic}});
    if (r.Get("kind") == nullptr) r.Missing("kind", "openai or anthropic");
    if (r.String("base_url", &out->base_url)) {
      CheckUrl(r, "base_url", &out->base_url);
    }
    r.String("api_key", &out->api_key);
    r.StringMap("headers", &out->headers);
    // `Name: ${VAR:-}` makes a header optional: an empty one is not sent.
    for (auto it = out->headers.begin(); it != out->headers.end();) {
      it = it->second.empty() ? out->headers.erase(it) : std::next(it);
    }
    DecodeTimeouts(r.Map("timeouts"), r.Path("timeouts"), problems,
                   &out->timeouts);
    providers[out->name] = *out;
  }

  // Checks the scheme and drops trailing slashes (adapters append paths
  // like "/chat/completions").
  void CheckUrl(MapReader& r, const std::string& key, std::string* url) {
    while (absl::EndsWith(*url, "/")) url->pop_back();
    if (!absl::StartsWith(*url, "http://") &&
        !absl::StartsWith(*url, "https://")) {
      const ConfigNode* value = r.Get(key);
      r.Problem(*value, key,
                absl::StrCat("expected an http:// or https:// URL, got ",
                             Shown(*value)));
    }
  }

  void DecodeModel(const ConfigNode& node, const std::string& path,
                   ModelConfig* out) {
    MapReader r(&node, path, problems);
    r.Name("name", &out->name, "the model's catalogue name");
    if (r.String("provider", &out->provider)) {
      if (names.providers.count(out->provider) == 0) {
        UnknownReference(problems, r.ValueLocation("provider"),
                         r.Path("provider"), "provider", out->provider,
                         Keys(names.providers));
      }
    } else if (r.Get("provider") == nullptr) {
      r.Missing("provider", "a provider's name");
    }
    model_providers[out->name] = out->provider;
    if (!r.String("upstream_model", &out->upstream_model)) {
      out->upstream_model = out->name;
    }
    // Checked when both values are trustworthy (valid or default).
    const bool context = r.Int("context_window", &out->context_window, 1) ||
                         r.Get("context_window") == nullptr;
    const bool output =
        r.Int("max_output_tokens", &out->max_output_tokens, 1) ||
        r.Get("max_output_tokens") == nullptr;
    if (context && output && out->max_output_tokens > out->context_window) {
      r.Problem(r.ValueLocation("max_output_tokens"), "max_output_tokens",
                absl::StrCat("max_output_tokens (", out->max_output_tokens,
                             ") must not exceed context_window (",
                             out->context_window, ")"));
    }
    r.Bool("supports_tools", &out->supports_tools);
    r.Bool("supports_prefill", &out->supports_prefill);
    const auto provider = providers.find(out->provider);
    const std::string provider_url =
        provider != providers.end() ? provider->second.base_url : "";
    out->instances = DecodeSection<InstanceConfig>(
        r.List("instances"), r.Path("instances"),
        DefaultsFor(defaults, "instance"), "instance", "id", problems,
        [&](const ConfigNode& item, const std::string& item_path,
            InstanceConfig* instance) {
          DecodeInstance(item, item_path, provider_url,
                         provider != providers.end(), instance);
        });
    if (out->instances.empty() && r.List("instances") == nullptr) {
      InstanceConfig implied;
      implied.id = "default";
      out->instances.push_back(implied);
      if (provider != providers.end() && provider_url.empty()) {
        r.Problem(r.location(), "instances",
                  absl::StrCat("provider '", out->provider,
                               "' has no base_url and the model lists no "
                               "instances with one"));
      }
    } else if (out->instances.empty()) {
      r.Problem(r.ValueLocation("instances"), "instances",
                "must list at least one instance (or be left out)");
    }
  }

  void DecodeInstance(const ConfigNode& node, const std::string& path,
                      const std::string& provider_url, bool provider_known,
                      InstanceConfig* out) {
    MapReader r(&node, path, problems);
    r.Name("id", &out->id, "unique within the model");
    if (r.String("base_url", &out->base_url)) {
      CheckUrl(r, "base_url", &out->base_url);
    } else if (provider_known && provider_url.empty() &&
               r.Get("base_url") == nullptr) {
      r.Missing("base_url", "the provider has none");
    }
    r.String("api_key", &out->api_key);
    r.Int("weight", &out->weight, 1);
    r.Int("max_concurrency", &out->max_concurrency, 0);
    r.Int("requests_per_minute", &out->requests_per_minute, 0);
    r.Int("tokens_per_minute", &out->tokens_per_minute, 0);
  }

  void DecodeEchelon(const ConfigNode& node, const std::string& path,
                     EchelonConfig* out) {
    MapReader r(&node, path, problems);
    r.Name("name", &out->name, "unique within the task group");
    r.Int("priority", &out->priority, INT_MIN);
    std::vector<SourceLocation> where;
    if (r.StringList("models", &out->models, &where)) {
      if (out->models.empty()) {
        r.Problem(r.ValueLocation("models"), "models",
                  "must list at least one model");
      }
      std::set<std::string> seen;
      for (size_t i = 0; i < out->models.size(); ++i) {
        const std::string& model = out->models[i];
        if (names.models.count(model) == 0) {
          UnknownReference(problems, where[i],
                           absl::StrCat(r.Path("models"), "[", i, "]"), "model",
                           model, Keys(names.models));
        } else if (!seen.insert(model).second) {
          problems->push_back(
              {where[i], absl::StrCat(r.Path("models"), "[", i, "]"),
               absl::StrCat("model '", model, "' is listed twice")});
        }
      }
    } else if (r.Get("models") == nullptr) {
      r.Missing("models", "the models of this echelon, in preference order");
    }
    DecodeConcurrency(r.Map("concurrency"), r.Path("concurrency"), problems,
                      &out->concurrency);
    DecodeRateLimit(r.Map("rate_limit"), r.Path("rate_limit"), problems,
                    &out->rate_limit);
    const bool timeout = ReadDuration(r, "timeout", &out->timeout, false);
    const bool first =
        r.OptionalDuration("first_token_timeout", &out->first_token_timeout);
    if (timeout && first && out->timeout > absl::ZeroDuration()) {
      CheckOrder(r, "first_token_timeout", *out->first_token_timeout, "timeout",
                 out->timeout, true);
    }
    if (timeout && out->timeout > absl::ZeroDuration()) {
      CheckConnectFits(r, out->models, out->timeout);
    }
    DecodeRetry(r.Map("retry"), r.Path("retry"), problems, &out->retry);
    DecodeBreaker(r.Map("breaker"), r.Path("breaker"), problems, &out->breaker);
    DecodeGeneration(r.Map("defaults"), r.Path("defaults"), problems,
                     &out->defaults);
    const bool expected =
        ReadDuration(r, "expected_latency", &out->expected_latency, false);
    if (timeout && expected && out->timeout > absl::ZeroDuration()) {
      CheckOrder(r, "expected_latency", out->expected_latency, "timeout",
                 out->timeout, true);
    }
  }

  // An echelon timeout shorter than a provider's connect timeout could never
  // let the connect timeout apply; reported once per echelon.
  void CheckConnectFits(MapReader& r, const std::vector<std::string>& models,
                        absl::Duration timeout) {
    for (const std::string& model : models) {
      auto provider_name = model_providers.find(model);
      if (provider_name == model_providers.end()) continue;
      auto provider = providers.find(provider_name->second);
      if (provider == providers.end()) continue;
      const absl::Duration connect = provider->second.timeouts.connect;
      if (connect <= timeout) continue;
      r.Problem(r.ValueLocation("timeout"), "timeout",
                absl::StrCat("timeout (", absl::FormatDuration(timeout),
                             ") must not be shorter than the connect timeout (",
                             absl::FormatDuration(connect), ") of provider '",
                             provider->first, "' (model '", model, "')"));
      return;
    }
  }

  void DecodeTaskGroup(const ConfigNode& node, const std::string& path,
                       TaskGroupConfig* out) {
    MapReader r(&node, path, problems);
    r.Name("name", &out->name, "the task group's name");
    r.String("description", &out->description);
    const bool request =
        ReadDuration(r, "request_timeout", &out->request_timeout, true);
    const ConfigNode* echelons = r.List("echelons");
    out->echelons = DecodeSection<EchelonConfig>(
        echelons, r.Path("echelons"), DefaultsFor(defaults, "echelon"),
        "echelon", "name", problems,
        [&](const ConfigNode& item, const std::string& item_path,
            EchelonConfig* echelon) {
          DecodeEchelon(item, item_path, echelon);
        });
    if (echelons == nullptr && r.Get("echelons") == nullptr) {
      r.Missing("echelons", "at least one echelon");
    } else if (echelons != nullptr && echelons->items.empty()) {
      r.Problem(*echelons, "echelons", "must list at least one echelon");
    }
    if (request && echelons != nullptr) {
      for (const EchelonConfig& e : out->echelons) {
        if (e.timeout <= out->request_timeout) continue;
        // Where the echelon's timeout was written (the echelon when it came
        // from `defaults`).
        SourceLocation at = echelons->location;
        for (const ConfigNode& item : echelons->items) {
          const ConfigNode* name = item.IsMap() ? item.Find("name") : nullptr;
          if (name == nullptr || name->scalar != e.name) continue;
          const ConfigNode* t = item.Find("timeout");
          at = t != nullptr ? t->location : item.location;
          break;
        }
        problems->push_back(
            {at, JoinPath(JoinPath(r.Path("echelons"), e.name), "timeout"),
             absl::StrCat("timeout (", absl::FormatDuration(e.timeout),
                          ") must not exceed the task group's "
                          "request_timeout (",
                          absl::FormatDuration(out->request_timeout), ")")});
      }
    }
    if (const ConfigNode* fallback = r.Map("fallback")) {
      Fallback(*fallback, r.Path("fallback"), *out, &out->fallback);
    }
    DecodeBreaker(r.Map("instance_breaker"), r.Path("instance_breaker"),
                  problems, &out->instance_breaker);
    DecodeHealth(r.Map("health"), r.Path("health"), problems, &out->health);
  }

  void Fallback(const ConfigNode& node, const std::string& path,
                const TaskGroupConfig& group, FallbackConfig* out) {
    MapReader r(&node, path, problems);
    if (const ConfigNode* strategies = r.Get("strategies")) {
      if (!strategies->IsSequence()) {
        r.Problem(*strategies, "strategies",
                  absl::StrCat("expected a list, got ", Shown(*strategies)));
      } else {
        out->strategies.clear();
        const std::vector<std::pair<std::string, FallbackStrategy>> kNames = {
            {"echelon_down", FallbackStrategy::kEchelonDown},
            {"model_rotate", FallbackStrategy::kModelRotate},
            {"provider_failover", FallbackStrategy::kProviderFailover},
            {"task_group_switch", FallbackStrategy::kTaskGroupSwitch},
            {"pool_switch", FallbackStrategy::kPoolSwitch}};
        for (size_t i = 0; i < strategies->items.size(); ++i) {
          const ConfigNode& item = strategies->items[i];
          const std::string item_path =
              absl::StrCat(r.Path("strategies"), "[", i, "]");
          if (!item.IsScalar()) {
            problems->push_back(
                {item.location, item_path,
                 absl::StrCat("expected a strategy name, got ", Shown(item))});
            continue;
          }
          FallbackStrategy s;
          if (r.ParseEnum(item, "strategies", &s, kNames, item_path)) {
            out->strategies.push_back(s);
          }
        }
      }
    }
    std::vector<SourceLocation> where;
    if (r.StringList("fallback_groups", &out->fallback_groups, &where)) {
      for (size_t i = 0; i < out->fallback_groups.size(); ++i) {
        const std::string& name = out->fallback_groups[i];
        const std::string item_path =
            absl::StrCat(r.Path("fallback_groups"), "[", i, "]");
        if (names.task_groups.count(name) == 0) {
          UnknownReference(problems, where[i], item_path, "task group", name,
                           Keys(names.task_groups));
        } else if (name == group.name) {
          problems->push_back(
              {where[i], item_path, "a task group cannot fall back to itself"});
        }
      }
    }
    CheckPools(r, "fallback_pools", "", &out->fallback_pools);
    r.Int("max_attempts", &out->max_attempts, 1);
    ReadDuration(r, "retry_delay", &out->retry_delay, false);
    r.Enum("when_all_open", &out->when_all_open,
           std::vector<std::pair<std::string, AllOpenPolicy>>{
               {"fail_fast", AllOpenPolicy::kFailFast},
               {"last_resort", AllOpenPolicy::kLastResort}});
    if (r.String("last_resort_echelon", &out->last_resort_echelon)) {
      std::vector<std::string> echelons;
      for (const EchelonConfig& e : group.echelons) echelons.push_back(e.name);
      if (std::find(echelons.begin(), echelons.end(),
                    out->last_resort_echelon) == echelons.end()) {
        UnknownReference(problems, r.ValueLocation("last_resort_echelon"),
                         r.Path("last_resort_echelon"), "echelon",
                         out->last_resort_echelon, echelons);
      }
    } else if (out->when_all_open == AllOpenPolicy::kLastResort &&
               r.Get("last_resort_echelon") == nullptr) {
      r.Missing("last_resort_echelon",
                "required when when_all_open is "
                "last_resort");
    }
  }

  // A list of pool names; `self` may not appear.
  void CheckPools(MapReader& r, const std::string& key, const std::string& self,
                  std::vector<std::string>* out) {
    std::vector<SourceLocation> where;
    if (!r.StringList(key, out, &where)) return;
    for (size_t i = 0; i < out->size(); ++i) {
      const std::string& name = (*out)[i];
      const std::string item_path = absl::StrCat(r.Path(key), "[", i, "]");
      if (names.pools.count(name) == 0) {
        UnknownReference(problems, where[i], item_path, "pool", name,
                         Keys(names.pools));
      } else if (name == self) {
        problems->push_back(
            {where[i], item_path, "a pool cannot fall back to itself"});
      }
    }
  }

  void DecodePool(const ConfigNode& node, const std::string& path,
                  const std::vector<TaskGroupConfig>& groups, PoolConfig* out) {
    MapReader r(&node, path, problems);
    r.Name("name", &out->name, "the pool's name");
    r.String("description", &out->description);
    std::vector<SourceLocation> where;
    if (r.StringList("task_groups", &out->task_groups, &where)) {
      if (out->task_groups.empty()) {
        r.Problem(r.ValueLocation("task_groups"), "task_groups",
                  "must list at least one task group");
      }
      for (size_t i = 0; i < out->task_groups.size(); ++i) {
        CheckGroupReference(out->task_groups[i], where[i],
                            absl::StrCat(r.Path("task_groups"), "[", i, "]"),
                            groups);
      }
    } else if (r.Get("task_groups") == nullptr) {
      r.Missing("task_groups", "task groups or group.echelon names");
    }
    const std::vector<std::pair<std::string, std::string>> kStrategies = {
        {"round_robin", "round_robin"},
        {"random", "random"},
        {"weighted", "weighted"},
        {"least_connections", "least_connections"},
        {"least_recently_used", "least_recently_used"},
        {"p2c_ewma", "p2c_ewma"}};
    r.Enum("strategy", &out->strategy, kStrategies);
    r.Int("max_instance_attempts", &out->max_instance_attempts, 1);
    DecodeHealth(r.Map("health"), r.Path("health"), problems, &out->health);
    DecodeBreaker(r.Map("instance_breaker"), r.Path("instance_breaker"),
                  problems, &out->instance_breaker);
    DecodeRetry(r.Map("retry"), r.Path("retry"), problems, &out->retry);
    CheckPools(r, "fallback_pools", out->name, &out->fallback_pools);
    ReadDuration(r, "request_timeout", &out->request_timeout, true);
  }

  void CheckGroupReference(const std::string& reference,
                           const SourceLocation& at, const std::string& path,
                           const std::vector<TaskGroupConfig>& groups) {
    const size_t dot = reference.find('.');
    const std::string group_name = reference.substr(0, dot);
    if (names.task_groups.count(group_name) == 0) {
      UnknownReference(problems, at, path, "task group", group_name,
                       Keys(names.task_groups));
      return;
    }
    if (dot == std::string::npos) return;
    const std::string echelon = reference.substr(dot + 1);
    for (const TaskGroupConfig& group : groups) {
      if (group.name != group_name) continue;
      std::vector<std::string> echelons;
      for (const EchelonConfig& e : group.echelons) {
        if (e.name == echelon) return;
        echelons.push_back(e.name);
      }
      problems->push_back(
          {at, path,
           absl::StrCat("unknown echelon '", echelon, "' in task group '",
                        group_name, "'", DidYouMean(echelon, echelons))});
      return;
    }
  }
};

}  // namespace

int EditDistance(const std::string& a, const std::string& b) {
  std::vector<int> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    int diagonal = row[0];
    row[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int up = row[j];
      const int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + cost});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string SuggestClosest(const std::string& word,
                           const std::vector<std::string>& candidates) {
  std::string best;
  int best_distance = INT_MAX;
  for (const std::string& candidate : candidates) {
    const int d = EditDistance(word, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  const int limit = std::max<int>(
      2, static_cast<int>(std::max(word.size(), best.size())) / 3);
  if (best.empty() || best_distance > limit) return "";
  return best;
}

GatewayConfig DecodeGatewayConfig(const ConfigNode& root, Problems* problems) {
  GatewayConfig config;
  MapReader r(&root, "", problems);
  Decoder d;
  d.problems = problems;
  d.defaults = r.Map("defaults");
  if (d.defaults != nullptr) {
    MapReader defaults(d.defaults, "defaults", problems);
    for (const char* key :
         {"provider", "model", "instance", "task_group", "echelon", "pool"}) {
      defaults.Map(key);
    }
  }
  const ConfigNode* providers = r.List("providers");
  const ConfigNode* models = r.List("models");
  const ConfigNode* groups = r.List("task_groups");
  const ConfigNode* pools = r.List("pools");
  CollectNames(providers, &d.names.providers);
  CollectNames(models, &d.names.models);
  CollectNames(groups, &d.names.task_groups);
  CollectNames(pools, &d.names.pools);

  config.providers = DecodeSection<ProviderConfig>(
      providers, "providers", DefaultsFor(d.defaults, "provider"), "provider",
      "name", problems,
      [&](const ConfigNode& n, const std::string& p, ProviderConfig* out) {
        d.DecodeProvider(n, p, out);
      });
  config.models = DecodeSection<ModelConfig>(
      models, "models", DefaultsFor(d.defaults, "model"), "model", "name",
      problems,
      [&](const ConfigNode& n, const std::string& p, ModelConfig* out) {
        d.DecodeModel(n, p, out);
      });
  config.task_groups = DecodeSection<TaskGroupConfig>(
      groups, "task_groups", DefaultsFor(d.defaults, "task_group"),
      "task group", "name", problems,
      [&](const ConfigNode& n, const std::string& p, TaskGroupConfig* out) {
        d.DecodeTaskGroup(n, p, out);
      });
  config.pools = DecodeSection<PoolConfig>(
      pools, "pools", DefaultsFor(d.defaults, "pool"), "pool", "name", problems,
      [&](const ConfigNode& n, const std::string& p, PoolConfig* out) {
        d.DecodePool(n, p, config.task_groups, out);
      });
  DecodeAuth(r.Map("auth"), "auth", d.names, problems, &config.auth);
  DecodeLimits(r.Map("limits"), "limits", problems, &config.limits);
  DecodeCluster(r.Map("cluster"), "cluster", problems, &config.cluster);
  if (config.pools.empty() && problems->empty()) {
    problems->push_back(
        {root.location, "pools", "the configuration defines no pools"});
  }
  return config;
}

}  // namespace echelon
