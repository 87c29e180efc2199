// echelond: the Echelon gateway daemon. Parses flags, starts the server, and
// turns signals into reload (SIGHUP) and graceful shutdown (SIGTERM, SIGINT).
#include <sched.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "adapters/config_loader.h"
#include "service/server.h"

ABSL_FLAG(std::string, config, "configs/llms",
          "Config directory (with _registry.yaml) or a single YAML file.");
ABSL_FLAG(std::string, grpc_address, "0.0.0.0:50051",
          "gRPC listen address; port 0 picks a free port.");
ABSL_FLAG(std::string, http_address, "0.0.0.0:8080",
          "OpenAI-compatible HTTP listen address; empty disables it.");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9464",
          "Prometheus /metrics listen address; empty disables it.");
ABSL_FLAG(bool, reflection, true, "Serve gRPC server reflection.");
ABSL_FLAG(bool, admin_rpcs, true, "Serve the ReloadConfig admin RPC.");
ABSL_FLAG(bool, watch_config, true,
          "Reload when a file under --config changes.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "On SIGTERM/SIGINT, how long calls in flight may finish before "
          "they are cancelled.");
ABSL_FLAG(bool, log_json, false, "Write log lines as JSON.");
ABSL_FLAG(std::string, log_level, "info",
          "Lowest level logged: debug, info (every request), warning "
          "(failed requests), error.");
ABSL_FLAG(int, max_message_bytes, 16 << 20,
          "Largest gRPC message accepted or sent, in bytes.");
ABSL_FLAG(int, max_concurrent_streams, 1000,
          "Concurrent gRPC calls per HTTP/2 connection.");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Minutes(2),
          "Interval of server keepalive pings on idle connections.");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(20),
          "A connection whose ping is not answered within this is closed.");
ABSL_FLAG(std::string, grpc_tls_cert, "",
          "PEM certificate chain for TLS on the gRPC listener (with "
          "--grpc_tls_key); empty serves plaintext.");
ABSL_FLAG(std::string, grpc_tls_key, "",
          "PEM private key for --grpc_tls_cert.");
ABSL_FLAG(std::string, grpc_tls_client_ca, "",
          "PEM CA bundle; when set, gRPC clients must present a certificate "
          "signed by it (mutual TLS).");
ABSL_FLAG(std::string, http_tls_cert, "",
          "PEM certificate chain for HTTPS on the OpenAI-compatible HTTP "
          "listener (with --http_tls_key; TLS 1.2 and newer); empty serves "
          "plain HTTP. May be the same file as --grpc_tls_cert.");
ABSL_FLAG(std::string, http_tls_key, "",
          "PEM private key (unencrypted) for --http_tls_cert.");
ABSL_FLAG(std::string, http_tls_client_ca, "",
          "PEM CA bundle; when set, HTTP clients must present a certificate "
          "signed by it (mutual TLS).");
ABSL_FLAG(std::string, upstream_ca_file, "",
          "PEM CA bundle trusted for https:// upstreams instead of the "
          "system store.");
ABSL_FLAG(int, upstream_multi_handles, 16,
          "libcurl multi handles the upstream requests are spread over. "
          "libcurl walks every connection to a host to find one to reuse, "
          "so one handle makes starting a request cost more the more are in "
          "flight; each handle keeps its own connections.");
ABSL_FLAG(bool, sched_batch, false,
          "Run every thread under SCHED_BATCH (Linux): a thread woken by "
          "another (gRPC -> event loop -> gRPC) does not preempt it, so "
          "hand-offs batch up instead of costing a context switch per "
          "request (about a third less CPU per request on a shared core), "
          "but a woken thread also waits for other processes' time slices: "
          "on a busy machine latency grows. See BENCHMARKS.md.");
ABSL_FLAG(std::string, check_config, "",
          "Validate this config directory or file, print every problem, and "
          "exit (0 when valid) without serving.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Echelon LLM gateway. Usage: echelond --config=configs/llms");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil keeps lock-order (deadlock) detection on, which costs a
  // graph update per lock on the request path; tests run with it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  std::string check = absl::GetFlag(FLAGS_check_config);
  if (!check.empty()) {
    std::vector<echelon::ConfigProblem> problems = echelon::CheckConfig(check);
    for (const echelon::ConfigProblem& p : problems) {
      std::cerr << p.ToString() << "\n";
    }
    if (!problems.empty()) {
      std::cerr << problems.size() << " problem(s) in " << check << "\n";
      return 1;
    }
    std::cout << check << ": OK\n";
    return 0;
  }

  // Block the signals we handle before any thread starts, so every thread
  // inherits the mask and sigwait() below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (absl::GetFlag(FLAGS_sched_batch)) {
    // Before any thread starts: every thread inherits the policy. Lowering
    // SCHED_OTHER to SCHED_BATCH needs no privilege; on failure we simply
    // keep the default policy.
    sched_param param{};
    param.sched_priority = 0;
    if (sched_setscheduler(0, SCHED_BATCH, &param) != 0) {
      std::cerr << "echelond: SCHED_BATCH not applied: " << std::strerror(errno)
                << "\n";
    }
  }

  echelon::ServerOptions options;
  options.config_path = absl::GetFlag(FLAGS_config);
  options.upstream_multi_handles = absl::GetFlag(FLAGS_upstream_multi_handles);
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.http_address = absl::GetFlag(FLAGS_http_address);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.enable_reflection = absl::GetFlag(FLAGS_reflection);
  options.admin_rpcs = absl::GetFlag(FLAGS_admin_rpcs);
  options.watch_config = absl::GetFlag(FLAGS_watch_config);
  options.log_json = absl::GetFlag(FLAGS_log_json);
  options.log_level = absl::GetFlag(FLAGS_log_level);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  options.grpc_tls_cert = absl::GetFlag(FLAGS_grpc_tls_cert);
  options.grpc_tls_key = absl::GetFlag(FLAGS_grpc_tls_key);
  options.grpc_tls_client_ca = absl::GetFlag(FLAGS_grpc_tls_client_ca);
  options.http_tls_cert = absl::GetFlag(FLAGS_http_tls_cert);
  options.http_tls_key = absl::GetFlag(FLAGS_http_tls_key);
  options.http_tls_client_ca = absl::GetFlag(FLAGS_http_tls_client_ca);
  options.upstream_ca_file = absl::GetFlag(FLAGS_upstream_ca_file);
  auto server = echelon::Server::Create(options);
  if (!server.ok()) {
    std::cerr << "echelond: " << server.status().message() << "\n";
    return 1;
  }
  // Machine-readable, for scripts and tests.
  std::printf("LISTENING grpc %d\n", (*server)->grpc_port());
  std::printf("LISTENING http %d\n", (*server)->http_port());
  std::printf("LISTENING metrics %d\n", (*server)->metrics_port());
  std::fflush(stdout);

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      (*server)->Reload();  // logs and counts its outcome
      continue;
    }
    std::cerr << "echelond: draining (signal " << sig << ")\n";
    (*server)->Shutdown(absl::GetFlag(FLAGS_drain_timeout));
    break;
  }
  std::cerr << "echelond: stopped\n";
  return 0;
}
