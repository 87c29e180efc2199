#include "domain/stats.h"

#include <algorithm>
#include <cmath>

namespace echelon {

void Ewma::Add(absl::Duration sample) {
  if (empty_) {
    value_ = sample;
    empty_ = false;
    return;
  }
  value_ = sample * alpha_ + value_ * (1 - alpha_);
}

void PeakEwma::Add(absl::Time now, absl::Duration sample) {
  double s = absl::ToDoubleSeconds(sample);
  if (last_ == absl::InfinitePast() || s > cost_) {
    cost_ = s;
  } else {
    double dt = std::max(0.0, absl::ToDoubleSeconds(now - last_));
    double w = std::exp(-dt / absl::ToDoubleSeconds(decay_));
    cost_ = cost_ * w + s * (1 - w);
  }
  last_ = now;
}

double PeakEwma::SecondsAt(absl::Time now) const {
  if (last_ == absl::InfinitePast() || now <= last_) return cost_;
  double dt = absl::ToDoubleSeconds(now - last_);
  return cost_ * std::exp(-dt / absl::ToDoubleSeconds(decay_));
}

WindowCounter::WindowCounter(absl::Duration window, int buckets)
    : bucket_width_(window / std::max(1, buckets)),
      buckets_(std::max(1, buckets)) {
  if (bucket_width_ <= absl::ZeroDuration()) bucket_width_ = absl::Seconds(1);
}

int64_t WindowCounter::IndexOf(absl::Time t) const {
  absl::Duration rem;
  return absl::IDivDuration(t - absl::UnixEpoch(), bucket_width_, &rem);
}

void WindowCounter::Record(absl::Time now, bool success) {
  int64_t idx = IndexOf(now);
  Bucket& b = buckets_[static_cast<size_t>(idx) % buckets_.size()];
  if (b.index != idx) b = Bucket{idx, 0, 0};
  (success ? b.successes : b.failures)++;
}

int64_t WindowCounter::successes(absl::Time now) const {
  int64_t idx = IndexOf(now), n = 0;
  int64_t size = static_cast<int64_t>(buckets_.size());
  for (const Bucket& b : buckets_) {
    if (b.index >= 0 && b.index > idx - size && b.index <= idx)
      n += b.successes;
  }
  return n;
}

int64_t WindowCounter::failures(absl::Time now) const {
  int64_t idx = IndexOf(now), n = 0;
  int64_t size = static_cast<int64_t>(buckets_.size());
  for (const Bucket& b : buckets_) {
    if (b.index >= 0 && b.index > idx - size && b.index <= idx) n += b.failures;
  }
  return n;
}

double WindowCounter::SuccessRate(absl::Time now) const {
  int64_t s = successes(now), f = failures(now);
  if (s + f == 0) return 1.0;
  return static_cast<double>(s) / static_cast<double>(s + f);
}

void WindowCounter::Clear() {
  for (Bucket& b : buckets_) b = Bucket{};
}

void LatencyHistogram::Add(absl::Duration d) {
  int64_t ms = absl::ToInt64Milliseconds(d);
  size_t i = 0;
  while (i < kBoundsMs.size() && ms > kBoundsMs[i]) ++i;
  counts_[i]++;
  count_++;
}

TrafficView ToTrafficView(const TrafficStats& s) {
  TrafficView v;
  v.failures_by_class = s.failures_by_class;
  v.retries = s.retries;
  v.fallbacks_out = s.fallbacks_out;
  v.breaker_transitions = s.breaker_transitions;
  v.tokens_in = s.tokens_in;
  v.tokens_out = s.tokens_out;
  v.ewma_latency = s.latency.value();
  v.ewma_ttft = s.ttft.value();
  v.histogram_bounds_ms.assign(LatencyHistogram::kBoundsMs.begin(),
                               LatencyHistogram::kBoundsMs.end());
  v.latency_histogram.assign(s.latency_histogram.counts().begin(),
                             s.latency_histogram.counts().end());
  v.ttft_histogram.assign(s.ttft_histogram.counts().begin(),
                          s.ttft_histogram.counts().end());
  return v;
}

}  // namespace echelon
