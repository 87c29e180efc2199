#include "tools/loadgen/histogram.h"

#include <algorithm>
#include <cmath>

namespace echelon::loadgen {

int Histogram::BucketOf(int64_t value) {
  if (value < 0) value = 0;
  if (value < kLinear) return static_cast<int>(value);
  const int msb = 63 - __builtin_clzll(static_cast<uint64_t>(value));
  const int shift = msb - kSubBits;  // >= 1 here
  const int sub = static_cast<int>(value >> shift) - kSubBuckets;
  return kLinear + (shift - 1) * kSubBuckets + sub;
}

int64_t Histogram::BucketLow(int bucket) {
  if (bucket < kLinear) return bucket;
  const int shift = (bucket - kLinear) / kSubBuckets + 1;
  const int sub = (bucket - kLinear) % kSubBuckets;
  return static_cast<int64_t>(kSubBuckets + sub) << shift;
}

int64_t Histogram::BucketHigh(int bucket) {
  if (bucket < kLinear) return bucket;
  const int shift = (bucket - kLinear) / kSubBuckets + 1;
  return BucketLow(bucket) + (int64_t{1} << shift) - 1;
}

void Histogram::Record(int64_t value) {
  if (value < 0) value = 0;
  buckets_[BucketOf(value)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  int64_t seen = max_.load(std::memory_order_relaxed);
  while (value > seen &&
         !max_.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

void Histogram::Merge(const Histogram& other) {
  for (int i = 0; i < kBuckets; ++i) {
    const int64_t n = other.buckets_[i].load(std::memory_order_relaxed);
    if (n != 0) buckets_[i].fetch_add(n, std::memory_order_relaxed);
  }
  count_.fetch_add(other.Count(), std::memory_order_relaxed);
  sum_.fetch_add(other.sum_.load(std::memory_order_relaxed),
                 std::memory_order_relaxed);
  const int64_t m = other.Max();
  int64_t seen = max_.load(std::memory_order_relaxed);
  while (m > seen &&
         !max_.compare_exchange_weak(seen, m, std::memory_order_relaxed)) {
  }
}

void Histogram::Reset() {
  for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
  count_.store(0, std::memory_order_relaxed);
  sum_.store(0, std::memory_order_relaxed);
  max_.store(0, std::memory_order_relaxed);
}

double Histogram::Mean() const {
  const int64_t n = Count();
  if (n == 0) return 0;
  return static_cast<double>(sum_.load(std::memory_order_relaxed)) /
         static_cast<double>(n);
}

int64_t Histogram::Percentile(double q) const {
  int64_t total = 0;
  for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
  if (total == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  int64_t rank =
      static_cast<int64_t>(std::ceil(q * static_cast<double>(total)));
  rank = std::clamp<int64_t>(rank, 1, total);
  int64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i].load(std::memory_order_relaxed);
    if (seen >= rank) return std::min(BucketHigh(i), Max());
  }
  return Max();
}

}  // namespace echelon::loadgen
