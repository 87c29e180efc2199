// Starts the upstream simulator and echelond for the security tests with
// what the shared fixture does not offer: extra flags (TLS, log level),
// extra environment (token hashes, canary keys), the gateway's stderr
// captured to a file (to search every log line), and no HTTP front (auth
// requires it off until the front checks tokens).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/subprocess.h"

namespace echelon::testing {

struct SecurityEnvOptions {
  std::string config;  // workspace-relative runfile
  std::vector<std::string> extra_flags;
  std::map<std::string, std::string> env;
  std::string stderr_file;  // empty: inherit
  std::string sim_scenario;
};

struct SecurityProcesses {
  std::unique_ptr<Subprocess> sim;
  std::unique_ptr<Subprocess> gateway;
  int sim_port = 0;
  int grpc_port = 0;
  int http_port = 0;
  int metrics_port = 0;
  std::string sim_url() const;
  // The simulator's /_stats body (JSON).
  absl::StatusOr<std::string> StatsJson() const;
  absl::StatusOr<std::string> Metrics() const;
};

absl::StatusOr<std::unique_ptr<SecurityProcesses>> StartSecurityProcesses(
    const SecurityEnvOptions& options);

// From a /_stats body: total_attempts, and auth_header_seen summed over
// keys; -1 when the body is not the expected JSON.
int64_t SimTotalAttempts(const std::string& stats_json);
int64_t SimAuthHeadersSeen(const std::string& stats_json);

// Runs `command` with /bin/sh; errors when it exits non-zero.
absl::Status RunShell(const std::string& command);

// A fresh directory under TEST_TMPDIR.
std::string MakeTempDir(const std::string& name);

// Reads a whole file ("" when missing).
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace echelon::testing
