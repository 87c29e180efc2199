// Retry timing and the retry budget.
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"
#include "domain/config.h"

namespace echelon {

// Exponential backoff with full jitter: uniform in
// [0, min(max_backoff, initial_backoff * backoff_multiplier^retry)], where
// `retry` counts from 0 for the first retry.
absl::Duration FullJitterBackoff(const RetryConfig& config, int retry,
                                 absl::BitGenRef rng);

// Caps concurrent retries at max(budget_min_retries, budget_ratio x active
// requests), so that a failing upstream is not hit by a retry storm.
// Loop thread only; the counters may be read from any thread.
class RetryBudget {
 public:
  explicit RetryBudget(const RetryConfig& config) : config_(config) {}
  void Reconfigure(const RetryConfig& config) { config_ = config; }

  void RequestStarted() { ++active_requests_; }
  void RequestFinished() {
    if (active_requests_ > 0) --active_requests_;
  }
  // Takes a retry slot if the budget allows; give it back with
  // RetryFinished() when the retried attempt ends.
  bool TryStartRetry();
  void RetryFinished() {
    if (active_retries_ > 0) --active_retries_;
  }

  int64_t active_requests() const { return active_requests_.load(); }
  int64_t active_retries() const { return active_retries_.load(); }
  int64_t limit() const;

 private:
  RetryConfig config_;
  std::atomic<int64_t> active_requests_{0};
  std::atomic<int64_t> active_retries_{0};
};

}  // namespace echelon
