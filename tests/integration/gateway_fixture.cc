#include "tests/integration/gateway_fixture.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"

namespace echelon::testing {
namespace {

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

void InitCurlOnce() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

int64_t IntMember(const rapidjson::Value& v, const char* name) {
  auto it = v.FindMember(name);
  if (it == v.MemberEnd() || !it->value.IsNumber()) return 0;
  return it->value.GetInt64();
}

absl::StatusOr<int> ParsePort(const absl::StatusOr<std::string>& line,
                              const char* what) {
  if (!line.ok()) {
    return absl::Status(line.status().code(),
                        absl::StrCat(what, ": ", line.status().message()));
  }
  int port = 0;
  if (!absl::SimpleAtoi(*line, &port)) {
    return absl::InternalError(absl::StrCat(what, ": bad port '", *line, "'"));
  }
  return port;
}

// A TCP socket bound to a free loopback port without listening: connects to
// it are refused until it is closed.
absl::StatusOr<std::pair<int, int>> BindRefusingPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError(strerror(errno));
  }
  return std::make_pair(fd, static_cast<int>(ntohs(addr.sin_port)));
}

}  // namespace

SimKeyStats SimStats::Key(const std::string& key) const {
  auto it = keys.find(key);
  return it == keys.end() ? SimKeyStats() : it->second;
}

absl::StatusOr<HttpAnswer> HttpFetch(
    const std::string& url, const std::optional<std::string>& post_body,
    absl::Duration timeout) {
  InitCurlOnce();
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init");
  HttpAnswer answer;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  struct curl_slist* headers = nullptr;
  if (post_body.has_value()) {
    headers = curl_slist_append(headers, "Content-Type: text/plain");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post_body->c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(post_body->size()));
  }
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(url, ": ", curl_easy_strerror(rc)));
  }
  return answer;
}

double MetricValue(const std::string& exposition, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    if (!absl::ConsumePrefix(&line, name)) continue;
    if (line.empty() || (line[0] != '{' && line[0] != ' ')) continue;
    size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    absl::string_view label_text = line.substr(0, space);
    bool match = true;
    for (const auto& [k, v] : labels) {
      if (!absl::StrContains(label_text, absl::StrCat(k, "=\"", v, "\""))) {
        match = false;
        break;
      }
    }
    double value = 0;
    if (match && absl::SimpleAtod(line.substr(space + 1), &value)) {
      sum += value;
    }
  }
  return sum;
}

absl::StatusOr<std::unique_ptr<GatewayProcesses>> GatewayProcesses::Start(
    const Options& options) {
  std::unique_ptr<GatewayProcesses> p(new GatewayProcesses());
  auto refusing = BindRefusingPort();
  if (!refusing.ok()) return refusing.status();
  p->closed_fd_ = refusing->first;

  std::vector<std::string> sim_argv = {
      RunfilePath("tools/upstream_sim/upstream_sim"), "--port=0"};
  if (!options.sim_scenario.empty()) {
    sim_argv.push_back(absl::StrCat("--scenario=", options.sim_scenario));
  }
  auto sim = Subprocess::Start(sim_argv);
  if (!sim.ok()) return sim.status();
  p->sim_ = *std::move(sim);
  auto sim_port =
      ParsePort(p->sim_->WaitForLine("LISTENING ", absl::Seconds(20)), "sim");
  if (!sim_port.ok()) return sim_port.status();
  p->sim_port_ = *sim_port;

  auto gw = Subprocess::Start(
      {RunfilePath("service/echelond"),
       absl::StrCat("--config=", RunfilePath(options.config)),
       "--grpc_address=127.0.0.1:0", "--http_address=127.0.0.1:0",
       "--metrics_address=127.0.0.1:0", "--watch_config=false"},
      {{"ECHELON_SIM_URL", absl::StrCat(p->sim_url(), "/v1")},
       {"ECHELON_SIM_ROOT", p->sim_url()},
       {"ECHELON_CLOSED_URL",
        absl::StrCat("http://127.0.0.1:", refusing->second, "/v1")}});
  if (!gw.ok()) return gw.status();
  p->gateway_ = *std::move(gw);
  auto grpc_port = ParsePort(
      p->gateway_->WaitForLine("LISTENING grpc ", absl::Seconds(30)), "grpc");
  if (!grpc_port.ok()) return grpc_port.status();
  auto http_port = ParsePort(
      p->gateway_->WaitForLine("LISTENING http ", absl::Seconds(10)), "http");
  if (!http_port.ok()) return http_port.status();
  p->http_port_ = *http_port;
  auto metrics_port = ParsePort(
      p->gateway_->WaitForLine("LISTENING metrics ", absl::Seconds(10)),
      "metrics");
  if (!metrics_port.ok()) return metrics_port.status();
  p->metrics_port_ = *metrics_port;

  p->channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", *grpc_port),
                                    grpc::InsecureChannelCredentials());
  if (!p->channel_->WaitForConnected(std::chrono::system_clock::now() +
                                     std::chrono::seconds(10))) {
    return absl::UnavailableError("gateway gRPC port does not connect");
  }
  p->stub_ = v1::Gateway::NewStub(p->channel_);
  return p;
}

GatewayProcesses::~GatewayProcesses() {
  stub_.reset();
  channel_.reset();
  gateway_.reset();
  sim_.reset();
  if (closed_fd_ >= 0) close(closed_fd_);
}

std::string GatewayProcesses::sim_url() const {
  return absl::StrCat("http://127.0.0.1:", sim_port_);
}

absl::StatusOr<SimStats> GatewayProcesses::Stats() {
  return FetchSimStats(sim_url());
}

absl::StatusOr<SimStats> FetchSimStats(const std::string& sim_url) {
  auto answer = HttpFetch(absl::StrCat(sim_url, "/_stats"), std::nullopt);
  if (!answer.ok()) return answer.status();
  if (answer->status != 200) {
    return absl::InternalError(absl::StrCat("/_stats: ", answer->status));
  }
  rapidjson::Document doc;
  doc.Parse(answer->body.c_str(), answer->body.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return absl::InternalError(
        absl::StrCat("/_stats: bad JSON ", answer->body));
  }
  SimStats stats;
  stats.total_attempts = IntMember(doc, "total_attempts");
  stats.now_ms = IntMember(doc, "now_ms");
  auto keys = doc.FindMember("keys");
  if (keys != doc.MemberEnd() && keys->value.IsObject()) {
    for (const auto& m : keys->value.GetObject()) {
      SimKeyStats k;
      k.attempts = IntMember(m.value, "attempts");
      k.active = IntMember(m.value, "active");
      k.max_active = IntMember(m.value, "max_active");
      k.completed = IntMember(m.value, "completed");
      k.client_closed = IntMember(m.value, "client_closed");
      k.server_closed = IntMember(m.value, "server_closed");
      k.last_start_ms = IntMember(m.value, "last_start_ms");
      k.last_close_ms = IntMember(m.value, "last_close_ms");
      stats.keys[m.name.GetString()] = k;
    }
  }
  return stats;
}

SimKeyStats GatewayProcesses::KeyStats(const std::string& key) {
  auto stats = Stats();
  EXPECT_TRUE(stats.ok()) << stats.status();
  if (!stats.ok()) return SimKeyStats();
  return stats->Key(key);
}

absl::Status GatewayProcesses::ResetSim() {
  auto answer = HttpFetch(absl::StrCat(sim_url(), "/_reset"), std::string());
  if (!answer.ok()) return answer.status();
  if (answer->status != 200) {
    return absl::InternalError(absl::StrCat("/_reset: ", answer->status));
  }
  return absl::OkStatus();
}

absl::Status GatewayProcesses::SetScenario(const std::string& key,
                                           const std::string& scenario) {
  InitCurlOnce();
  char* escaped =
      curl_easy_escape(nullptr, key.c_str(), static_cast<int>(key.size()));
  std::string url = absl::StrCat(sim_url(), "/_scenario?key=", escaped);
  curl_free(escaped);
  auto answer = HttpFetch(url, scenario);
  if (!answer.ok()) return answer.status();
  if (answer->status != 200) {
    return absl::InternalError(
        absl::StrCat("/_scenario: ", answer->status, " ", answer->body));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GatewayProcesses::ScrapeMetrics() {
  auto answer =
      HttpFetch(absl::StrCat("http://127.0.0.1:", metrics_port_, "/metrics"),
                std::nullopt);
  if (!answer.ok()) return answer.status();
  if (answer->status != 200) {
    return absl::InternalError(absl::StrCat("/metrics: ", answer->status));
  }
  return answer->body;
}

absl::StatusOr<v1::PoolStatus> GatewayProcesses::PoolStatus(
    const std::string& pool) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  v1::GetPoolStatusRequest req;
  req.set_pool(pool);
  v1::GetPoolStatusResponse resp;
  grpc::Status s = stub_->GetPoolStatus(&ctx, req, &resp);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        s.error_message());
  }
  if (resp.pools_size() != 1) return absl::InternalError("not one pool");
  return resp.pools(0);
}

absl::StatusOr<v1::TaskGroupStatus> GatewayProcesses::TaskGroupStatus(
    const std::string& group) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  v1::GetTaskGroupStatusRequest req;
  req.set_task_group(group);
  v1::GetTaskGroupStatusResponse resp;
  grpc::Status s = stub_->GetTaskGroupStatus(&ctx, req, &resp);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        s.error_message());
  }
  if (resp.task_groups_size() != 1) {
    return absl::InternalError("not one task group");
  }
  return resp.task_groups(0);
}

v1::ExecuteRequest UserRequest(const std::string& target,
                               const std::string& text) {
  v1::ExecuteRequest req;
  req.set_target(target);
  v1::Message* m = req.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content(text);
  return req;
}

std::string Trailer(const grpc::ClientContext& ctx, const std::string& key) {
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find(key);
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

std::string StreamResult::Joined() const {
  std::string out;
  for (const std::string& c : content) out += c;
  return out;
}

StreamResult RunStream(v1::Gateway::Stub& stub, const v1::ExecuteRequest& req,
                       absl::Duration deadline) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, deadline);
  StreamResult result;
  auto reader = stub.Stream(&ctx, req);
  v1::StreamChunk chunk;
  while (reader->Read(&chunk)) {
    switch (chunk.chunk_case()) {
      case v1::StreamChunk::kContentDelta:
        result.content.push_back(chunk.content_delta());
        break;
      case v1::StreamChunk::kToolCallDelta:
        result.tool_calls.push_back(chunk.tool_call_delta());
        break;
      case v1::StreamChunk::kSummary:
        result.saw_summary = true;
        result.summary = chunk.summary();
        break;
      default:
        break;
    }
  }
  result.status = reader->Finish();
  return result;
}

}  // namespace echelon::testing
