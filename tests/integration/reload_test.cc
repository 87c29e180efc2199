// Hot reload under load, against the real binary: 200 concurrent streams run
// while the config is replaced 20 times, alternately valid and invalid.
// Every stream must end with a status (none lost), valid reloads apply,
// invalid ones are rejected whole with their problems, and no request runs
// on a half-applied config (all its attempts come from one generation).
// Also: a file change alone (inotify) and SIGHUP trigger a reload.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/subprocess.h"

namespace echelon::testing {
namespace {

// A complete config whose two instances are named after `generation`; an
// invalid one carries a misspelt key.
std::string ConfigText(int generation, bool valid) {
  return absl::StrCat(R"(providers:
  - name: sim
    kind: openai
    base_url: ${ECHELON_SIM_URL}
models:
  - name: m
    provider: sim
    upstream_model: m
    instances:
      - id: g)",
                      generation, "a\n      - id: g", generation, R"(b
task_groups:
  - name: grp
    echelons:
      - name: primary
        models: [m]
pools:
  - name: p
    task_groups: [grp]
    )",
                      valid ? "strategy" : "stratgy",
                      generation % 2 ? ": random\n" : ": round_robin\n");
}

void WriteConfig(const std::string& path, int generation, bool valid) {
  // Write then rename, as a deploy tool would, so a reader never sees a
  // half-written file.
  std::string tmp = path + ".tmp";
  std::ofstream(tmp) << ConfigText(generation, valid);
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0);
}

// "m/g7a" -> 7; -1 when the id is not of that form.
int Generation(const std::string& instance) {
  size_t g = instance.find("/g");
  if (g == std::string::npos) return -1;
  return std::atoi(instance.c_str() + g + 2);
}

class ReloadTest : public ::testing::Test {
 protected:
  void Start(bool watch) {
    dir_ = absl::StrCat(getenv("TEST_TMPDIR"), "/config-", watch);
    ASSERT_EQ(system(absl::StrCat("mkdir -p ", dir_).c_str()), 0);
    config_ = dir_ + "/gateway.yaml";
    WriteConfig(config_, 0, true);
    auto sim =
        Subprocess::Start({RunfilePath("tools/upstream_sim/upstream_sim"),
                           "--port=0", "--scenario=tokens=20;itl_ms=25"});
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    auto sim_port = sim_->WaitForLine("LISTENING ", absl::Seconds(20));
    ASSERT_TRUE(sim_port.ok()) << sim_port.status();
    auto gw = Subprocess::Start(
        {RunfilePath("service/echelond"), "--config=" + config_,
         "--grpc_address=127.0.0.1:0",
         "--http_address=", "--metrics_address=", "--log_level=warning",
         absl::StrCat("--watch_config=", watch ? "true" : "false")},
        {{"ECHELON_SIM_URL",
          absl::StrCat("http://127.0.0.1:", *sim_port, "/v1")}});
    ASSERT_TRUE(gw.ok()) << gw.status();
    gateway_ = std::move(*gw);
    auto port = gateway_->WaitForLine("LISTENING grpc ", absl::Seconds(30));
    ASSERT_TRUE(port.ok()) << port.status();
    grpc::ChannelArguments args;
    // Separate connections, so 200 streams do not queue behind one
    // HTTP/2 connection's stream limit.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    for (int i = 0; i < 4; ++i) {
      args.SetInt("echelon.test.channel", i);
      stubs_.push_back(v1::Gateway::NewStub(
          grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", *port),
                                    grpc::InsecureChannelCredentials(), args)));
    }
  }

  // Instance ids of pool "p" as the gateway reports them now.
  std::vector<std::string> PoolInstances() {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    v1::GetPoolStatusRequest req;
    req.set_pool("p");
    v1::GetPoolStatusResponse resp;
    std::vector<std::string> ids;
    if (!stubs_[0]->GetPoolStatus(&ctx, req, &resp).ok()) return ids;
    for (const auto& i : resp.pools(0).instances()) ids.push_back(i.id());
    return ids;
  }

  bool WaitForGeneration(int generation) {
    absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline) {
      for (const std::string& id : PoolInstances()) {
        if (Generation(id) == generation) return true;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  std::string dir_;
  std::string config_;
  std::unique_ptr<Subprocess> sim_;
  std::unique_ptr<Subprocess> gateway_;
  std::vector<std::unique_ptr<v1::Gateway::Stub>> stubs_;
};

TEST_F(ReloadTest, TwentyReloadsUnderTwoHundredStreamsLoseNothing) {
  Start(/*watch=*/false);
  constexpr int kWorkers = 200;
  const std::string kContent = [] {
    std::string s = "tok1";
    for (int i = 2; i <= 20; ++i) absl::StrAppend(&s, " tok", i);
    return s;
  }();

  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  absl::Mutex mu;
  int ok = 0;
  std::vector<std::string> problems;  // every non-OK or inconsistent stream
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      while (!stop.load()) {
        started.fetch_add(1);
        StreamResult r = RunStream(*stubs_[w % stubs_.size()], UserRequest("p"),
                                   absl::Seconds(30));
        std::string problem;
        if (!r.status.ok()) {
          problem = absl::StrCat("status ", r.status.error_code(), ": ",
                                 r.status.error_message());
        } else if (r.Joined() != kContent || !r.saw_summary) {
          problem = "incomplete content: " + r.Joined();
        } else {
          int gen = Generation(r.summary.instance());
          for (const v1::Attempt& a : r.summary.attempts()) {
            if (Generation(a.instance()) != gen) {
              problem =
                  absl::StrCat("attempts from two configs: ", a.instance(),
                               " and ", r.summary.instance());
            }
          }
          if (gen < 0) problem = "unknown instance " + r.summary.instance();
        }
        absl::MutexLock lock(&mu);
        if (problem.empty()) {
          ++ok;
        } else {
          problems.push_back(problem);
        }
      }
    });
  }
  // Let every worker get a stream going, then reload 20 times.
  absl::SleepFor(absl::Milliseconds(500));
  int applied = 0;
  int rejected = 0;
  for (int i = 1; i <= 20; ++i) {
    bool valid = i % 2 == 1;
    WriteConfig(config_, i, valid);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(20));
    v1::ReloadConfigResponse resp;
    grpc::Status s =
        stubs_[0]->ReloadConfig(&ctx, v1::ReloadConfigRequest(), &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    if (valid) {
      EXPECT_TRUE(resp.applied()) << "generation " << i;
      EXPECT_EQ(resp.problems_size(), 0);
      applied += resp.applied();
    } else {
      EXPECT_FALSE(resp.applied()) << "generation " << i;
      ASSERT_GE(resp.problems_size(), 1);
      EXPECT_TRUE(absl::StrContains(resp.problems(0), "stratgy"))
          << resp.problems(0);
      EXPECT_TRUE(absl::StrContains(resp.problems(0), "did you mean"))
          << resp.problems(0);
      rejected += !resp.applied();
    }
    absl::SleepFor(absl::Milliseconds(150));
  }
  stop.store(true);
  for (std::thread& t : workers) t.join();

  EXPECT_EQ(applied, 10);
  EXPECT_EQ(rejected, 10);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(ok + static_cast<int>(problems.size()), started.load())
      << "a stream ended without a status";
  EXPECT_GE(ok, kWorkers);
  EXPECT_TRUE(problems.empty())
      << problems.size() << " streams went wrong, first: " << problems[0];
  // The last valid generation (19) is the one serving.
  for (const std::string& id : PoolInstances()) {
    EXPECT_EQ(Generation(id), 19) << id;
  }
}

TEST_F(ReloadTest, FileChangeAndSighupBothReload) {
  Start(/*watch=*/true);
  WriteConfig(config_, 1, true);
  EXPECT_TRUE(WaitForGeneration(1)) << "inotify did not reload";
  // An invalid file is rejected; generation 1 keeps serving.
  WriteConfig(config_, 2, false);
  absl::SleepFor(absl::Seconds(1));
  for (const std::string& id : PoolInstances()) EXPECT_EQ(Generation(id), 1);
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(20));
  v1::ExecuteResponse resp;
  EXPECT_TRUE(stubs_[0]->Execute(&ctx, UserRequest("p"), &resp).ok());
  EXPECT_EQ(Generation(resp.instance()), 1);
  // SIGHUP reloads too (the watcher would also fire; either way the file's
  // generation must end up serving).
  WriteConfig(config_, 3, true);
  gateway_->Signal(SIGHUP);
  EXPECT_TRUE(WaitForGeneration(3)) << "SIGHUP did not reload";
}

}  // namespace
}  // namespace echelon::testing
