// A lock-free latency histogram with logarithmic buckets (HDR-like).
//
// Values are non-negative integers (the load generator records
// nanoseconds). Values below 128 get exact buckets; above, every power of two
// is split into 64 linear sub-buckets, so a reported percentile is within
// 1/64 (about 1.6 %) of the true value. Record() may be called from many
// threads at once; reads (Percentile, Count, ...) are meant for after the
// writers stopped, but are safe at any time.
#ifndef ECHELON_TOOLS_LOADGEN_HISTOGRAM_H_
#define ECHELON_TOOLS_LOADGEN_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>

namespace echelon::loadgen {

class Histogram {
 public:
  static constexpr int kSubBits = 6;
  static constexpr int kSubBuckets = 1 << kSubBits;  // 64
  static constexpr int kLinear = 2 * kSubBuckets;    // exact below 128
  static constexpr int kBuckets = kLinear + (62 - kSubBits) * kSubBuckets;

  Histogram() = default;
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Records one value; negative values count as 0.
  void Record(int64_t value);
  // Adds every count of `other` to this histogram.
  void Merge(const Histogram& other);
  void Reset();

  int64_t Count() const { return count_.load(std::memory_order_relaxed); }
  int64_t Max() const { return max_.load(std::memory_order_relaxed); }
  double Mean() const;
  // The value at quantile q (0..1): the upper edge of the bucket holding the
  // ceil(q * count)-th smallest value, capped at Max(). 0 when empty.
  int64_t Percentile(double q) const;

  // Bucket mapping, exposed for tests.
  static int BucketOf(int64_t value);
  static int64_t BucketLow(int bucket);
  static int64_t BucketHigh(int bucket);

 private:
  std::array<std::atomic<int64_t>, kBuckets> buckets_{};
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> sum_{0};
  std::atomic<int64_t> max_{0};
};

}  // namespace echelon::loadgen

#endif  // ECHELON_TOOLS_LOADGEN_HISTOGRAM_H_
