// upstream_sim: a scriptable OpenAI/Anthropic-compatible upstream for tests
// and benchmarks. See tools/upstream_sim/README.md.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "tools/upstream_sim/sim_server.h"

ABSL_FLAG(int, port, 8700, "TCP port to listen on; 0 picks a free one");
ABSL_FLAG(std::string, host, "127.0.0.1", "address to bind");
ABSL_FLAG(std::string, scenario, "",
          "default scenario for every request, e.g. 'tokens=16;itl_ms=5'");
ABSL_FLAG(std::string, port_file, "",
          "if set, the bound port is written to this file once listening");

namespace {

echelon::sim::SimServer* g_server = nullptr;

void OnSignal(int) {
  if (g_server != nullptr) g_server->Stop();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);

  echelon::sim::SimServer::Options options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.scenario = absl::GetFlag(FLAGS_scenario);
  auto server = echelon::sim::SimServer::Create(options);
  if (!server.ok()) {
    std::fprintf(stderr, "upstream_sim: %s\n",
                 std::string(server.status().ToString()).c_str());
    return 2;
  }
  g_server = server->get();
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  const int port = (*server)->port();
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    // Write then rename so a reader never sees a half-written file.
    const std::string tmp = port_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << port << "\n";
    }
    std::rename(tmp.c_str(), port_file.c_str());
  }
  std::printf("LISTENING %d\n", port);
  std::fflush(stdout);

  absl::Status status = (*server)->Run();
  g_server = nullptr;
  if (!status.ok()) {
    std::fprintf(stderr, "upstream_sim: %s\n",
                 std::string(status.ToString()).c_str());
    return 1;
  }
  return 0;
}
