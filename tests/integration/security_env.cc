#include "tests/integration/security_env.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "rapidjson/document.h"

namespace echelon::testing {
namespace {

absl::StatusOr<int> Port(const absl::StatusOr<std::string>& line,
                         const char* what) {
  if (!line.ok()) {
    return absl::Status(line.status().code(),
                        absl::StrCat(what, ": ", line.status().message()));
  }
  int port = 0;
  if (!absl::SimpleAtoi(*line, &port)) {
    return absl::InternalError(absl::StrCat(what, ": bad port"));
  }
  return port;
}

}  // namespace

std::string SecurityProcesses::sim_url() const {
  return absl::StrCat("http://127.0.0.1:", sim_port);
}

absl::StatusOr<std::string> SecurityProcesses::StatsJson() const {
  auto answer = HttpFetch(absl::StrCat(sim_url(), "/_stats"), std::nullopt);
  if (!answer.ok()) return answer.status();
  return answer->body;
}

absl::StatusOr<std::string> SecurityProcesses::Metrics() const {
  auto answer =
      HttpFetch(absl::StrCat("http://127.0.0.1:", metrics_port, "/metrics"),
                std::nullopt);
  if (!answer.ok()) return answer.status();
  return answer->body;
}

absl::StatusOr<std::unique_ptr<SecurityProcesses>> StartSecurityProcesses(
    const SecurityEnvOptions& options) {
  auto p = std::make_unique<SecurityProcesses>();
  std::vector<std::string> sim_argv = {
      RunfilePath("tools/upstream_sim/upstream_sim"), "--port=0"};
  if (!options.sim_scenario.empty()) {
    sim_argv.push_back(absl::StrCat("--scenario=", options.sim_scenario));
  }
  auto sim = Subprocess::Start(sim_argv);
  if (!sim.ok()) return sim.status();
  p->sim = *std::move(sim);
  auto sim_port =
      Port(p->sim->WaitForLine("LISTENING ", absl::Seconds(20)), "sim");
  if (!sim_port.ok()) return sim_port.status();
  p->sim_port = *sim_port;

  std::vector<std::string> argv;
  std::map<std::string, std::string> env = options.env;
  if (!options.stderr_file.empty()) {
    // exec keeps the pid, so signals and kill reach echelond itself.
    argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>>\"$ECHELON_TEST_STDERR\""};
    env["ECHELON_TEST_STDERR"] = options.stderr_file;
  }
  argv.push_back(RunfilePath("service/echelond"));
  argv.push_back(absl::StrCat("--config=", RunfilePath(options.config)));
  argv.push_back("--grpc_address=127.0.0.1:0");
  argv.push_back("--http_address=127.0.0.1:0");
  argv.push_back("--metrics_address=127.0.0.1:0");
  argv.push_back("--watch_config=false");
  for (const std::string& f : options.extra_flags) argv.push_back(f);
  env["ECHELON_SIM_URL"] = absl::StrCat(p->sim_url(), "/v1");
  env["ECHELON_SIM_ROOT"] = p->sim_url();
  auto gw = Subprocess::Start(argv, env);
  if (!gw.ok()) return gw.status();
  p->gateway = *std::move(gw);
  auto grpc_port = Port(
      p->gateway->WaitForLine("LISTENING grpc ", absl::Seconds(30)), "grpc");
  if (!grpc_port.ok()) return grpc_port.status();
  p->grpc_port = *grpc_port;
  auto http_port = Port(
      p->gateway->WaitForLine("LISTENING http ", absl::Seconds(10)), "http");
  if (!http_port.ok()) return http_port.status();
  p->http_port = *http_port;
  auto metrics_port =
      Port(p->gateway->WaitForLine("LISTENING metrics ", absl::Seconds(10)),
           "metrics");
  if (!metrics_port.ok()) return metrics_port.status();
  p->metrics_port = *metrics_port;
  return p;
}

int64_t SimTotalAttempts(const std::string& stats_json) {
  rapidjson::Document doc;
  doc.Parse(stats_json.c_str(), stats_json.size());
  if (doc.HasParseError() || !doc.IsObject()) return -1;
  auto it = doc.FindMember("total_attempts");
  if (it == doc.MemberEnd() || !it->value.IsInt64()) return -1;
  return it->value.GetInt64();
}

int64_t SimAuthHeadersSeen(const std::string& stats_json) {
  rapidjson::Document doc;
  doc.Parse(stats_json.c_str(), stats_json.size());
  if (doc.HasParseError() || !doc.IsObject()) return -1;
  auto keys = doc.FindMember("keys");
  if (keys == doc.MemberEnd() || !keys->value.IsObject()) return -1;
  int64_t sum = 0;
  for (const auto& k : keys->value.GetObject()) {
    auto seen = k.value.FindMember("auth_header_seen");
    if (seen != k.value.MemberEnd() && seen->value.IsInt64()) {
      sum += seen->value.GetInt64();
    }
  }
  return sum;
}

absl::Status RunShell(const std::string& command) {
  int rc = std::system(command.c_str());
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("exit ", rc, ": ", command));
  }
  return absl::OkStatus();
}

std::string MakeTempDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(base != nullptr ? base : "/tmp", "/", name);
  mkdir(dir.c_str(), 0700);
  return dir;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace echelon::testing
