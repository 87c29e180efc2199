#include "tools/upstream_sim/scenario.h"

#include <algorithm>
#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace echelon {
namespace sim {
namespace {

constexpr std::string_view kFaults[] = {
    "ok",
    "rate_limit",
    "http_500_once",
    "fail_first",
    "http_503",
    "overloaded",
    "http_529",
    "reset",
    "hang",
    "slow_first_token",
    "cut_after",
    "stall_after",
    "malformed_after",
    "no_done",
    "error_event_after",
    "context_length",
    "content_filter",
    "insufficient_quota",
    "auth",
    "flap",
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

std::string Quote(std::string_view s) {
  return absl::StrCat("'", std::string(s), "'");
}

absl::StatusOr<int64_t> ParseCount(std::string_view key,
                                   std::string_view value) {
  if (value.empty() || value.size() > 15) {
    return absl::InvalidArgumentError(
        absl::StrCat("scenario key ", std::string(key), " needs a number, got ",
                     Quote(value)));
  }
  int64_t n = 0;
  for (char c : value) {
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError(
          absl::StrCat("scenario key ", std::string(key),
                       " needs a non-negative integer, got ", Quote(value)));
    }
    n = n * 10 + (c - '0');
  }
  return n;
}

// "http_NNN" with NNN a plausible HTTP error status.
int GenericHttpStatus(std::string_view fault) {
  if (fault.size() != 8 || fault.substr(0, 5) != "http_") return 0;
  int code = 0;
  for (char c : fault.substr(5)) {
    if (c < '0' || c > '9') return 0;
    code = code * 10 + (c - '0');
  }
  return code >= 400 && code <= 599 ? code : 0;
}

bool KnownFault(std::string_view fault) {
  if (fault.empty() || GenericHttpStatus(fault) != 0) return true;
  for (std::string_view f : kFaults) {
    if (f == fault) return true;
  }
  return false;
}

}  // namespace

void Scenario::MergeFrom(const Scenario& later) {
#define ECHELON_SIM_MERGE(field) \
  if (later.field.has_value()) field = later.field;
  ECHELON_SIM_MERGE(tokens)
  ECHELON_SIM_MERGE(latency_ms)
  ECHELON_SIM_MERGE(ttft_ms)
  ECHELON_SIM_MERGE(itl_ms)
  ECHELON_SIM_MERGE(tool_call)
  ECHELON_SIM_MERGE(fault)
  ECHELON_SIM_MERGE(retry_after)
  ECHELON_SIM_MERGE(retry_after_ms)
  ECHELON_SIM_MERGE(fail_first)
  ECHELON_SIM_MERGE(status)
  ECHELON_SIM_MERGE(flap)
  ECHELON_SIM_MERGE(flap_mode)
  ECHELON_SIM_MERGE(cut_after)
  ECHELON_SIM_MERGE(stall_after)
  ECHELON_SIM_MERGE(malformed_after)
  ECHELON_SIM_MERGE(error_event_after)
  ECHELON_SIM_MERGE(cached_tokens)
  ECHELON_SIM_MERGE(key)
  ECHELON_SIM_MERGE(reason)
#undef ECHELON_SIM_MERGE
}

absl::StatusOr<Scenario> ParseScenario(std::string_view text) {
  Scenario s;
  while (!text.empty()) {
    size_t semi = text.find(';');
    std::string_view segment = Trim(text.substr(0, semi));
    text = semi == std::string_view::npos ? std::string_view()
                                          : text.substr(semi + 1);
    if (segment.empty()) continue;
    size_t eq = segment.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "scenario segment ", Quote(segment), " is not key=value"));
    }
    std::string_view key = Trim(segment.substr(0, eq));
    std::string_view value = Trim(segment.substr(eq + 1));

    std::optional<int64_t>* count = nullptr;
    if (key == "tokens") count = &s.tokens;
    if (key == "latency_ms") count = &s.latency_ms;
    if (key == "ttft_ms") count = &s.ttft_ms;
    if (key == "itl_ms") count = &s.itl_ms;
    if (key == "retry_after") count = &s.retry_after;
    if (key == "retry_after_ms") count = &s.retry_after_ms;
    if (key == "fail_first") count = &s.fail_first;
    if (key == "status") count = &s.status;
    if (key == "flap") count = &s.flap;
    if (key == "cut_after") count = &s.cut_after;
    if (key == "stall_after") count = &s.stall_after;
    if (key == "malformed_after") count = &s.malformed_after;
    if (key == "error_event_after") count = &s.error_event_after;
    if (key == "cached_tokens") count = &s.cached_tokens;
    if (count != nullptr) {
      absl::StatusOr<int64_t> n = ParseCount(key, value);
      if (!n.ok()) return n.status();
      *count = *n;
      continue;
    }
    if (key == "tool_call") {
      if (value == "1" || value == "true") {
        s.tool_call = true;
      } else if (value == "0" || value == "false") {
        s.tool_call = false;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("tool_call must be 0 or 1, got ", Quote(value)));
      }
    } else if (key == "fault") {
      if (!KnownFault(value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown fault ", Quote(value)));
      }
      s.fault = std::string(value);
    } else if (key == "flap_mode") {
      if (value != "status" && value != "reset") {
        return absl::InvalidArgumentError(absl::StrCat(
            "flap_mode must be status or reset, got ", Quote(value)));
      }
      s.flap_mode = std::string(value);
    } else if (key == "key") {
      s.key = std::string(value);
    } else if (key == "reason") {
      s.reason = std::string(value);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown scenario key ", Quote(key)));
    }
  }
  if (s.status.has_value() && (*s.status < 100 || *s.status > 599)) {
    return absl::InvalidArgumentError(
        absl::StrCat("status must be an HTTP status, got ", *s.status));
  }
  return s;
}

absl::StatusOr<std::string> UrlDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    if (i + 2 >= text.size()) {
      return absl::InvalidArgumentError("truncated percent escape");
    }
    int value = 0;
    for (int k = 1; k <= 2; ++k) {
      char h = text[i + k];
      value <<= 4;
      if (h >= '0' && h <= '9') {
        value |= h - '0';
      } else if (h >= 'a' && h <= 'f') {
        value |= h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        value |= h - 'A' + 10;
      } else {
        return absl::InvalidArgumentError("bad percent escape");
      }
    }
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

Behaviour Resolve(const Scenario& s) {
  Behaviour b;
  b.tokens = std::min<int64_t>(s.tokens.value_or(8), kMaxTokens);
  b.latency_ms = s.latency_ms.value_or(0);
  b.ttft_ms = s.ttft_ms.value_or(0);
  b.itl_ms = s.itl_ms.value_or(0);
  b.tool_call = s.tool_call.value_or(false);
  b.retry_after = s.retry_after.value_or(-1);
  b.retry_after_ms = s.retry_after_ms.value_or(-1);
  b.fail_first = s.fail_first.value_or(0);
  b.fail_status = static_cast<int>(s.status.value_or(500));
  b.flap_ms = s.flap.value_or(0);
  b.flap_reset = s.flap_mode.value_or("status") == "reset";
  b.cut_after = s.cut_after.value_or(-1);
  b.stall_after = s.stall_after.value_or(-1);
  b.malformed_after = s.malformed_after.value_or(-1);
  b.error_event_after = s.error_event_after.value_or(-1);
  b.cached_tokens = s.cached_tokens.value_or(0);
  if (s.reason.has_value()) b.reason = *s.reason;

  const std::string fault = s.fault.value_or("");
  b.fault_name = fault == "ok" ? "" : fault;
  auto status = [&b](int code) {
    b.fault = Behaviour::Fault::kStatus;
    b.status = code;
  };
  if (fault == "rate_limit" || fault == "insufficient_quota") {
    status(429);
  } else if (fault == "http_500_once") {
    if (!s.fail_first.has_value()) b.fail_first = 1;
  } else if (fault == "fail_first") {
    if (!s.fail_first.has_value()) b.fail_first = 1;
  } else if (fault == "http_503" || fault == "overloaded") {
    status(503);  // overloaded becomes 529 in the Anthropic dialect
  } else if (fault == "context_length" || fault == "content_filter") {
    status(400);
  } else if (fault == "auth") {
    status(401);
  } else if (fault == "reset") {
    b.fault = Behaviour::Fault::kReset;
  } else if (fault == "hang") {
    b.fault = Behaviour::Fault::kHang;
  } else if (fault == "no_done") {
    b.fault = Behaviour::Fault::kNoDone;
  } else if (fault == "slow_first_token") {
    if (!s.ttft_ms.has_value()) b.ttft_ms = 5000;
  } else if (fault == "cut_after") {
    if (b.cut_after < 0) b.cut_after = 1;
  } else if (fault == "stall_after") {
    if (b.stall_after < 0) b.stall_after = 1;
  } else if (fault == "malformed_after") {
    if (b.malformed_after < 0) b.malformed_after = 1;
  } else if (fault == "error_event_after") {
    if (b.error_event_after < 0) b.error_event_after = 1;
  } else if (fault == "flap") {
    if (b.flap_ms == 0) b.flap_ms = 1000;
  } else if (GenericHttpStatus(fault) != 0) {
    status(GenericHttpStatus(fault));  // includes http_529
  }
  return b;
}

}  // namespace sim
}  // namespace echelon
