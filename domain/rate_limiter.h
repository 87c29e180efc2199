// Requests-per-minute and tokens-per-minute limits for an echelon or an
// instance, with two algorithms:
//  - token_bucket: capacity = per-minute rate x burst, refilled continuously
//    at rate / 60 s;
//  - sliding_window: the sum over the last 60 s must stay within the rate.
// Tokens are reserved before a call (estimated prompt + max_tokens) and
// reconciled with the upstream's reported usage afterwards; actual usage
// above the reservation puts the limiter in debt.
// Not thread-safe: loop thread only; Usage() copies are for status.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>

#include "absl/time/time.h"
#include "domain/config.h"

namespace echelon {

// One per-minute limit.
class MinuteLimit {
 public:
  virtual ~MinuteLimit() = default;
  // Whether `amount` fits now; if not, `*retry_after` says when it may.
  virtual bool CanTake(absl::Time now, int64_t amount,
                       absl::Duration* retry_after) = 0;
  // Consumes `amount` (may be negative to give back).
  virtual void Take(absl::Time now, int64_t amount) = 0;
  // Amount used in the current minute (sliding) or missing from a full
  // bucket (token bucket).
  virtual int64_t Used(absl::Time now) = 0;
};

// `limits` with each per-minute figure scaled by `share` (0 < share <= 1),
// rounded up and never below 1 for a limit that is set: a replica's local
// share of a limit shared by several replicas.
RateLimitConfig ScaleRateLimits(RateLimitConfig limits, double share);

std::unique_ptr<MinuteLimit> MakeMinuteLimit(RateLimitAlgorithm algorithm,
                                             int64_t per_minute, double burst);

class RateLimiter {
 public:
  explicit RateLimiter(const RateLimitConfig& config);

  bool enabled() const { return requests_ != nullptr || tokens_ != nullptr; }

  // Reserves one request and `tokens` tokens, or nothing. On refusal
  // `*retry_after` says when trying again makes sense.
  bool TryAcquire(absl::Time now, int64_t tokens, absl::Duration* retry_after);
  // Corrects a reservation of `reserved` tokens to the `actual` usage.
  void Reconcile(absl::Time now, int64_t reserved, int64_t actual);
  // Gives back a whole reservation (one request and `tokens`) that was
  // never used, e.g. the request could not get a concurrency slot.
  void Cancel(absl::Time now, int64_t tokens);

  struct Usage {
    int64_t requests_per_minute = 0;  // limit, 0 = none
    int64_t tokens_per_minute = 0;    // limit, 0 = none
    int64_t requests_used = 0;
    int64_t tokens_used = 0;
  };
  Usage GetUsage(absl::Time now);

 private:
  RateLimitConfig config_;
  std::unique_ptr<MinuteLimit> requests_;
  std::unique_ptr<MinuteLimit> tokens_;
};

}  // namespace echelon
