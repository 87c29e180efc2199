#include "domain/concurrency_limiter.h"

#include <vector>

#include "gtest/gtest.h"
#include "tests/fakes/fake_event_loop.h"

namespace echelon {
namespace {

TEST(ConcurrencyLimiterTest, ZeroMeansUnlimited) {
  FakeEventLoop loop;
  ConcurrencyLimiter l(ConcurrencyConfig{}, loop);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(l.TryAcquire());
  EXPECT_EQ(l.in_flight(), 100);
}

TEST(ConcurrencyLimiterTest, RejectsBeyondLimitUntilRelease) {
  FakeEventLoop loop;
  ConcurrencyConfig c;
  c.max_concurrency = 2;
  ConcurrencyLimiter l(c, loop);
  EXPECT_TRUE(l.TryAcquire());
  EXPECT_TRUE(l.TryAcquire());
  EXPECT_FALSE(l.TryAcquire());
  l.Release();
  EXPECT_TRUE(l.TryAcquire());
}

TEST(ConcurrencyLimiterTest, QueueHandsFreedSlotToOldestWaiter) {
  FakeEventLoop loop;
  ConcurrencyConfig c;
  c.max_concurrency = 1;
  c.queue_size = 2;
  c.queue_timeout = absl::Seconds(5);
  ConcurrencyLimiter l(c, loop);
  ASSERT_TRUE(l.TryAcquire());
  std::vector<std::pair<int, bool>> got;
  EXPECT_NE(l.Enqueue([&](bool g) {
    got.push_back({1, g});
  }),
            ConcurrencyLimiter::kNoTicket);
  EXPECT_NE(l.Enqueue([&](bool g) {
    got.push_back({2, g});
  }),
            ConcurrencyLimiter::kNoTicket);
  // Queue full.
  EXPECT_EQ(l.Enqueue([&](bool) {}), ConcurrencyLimiter::kNoTicket);
  EXPECT_EQ(l.queued(), 2);
  l.Release();
  EXPECT_TRUE(got.empty());  // never inside Release
  loop.RunUntilIdle();
  EXPECT_EQ(got, (std::vector<std::pair<int, bool>>{{1, true}}));
  EXPECT_EQ(l.in_flight(), 1);
  loop.AdvanceBy(absl::Seconds(5));
  EXPECT_EQ(got, (std::vector<std::pair<int, bool>>{{1, true}, {2, false}}));
  EXPECT_EQ(l.queued(), 0);
}

TEST(ConcurrencyLimiterTest, AbandonedWaiterIsNeverCalled) {
  FakeEventLoop loop;
  ConcurrencyConfig c;
  c.max_concurrency = 1;
  c.queue_size = 1;
  ConcurrencyLimiter l(c, loop);
  ASSERT_TRUE(l.TryAcquire());
  bool called = false;
  auto t = l.Enqueue([&](bool) { called = true; });
  l.Abandon(t);
  l.Release();
  loop.AdvanceBy(absl::Seconds(10));
  EXPECT_FALSE(called);
  EXPECT_EQ(l.in_flight(), 0);
  EXPECT_EQ(loop.pending_timers(), 0u);
}

}  // namespace
}  // namespace echelon
