// Micro-benchmark (not a test; prints a table, never fails on timing): the
// time of one RedisSharedState::Acquire round trip on loopback against a
// real redis-server, sequential and with several decisions in flight.
//   bazel run -c opt //tests/adapters:redis_shared_state_bench
#include <algorithm>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "adapters/event_loop.h"
#include "adapters/redis_shared_state.h"
#include "tests/adapters/redis_server.h"

namespace echelon {
namespace {

struct Result {
  const char* name;
  int in_flight;
  std::vector<double> us;  // per decision
  double seconds = 0;
  int local = 0;
};

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// `total` decisions, keeping `in_flight` outstanding, all on the loop.
Result Run(EpollEventLoop& loop, RedisSharedState& state, const char* name,
           RateLimitAlgorithm algorithm, int in_flight, int total) {
  Result r{name, in_flight, {}, 0, 0};
  SharedLimit limit;
  limit.key = std::string("bench/") + name;
  limit.limits.algorithm = algorithm;
  limit.limits.requests_per_minute = 1'000'000'000;
  limit.limits.tokens_per_minute = 1'000'000'000;
  absl::Notification done;
  struct Driver {
    EpollEventLoop* loop;
    RedisSharedState* state;
    SharedLimit limit;
    Result* r;
    int started = 0, finished = 0, total = 0;
    absl::Time begin;
    absl::Notification* done;
    void Next() {
      if (started == total) return;
      ++started;
      const absl::Time t0 = absl::Now();
      state->Acquire(limit, 100, [this, t0](SharedDecision d) {
        r->us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
        if (d.kind == SharedDecision::Kind::kLocal) ++r->local;
        if (++finished == total) {
          r->seconds = absl::ToDoubleSeconds(absl::Now() - begin);
          done->Notify();
          return;
        }
        Next();
      });
    }
  } driver{&loop, &state, limit, &r, 0, 0, total, absl::Now(), &done};
  loop.Post([&] {
    driver.begin = absl::Now();
    for (int i = 0; i < in_flight; ++i) driver.Next();
  });
  done.WaitForNotification();
  return r;
}

int Main() {
  auto server = testing::RedisServer::Start();
  if (!server.ok()) {
    std::fprintf(stderr, "redis-server: %s\n",
                 server.status().ToString().c_str());
    return 1;
  }
  auto loop = EpollEventLoop::Create({});
  if (!loop.ok()) return 1;
  (*loop)->Start();
  ClusterConfig config;
  config.address = (*server)->address();
  config.replica_id = "bench";
  config.decision_timeout = absl::Seconds(1);  // measure, do not cut off
  auto state = std::make_unique<RedisSharedState>(config, **loop, nullptr,
                                                  [](absl::string_view) {});
  state->Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool up = false;
  while (!up && absl::Now() < deadline) {
    absl::Notification n;
    (*loop)->Post([&] {
      up = state->connected();
      n.Notify();
    });
    n.WaitForNotification();
    if (!up) absl::SleepFor(absl::Milliseconds(5));
  }
  if (!up) {
    std::fprintf(stderr, "not connected\n");
    return 1;
  }
  std::vector<Result> results;
  Run(**loop, *state, "warmup", RateLimitAlgorithm::kTokenBucket, 1, 500);
  for (int in_flight : {1, 16, 64}) {
    results.push_back(Run(**loop, *state, "token_bucket",
                          RateLimitAlgorithm::kTokenBucket, in_flight, 5000));
    results.push_back(Run(**loop, *state, "sliding_window",
                          RateLimitAlgorithm::kSlidingWindow, in_flight, 5000));
  }
  std::printf(
      "Acquire round trip, loopback redis-server (EVALSHA per decision)\n");
  std::printf(
      "| algorithm | in flight | decisions | p50 us | p90 us | p99 us | "
      "decisions/s | local |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const Result& r : results) {
    std::printf("| %s | %d | %zu | %.0f | %.0f | %.0f | %.0f | %d |\n", r.name,
                r.in_flight, r.us.size(), Pct(r.us, 0.5), Pct(r.us, 0.9),
                Pct(r.us, 0.99), r.us.size() / r.seconds, r.local);
  }
  absl::Notification gone;
  (*loop)->Post([&] {
    state.reset();
    gone.Notify();
  });
  gone.WaitForNotification();
  (*loop)->Stop();
  return 0;
}

}  // namespace
}  // namespace echelon

int main() { return echelon::Main(); }
