#include "domain/stats.h"

#include "gtest/gtest.h"

namespace echelon {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(7000);

TEST(StatsTest, EwmaStartsAtFirstSampleAndMovesByAlpha) {
  Ewma e(0.5);
  EXPECT_TRUE(e.empty());
  e.Add(absl::Milliseconds(100));
  EXPECT_EQ(e.value(), absl::Milliseconds(100));
  e.Add(absl::Milliseconds(300));
  EXPECT_EQ(e.value(), absl::Milliseconds(200));
}

TEST(StatsTest, PeakEwmaJumpsUpAndDecaysDown) {
  PeakEwma p(absl::Seconds(10));
  p.Add(kT0, absl::Milliseconds(100));
  p.Add(kT0 + absl::Seconds(1), absl::Seconds(2));
  EXPECT_DOUBLE_EQ(p.seconds(), 2.0);  // peak is taken at once
  p.Add(kT0 + absl::Seconds(2), absl::Milliseconds(100));
  EXPECT_GT(p.seconds(), 1.5);  // one second later it is still high
  p.Add(kT0 + absl::Seconds(60), absl::Milliseconds(100));
  EXPECT_LT(p.seconds(), 0.2);  // a minute later it has decayed
}

TEST(StatsTest, PeakEwmaDecaysOnReadWithoutSamples) {
  PeakEwma p(absl::Seconds(10));
  p.Add(kT0, absl::Seconds(1));
  EXPECT_DOUBLE_EQ(p.SecondsAt(kT0), 1.0);
  EXPECT_NEAR(p.SecondsAt(kT0 + absl::Seconds(10)), 0.3679, 1e-3);
  EXPECT_LT(p.SecondsAt(kT0 + absl::Seconds(60)), 0.01);
  EXPECT_DOUBLE_EQ(p.seconds(), 1.0);  // reading does not change it
}

TEST(StatsTest, WindowCounterSlidesOut) {
  WindowCounter w(absl::Seconds(10), 10);
  w.Record(kT0, false);
  w.Record(kT0, true);
  w.Record(kT0 + absl::Seconds(5), true);
  EXPECT_EQ(w.total(kT0 + absl::Seconds(5)), 3);
  EXPECT_NEAR(w.SuccessRate(kT0 + absl::Seconds(5)), 2.0 / 3, 1e-9);
  EXPECT_EQ(w.total(kT0 + absl::Seconds(12)), 1);
  EXPECT_EQ(w.total(kT0 + absl::Seconds(30)), 0);
  EXPECT_EQ(w.SuccessRate(kT0 + absl::Seconds(30)), 1.0);
}

TEST(StatsTest, HistogramBucketsByUpperBound) {
  LatencyHistogram h;
  h.Add(absl::Milliseconds(10));
  h.Add(absl::Milliseconds(50));
  h.Add(absl::Milliseconds(51));
  h.Add(absl::Minutes(5));
  EXPECT_EQ(h.counts()[0], 2);
  EXPECT_EQ(h.counts()[1], 1);
  EXPECT_EQ(h.counts().back(), 1);
  EXPECT_EQ(h.count(), 4);
}

}  // namespace
}  // namespace echelon
