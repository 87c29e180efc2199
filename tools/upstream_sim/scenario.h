// Scenario strings for the upstream simulator: "key=value;key=value".
//
// A scenario says how the simulator answers one request (how many tokens,
// how slowly, which fault). Several sources are merged, later ones winning
// field by field (flag, runtime override, path prefix, model suffix, header);
// see README.md for the full list of keys and faults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace echelon {
namespace sim {

// One parsed scenario source. Every field is optional so that sources can be
// layered: MergeFrom() copies only the fields the later source set.
struct Scenario {
  std::optional<int64_t> tokens;             // completion length in tokens
  std::optional<int64_t> latency_ms;         // unary: delay before answering
  std::optional<int64_t> ttft_ms;            // stream: delay before token 1
  std::optional<int64_t> itl_ms;             // stream: delay between tokens
  std::optional<bool> tool_call;             // answer with a tool call
  std::optional<std::string> fault;          // fault name, see kFaults
  std::optional<int64_t> retry_after;        // seconds, Retry-After header
  std::optional<int64_t> retry_after_ms;     // retry-after-ms header
  std::optional<int64_t> fail_first;         // fail the first N requests
  std::optional<int64_t> status;             // HTTP status for fail_first
  std::optional<int64_t> flap;               // down time in ms (flap fault)
  std::optional<std::string> flap_mode;      // "status" (503) or "reset"
  std::optional<int64_t> cut_after;          // stream: close after N tokens
  std::optional<int64_t> stall_after;        // stream: go silent after N
  std::optional<int64_t> malformed_after;    // stream: bad chunk after N
  std::optional<int64_t> error_event_after;  // stream: error event after N
  std::optional<int64_t> cached_tokens;      // usage.cached_tokens
  std::optional<std::string> key;            // stats/state key override
  std::optional<std::string> reason;         // content_filter reason text

  // Overwrites the fields that `later` sets.
  void MergeFrom(const Scenario& later);
};

// Parses "k=v;k=v". Whitespace around keys and values is ignored, empty
// segments are skipped, later duplicates win. Returns kInvalidArgument for a
// segment without '=', an unknown key, a non-numeric or negative number, an
// unknown fault name or an unknown flap_mode.
absl::StatusOr<Scenario> ParseScenario(std::string_view text);

// Percent-decodes a URL component ('+' stays '+'). Returns kInvalidArgument
// on a malformed escape.
absl::StatusOr<std::string> UrlDecode(std::string_view text);

// What a request should see, after merging and applying defaults and fault
// aliases (http_500_once -> fail_first=1,status=500; slow_first_token ->
// ttft_ms=5000 unless given; fault=cut_after without a count -> 1; ...).
// Completions are capped at this many tokens (unary bodies are built whole).
inline constexpr int64_t kMaxTokens = 1000000;

struct Behaviour {
  enum class Fault {
    kNone,
    kStatus,  // answer `status` (rate_limit, http_503, auth, ...)
    kReset,
    kHang,
    kNoDone,
  };
  int64_t tokens = 8;
  int64_t latency_ms = 0;
  int64_t ttft_ms = 0;
  int64_t itl_ms = 0;
  bool tool_call = false;
  Fault fault = Fault::kNone;
  std::string fault_name;       // the fault= value, "" when none
  int status = 0;               // for kStatus
  int64_t retry_after = -1;     // -1: no header
  int64_t retry_after_ms = -1;  // -1: no header
  int64_t fail_first = 0;
  int fail_status = 500;
  int64_t flap_ms = 0;  // 0: no flapping
  bool flap_reset = false;
  int64_t cut_after = -1;  // -1: off (same for the three below)
  int64_t stall_after = -1;
  int64_t malformed_after = -1;
  int64_t error_event_after = -1;
  int64_t cached_tokens = 0;
  std::string reason = "flagged content";
};

Behaviour Resolve(const Scenario& scenario);

}  // namespace sim
}  // namespace echelon
