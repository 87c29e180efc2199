#include "domain/retry.h"

#include <algorithm>
#include <cmath>

#include "absl/random/distributions.h"

namespace echelon {

absl::Duration FullJitterBackoff(const RetryConfig& config, int retry,
                                 absl::BitGenRef rng) {
  double factor = std::pow(std::max(1.0, config.backoff_multiplier),
                           static_cast<double>(std::max(0, retry)));
  absl::Duration cap = config.initial_backoff * factor;
  if (cap > config.max_backoff) cap = config.max_backoff;
  if (cap <= absl::ZeroDuration()) return absl::ZeroDuration();
  return cap * absl::Uniform<double>(rng, 0.0, 1.0);
}

int64_t RetryBudget::limit() const {
  int64_t by_ratio = static_cast<int64_t>(
      config_.budget_ratio * static_cast<double>(active_requests_));
  return std::max<int64_t>(config_.budget_min_retries, by_ratio);
}

bool RetryBudget::TryStartRetry() {
  if (active_retries_ >= limit()) return false;
  ++active_retries_;
  return true;
}

}  // namespace echelon
