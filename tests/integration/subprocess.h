// Starts a real child process for integration tests, reads its stdout line
// by line with a bounded wait, and kills it on destruction.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace echelon::testing {

class Subprocess {
 public:
  // Starts `argv[0]` with `argv`, the parent's environment plus `env`
  // (overriding). Stdout is piped for ReadLine(); stderr is inherited so the
  // child's logs land in the test log.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv,
      const std::map<std::string, std::string>& env = {});

  ~Subprocess();  // SIGKILL if still running, then reap

  // Next stdout line (without newline), waiting at most `timeout`.
  // Errors: DEADLINE_EXCEEDED, or OUT_OF_RANGE at end of output.
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);

  // Reads lines until one starts with `prefix`; returns the rest of it.
  absl::StatusOr<std::string> WaitForLine(const std::string& prefix,
                                          absl::Duration timeout);

  // Sends `signal`; then Wait() reaps.
  void Signal(int signal);
  // Waits up to `timeout` for exit; returns the wait status, or
  // DEADLINE_EXCEEDED.
  absl::StatusOr<int> Wait(absl::Duration timeout);

  pid_t pid() const { return pid_; }

 private:
  Subprocess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}

  pid_t pid_;
  int stdout_fd_;
  std::string buffer_;
  bool exited_ = false;
};

// Absolute path of a runfile given its workspace-relative path, e.g.
// "tools/upstream_sim/upstream_sim".
std::string RunfilePath(const std::string& relative);

}  // namespace echelon::testing
