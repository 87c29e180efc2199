// Operations against the real binary: a real Prometheus server scrapes the
// exporter and answers a query for an echelon_ series; promtool accepts the
// exposition; grpc.health.v1 flips a target to NOT_SERVING when all its
// instances fail; SIGTERM drains streams in flight and refuses new calls.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc_health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/subprocess.h"

namespace echelon::testing {
namespace {

// A bound TCP port on 127.0.0.1. With `listen` false nothing accepts on it,
// so connections are refused while the socket stays open.
struct Port {
  int fd = -1;
  int port = 0;
  ~Port() {
    if (fd >= 0) close(fd);
  }
};

std::unique_ptr<Port> BindPort() {
  auto p = std::make_unique<Port>();
  p->fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(p->fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return nullptr;
  }
  socklen_t len = sizeof(addr);
  getsockname(p->fd, reinterpret_cast<sockaddr*>(&addr), &len);
  p->port = ntohs(addr.sin_port);
  return p;
}

class OperationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    closed_ = BindPort();
    ASSERT_NE(closed_, nullptr);
    auto sim =
        Subprocess::Start({RunfilePath("tools/upstream_sim/upstream_sim"),
                           "--port=0", "--scenario=tokens=10;itl_ms=100"});
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    auto sim_port = sim_->WaitForLine("LISTENING ", absl::Seconds(20));
    ASSERT_TRUE(sim_port.ok()) << sim_port.status();
    auto gw = Subprocess::Start(
        {RunfilePath("service/echelond"),
         absl::StrCat("--config=", RunfilePath("tests/integration/"
                                               "ops_testdata/gateway.yaml")),
         "--grpc_address=127.0.0.1:0", "--http_address=127.0.0.1:0",
         "--metrics_address=127.0.0.1:0", "--watch_config=false",
         "--drain_timeout=20s"},
        {{"ECHELON_SIM_URL",
          absl::StrCat("http://127.0.0.1:", *sim_port, "/v1")},
         {"ECHELON_CLOSED_URL",
          absl::StrCat("http://127.0.0.1:", closed_->port, "/v1")}});
    ASSERT_TRUE(gw.ok()) << gw.status();
    gateway_ = std::move(*gw);
    auto grpc_port =
        gateway_->WaitForLine("LISTENING grpc ", absl::Seconds(30));
    ASSERT_TRUE(grpc_port.ok()) << grpc_port.status();
    auto metrics_port =
        gateway_->WaitForLine("LISTENING metrics ", absl::Seconds(5));
    ASSERT_TRUE(metrics_port.ok()) << metrics_port.status();
    metrics_url_ = absl::StrCat("http://127.0.0.1:", *metrics_port, "/metrics");
    metrics_port_ = *metrics_port;
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", *grpc_port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Gateway::NewStub(channel_);
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus Health(
      const std::string& service) {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = health->Check(&ctx, req, &resp);
    if (!s.ok()) return grpc::health::v1::HealthCheckResponse::UNKNOWN;
    return resp.status();
  }

  std::unique_ptr<Port> closed_;
  std::unique_ptr<Subprocess> sim_;
  std::unique_ptr<Subprocess> gateway_;
  std::string metrics_url_;
  std::string metrics_port_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

TEST_F(OperationsTest, RealPrometheusScrapesAnEchelonSeries) {
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(20));
    v1::ExecuteResponse resp;
    ASSERT_TRUE(stub_->Execute(&ctx, UserRequest("good-pool"), &resp).ok());
  }
  auto web = BindPort();
  ASSERT_NE(web, nullptr);
  int web_port = web->port;
  web.reset();  // Prometheus binds it next
  std::string dir = absl::StrCat(getenv("TEST_TMPDIR"), "/prometheus");
  ASSERT_EQ(system(absl::StrCat("mkdir -p ", dir).c_str()), 0);
  {
    std::ofstream cfg(dir + "/prometheus.yml");
    cfg << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        << "scrape_configs:\n  - job_name: echelon\n    static_configs:\n"
        << "      - targets: ['127.0.0.1:" << metrics_port_ << "']\n";
  }
  auto prom = Subprocess::Start(
      {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
       "--storage.tsdb.path=" + dir + "/data",
       absl::StrCat("--web.listen-address=127.0.0.1:", web_port),
       "--log.level=warn"});
  ASSERT_TRUE(prom.ok()) << prom.status();
  std::string query =
      absl::StrCat("http://127.0.0.1:", web_port,
                   "/api/v1/query?query=echelon_requests_total");
  std::string last;
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  bool found = false;
  while (absl::Now() < deadline && !found) {
    auto answer = HttpFetch(query, std::nullopt, absl::Seconds(5));
    if (answer.ok() && answer->status == 200) {
      last = answer->body;
      found =
          absl::StrContains(last, "\"__name__\":\"echelon_requests_total\"") &&
          absl::StrContains(last, "\"target\":\"good-pool\"");
    }
    if (!found) absl::SleepFor(absl::Milliseconds(500));
  }
  EXPECT_TRUE(found) << "Prometheus never returned the series; last answer: "
                     << last;
}

TEST_F(OperationsTest, PromtoolAcceptsTheExposition) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(20));
  v1::ExecuteResponse resp;
  ASSERT_TRUE(stub_->Execute(&ctx, UserRequest("good-pool"), &resp).ok());
  auto answer = HttpFetch(metrics_url_, std::nullopt);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->status, 200);
  EXPECT_GE(MetricValue(answer->body, "echelon_requests_total",
                        {{"target", "good-pool"}, {"outcome", "ok"}}),
            1);
  std::string file = absl::StrCat(getenv("TEST_TMPDIR"), "/metrics.txt");
  std::ofstream(file) << answer->body;
  std::string out_file = file + ".promtool";
  int rc = system(absl::StrCat("/usr/bin/promtool check metrics < ", file,
                               " > ", out_file, " 2>&1")
                      .c_str());
  std::ifstream in(out_file);
  std::string report((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << report;
}

TEST_F(OperationsTest, HealthOfATargetGoesNotServingWhenAllInstancesFail) {
  using Status = grpc::health::v1::HealthCheckResponse;
  EXPECT_EQ(Health(""), Status::SERVING);
  EXPECT_EQ(Health("good-pool"), Status::SERVING);
  EXPECT_EQ(Health("dead-pool"), Status::SERVING);  // no evidence yet
  for (int i = 0; i < 4; ++i) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(10));
    v1::ExecuteResponse resp;
    grpc::Status s = stub_->Execute(&ctx, UserRequest("dead-pool"), &resp);
    EXPECT_FALSE(s.ok());
  }
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  Status::ServingStatus dead = Health("dead-pool");
  while (dead != Status::NOT_SERVING && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
    dead = Health("dead-pool");
  }
  EXPECT_EQ(dead, Status::NOT_SERVING);
  EXPECT_EQ(Health("good-pool"), Status::SERVING);
  EXPECT_EQ(Health(""), Status::SERVING);
}

TEST_F(OperationsTest, SigtermDrainsStreamsInFlightAndRefusesNewCalls) {
  // 10 tokens, 100 ms apart: about a second of streaming.
  StreamResult result;
  std::thread client([&] {
    result = RunStream(*stub_, UserRequest("good-pool"), absl::Seconds(30));
  });
  // Let the stream start, then ask the gateway to stop.
  absl::SleepFor(absl::Milliseconds(300));
  gateway_->Signal(SIGTERM);
  absl::SleepFor(absl::Milliseconds(200));
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    v1::ExecuteResponse resp;
    grpc::Status s = stub_->Execute(&ctx, UserRequest("good-pool"), &resp);
    EXPECT_FALSE(s.ok()) << "a call after SIGTERM was served";
  }
  client.join();
  EXPECT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.Joined(),
            "tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8 tok9 tok10");
  EXPECT_TRUE(result.saw_summary);
  auto status = gateway_->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

}  // namespace
}  // namespace echelon::testing
