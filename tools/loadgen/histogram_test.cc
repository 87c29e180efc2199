#include "tools/loadgen/histogram.h"

#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace echelon::loadgen {
namespace {

TEST(HistogramTest, EmptyHistogramReportsZero) {
  Histogram h;
  EXPECT_EQ(h.Count(), 0);
  EXPECT_EQ(h.Percentile(0.5), 0);
  EXPECT_EQ(h.Mean(), 0);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (int64_t v = 1; v <= 100; ++v) h.Record(v);
  EXPECT_EQ(h.Percentile(0.5), 50);
  EXPECT_EQ(h.Percentile(0.99), 99);
  EXPECT_EQ(h.Percentile(1.0), 100);
  EXPECT_DOUBLE_EQ(h.Mean(), 50.5);
}

TEST(HistogramTest, BucketsCoverEveryValueContiguously) {
  for (int b = 0; b + 1 < Histogram::kBuckets; ++b) {
    ASSERT_EQ(Histogram::BucketHigh(b) + 1, Histogram::BucketLow(b + 1)) << b;
    ASSERT_EQ(Histogram::BucketOf(Histogram::BucketLow(b)), b);
    ASSERT_EQ(Histogram::BucketOf(Histogram::BucketHigh(b)), b);
  }
  EXPECT_EQ(Histogram::BucketOf(INT64_MAX), Histogram::kBuckets - 1);
}

TEST(HistogramTest, LargeValuesAreWithinTwoPercent) {
  Histogram h;
  // 1 µs .. 1 s in nanoseconds, uniform.
  for (int64_t v = 1000; v <= 1000000000; v += 99991) h.Record(v);
  const int64_t p50 = h.Percentile(0.5);
  EXPECT_NEAR(static_cast<double>(p50), 500e6, 500e6 * 0.02);
  const int64_t p99 = h.Percentile(0.99);
  EXPECT_NEAR(static_cast<double>(p99), 990e6, 990e6 * 0.02);
}

TEST(HistogramTest, PercentileNeverExceedsMax) {
  Histogram h;
  h.Record(1000001);
  EXPECT_EQ(h.Percentile(0.999), 1000001);
  EXPECT_EQ(h.Max(), 1000001);
}

TEST(HistogramTest, NegativeValuesCountAsZero) {
  Histogram h;
  h.Record(-5);
  EXPECT_EQ(h.Count(), 1);
  EXPECT_EQ(h.Percentile(1.0), 0);
}

TEST(HistogramTest, MergeAddsCountsAndKeepsMax) {
  Histogram a, b;
  a.Record(10);
  b.Record(20);
  b.Record(5000);
  a.Merge(b);
  EXPECT_EQ(a.Count(), 3);
  EXPECT_EQ(a.Max(), 5000);
  EXPECT_EQ(a.Percentile(0.5), 20);
}

TEST(HistogramTest, ConcurrentRecordsAreAllCounted) {
  Histogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < 10000; ++i) h.Record(i);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(h.Count(), 40000);
  EXPECT_EQ(h.Max(), 9999);
}

}  // namespace
}  // namespace echelon::loadgen
