#include "domain/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace echelon {
namespace {

class TokenBucket : public MinuteLimit {
 public:
  TokenBucket(int64_t per_minute, double burst)
      : rate_per_second_(static_cast<double>(per_minute) / 60.0),
        capacity_(std::max(
            1.0, static_cast<double>(per_minute) * (burst > 0 ? burst : 1.0))),
        level_(capacity_) {}

  bool CanTake(absl::Time now, int64_t amount,
               absl::Duration* retry_after) override {
    Refill(now);
    double need = static_cast<double>(amount);
    // A request larger than the whole bucket can only pass when full.
    if (need > capacity_) need = capacity_;
    if (level_ >= need) return true;
    if (retry_after != nullptr) {
      *retry_after = absl::Seconds((need - level_) / rate_per_second_);
    }
    return false;
  }
  void Take(absl::Time now, int64_t amount) override {
    Refill(now);
    level_ = std::min(capacity_, level_ - static_cast<double>(amount));
  }
  int64_t Used(absl::Time now) override {
    Refill(now);
    return static_cast<int64_t>(std::ceil(capacity_ - level_));
  }

 private:
  void Refill(absl::Time now) {
    if (last_ != absl::InfinitePast() && now > last_) {
      level_ = std::min(capacity_, level_ + absl::ToDoubleSeconds(now - last_) *
                                                rate_per_second_);
    }
    if (last_ == absl::InfinitePast() || now > last_) last_ = now;
  }
  double rate_per_second_;
  double capacity_;
  double level_;
  absl::Time last_ = absl::InfinitePast();
};

class SlidingWindow : public MinuteLimit {
 public:
  explicit SlidingWindow(int64_t per_minute) : limit_(per_minute) {}

  bool CanTake(absl::Time now, int64_t amount,
               absl::Duration* retry_after) override {
    Expire(now);
    int64_t need = std::min(amount, limit_);
    if (sum_ + need <= limit_) return true;
    if (retry_after != nullptr) {
      // Wait until enough old entries leave the window.
      int64_t excess = sum_ + need - limit_;
      *retry_after = absl::Minutes(1);
      for (const Entry& e : entries_) {
        excess -= e.amount;
        if (excess <= 0) {
          *retry_after = e.at + absl::Minutes(1) - now;
          break;
        }
      }
    }
    return false;
  }
  void Take(absl::Time now, int64_t amount) override {
    Expire(now);
    entries_.push_back({now, amount});
    sum_ += amount;
  }
  int64_t Used(absl::Time now) override {
    Expire(now);
    return sum_;
  }

 private:
  struct Entry {
    absl::Time at;
    int64_t amount;
  };
  void Expire(absl::Time now) {
    while (!entries_.empty() && entries_.front().at + absl::Minutes(1) <= now) {
      sum_ -= entries_.front().amount;
      entries_.pop_front();
    }
  }
  int64_t limit_;
  int64_t sum_ = 0;
  std::deque<Entry> entries_;
};

}  // namespace

RateLimitConfig ScaleRateLimits(RateLimitConfig limits, double share) {
  if (share >= 1.0 || share <= 0.0) return limits;
  auto scale = [share](int64_t v) -> int64_t {
    if (v <= 0) return v;
    return std::max<int64_t>(
        1,
        static_cast<int64_t>(std::ceil(static_cast<double>(v) * share - 1e-9)));
  };
  limits.requests_per_minute = scale(limits.requests_per_minute);
  limits.tokens_per_minute = scale(limits.tokens_per_minute);
  return limits;
}

std::unique_ptr<MinuteLimit> MakeMinuteLimit(RateLimitAlgorithm algorithm,
                                             int64_t per_minute, double burst) {
  if (per_minute <= 0) return nullptr;
  if (algorithm == RateLimitAlgorithm::kSlidingWindow) {
    return std::make_unique<SlidingWindow>(per_minute);
  }
  return std::make_unique<TokenBucket>(per_minute, burst);
}

RateLimiter::RateLimiter(const RateLimitConfig& config)
    : config_(config),
      requests_(MakeMinuteLimit(config.algorithm, config.requests_per_minute,
                                config.burst)),
      tokens_(MakeMinuteLimit(config.algorithm, config.tokens_per_minute,
                              config.burst)) {}

bool RateLimiter::TryAcquire(absl::Time now, int64_t tokens,
                             absl::Duration* retry_after) {
  absl::Duration wait_r = absl::ZeroDuration(), wait_t = absl::ZeroDuration();
  bool ok_r = requests_ == nullptr || requests_->CanTake(now, 1, &wait_r);
  bool ok_t = tokens_ == nullptr || tokens_->CanTake(now, tokens, &wait_t);
  if (!ok_r || !ok_t) {
    if (retry_after != nullptr) *retry_after = std::max(wait_r, wait_t);
    return false;
  }
  if (requests_ != nullptr) requests_->Take(now, 1);
  if (tokens_ != nullptr) tokens_->Take(now, tokens);
  return true;
}

void RateLimiter::Reconcile(absl::Time now, int64_t reserved, int64_t actual) {
  if (tokens_ != nullptr && actual != reserved) {
    tokens_->Take(now, actual - reserved);
  }
}

void RateLimiter::Cancel(absl::Time now, int64_t tokens) {
  if (requests_ != nullptr) requests_->Take(now, -1);
  if (tokens_ != nullptr) tokens_->Take(now, -tokens);
}

RateLimiter::Usage RateLimiter::GetUsage(absl::Time now) {
  Usage u;
  u.requests_per_minute = config_.requests_per_minute;
  u.tokens_per_minute = config_.tokens_per_minute;
  if (requests_ != nullptr) u.requests_used = requests_->Used(now);
  if (tokens_ != nullptr) u.tokens_used = tokens_->Used(now);
  return u;
}

}  // namespace echelon
