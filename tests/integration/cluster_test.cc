// Issue #10 on real processes: Redis, the upstream simulator, three echelond
// replicas (tests/integration/testdata/cluster/gateway.yaml) and HAProxy in
// front of them with the documented config (configs/deploy/haproxy.cfg).
//  - A 600 rpm echelon limit holds for the cluster, not per replica.
//  - A 429 with Retry-After seen through one replica stops the other two
//    from sending to that instance.
//  - A breaker opened by failures through one replica is open on all.
//  - Redis killed mid-run: every call still gets an answer (local limits);
//    health and metrics say so; Redis back: sharing resumes.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "grpc_health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/subprocess.h"

namespace echelon::testing {
namespace {

using HealthStatus = grpc::health::v1::HealthCheckResponse;

// A loopback port nobody listens on right now.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

int PortOf(const absl::StatusOr<std::string>& line) {
  int port = 0;
  if (!line.ok() || !absl::SimpleAtoi(*line, &port)) return 0;
  return port;
}

bool WaitForPort(int port, absl::Duration timeout) {
  absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (ok) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

struct Replica {
  std::unique_ptr<Subprocess> process;
  int grpc_port = 0;
  int http_port = 0;
  int metrics_port = 0;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Gateway::Stub> stub;
};

class Cluster {
 public:
  absl::Status Start() {
    redis_port_ = FreePort();
    if (absl::Status s = StartRedis(); !s.ok()) return s;
    auto sim = Subprocess::Start(
        {RunfilePath("tools/upstream_sim/upstream_sim"), "--port=0"});
    if (!sim.ok()) return sim.status();
    sim_ = *std::move(sim);
    sim_port_ = PortOf(sim_->WaitForLine("LISTENING ", absl::Seconds(20)));
    if (sim_port_ == 0) return absl::InternalError("simulator did not start");
    std::string sim_root = absl::StrCat("http://127.0.0.1:", sim_port_);
    std::string prefix = absl::StrCat("echelon-test-", getpid());
    for (int i = 0; i < 3; ++i) {
      Replica r;
      auto p = Subprocess::Start(
          {RunfilePath("service/echelond"),
           absl::StrCat("--config=",
                        RunfilePath("tests/integration/testdata/cluster/"
                                    "gateway.yaml")),
           "--grpc_address=127.0.0.1:0", "--http_address=127.0.0.1:0",
           "--metrics_address=127.0.0.1:0", "--watch_config=false"},
          {{"ECHELON_SIM_URL", absl::StrCat(sim_root, "/v1")},
           {"ECHELON_SIM_ROOT", sim_root},
           {"ECHELON_REDIS_ADDR", absl::StrCat("127.0.0.1:", redis_port_)},
           {"ECHELON_CLUSTER_PREFIX", prefix},
           {"ECHELON_REPLICA", absl::StrCat("r", i + 1)}});
      if (!p.ok()) return p.status();
      r.process = *std::move(p);
      r.grpc_port =
          PortOf(r.process->WaitForLine("LISTENING grpc ", absl::Seconds(30)));
      r.http_port =
          PortOf(r.process->WaitForLine("LISTENING http ", absl::Seconds(10)));
      r.metrics_port = PortOf(
          r.process->WaitForLine("LISTENING metrics ", absl::Seconds(10)));
      if (r.grpc_port == 0 || r.http_port == 0 || r.metrics_port == 0) {
        return absl::InternalError("a replica did not start");
      }
      r.channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", r.grpc_port),
                                      grpc::InsecureChannelCredentials());
      r.stub = v1::Gateway::NewStub(r.channel);
      replicas_.push_back(std::move(r));
    }
    lb_port_ = FreePort();
    int lb_http = FreePort();
    std::map<std::string, std::string> env = {
        {"ECHELON_LB_GRPC", absl::StrCat("127.0.0.1:", lb_port_)},
        {"ECHELON_LB_HTTP", absl::StrCat("127.0.0.1:", lb_http)}};
    for (int i = 0; i < 3; ++i) {
      env[absl::StrCat("ECHELON_R", i + 1, "_GRPC")] =
          absl::StrCat("127.0.0.1:", replicas_[i].grpc_port);
      env[absl::StrCat("ECHELON_R", i + 1, "_HTTP")] =
          absl::StrCat("127.0.0.1:", replicas_[i].http_port);
    }
    auto lb = Subprocess::Start({"/usr/sbin/haproxy", "-db", "-f",
                                 RunfilePath("configs/deploy/haproxy.cfg")},
                                env);
    if (!lb.ok()) return lb.status();
    haproxy_ = *std::move(lb);
    if (!WaitForPort(lb_port_, absl::Seconds(10))) {
      return absl::InternalError("haproxy does not listen");
    }
    lb_channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", lb_port_),
                                      grpc::InsecureChannelCredentials());
    lb_stub_ = v1::Gateway::NewStub(lb_channel_);
    for (int i = 0; i < 3; ++i) {
      if (!WaitConnected(i, true, absl::Seconds(10))) {
        return absl::InternalError("a replica did not connect to Redis");
      }
    }
    return absl::OkStatus();
  }

  absl::Status StartRedis() {
    auto r = Subprocess::Start(
        {"/usr/bin/redis-server", "--port", absl::StrCat(redis_port_), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no"});
    if (!r.ok()) return r.status();
    redis_ = *std::move(r);
    if (!WaitForPort(redis_port_, absl::Seconds(10))) {
      return absl::InternalError("redis-server does not listen");
    }
    return absl::OkStatus();
  }
  void KillRedis() {
    redis_->Signal(SIGKILL);
    (void)redis_->Wait(absl::Seconds(5));
    redis_.reset();
  }

  double Metric(int replica, const std::string& name,
                const std::map<std::string, std::string>& labels = {}) {
    auto a = HttpFetch(
        absl::StrCat("http://127.0.0.1:", replicas_[replica].metrics_port,
                     "/metrics"),
        std::nullopt);
    if (!a.ok() || a->status != 200) return -1;
    return MetricValue(a->body, name, labels);
  }
  bool WaitConnected(int replica, bool connected, absl::Duration timeout) {
    absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (Metric(replica, "echelon_cluster_connected") ==
          (connected ? 1.0 : 0.0)) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  // Polls until the cluster entry says `want` (health is recomputed every
  // second) or `timeout` passes; returns the last answer.
  HealthStatus::ServingStatus WaitClusterHealth(
      int replica, HealthStatus::ServingStatus want, absl::Duration timeout) {
    absl::Time end = absl::Now() + timeout;
    HealthStatus::ServingStatus got = ClusterHealth(replica);
    while (got != want && absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(100));
      got = ClusterHealth(replica);
    }
    return got;
  }
  HealthStatus::ServingStatus ClusterHealth(int replica) {
    auto health = grpc::health::v1::Health::NewStub(replicas_[replica].channel);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("echelon.cluster");
    HealthStatus resp;
    if (!health->Check(&ctx, req, &resp).ok()) return HealthStatus::UNKNOWN;
    return resp.status();
  }

  grpc::Status Execute(v1::Gateway::Stub& stub, const std::string& target) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(10));
    v1::ExecuteResponse resp;
    return stub.Execute(&ctx, UserRequest(target), &resp);
  }

  SimKeyStats Key(const std::string& key) {
    auto s = FetchSimStats(absl::StrCat("http://127.0.0.1:", sim_port_));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->Key(key) : SimKeyStats();
  }

  v1::Gateway::Stub& lb() { return *lb_stub_; }
  Replica& replica(int i) { return replicas_[static_cast<size_t>(i)]; }
  int redis_port() const { return redis_port_; }

 private:
  int redis_port_ = 0;
  int sim_port_ = 0;
  int lb_port_ = 0;
  std::unique_ptr<Subprocess> redis_;
  std::unique_ptr<Subprocess> sim_;
  std::vector<Replica> replicas_;
  std::unique_ptr<Subprocess> haproxy_;
  std::shared_ptr<grpc::Channel> lb_channel_;
  std::unique_ptr<v1::Gateway::Stub> lb_stub_;
};

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new Cluster();
    absl::Status s = cluster_->Start();
    if (!s.ok()) {
      delete cluster_;
      cluster_ = nullptr;
      FAIL() << "cluster did not start: " << s;
    }
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(cluster_, nullptr); }

  static Cluster* cluster_;
};

Cluster* ClusterTest::cluster_ = nullptr;

// Calls `target` through the load balancer at `rate` per second for
// `duration`, each call at its intended send time, from `threads` threads
// (calls take ~1 ms; several threads keep the schedule when one stalls).
// Returns the number of calls per status code.
std::map<grpc::StatusCode, int> Paced(v1::Gateway::Stub& stub,
                                      const std::string& target, double rate,
                                      absl::Duration duration,
                                      std::atomic<int>* sent = nullptr) {
  const int kThreads = 4;
  int total = static_cast<int>(rate * absl::ToDoubleSeconds(duration));
  absl::Time start = absl::Now();
  std::vector<std::map<grpc::StatusCode, int>> per(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < total; i += kThreads) {
        absl::Time at = start + absl::Seconds(i / rate);
        absl::Duration wait = at - absl::Now();
        if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
        grpc::ClientContext ctx;
        SetDeadline(&ctx, absl::Seconds(10));
        v1::ExecuteResponse resp;
        if (sent != nullptr) sent->fetch_add(1);
        grpc::Status st = stub.Execute(&ctx, UserRequest(target), &resp);
        per[static_cast<size_t>(t)][st.error_code()]++;
      }
    });
  }
  for (auto& th : threads) th.join();
  std::map<grpc::StatusCode, int> out;
  for (const auto& m : per) {
    for (const auto& [code, n] : m) out[code] += n;
  }
  return out;
}

std::string Describe(const std::map<grpc::StatusCode, int>& codes) {
  std::string out;
  for (const auto& [code, n] : codes) {
    absl::StrAppend(&out, "code ", static_cast<int>(code), ": ", n, "; ");
  }
  return out;
}

TEST_F(ClusterTest, EchelonRpmLimitHoldsForTheWholeCluster) {
  // 600 rpm = 10/s with a bucket of 30; offered 30/s for 15 s through the
  // balancer, which spreads the calls over the three replicas.
  const double kRate = 30;
  const absl::Duration kFor = absl::Seconds(15);
  double local_before = 0;
  for (int i = 0; i < 3; ++i) {
    local_before += cluster_->Metric(i, "echelon_cluster_decisions_total",
                                     {{"result", "local"}});
  }
  absl::Time start = absl::Now();
  auto codes = Paced(cluster_->lb(), "limited", kRate, kFor);
  double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  int ok = codes[grpc::StatusCode::OK];
  int limited = codes[grpc::StatusCode::RESOURCE_EXHAUSTED];
  EXPECT_EQ(ok + limited, static_cast<int>(kRate * absl::ToDoubleSeconds(kFor)))
      << Describe(codes);
  // The bucket starts full (30) and refills at 10/s while calls arrive.
  double expected = 30 + 10 * elapsed;
  std::printf(
      "cluster limit: offered %d, accepted %d, expected %.1f (%.1f s)\n",
      ok + limited, ok, expected, elapsed);
  EXPECT_NEAR(ok, expected, 0.05 * expected)
      << Describe(codes) << " elapsed " << elapsed << " s";
  double local_after = 0;
  std::vector<double> served(3);
  for (int i = 0; i < 3; ++i) {
    local_after += cluster_->Metric(i, "echelon_cluster_decisions_total",
                                    {{"result", "local"}});
    served[static_cast<size_t>(i)] =
        cluster_->Metric(i, "echelon_requests_total", {{"target", "limited"}});
  }
  // A stray decision may miss its budget on a loaded machine (and be made
  // on the local share); more than a few would mean Redis was not used.
  EXPECT_LE(local_after - local_before, 0.02 * (ok + limited))
      << "decisions made without Redis";
  // Every replica took its part of the load.
  for (double n : served) EXPECT_GT(n, kRate * 2);
}

TEST_F(ClusterTest, RetryAfterSeenByOneReplicaStopsTheOthers) {
  // Through replica 1 until instance a has answered 429 (Retry-After 30 s).
  for (int i = 0; i < 4 && cluster_->Key("c2a").attempts == 0; ++i) {
    EXPECT_TRUE(cluster_->Execute(*cluster_->replica(0).stub, "cooldown").ok());
  }
  int64_t seen = cluster_->Key("c2a").attempts;
  ASSERT_GE(seen, 1);
  absl::SleepFor(absl::Milliseconds(100));
  for (int i = 0; i < 10; ++i) {
    for (int r : {1, 2}) {
      grpc::Status st =
          cluster_->Execute(*cluster_->replica(r).stub, "cooldown");
      EXPECT_TRUE(st.ok()) << st.error_message();
    }
  }
  EXPECT_EQ(cluster_->Key("c2a").attempts, seen)
      << "another replica sent to the cooling-down instance";
  EXPECT_GE(cluster_->Key("c2b").attempts, 20);
}

TEST_F(ClusterTest, BreakerOpenedThroughOneReplicaIsOpenOnAll) {
  for (int i = 0; i < 3; ++i) {
    grpc::Status st = cluster_->Execute(*cluster_->replica(0).stub, "breaker");
    EXPECT_TRUE(st.ok()) << st.error_message();  // served by the backup
  }
  int64_t failures = cluster_->Key("c3").attempts;
  EXPECT_EQ(failures, 3);
  absl::SleepFor(absl::Milliseconds(100));
  for (int r = 0; r < 3; ++r) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    v1::GetTaskGroupStatusRequest req;
    req.set_task_group("breaker");
    v1::GetTaskGroupStatusResponse resp;
    grpc::Status st =
        cluster_->replica(r).stub->GetTaskGroupStatus(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(resp.task_groups_size(), 1);
    ASSERT_GE(resp.task_groups(0).echelons_size(), 1);
    EXPECT_EQ(resp.task_groups(0).echelons(0).breaker(), v1::BREAKER_STATE_OPEN)
        << "replica " << r + 1;
  }
  for (int r : {1, 2}) {
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(
          cluster_->Execute(*cluster_->replica(r).stub, "breaker").ok());
    }
  }
  EXPECT_EQ(cluster_->Key("c3").attempts, failures)
      << "a replica tried the echelon whose breaker is open";
}

TEST_F(ClusterTest, LosingRedisDegradesToLocalLimitsAndRecovers) {
  std::atomic<int> sent{0};
  std::map<grpc::StatusCode, int> codes;
  std::thread load([&] {
    codes = Paced(cluster_->lb(), "limited", 20, absl::Seconds(8), &sent);
  });
  absl::SleepFor(absl::Seconds(2));
  cluster_->KillRedis();
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(cluster_->WaitConnected(i, false, absl::Seconds(3)))
        << "replica " << i + 1 << " does not report the lost store";
  }
  EXPECT_EQ(cluster_->WaitClusterHealth(0, HealthStatus::NOT_SERVING,
                                        absl::Seconds(3)),
            HealthStatus::NOT_SERVING);
  absl::SleepFor(absl::Seconds(2));
  ASSERT_TRUE(cluster_->StartRedis().ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(cluster_->WaitConnected(i, true, absl::Seconds(5)))
        << "replica " << i + 1 << " did not reconnect";
  }
  EXPECT_EQ(
      cluster_->WaitClusterHealth(0, HealthStatus::SERVING, absl::Seconds(3)),
      HealthStatus::SERVING);
  load.join();
  // No call lost: each got an answer, and only the limit refused any.
  int answered = 0;
  for (const auto& [code, n] : codes) answered += n;
  EXPECT_EQ(answered, sent.load());
  EXPECT_EQ(
      codes[grpc::StatusCode::OK] + codes[grpc::StatusCode::RESOURCE_EXHAUSTED],
      answered)
      << Describe(codes);
  EXPECT_GT(codes[grpc::StatusCode::OK], 0);
  double local = 0;
  for (int i = 0; i < 3; ++i) {
    local += cluster_->Metric(i, "echelon_cluster_decisions_total",
                              {{"result", "local"}});
  }
  EXPECT_GT(local, 0) << "nothing was decided locally while Redis was down";
  // Sharing resumed: a fresh decision goes through the store again.
  double shared_before = 0, shared_after = 0;
  for (int i = 0; i < 3; ++i) {
    shared_before += cluster_->Metric(i, "echelon_cluster_decisions_total",
                                      {{"result", "allowed"}}) +
                     cluster_->Metric(i, "echelon_cluster_decisions_total",
                                      {{"result", "refused"}});
  }
  for (int i = 0; i < 6; ++i)
    (void)cluster_->Execute(cluster_->lb(), "limited");
  for (int i = 0; i < 3; ++i) {
    shared_after += cluster_->Metric(i, "echelon_cluster_decisions_total",
                                     {{"result", "allowed"}}) +
                    cluster_->Metric(i, "echelon_cluster_decisions_total",
                                     {{"result", "refused"}});
  }
  EXPECT_EQ(shared_after - shared_before, 6);
}

}  // namespace
}  // namespace echelon::testing
