#include "domain/rate_limiter.h"

#include "gtest/gtest.h"

namespace echelon {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(5000);

RateLimitConfig Config(RateLimitAlgorithm a, int64_t rpm, int64_t tpm,
                       double burst = 1.0) {
  RateLimitConfig c;
  c.algorithm = a;
  c.requests_per_minute = rpm;
  c.tokens_per_minute = tpm;
  c.burst = burst;
  return c;
}

TEST(RateLimiterTest, NoLimitsAlwaysAdmits) {
  RateLimiter r(RateLimitConfig{});
  EXPECT_FALSE(r.enabled());
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(r.TryAcquire(kT0, 1000, nullptr));
}

TEST(RateLimiterTest, TokenBucketRpmRefillsContinuously) {
  RateLimiter r(Config(RateLimitAlgorithm::kTokenBucket, 60, 0));
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(r.TryAcquire(kT0, 0, nullptr));
  absl::Duration wait;
  EXPECT_FALSE(r.TryAcquire(kT0, 0, &wait));
  EXPECT_EQ(wait, absl::Seconds(1));  // one request per second
  EXPECT_TRUE(r.TryAcquire(kT0 + absl::Seconds(1), 0, nullptr));
  EXPECT_FALSE(r.TryAcquire(kT0 + absl::Seconds(1), 0, nullptr));
}

TEST(RateLimiterTest, TokenBucketBurstScalesCapacity) {
  RateLimiter r(Config(RateLimitAlgorithm::kTokenBucket, 60, 0, 0.5));
  int n = 0;
  while (r.TryAcquire(kT0, 0, nullptr)) ++n;
  EXPECT_EQ(n, 30);
}

TEST(RateLimiterTest, TpmReservesAndReconcilesActualUsage) {
  RateLimiter r(Config(RateLimitAlgorithm::kTokenBucket, 0, 1000));
  ASSERT_TRUE(r.TryAcquire(kT0, 800, nullptr));
  EXPECT_FALSE(r.TryAcquire(kT0, 300, nullptr));
  r.Reconcile(kT0, 800, 100);  // only 100 were used
  EXPECT_TRUE(r.TryAcquire(kT0, 300, nullptr));
  EXPECT_EQ(r.GetUsage(kT0).tokens_used, 400);
  r.Reconcile(kT0, 300, 900);  // more than reserved: debt
  EXPECT_EQ(r.GetUsage(kT0).tokens_used, 1000);
  EXPECT_FALSE(r.TryAcquire(kT0, 1, nullptr));
}

TEST(RateLimiterTest, SlidingWindowCountsLastMinute) {
  RateLimiter r(Config(RateLimitAlgorithm::kSlidingWindow, 3, 0));
  ASSERT_TRUE(r.TryAcquire(kT0, 0, nullptr));
  ASSERT_TRUE(r.TryAcquire(kT0 + absl::Seconds(20), 0, nullptr));
  ASSERT_TRUE(r.TryAcquire(kT0 + absl::Seconds(40), 0, nullptr));
  absl::Duration wait;
  EXPECT_FALSE(r.TryAcquire(kT0 + absl::Seconds(50), 0, &wait));
  EXPECT_EQ(wait, absl::Seconds(10));  // the first leaves at t0 + 60 s
  EXPECT_TRUE(r.TryAcquire(kT0 + absl::Seconds(60), 0, nullptr));
  EXPECT_EQ(r.GetUsage(kT0 + absl::Seconds(60)).requests_used, 3);
}

TEST(RateLimiterTest, SlidingWindowDoesNotRefillGradually) {
  // Unlike the bucket, nothing comes back before the window passes.
  RateLimiter r(Config(RateLimitAlgorithm::kSlidingWindow, 60, 0));
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(r.TryAcquire(kT0, 0, nullptr));
  EXPECT_FALSE(r.TryAcquire(kT0 + absl::Seconds(30), 0, nullptr));
  RateLimiter b(Config(RateLimitAlgorithm::kTokenBucket, 60, 0));
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(b.TryAcquire(kT0, 0, nullptr));
  EXPECT_TRUE(b.TryAcquire(kT0 + absl::Seconds(30), 0, nullptr));
}

TEST(RateLimiterTest, CancelGivesBackAnUnusedReservation) {
  for (RateLimitAlgorithm a :
       {RateLimitAlgorithm::kTokenBucket, RateLimitAlgorithm::kSlidingWindow}) {
    RateLimiter r(Config(a, 1, 100));
    ASSERT_TRUE(r.TryAcquire(kT0, 80, nullptr));
    r.Cancel(kT0, 80);
    EXPECT_EQ(r.GetUsage(kT0).requests_used, 0);
    EXPECT_EQ(r.GetUsage(kT0).tokens_used, 0);
    EXPECT_TRUE(r.TryAcquire(kT0, 80, nullptr));
  }
}

TEST(RateLimiterTest, RefusalReservesNothing) {
  RateLimiter r(Config(RateLimitAlgorithm::kSlidingWindow, 10, 100));
  EXPECT_FALSE(r.TryAcquire(kT0, 500, nullptr) && false);
  RateLimiter q(Config(RateLimitAlgorithm::kSlidingWindow, 10, 100));
  ASSERT_TRUE(q.TryAcquire(kT0, 90, nullptr));
  EXPECT_FALSE(q.TryAcquire(kT0, 20, nullptr));
  EXPECT_EQ(q.GetUsage(kT0).requests_used, 1);
}

TEST(RateLimiterTest, ScaleRateLimitsGivesEachReplicaItsShare) {
  RateLimitConfig c;
  c.requests_per_minute = 600;
  c.tokens_per_minute = 10;
  RateLimitConfig third = ScaleRateLimits(c, 0.34);
  EXPECT_EQ(third.requests_per_minute, 204);
  EXPECT_EQ(third.tokens_per_minute, 4);  // rounded up
  RateLimitConfig tiny;
  tiny.requests_per_minute = 1;
  EXPECT_EQ(ScaleRateLimits(tiny, 0.1).requests_per_minute, 1);
  EXPECT_EQ(ScaleRateLimits(tiny, 0.1).tokens_per_minute, 0);  // unset
  EXPECT_EQ(ScaleRateLimits(c, 1.0).requests_per_minute, 600);
}

}  // namespace
}  // namespace echelon
