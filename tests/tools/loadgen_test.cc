// tools/loadgen against real servers: the upstream simulator (HTTP modes)
// and the benchmark's gRPC echo server. Checks what the benchmark relies
// on: the request counts and rates it reports, and that open-loop latency
// is measured from each request's intended send time, so a server that
// stalls shows up in the percentiles (no coordinated omission). The margins
// are wide: these are properties of the tool, not timings of the machine.
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"
#include "tests/tools/sim_process.h"

namespace echelon {
namespace {

struct LoadgenResult {
  int64_t ok = 0;
  int64_t errors = 0;
  double throughput_rps = 0;
  double p50_us = 0;
  double p90_us = 0;
  double p99_us = 0;
  std::string raw;
};

// Runs loadgen with `flags` and parses the JSON line it ends with.
LoadgenResult RunLoadgen(const std::vector<std::string>& flags) {
  std::string cmd = sim::RunfilesPath("tools/loadgen/loadgen");
  for (const std::string& f : flags) absl::StrAppend(&cmd, " '", f, "'");
  absl::StrAppend(&cmd, " 2>/dev/null");
  LoadgenResult r;
  FILE* out = popen(cmd.c_str(), "r");
  EXPECT_NE(out, nullptr);
  if (out == nullptr) return r;
  char buf[4096];
  std::string last;
  while (fgets(buf, sizeof(buf), out) != nullptr) {
    std::string line(buf);
    if (!line.empty() && line[0] == '{') last = line;
  }
  EXPECT_EQ(pclose(out), 0) << cmd;
  r.raw = last;
  rapidjson::Document doc;
  doc.Parse(last.c_str());
  EXPECT_TRUE(doc.IsObject()) << "no JSON result from: " << cmd;
  if (!doc.IsObject()) return r;
  // "ok"/"errors": the measured window; "total_*" include the warmup.
  r.ok = doc["ok"].GetInt64();
  r.errors = doc["total_errors"].GetInt64();
  r.throughput_rps = doc["throughput_rps"].GetDouble();
  const rapidjson::Value& lat = doc["lat_us"];
  r.p50_us = lat["p50"].GetDouble();
  r.p90_us = lat["p90"].GetDouble();
  r.p99_us = lat["p99"].GetDouble();
  return r;
}

std::vector<std::string> HttpFlags(const sim::SimProcess& sim) {
  return {"--mode=http_unary",
          absl::StrCat("--url=", sim.base_url(), "/v1/chat/completions"),
          "--target=sim-direct", "--headers=Authorization: Bearer sk-test"};
}

// Runs loadgen (an open loop at 100/s: 0.5 s warmup, 4 s measured) while
// the server `pid` stops answering for 600 ms in the middle of the
// measured window (loadgen may take up to 1.5 s to start).
LoadgenResult RunLoadgenWithStall(pid_t pid,
                                  const std::vector<std::string>& flags) {
  std::thread pauser([pid] {
    absl::SleepFor(absl::Milliseconds(2000));
    kill(pid, SIGSTOP);
    absl::SleepFor(absl::Milliseconds(600));
    kill(pid, SIGCONT);
  });
  LoadgenResult r = RunLoadgen(flags);
  pauser.join();
  return r;
}

void ExpectStallCounted(const LoadgenResult& r) {
  EXPECT_EQ(r.errors, 0) << r.raw;
  // 400 requests were due in the measured 4 s, and all were sent on time.
  EXPECT_GE(r.ok, 380) << r.raw;
  EXPECT_LE(r.ok, 410) << r.raw;
  // About 60 of them fell into the pause and waited up to 600 ms from the
  // time they were due: a tenth of all requests waited 200 ms or more. A
  // generator that timed requests from when it got round to sending them
  // would see one slow request, not a tenth of them.
  EXPECT_GE(r.p90_us, 150000) << r.raw;
  EXPECT_GE(r.p99_us, 400000) << r.raw;
  EXPECT_LT(r.p50_us, 150000) << r.raw;
}

TEST(LoadgenTest, ClosedLoopKeepsConcurrencyCallsInFlight) {
  sim::SimProcess::Options options;
  options.scenario = "latency_ms=40";
  auto sim = sim::SimProcess::Start(options);
  ASSERT_TRUE(sim.ok()) << sim.status();
  std::vector<std::string> flags = HttpFlags(**sim);
  flags.insert(flags.end(),
               {"--concurrency=4", "--warmup_s=0.2", "--duration_s=2"});
  LoadgenResult r = RunLoadgen(flags);
  EXPECT_EQ(r.errors, 0) << r.raw;
  // Every answer takes at least 40 ms, so 4 calls in flight cannot exceed
  // 100 per second; far fewer would mean calls were not kept in flight.
  EXPECT_LE(r.throughput_rps, 101) << r.raw;
  EXPECT_GE(r.throughput_rps, 40) << r.raw;
  EXPECT_GE(r.p50_us, 40000) << r.raw;
}

TEST(LoadgenTest, OpenLoopSendsAtTheRateAndMeasuresFromIntendedTimes) {
  auto sim = sim::SimProcess::Start({});
  ASSERT_TRUE(sim.ok()) << sim.status();
  std::vector<std::string> flags = HttpFlags(**sim);
  flags.insert(flags.end(), {"--rate=100", "--warmup_s=0.5", "--duration_s=4"});
  ExpectStallCounted(RunLoadgenWithStall((*sim)->pid(), flags));
}

TEST(LoadgenTest, GrpcOpenLoopMeasuresFromIntendedTimes) {
  sim::SimProcess::Options options;
  options.binary = sim::RunfilesPath("tools/bench/echo_server");
  options.extra_args = {"--port=0"};
  options.listening_prefix = "LISTENING grpc ";
  auto echo = sim::SimProcess::Start(options);
  ASSERT_TRUE(echo.ok()) << echo.status();
  ExpectStallCounted(RunLoadgenWithStall(
      (*echo)->pid(), {"--mode=grpc_unary",
                       absl::StrCat("--address=127.0.0.1:", (*echo)->port()),
                       "--rate=100", "--warmup_s=0.5", "--duration_s=4"}));
}

}  // namespace
}  // namespace echelon
