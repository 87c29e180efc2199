// Starts the upstream simulator binary (//tools/upstream_sim:upstream_sim)
// as a child process on an ephemeral port, for integration tests; or another
// server of ours that announces its port the same way (Options::binary).
//
// Depend on //tests/tools:sim_process; it carries the binary as data, so it
// is found in the test's runfiles. Not thread-safe; one owner per process.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace echelon {
namespace sim {

class SimProcess {
 public:
  struct Options {
    std::string scenario;                 // --scenario, "" for none
    std::vector<std::string> extra_args;  // appended verbatim
    int startup_timeout_ms = 10000;       // wait for "LISTENING <port>"
    // Another program instead of the simulator: started with extra_args
    // only, its port read from the stdout line that starts with
    // listening_prefix.
    std::string binary;
    std::string listening_prefix = "LISTENING ";
  };

  // Returns kNotFound when the binary is not in the runfiles and kInternal
  // when it does not start or does not announce its port in time.
  static absl::StatusOr<std::unique_ptr<SimProcess>> Start(
      const Options& options);

  // Stops the process (SIGTERM, then SIGKILL after 5 s).
  ~SimProcess();

  int port() const { return port_; }
  // For tests that pause the server (SIGSTOP / SIGCONT).
  pid_t pid() const { return pid_; }
  // "http://127.0.0.1:<port>".
  std::string base_url() const;

  // Sends SIGTERM and waits; returns the exit code, or -1 when the process
  // had to be killed or died from a signal.
  int Stop();

 private:
  SimProcess(pid_t pid, int port) : pid_(pid), port_(port) {}

  pid_t pid_;
  int port_;
};

// Path of the simulator binary: $UPSTREAM_SIM_BIN if set, else the runfiles
// location under $TEST_SRCDIR/$TEST_WORKSPACE.
std::string SimBinaryPath();
// Path of another binary of this workspace in the runfiles, e.g.
// "tools/loadgen/loadgen".
std::string RunfilesPath(const std::string& workspace_relative);

}  // namespace sim
}  // namespace echelon
