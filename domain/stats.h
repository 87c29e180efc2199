// Small statistics building blocks shared by instances, pools, echelons and
// task groups: EWMA, a time-bucketed success/failure window, a fixed-bucket
// latency histogram and the traffic counters every routing scope keeps.
// Not thread-safe by themselves: owners guard them (see instance.h, pool.h).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "domain/status.h"

namespace echelon {

// Exponentially weighted moving average of durations; `alpha` is the weight
// of a new sample (0-1). Empty until the first sample.
class Ewma {
 public:
  explicit Ewma(double alpha = 0.3) : alpha_(alpha) {}
  void Add(absl::Duration sample);
  absl::Duration value() const { return value_; }
  bool empty() const { return empty_; }

 private:
  double alpha_;
  absl::Duration value_ = absl::ZeroDuration();
  bool empty_ = true;
};

// Finagle-style peak EWMA: jumps up to a sample above the current value and
// decays towards lower samples with time constant `decay` (so a slow spike
// is remembered for a while). The cost is in seconds.
class PeakEwma {
 public:
  explicit PeakEwma(absl::Duration decay = absl::Seconds(10)) : decay_(decay) {}
  void Add(absl::Time now, absl::Duration sample);
  // The cost at the last sample.
  double seconds() const { return cost_; }
  // The cost as read at `now`: it keeps decaying towards zero while no
  // sample arrives, so an instance that was slow once is tried again
  // eventually instead of being starved forever.
  double SecondsAt(absl::Time now) const;

 private:
  absl::Duration decay_;
  double cost_ = 0;
  absl::Time last_ = absl::InfinitePast();
};

// Successes and failures over a sliding window of `window`, kept in
// `buckets` time buckets (the window slides one bucket at a time).
class WindowCounter {
 public:
  explicit WindowCounter(absl::Duration window = absl::Seconds(60),
                         int buckets = 10);
  void Record(absl::Time now, bool success);
  int64_t successes(absl::Time now) const;
  int64_t failures(absl::Time now) const;
  int64_t total(absl::Time now) const { return successes(now) + failures(now); }
  // 1.0 when the window is empty.
  double SuccessRate(absl::Time now) const;
  void Clear();

 private:
  struct Bucket {
    int64_t index = -1;  // absolute bucket number; -1 = unused
    int64_t successes = 0;
    int64_t failures = 0;
  };
  int64_t IndexOf(absl::Time t) const;
  absl::Duration bucket_width_;
  std::vector<Bucket> buckets_;
};

// Latency histogram with fixed upper bounds (milliseconds); the last bucket
// is unbounded.
class LatencyHistogram {
 public:
  static constexpr std::array<int64_t, 10> kBoundsMs = {
      50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};
  void Add(absl::Duration d);
  // kBoundsMs.size() + 1 counts.
  const std::array<int64_t, kBoundsMs.size() + 1>& counts() const {
    return counts_;
  }
  int64_t count() const { return count_; }

 private:
  std::array<int64_t, kBoundsMs.size() + 1> counts_{};
  int64_t count_ = 0;
};

// Counters every routing scope (instance, pool, echelon, task group) keeps.
struct TrafficStats {
  int64_t requests = 0;
  int64_t successes = 0;
  int64_t failures = 0;
  std::map<std::string, int64_t> failures_by_class;  // ErrorClassName
  int64_t retries = 0;
  int64_t fallbacks_out = 0;  // left this scope for another
  int64_t fallbacks_in = 0;   // reached this scope as a fallback
  int64_t rejected = 0;       // limits or open breaker
  int64_t breaker_transitions = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  int64_t in_flight = 0;
  Ewma latency;
  Ewma ttft;
  LatencyHistogram latency_histogram;
  LatencyHistogram ttft_histogram;
};

TrafficView ToTrafficView(const TrafficStats& s);

}  // namespace echelon
