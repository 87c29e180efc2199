// One structured line per finished request (text or JSON), written by a
// background thread so the event loop never blocks on the log's file
// descriptor. Lines name the request, target, serving model and instance,
// attempts, outcome, durations and tokens; never a secret (the router's
// events carry none).
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "domain/observer.h"

namespace echelon {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

// Parses "debug", "info", "warning", "error". Errors: INVALID_ARGUMENT.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);

class RequestLog final : public RouterObserver {
 public:
  struct Options {
    bool json = false;
    // Successful requests are logged at kInfo, failures at kWarning; lines
    // below `level` are dropped.
    LogLevel level = LogLevel::kInfo;
    // Where lines go; not owned. Default stderr.
    FILE* out = stderr;
    // Buffered bytes above which lines are dropped (and counted) rather
    // than growing memory when the output is slower than the traffic.
    size_t max_buffer_bytes = 8 << 20;
  };

  explicit RequestLog(Options options);
  ~RequestLog() override;  // flushes

  // Loop thread.
  void OnRequestDone(const RequestDoneEvent& e) override;

  // A free-form line at `level` (startup, reloads); any thread.
  void Log(LogLevel level, absl::string_view message);

  // Formats one request line (exposed for tests).
  static std::string Format(const RequestDoneEvent& e, bool json);

 private:
  void Append(std::string line) ABSL_LOCKS_EXCLUDED(mu_);
  void Run();
  bool HasWork() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || !buffer_.empty();
  }

  const Options options_;
  mutable absl::Mutex mu_;
  std::string buffer_ ABSL_GUARDED_BY(mu_);
  size_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace echelon
