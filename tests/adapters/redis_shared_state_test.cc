// RedisSharedState and RedisClient against a real redis-server on loopback,
// with a real EpollEventLoop. Integration-style: the tests wait for real I/O
// with bounded polling; no sleep is an assertion about timing.
#include "adapters/redis_shared_state.h"

#include <hiredis/hiredis.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "adapters/event_loop.h"
#include "adapters/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/adapters/redis_server.h"

namespace echelon {
namespace {

using ::echelon::testing::RedisServer;
using ::echelon::testing::SyncReply;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kWait = absl::Seconds(10);

// Records what the adapter reports; called on the loop thread, read on the
// test thread.
class RecordingObserver : public SharedStateObserver {
 public:
  void OnConnected() override {
    absl::MutexLock l(&mu_);
    ++connects_;
  }
  void OnDisconnected(const std::string& reason) override {
    absl::MutexLock l(&mu_);
    disconnects_.push_back(reason);
  }
  void OnDecision(SharedDecision::Kind kind,
                  absl::string_view reason) override {
    absl::MutexLock l(&mu_);
    decisions_.push_back(
        absl::StrCat(SharedDecisionKindName(kind), "/", reason));
  }
  void OnEvent(Direction direction, SharedEventKind kind) override {
    absl::MutexLock l(&mu_);
    events_.push_back(absl::StrCat(SharedEventDirectionName(direction), "/",
                                   SharedEventKindName(kind)));
  }
  int connects() {
    absl::MutexLock l(&mu_);
    return connects_;
  }
  std::vector<std::string> disconnects() {
    absl::MutexLock l(&mu_);
    return disconnects_;
  }
  std::vector<std::string> decisions() {
    absl::MutexLock l(&mu_);
    return decisions_;
  }
  std::vector<std::string> events() {
    absl::MutexLock l(&mu_);
    return events_;
  }

 private:
  absl::Mutex mu_;
  int connects_ = 0;
  std::vector<std::string> disconnects_;
  std::vector<std::string> decisions_;
  std::vector<std::string> events_;
};

struct Replica {
  std::unique_ptr<RedisSharedState> state;
  RecordingObserver observer;
  absl::Mutex mu;
  std::vector<SharedEvent> received;
  std::vector<std::string> logs;

  std::vector<SharedEvent> Received() {
    absl::MutexLock l(&mu);
    return received;
  }
  std::vector<std::string> Logs() {
    absl::MutexLock l(&mu);
    return logs;
  }
};

class RedisSharedStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EpollEventLoop::Create({});
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    loop_->Start();
  }

  void TearDown() override {
    RunOnLoop([&] {
      replicas_.clear();
      clients_.clear();
    });
    loop_->Stop();
  }

  void StartServer(std::vector<std::string> extra = {},
                   std::string password = "") {
    auto server = RedisServer::Start(std::move(extra), std::move(password));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  // Runs `f` on the loop thread and waits for it.
  void RunOnLoop(std::function<void()> f) {
    absl::Notification done;
    loop_->Post([&] {
      f();
      done.Notify();
    });
    if (!done.WaitForNotificationWithTimeout(kWait)) {
      ADD_FAILURE() << "loop did not run the task";
      std::abort();  // `f` and `done` would dangle
    }
  }

  // Polls `condition` on the loop thread until true or kWait.
  bool WaitOnLoop(std::function<bool()> condition) {
    const absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      bool ok = false;
      RunOnLoop([&] { ok = condition(); });
      if (ok) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  ClusterConfig Config(const std::string& replica_id) {
    ClusterConfig c;
    c.enabled = true;
    c.address = server_->address();
    c.key_prefix = "test";
    c.replica_id = replica_id;
    // Generous: these tests count decisions, a slow CI run must not turn
    // them into kLocal. The timeout test sets its own.
    c.decision_timeout = absl::Seconds(2);
    c.connect_timeout = absl::Seconds(2);
    c.reconnect_min = absl::Milliseconds(20);
    c.reconnect_max = absl::Milliseconds(200);
    return c;
  }

  Replica& AddReplica(const ClusterConfig& config, bool wait = true) {
    auto replica = std::make_unique<Replica>();
    Replica* r = replica.get();
    r->state = std::make_unique<RedisSharedState>(config, *loop_, &r->observer,
                                                  [r](absl::string_view line) {
                                                    absl::MutexLock l(&r->mu);
                                                    r->logs.emplace_back(line);
                                                  });
    RunOnLoop([&] {
      r->state->SetListener([r](const SharedEvent& e) {
        absl::MutexLock l(&r->mu);
        r->received.push_back(e);
      });
    });
    r->state->Start();  // from the test thread: posts
    replicas_.push_back(std::move(replica));
    if (wait) {
      EXPECT_TRUE(WaitOnLoop([r] {
        return r->state->connected() && r->state->subscribed();
      })) << "replica did not connect";
    }
    return *r;
  }

  SharedDecision Acquire(Replica& r, const SharedLimit& limit, int64_t tokens) {
    absl::Notification done;
    SharedDecision result;
    bool inside = false;
    bool called_inside = false;
    loop_->Post([&] {
      inside = true;
      r.state->Acquire(limit, tokens, [&](SharedDecision d) {
        called_inside = inside;
        result = d;
        done.Notify();
      });
      inside = false;
    });
    if (!done.WaitForNotificationWithTimeout(kWait)) {
      ADD_FAILURE() << "Acquire never answered";
      std::abort();
    }
    EXPECT_FALSE(called_inside) << "done ran inside Acquire";
    return result;
  }

  // Adjust() is fire and forget: a round trip on the same connection after
  // it means Redis has applied it.
  void Barrier(Replica& r) {
    Acquire(r, Limit("barrier", RateLimitAlgorithm::kTokenBucket, 1'000'000, 0),
            0);
  }

  std::vector<SharedDecision> AcquireMany(Replica& a, Replica& b,
                                          const SharedLimit& limit,
                                          int64_t tokens, int n) {
    std::vector<SharedDecision> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(Acquire(i % 2 == 0 ? a : b, limit, tokens));
    }
    return out;
  }

  static int Count(const std::vector<SharedDecision>& ds,
                   SharedDecision::Kind kind) {
    int n = 0;
    for (const SharedDecision& d : ds) n += d.kind == kind ? 1 : 0;
    return n;
  }

  SyncReply Redis(const std::vector<std::string>& args) {
    absl::StatusOr<SyncReply> r = server_->Command(args);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : SyncReply{};
  }

  // Sum of the sliding-window buckets with `prefix` ("r:" or "t:").
  int64_t WindowSum(const std::string& key, const std::string& prefix,
                    int* fields = nullptr) {
    SyncReply all = Redis({"HGETALL", key});
    int64_t sum = 0;
    int n = 0;
    for (size_t i = 0; i + 1 < all.elements.size(); i += 2) {
      if (!absl::StartsWith(all.elements[i].str, prefix)) continue;
      int64_t v = 0;
      EXPECT_TRUE(absl::SimpleAtoi(all.elements[i + 1].str, &v));
      sum += v;
      ++n;
    }
    if (fields != nullptr) *fields = n;
    return sum;
  }

  double BucketLevel(const std::string& key, const std::string& field) {
    SyncReply v = Redis({"HGET", key, field});
    double level = -1e18;
    EXPECT_TRUE(absl::SimpleAtod(v.str, &level)) << "'" << v.str << "'";
    return level;
  }

  static SharedLimit Limit(const std::string& key, RateLimitAlgorithm algo,
                           int64_t rpm, int64_t tpm, double burst = 1.0) {
    SharedLimit l;
    l.key = key;
    l.limits.algorithm = algo;
    l.limits.requests_per_minute = rpm;
    l.limits.tokens_per_minute = tpm;
    l.limits.burst = burst;
    return l;
  }

  std::unique_ptr<EpollEventLoop> loop_;
  std::unique_ptr<RedisServer> server_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::vector<std::unique_ptr<RedisClient>> clients_;
};

// --- Wire format and helpers (no server).

TEST(SharedEventCodecTest, RoundTripsAnyBytesAndInfiniteTimes) {
  SharedEvent e;
  e.kind = SharedEventKind::kBreakerOpen;
  e.scope = "pool.a-b|c:d";
  e.breaker_kind = "instance";
  e.name = "org/model-1.5:latest|x/id-2";
  e.until = absl::FromUnixMillis(1'700'000'000'123);
  std::string replica;
  SharedEvent back;
  ASSERT_TRUE(
      DecodeSharedEvent(EncodeSharedEvent(e, "host:1|2"), &back, &replica));
  EXPECT_EQ(replica, "host:1|2");
  EXPECT_EQ(back.kind, e.kind);
  EXPECT_EQ(back.scope, e.scope);
  EXPECT_EQ(back.breaker_kind, e.breaker_kind);
  EXPECT_EQ(back.name, e.name);
  EXPECT_EQ(back.until, e.until);
  for (absl::Time t : {absl::InfinitePast(), absl::InfiniteFuture()}) {
    e.until = t;
    ASSERT_TRUE(DecodeSharedEvent(EncodeSharedEvent(e, "r"), &back, &replica));
    EXPECT_EQ(back.until, t);
  }
}

TEST(SharedEventCodecTest, RejectsMalformedText) {
  SharedEvent e;
  e.name = "m/1";
  const std::string good = EncodeSharedEvent(e, "r");
  SharedEvent back;
  std::string replica;
  for (const std::string& bad : {std::string(""), std::string("2|0|1:r"),
                                 good.substr(0, good.size() - 1), good + "x",
                                 std::string("1|x|1:r|8:cooldown|0:|0:|0:"),
                                 std::string("1|0|1:r|5:bogus|0:|0:|0:"),
                                 std::string("1|0|99:r|8:cooldown|0:|0:|0:")}) {
    EXPECT_FALSE(DecodeSharedEvent(bad, &back, &replica)) << bad;
  }
}

TEST(SharedEventCodecTest, BreakerOpenAndClosedShareOneField) {
  SharedEvent open;
  open.kind = SharedEventKind::kBreakerOpen;
  open.breaker_kind = "echelon";
  open.scope = "fast";
  open.name = "primary";
  SharedEvent closed = open;
  closed.kind = SharedEventKind::kBreakerClosed;
  EXPECT_EQ(SharedEventField(open), SharedEventField(closed));
  SharedEvent cooldown;
  cooldown.name = "primary";
  EXPECT_NE(SharedEventField(open), SharedEventField(cooldown));
}

TEST(ParseHostPortTest, AcceptsHostPortAndBracketedV6) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:6379", &host, &port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 6379);
  ASSERT_TRUE(ParseHostPort("redis.internal:7000", &host, &port));
  EXPECT_EQ(host, "redis.internal");
  ASSERT_TRUE(ParseHostPort("[::1]:6380", &host, &port));
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 6380);
  for (const char* bad : {"", "redis", ":6379", "redis:", "redis:0",
                          "redis:70000", "redis:x", "::1:6379", "[::1]6379"}) {
    EXPECT_FALSE(ParseHostPort(bad, &host, &port)) << bad;
  }
}

// --- Limits.

TEST_F(RedisSharedStateTest, TokenBucketIsSharedBetweenReplicas) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  Replica& b = AddReplica(Config("b"));
  // Capacity 10 requests; refill 10/min is negligible during the test.
  const SharedLimit limit =
      Limit("echelon/fast/primary", RateLimitAlgorithm::kTokenBucket, 10, 0);
  std::vector<SharedDecision> ds = AcquireMany(a, b, limit, 0, 24);
  EXPECT_EQ(Count(ds, SharedDecision::Kind::kAllowed), 10);
  EXPECT_EQ(Count(ds, SharedDecision::Kind::kRefused), 14);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(ds[i].kind, SharedDecision::Kind::kAllowed) << i;
  }
  // One request refills in 6 s.
  EXPECT_GT(ds.back().retry_after, absl::Seconds(5));
  EXPECT_LE(ds.back().retry_after, absl::Seconds(6));
  // The key expires by itself once the bucket would be full again.
  SyncReply ttl = Redis({"PTTL", "test:rl:echelon/fast/primary"});
  EXPECT_GT(ttl.integer, 0);
  EXPECT_LE(ttl.integer, 61'000);
}

TEST_F(RedisSharedStateTest, TokenBucketBurstScalesCapacity) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  Replica& b = AddReplica(Config("b"));
  const SharedLimit limit =
      Limit("instance/m/1", RateLimitAlgorithm::kTokenBucket, 4, 0, 2.0);
  std::vector<SharedDecision> ds = AcquireMany(a, b, limit, 0, 12);
  EXPECT_EQ(Count(ds, SharedDecision::Kind::kAllowed), 8);
}

TEST_F(RedisSharedStateTest, SlidingWindowIsSharedBetweenReplicas) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  Replica& b = AddReplica(Config("b"));
  const SharedLimit limit =
      Limit("instance/m/1", RateLimitAlgorithm::kSlidingWindow, 7, 0);
  std::vector<SharedDecision> ds = AcquireMany(a, b, limit, 0, 20);
  EXPECT_EQ(Count(ds, SharedDecision::Kind::kAllowed), 7);
  EXPECT_EQ(Count(ds, SharedDecision::Kind::kRefused), 13);
  // The oldest bucket leaves the window within a minute.
  EXPECT_GT(ds.back().retry_after, absl::Seconds(55));
  EXPECT_LE(ds.back().retry_after, absl::Seconds(60));
  EXPECT_EQ(WindowSum("test:rl:instance/m/1", "r:"), 7);
  SyncReply ttl = Redis({"PTTL", "test:rl:instance/m/1"});
  EXPECT_GT(ttl.integer, 59'000);
  EXPECT_LE(ttl.integer, 61'000);
}

TEST_F(RedisSharedStateTest, TokenBucketTakesRequestsAndTokensTogether) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  const SharedLimit limit =
      Limit("echelon/g/e", RateLimitAlgorithm::kTokenBucket, 100, 1000);
  const std::string key = "test:rl:echelon/g/e";
  EXPECT_EQ(Acquire(a, limit, 600).kind, SharedDecision::Kind::kAllowed);
  const double requests_after_one = BucketLevel(key, "r");
  EXPECT_NEAR(requests_after_one, 99, 0.1);
  // Tokens do not fit: neither the request nor the tokens are taken.
  SharedDecision refused = Acquire(a, limit, 600);
  EXPECT_EQ(refused.kind, SharedDecision::Kind::kRefused);
  EXPECT_GT(refused.retry_after, absl::Seconds(11));  // 200 tokens at 1000/min
  EXPECT_NEAR(BucketLevel(key, "r"), 99, 0.1);
  EXPECT_NEAR(BucketLevel(key, "t"), 400, 1);
  EXPECT_EQ(Acquire(a, limit, 400).kind, SharedDecision::Kind::kAllowed);
  EXPECT_NEAR(BucketLevel(key, "r"), 98, 0.1);
  EXPECT_NEAR(BucketLevel(key, "t"), 0, 1);
}

TEST_F(RedisSharedStateTest, SlidingWindowTakesRequestsAndTokensTogether) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  const SharedLimit limit =
      Limit("echelon/g/w", RateLimitAlgorithm::kSlidingWindow, 2, 100);
  const std::string key = "test:rl:echelon/g/w";
  EXPECT_EQ(Acquire(a, limit, 80).kind, SharedDecision::Kind::kAllowed);
  EXPECT_EQ(Acquire(a, limit, 30).kind, SharedDecision::Kind::kRefused);
  EXPECT_EQ(WindowSum(key, "r:"), 1);
  EXPECT_EQ(WindowSum(key, "t:"), 80);
  EXPECT_EQ(Acquire(a, limit, 20).kind, SharedDecision::Kind::kAllowed);
  // Requests spent: refused even with no tokens.
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kRefused);
  EXPECT_EQ(WindowSum(key, "r:"), 2);
  EXPECT_EQ(WindowSum(key, "t:"), 100);
}

TEST_F(RedisSharedStateTest, AdjustGivesBackAndAllowsDebt) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  Replica& b = AddReplica(Config("b"));
  const SharedLimit limit =
      Limit("instance/m/2", RateLimitAlgorithm::kTokenBucket, 0, 1000);
  const std::string key = "test:rl:instance/m/2";
  EXPECT_EQ(Acquire(a, limit, 1000).kind, SharedDecision::Kind::kAllowed);
  EXPECT_EQ(Acquire(b, limit, 1).kind, SharedDecision::Kind::kRefused);
  // The call used 500 of its 1000 tokens: give 500 back (from the other
  // replica: the count is shared).
  RunOnLoop([&] { b.state->Adjust(limit, 0, -500); });
  Barrier(b);
  EXPECT_EQ(Acquire(a, limit, 400).kind, SharedDecision::Kind::kAllowed);
  EXPECT_NEAR(BucketLevel(key, "t"), 100, 2);
  // Giving back never fills beyond capacity.
  RunOnLoop([&] { a.state->Adjust(limit, 0, -5000); });
  Barrier(a);
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kAllowed);
  EXPECT_NEAR(BucketLevel(key, "t"), 1000, 1);
  // Usage above the reservation puts the limit in debt.
  RunOnLoop([&] { a.state->Adjust(limit, 0, 1500); });
  Barrier(a);
  EXPECT_NEAR(BucketLevel(key, "t"), -500, 1);
  // Like the in-process limiter: nothing passes until the debt is repaid.
  SharedDecision refused = Acquire(b, limit, 0);
  EXPECT_EQ(refused.kind, SharedDecision::Kind::kRefused);
  EXPECT_GT(refused.retry_after, absl::Seconds(29));  // 500 tokens at 1000/min
  EXPECT_LE(refused.retry_after, absl::Seconds(30));
}

TEST_F(RedisSharedStateTest, SlidingWindowAdjustGivesBack) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  const SharedLimit limit =
      Limit("instance/m/3", RateLimitAlgorithm::kSlidingWindow, 1, 0);
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kAllowed);
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kRefused);
  RunOnLoop([&] { a.state->Adjust(limit, -1, 0); });
  Barrier(a);
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kAllowed);
}

TEST_F(RedisSharedStateTest, UnlimitedIsAllowedWithoutTheStore) {
  // No server at all: still allowed, posted.
  auto port = testing::PickFreeLoopbackPort();
  ClusterConfig c;
  c.address = absl::StrCat("127.0.0.1:", port);
  c.replica_id = "a";
  auto replica = std::make_unique<Replica>();
  replica->state = std::make_unique<RedisSharedState>(
      c, *loop_, &replica->observer, [](absl::string_view) {});
  replicas_.push_back(std::move(replica));
  Replica& a = *replicas_.back();
  EXPECT_EQ(
      Acquire(a, Limit("x", RateLimitAlgorithm::kTokenBucket, 0, 0), 50).kind,
      SharedDecision::Kind::kAllowed);
  EXPECT_EQ(
      Acquire(a, Limit("x", RateLimitAlgorithm::kTokenBucket, 5, 0), 50).kind,
      SharedDecision::Kind::kLocal);
}

TEST_F(RedisSharedStateTest, LostScriptCacheFallsBackToEval) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  const SharedLimit limit =
      Limit("instance/m/4", RateLimitAlgorithm::kTokenBucket, 2, 0);
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kAllowed);
  Redis({"SCRIPT", "FLUSH"});
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kAllowed);
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kRefused);
  EXPECT_EQ(Redis({"SCRIPT", "EXISTS", "x"}).elements.size(), 1u);
}

TEST_F(RedisSharedStateTest, SelectsTheConfiguredDatabase) {
  StartServer();
  ClusterConfig c = Config("a");
  c.database = 3;
  Replica& a = AddReplica(c);
  EXPECT_EQ(
      Acquire(a, Limit("k", RateLimitAlgorithm::kSlidingWindow, 5, 0), 0).kind,
      SharedDecision::Kind::kAllowed);
  EXPECT_EQ(Redis({"EXISTS", "test:rl:k"}).integer, 0);
  Redis({"SELECT", "3"});
  EXPECT_EQ(Redis({"EXISTS", "test:rl:k"}).integer, 1);
}

TEST_F(RedisSharedStateTest, ResolvesHostNamesOffTheLoop) {
  StartServer();
  ClusterConfig c = Config("a");
  c.address = absl::StrCat("localhost:", server_->port());
  Replica& a = AddReplica(c);
  EXPECT_EQ(
      Acquire(a, Limit("k", RateLimitAlgorithm::kTokenBucket, 5, 0), 0).kind,
      SharedDecision::Kind::kAllowed);
  // (A failing lookup is not tested: it would depend on the machine's DNS.)
}

// --- Budget.

TEST_F(RedisSharedStateTest, SlowStoreAnswersLocalAndGivesLateAllowedBack) {
  StartServer();
  ClusterConfig c = Config("a");
  c.decision_timeout = absl::Milliseconds(2);
  Replica& a = AddReplica(c);
  const SharedLimit limit =
      Limit("instance/slow/1", RateLimitAlgorithm::kSlidingWindow, 3, 0);
  const std::string key = "test:rl:instance/slow/1";
  server_->Pause();  // SIGSTOP: the script waits in the socket
  SharedDecision d = Acquire(a, limit, 0);
  server_->Resume();
  EXPECT_EQ(d.kind, SharedDecision::Kind::kLocal);
  EXPECT_THAT(a.observer.decisions(), ::testing::ElementsAre("local/timeout"));
  // The late "allowed" was given back: the bucket fields exist and sum to 0.
  const absl::Time deadline = absl::Now() + kWait;
  int fields = 0;
  int64_t sum = -1;
  while (absl::Now() < deadline) {
    sum = WindowSum(key, "r:", &fields);
    if (fields > 0 && sum == 0) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_GT(fields, 0);
  EXPECT_EQ(sum, 0);
  // Still connected (the pause was shorter than the reply timeout), and the
  // whole limit is available again.
  RunOnLoop([&] { EXPECT_TRUE(a.state->connected()); });
  c.decision_timeout = absl::Seconds(2);
  Replica& b = AddReplica(c);
  std::vector<SharedDecision> ds = AcquireMany(b, b, limit, 0, 4);
  EXPECT_EQ(Count(ds, SharedDecision::Kind::kAllowed), 3);
}

TEST_F(RedisSharedStateTest, HungStoreIsDroppedAndRejoined) {
  StartServer();
  ClusterConfig c = Config("a");
  c.decision_timeout = absl::Milliseconds(2);
  c.connect_timeout = absl::Milliseconds(100);  // also the reply timeout
  Replica& a = AddReplica(c);
  const SharedLimit limit =
      Limit("instance/hung/1", RateLimitAlgorithm::kTokenBucket, 100, 0);
  server_->Pause();
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kLocal);
  EXPECT_TRUE(WaitOnLoop([&] { return !a.state->connected(); }));
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kLocal);
  server_->Resume();
  EXPECT_TRUE(WaitOnLoop([&] { return a.state->connected(); }));
  EXPECT_THAT(a.observer.disconnects(),
              ::testing::Contains(HasSubstr("no reply for")));
}

// --- Events.

SharedEvent Event(SharedEventKind kind, const std::string& name,
                  absl::Duration from_now, const std::string& scope = "",
                  const std::string& breaker_kind = "") {
  SharedEvent e;
  e.kind = kind;
  e.name = name;
  e.scope = scope;
  e.breaker_kind = breaker_kind;
  e.until = absl::FromUnixMillis(absl::ToUnixMillis(absl::Now() + from_now));
  return e;
}

bool Same(const SharedEvent& a, const SharedEvent& b) {
  return a.kind == b.kind && a.name == b.name && a.scope == b.scope &&
         a.breaker_kind == b.breaker_kind && a.until == b.until;
}

TEST_F(RedisSharedStateTest, EventsReachOtherReplicasNotTheSender) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  Replica& b = AddReplica(Config("b"));
  const SharedEvent cooldown = Event(SharedEventKind::kCooldown,
                                     "org/model-1.5/id-2", absl::Seconds(30));
  RunOnLoop([&] { a.state->Publish(cooldown); });
  ASSERT_TRUE(WaitOnLoop([&] { return !b.Received().empty(); }));
  ASSERT_EQ(b.Received().size(), 1u);
  EXPECT_TRUE(Same(b.Received()[0], cooldown));
  const SharedEvent eject =
      Event(SharedEventKind::kEject, "m/1", absl::Seconds(10), "fast-pool");
  RunOnLoop([&] { b.state->Publish(eject); });
  ASSERT_TRUE(WaitOnLoop([&] { return !a.Received().empty(); }));
  // A's own cooldown, published earlier on the same channel, was ignored.
  ASSERT_EQ(a.Received().size(), 1u);
  EXPECT_TRUE(Same(a.Received()[0], eject));
  EXPECT_THAT(a.observer.events(),
              ::testing::ElementsAre("published/cooldown", "received/eject"));
  // Both are stored for late joiners.
  EXPECT_EQ(Redis({"HLEN", "test:state"}).integer, 2);
}

TEST_F(RedisSharedStateTest, NewReplicaCatchesUpFromTheStateHash) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  const SharedEvent open = Event(SharedEventKind::kBreakerOpen, "primary",
                                 absl::Seconds(30), "fast", "echelon");
  const SharedEvent closed = Event(SharedEventKind::kBreakerClosed, "m/2",
                                   absl::Seconds(30), "pool-x", "instance");
  const SharedEvent expired =
      Event(SharedEventKind::kDisable, "m/3", -absl::Seconds(1));
  const SharedEvent disable =
      Event(SharedEventKind::kDisable, "m/4", absl::Hours(1));
  RunOnLoop([&] {
    a.state->Publish(open);
    a.state->Publish(closed);
    a.state->Publish(expired);
    a.state->Publish(disable);
  });
  ASSERT_TRUE(WaitOnLoop([&] {
    return Redis({"HLEN", "test:state"}).integer == 4;
  }));
  Replica& c = AddReplica(Config("c"));
  ASSERT_TRUE(WaitOnLoop([&] { return c.Received().size() >= 3; }));
  std::vector<SharedEvent> got = c.Received();
  EXPECT_EQ(got.size(), 3u);
  int matched = 0;
  for (const SharedEvent& e : got) {
    matched += Same(e, open) + Same(e, closed) + Same(e, disable);
    EXPECT_FALSE(Same(e, expired));
  }
  EXPECT_EQ(matched, 3);
  // A closed breaker replaces its open entry.
  SharedEvent reclosed = open;
  reclosed.kind = SharedEventKind::kBreakerClosed;
  RunOnLoop([&] { a.state->Publish(reclosed); });
  ASSERT_TRUE(WaitOnLoop([&] { return c.Received().size() == 4; }));
  EXPECT_EQ(Redis({"HLEN", "test:state"}).integer, 4);
}

// --- Outages.

TEST_F(RedisSharedStateTest, KilledStoreMeansLocalThenSharingResumes) {
  StartServer();
  Replica& a = AddReplica(Config("a"));
  Replica& b = AddReplica(Config("b"));
  const SharedLimit limit =
      Limit("echelon/x/y", RateLimitAlgorithm::kTokenBucket, 2, 0);
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kAllowed);
  server_->Kill();
  ASSERT_TRUE(WaitOnLoop(
      [&] { return !a.state->connected() && !b.state->connected(); }));
  const absl::Time start = absl::Now();
  EXPECT_EQ(Acquire(a, limit, 0).kind, SharedDecision::Kind::kLocal);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));  // posted, no waiting
  EXPECT_THAT(a.observer.decisions(),
              ::testing::Contains("local/disconnected"));
  EXPECT_FALSE(a.observer.disconnects().empty());
  // Events observed meanwhile are published once the store is back.
  const SharedEvent cooldown =
      Event(SharedEventKind::kCooldown, "m/9", absl::Minutes(5));
  RunOnLoop([&] { b.state->Publish(cooldown); });

  ASSERT_TRUE(server_->Restart().ok());  // same port, empty
  ASSERT_TRUE(WaitOnLoop([&] {
    return a.state->connected() && b.state->connected() &&
           a.state->subscribed() && b.state->subscribed();
  }));
  EXPECT_GE(a.observer.connects(), 2);
  std::vector<SharedDecision> ds = AcquireMany(a, b, limit, 0, 4);
  EXPECT_EQ(Count(ds, SharedDecision::Kind::kAllowed), 2);
  EXPECT_EQ(Count(ds, SharedDecision::Kind::kRefused), 2);
  // A gets B's cooldown (published on B's reconnect, or from the hash).
  ASSERT_TRUE(WaitOnLoop([&] {
    for (const SharedEvent& e : a.Received()) {
      if (Same(e, cooldown)) return true;
    }
    return false;
  }));
  // The events channel works again.
  const SharedEvent eject =
      Event(SharedEventKind::kEject, "m/8", absl::Minutes(1), "p");
  RunOnLoop([&] { a.state->Publish(eject); });
  ASSERT_TRUE(WaitOnLoop([&] {
    for (const SharedEvent& e : b.Received()) {
      if (Same(e, eject)) return true;
    }
    return false;
  }));
}

TEST_F(RedisSharedStateTest, StoreDownAtStartConnectsLater) {
  StartServer();
  const std::string address = server_->address();
  server_->Kill();
  ClusterConfig c = Config("a");
  Replica& a = AddReplica(c, /*wait=*/false);
  EXPECT_EQ(
      Acquire(a, Limit("k", RateLimitAlgorithm::kTokenBucket, 1, 0), 0).kind,
      SharedDecision::Kind::kLocal);
  ASSERT_TRUE(server_->Restart().ok());
  ASSERT_TRUE(WaitOnLoop([&] { return a.state->connected(); }));
  EXPECT_EQ(
      Acquire(a, Limit("k", RateLimitAlgorithm::kTokenBucket, 1, 0), 0).kind,
      SharedDecision::Kind::kAllowed);
}

// --- Secrets.

TEST_F(RedisSharedStateTest, PasswordNeverAppearsInReasonsOrLogs) {
  const std::string password = "s3cret-Pa55word-xyz";
  StartServer({"--requirepass", password}, password);
  ClusterConfig wrong = Config("a");
  wrong.password = "wrong-Pa55word-abc";
  Replica& a = AddReplica(wrong, /*wait=*/false);
  ASSERT_TRUE(WaitOnLoop([&] { return !a.observer.disconnects().empty(); }));
  EXPECT_THAT(a.observer.disconnects()[0], HasSubstr("AUTH failed"));
  RunOnLoop([&] { EXPECT_FALSE(a.state->connected()); });

  ClusterConfig right = Config("b");
  right.password = password;
  Replica& b = AddReplica(right);
  EXPECT_EQ(
      Acquire(b, Limit("k", RateLimitAlgorithm::kTokenBucket, 1, 0), 0).kind,
      SharedDecision::Kind::kAllowed);
  server_->Kill();
  ASSERT_TRUE(WaitOnLoop([&] { return !b.state->connected(); }));
  for (Replica* r : {&a, &b}) {
    std::vector<std::string> lines = r->Logs();
    for (const std::string& reason : r->observer.disconnects()) {
      lines.push_back(reason);
    }
    EXPECT_FALSE(lines.empty());
    for (const std::string& line : lines) {
      EXPECT_THAT(line, Not(HasSubstr(password)));
      EXPECT_THAT(line, Not(HasSubstr(wrong.password)));
      EXPECT_THAT(line, Not(HasSubstr("Pa55word")));
    }
  }
}

// --- RedisClient.

TEST_F(RedisSharedStateTest, ClientAnswersEveryPendingCommandOnceOnDrop) {
  StartServer();
  RedisClient::Options o;
  o.host = "127.0.0.1";
  o.port = server_->port();
  o.reply_timeout = absl::ZeroDuration();
  o.reconnect_min = absl::Milliseconds(10);
  RedisClient* client = nullptr;
  RunOnLoop([&] {
    clients_.push_back(std::make_unique<RedisClient>(*loop_, o));
    client = clients_.back().get();
    client->Start();
  });
  ASSERT_TRUE(WaitOnLoop([&] { return client->connected(); }));
  absl::Mutex mu;
  std::vector<std::string> answers;
  server_->Pause();
  RunOnLoop([&] {
    for (int i = 0; i < 5; ++i) {
      client->Command({"INCR", "n"}, [&](RedisReply r) {
        absl::MutexLock l(&mu);
        answers.push_back(r.is_error() ? "error" : "ok");
      });
    }
    EXPECT_EQ(client->in_flight(), 5u);
    client->Reset("test reset");
  });
  server_->Resume();
  ASSERT_TRUE(WaitOnLoop([&] {
    absl::MutexLock l(&mu);
    return answers.size() == 5;
  }));
  {
    absl::MutexLock l(&mu);
    EXPECT_THAT(answers, ::testing::Each("error"));
  }
  // Not connected: the error is posted, never given inside Command().
  bool inside = false, called_inside = false;
  bool got = false;
  RunOnLoop([&] {
    inside = true;
    client->Command({"PING"}, [&](RedisReply r) {
      called_inside = inside;
      got = r.is_error() || r.str == "PONG";
    });
    inside = false;
  });
  ASSERT_TRUE(WaitOnLoop([&] { return got; }));
  EXPECT_FALSE(called_inside);
  // And it reconnects by itself.
  ASSERT_TRUE(WaitOnLoop([&] { return client->connected(); }));
  absl::Notification pong;
  RunOnLoop([&] {
    client->Command({"PING"}, [&](RedisReply r) {
      EXPECT_EQ(r.str, "PONG");
      pong.Notify();
    });
  });
  EXPECT_TRUE(pong.WaitForNotificationWithTimeout(kWait));
}

}  // namespace
}  // namespace echelon
