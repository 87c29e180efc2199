#include "domain/retry.h"

#include <random>

#include "absl/random/random.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

TEST(RetryTest, FullJitterStaysUnderExponentialCap) {
  absl::BitGen gen(std::seed_seq{1});
  RetryConfig c;
  c.initial_backoff = absl::Milliseconds(100);
  c.backoff_multiplier = 3;
  c.max_backoff = absl::Seconds(1);
  for (int retry = 0; retry < 5; ++retry) {
    absl::Duration cap = retry == 0   ? absl::Milliseconds(100)
                         : retry == 1 ? absl::Milliseconds(300)
                         : retry == 2 ? absl::Milliseconds(900)
                                      : absl::Seconds(1);
    absl::Duration max = absl::ZeroDuration();
    absl::Duration sum = absl::ZeroDuration();
    for (int i = 0; i < 2000; ++i) {
      absl::Duration d = FullJitterBackoff(c, retry, gen);
      ASSERT_GE(d, absl::ZeroDuration());
      ASSERT_LE(d, cap);
      max = std::max(max, d);
      sum += d;
    }
    EXPECT_GT(max, cap * 0.95);  // full jitter reaches the cap
    EXPECT_NEAR(absl::ToDoubleSeconds(sum / 2000),
                absl::ToDoubleSeconds(cap) / 2,
                absl::ToDoubleSeconds(cap) * 0.05);
  }
}

TEST(RetryTest, SeededSourceIsDeterministic) {
  RetryConfig c;
  absl::BitGen a(std::seed_seq{42}), b(std::seed_seq{42});
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(FullJitterBackoff(c, i, a), FullJitterBackoff(c, i, b));
  }
}

TEST(RetryTest, BudgetAllowsAtLeastMinRetries) {
  RetryConfig c;
  c.budget_ratio = 0.1;
  c.budget_min_retries = 2;
  RetryBudget b(c);
  b.RequestStarted();
  EXPECT_TRUE(b.TryStartRetry());
  EXPECT_TRUE(b.TryStartRetry());
  EXPECT_FALSE(b.TryStartRetry());
  b.RetryFinished();
  EXPECT_TRUE(b.TryStartRetry());
}

TEST(RetryTest, BudgetGrowsWithActiveRequests) {
  RetryConfig c;
  c.budget_ratio = 0.2;
  c.budget_min_retries = 1;
  RetryBudget b(c);
  for (int i = 0; i < 50; ++i) b.RequestStarted();
  EXPECT_EQ(b.limit(), 10);
  int granted = 0;
  while (b.TryStartRetry()) ++granted;
  EXPECT_EQ(granted, 10);
  for (int i = 0; i < 50; ++i) b.RequestFinished();
  EXPECT_EQ(b.limit(), 1);
}

}  // namespace
}  // namespace echelon
