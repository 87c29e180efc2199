// echelond: the Echelon gateway daemon. Parses flags, starts the server, and
// turns signals into reload (SIGHUP) and graceful shutdown (SIGTERM, SIGINT).
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "adapters/config_loader.h"
#include "service/server.h"

ABSL_FLAG(std::string, config, "configs/llms",
          "Config directory (with _registry.yaml) or a single YAML file.");
ABSL_FLAG(std::string, grpc_address, "0.0.0.0:50051",
          "gRPC listen address; port 0 picks a free port.");
ABSL_FLAG(bool, reflection, true, "Serve gRPC server reflection.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "On SIGTERM/SIGINT, how long calls in flight may finish before "
          "they are cancelled.");
ABSL_FLAG(std::string, check_config, "",
          "Validate this config directory or file, print every problem, and "
          "exit (0 when valid) without serving.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Echelon LLM gateway. Usage: echelond --config=configs/llms");
  absl::ParseCommandLine(argc, argv);

  std::string check = absl::GetFlag(FLAGS_check_config);
  if (!check.empty()) {
    absl::StatusOr<echelon::GatewayConfig> config = echelon::LoadConfig(check);
    if (!config.ok()) {
      std::cerr << config.status().message() << "\n";
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

  echelon::ServerOptions options;
  options.config_path = absl::GetFlag(FLAGS_config);
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.enable_reflection = absl::GetFlag(FLAGS_reflection);
  auto server = echelon::Server::Create(options);
  if (!server.ok()) {
    std::cerr << "echelond: " << server.status().message() << "\n";
    return 1;
  }
  std::cerr << "echelond: serving gRPC on port " << (*server)->grpc_port()
            << " with config " << options.config_path << "\n";
  // Machine-readable, for scripts and tests.
  std::printf("LISTENING grpc %d\n", (*server)->grpc_port());
  std::fflush(stdout);

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      absl::Status s = (*server)->Reload();
      std::cerr << "echelond: reload " << (s.ok() ? "ok" : s.message()) << "\n";
      continue;
    }
    std::cerr << "echelond: draining (signal " << sig << ")\n";
    (*server)->Shutdown(absl::GetFlag(FLAGS_drain_timeout));
    break;
  }
  std::cerr << "echelond: stopped\n";
  return 0;
}
