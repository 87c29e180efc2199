#include "adapters/request_log.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace echelon {
namespace {

std::string CodeName(absl::StatusCode code) {
  if (code == absl::StatusCode::kOk) return "ok";
  std::string s = absl::StatusCodeToString(code);
  for (char& c : s) c = static_cast<char>(std::tolower(c));
  return s;
}

// JSON string escaping for the few free-text fields.
void AppendJsonString(std::string* out, absl::string_view s) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

absl::string_view LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warning" || name == "warn") return LogLevel::kWarning;
  if (name == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown log level '", name, "' (debug, info, warning, error)"));
}

RequestLog::RequestLog(Options options)
    : options_(std::move(options)), writer_([this] { Run(); }) {}

RequestLog::~RequestLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  writer_.join();
}

std::string RequestLog::Format(const RequestDoneEvent& e, bool json) {
  std::string out;
  double ms = absl::ToDoubleMilliseconds(e.duration);
  double upstream_ms = absl::ToDoubleMilliseconds(e.upstream_time);
  if (json) {
    absl::StrAppend(
        &out, "{\"ts\":\"",
        absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone()),
        "\",\"event\":\"request\",\"request_id\":");
    AppendJsonString(&out, e.request_id);
    out.append(",\"target\":");
    AppendJsonString(&out, e.target);
    out.append(",\"model\":");
    AppendJsonString(&out, e.model);
    out.append(",\"instance\":");
    AppendJsonString(&out, e.instance);
    absl::StrAppendFormat(
        &out,
        ",\"stream\":%s,\"outcome\":\"%s\",\"attempts\":%d,"
        "\"duration_ms\":%.3f,\"upstream_ms\":%.3f,\"tokens_in\":%d,"
        "\"tokens_out\":%d",
        e.stream ? "true" : "false", CodeName(e.code), e.attempts, ms,
        upstream_ms, e.tokens_in, e.tokens_out);
    if (!e.message.empty()) {
      out.append(",\"error\":");
      AppendJsonString(&out, e.message);
    }
    out.append("}\n");
    return out;
  }
  absl::StrAppendFormat(
      &out,
      "%s request id=%s target=%s model=%s instance=%s stream=%d "
      "outcome=%s attempts=%d duration_ms=%.3f upstream_ms=%.3f "
      "tokens_in=%d tokens_out=%d",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                       absl::UTCTimeZone()),
      e.request_id, e.target, e.model.empty() ? "-" : e.model,
      e.instance.empty() ? "-" : e.instance, e.stream ? 1 : 0, CodeName(e.code),
      e.attempts, ms, upstream_ms, e.tokens_in, e.tokens_out);
  if (!e.message.empty()) absl::StrAppend(&out, " error=\"", e.message, "\"");
  out.push_back('\n');
  return out;
}

void RequestLog::OnRequestDone(const RequestDoneEvent& e) {
  LogLevel level =
      e.code == absl::StatusCode::kOk ? LogLevel::kInfo : LogLevel::kWarning;
  if (level < options_.level) return;
  Append(Format(e, options_.json));
}

void RequestLog::Log(LogLevel level, absl::string_view message) {
  if (level < options_.level) return;
  std::string line;
  if (options_.json) {
    absl::StrAppend(
        &line, "{\"ts\":\"",
        absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone()),
        "\",\"level\":\"", LevelName(level), "\",\"message\":");
    AppendJsonString(&line, message);
    line.append("}\n");
  } else {
    absl::StrAppend(&line,
                    absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                     absl::UTCTimeZone()),
                    " ", LevelName(level), " ", message, "\n");
  }
  Append(std::move(line));
}

void RequestLog::Append(std::string line) {
  absl::MutexLock lock(&mu_);
  if (buffer_.size() + line.size() > options_.max_buffer_bytes) {
    ++dropped_;
    return;
  }
  buffer_.append(line);
}

void RequestLog::Run() {
  for (;;) {
    std::string chunk;
    size_t dropped = 0;
    bool stop;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(this, &RequestLog::HasWork),
                           absl::Milliseconds(100));
      chunk.swap(buffer_);
      std::swap(dropped, dropped_);
      stop = stopping_;
    }
    if (dropped > 0) {
      absl::FPrintF(options_.out,
                    "echelond: %d log lines dropped (output too slow)\n",
                    dropped);
    }
    if (!chunk.empty()) {
      fwrite(chunk.data(), 1, chunk.size(), options_.out);
      fflush(options_.out);
    }
    if (stop) return;
  }
}

}  // namespace echelon
