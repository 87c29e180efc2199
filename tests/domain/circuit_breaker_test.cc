#include "domain/circuit_breaker.h"

#include <vector>

#include "gtest/gtest.h"

namespace echelon {
namespace {

class CircuitBreakerTest : public ::testing::Test {
 protected:
  CircuitBreakerTest() {
    config_.failure_threshold = 3;
    config_.failure_rate_threshold = 0;
    config_.recovery_time = absl::Seconds(10);
    config_.recovery_multiplier = 2;
    config_.max_recovery_time = absl::Seconds(35);
  }
  CircuitBreaker Make() {
    CircuitBreaker b(config_);
    b.set_listener([this](BreakerPhase f, BreakerPhase t) {
      transitions_.push_back({f, t});
    });
    return b;
  }
  absl::Time t0_ = absl::FromUnixSeconds(1000);
  CircuitBreakerConfig config_;
  std::vector<std::pair<BreakerPhase, BreakerPhase>> transitions_;
};

TEST_F(CircuitBreakerTest, OpensAfterConsecutiveFailures) {
  CircuitBreaker b = Make();
  b.OnFailure(t0_);
  b.OnFailure(t0_);
  b.OnSuccess(t0_);  // resets the streak
  b.OnFailure(t0_);
  b.OnFailure(t0_);
  EXPECT_EQ(b.phase(t0_), BreakerPhase::kClosed);
  b.OnFailure(t0_);
  EXPECT_EQ(b.phase(t0_), BreakerPhase::kOpen);
  EXPECT_FALSE(b.Allow(t0_));
  EXPECT_EQ(b.half_open_at(), t0_ + absl::Seconds(10));
}

TEST_F(CircuitBreakerTest, OpensOnFailureRateOnlyWithMinRequests) {
  config_.failure_threshold = 0;
  config_.failure_rate_threshold = 0.5;
  config_.min_requests = 10;
  config_.window = absl::Seconds(60);
  CircuitBreaker b = Make();
  // 4 failures of 6: rate above 50% but fewer than 10 requests.
  for (int i = 0; i < 2; ++i) b.OnSuccess(t0_);
  for (int i = 0; i < 4; ++i) b.OnFailure(t0_);
  EXPECT_EQ(b.phase(t0_), BreakerPhase::kClosed);
  for (int i = 0; i < 2; ++i) b.OnSuccess(t0_);
  for (int i = 0; i < 1; ++i) b.OnFailure(t0_);
  EXPECT_EQ(b.phase(t0_), BreakerPhase::kClosed);  // 5/9, not enough yet
  b.OnFailure(t0_);                                // 6/10 > 50%
  EXPECT_EQ(b.phase(t0_), BreakerPhase::kOpen);
}

TEST_F(CircuitBreakerTest, FailureRateWindowForgetsOldOutcomes) {
  config_.failure_threshold = 0;
  config_.failure_rate_threshold = 0.5;
  config_.min_requests = 4;
  config_.window = absl::Seconds(10);
  CircuitBreaker b = Make();
  for (int i = 0; i < 3; ++i) b.OnFailure(t0_);
  // 20 s later the three failures left the window.
  absl::Time t = t0_ + absl::Seconds(20);
  b.OnSuccess(t);
  b.OnSuccess(t);
  b.OnFailure(t);
  EXPECT_EQ(b.phase(t), BreakerPhase::kClosed);
}

TEST_F(CircuitBreakerTest, HalfOpenAfterRecoveryTimeLimitsProbes) {
  config_.half_open_requests = 2;
  CircuitBreaker b = Make();
  for (int i = 0; i < 3; ++i) b.OnFailure(t0_);
  absl::Time t = t0_ + absl::Seconds(9);
  EXPECT_FALSE(b.Allow(t));
  t = t0_ + absl::Seconds(10);
  EXPECT_TRUE(b.Allow(t));
  EXPECT_TRUE(b.Allow(t));
  EXPECT_FALSE(b.Allow(t));  // two probes at once at most
  b.OnNeutral(t);            // a probe without verdict frees its slot
  EXPECT_TRUE(b.Allow(t));
  EXPECT_EQ(b.phase(t), BreakerPhase::kHalfOpen);
}

TEST_F(CircuitBreakerTest, ClosesAfterSuccessThreshold) {
  config_.success_threshold = 2;
  config_.half_open_requests = 2;
  CircuitBreaker b = Make();
  for (int i = 0; i < 3; ++i) b.OnFailure(t0_);
  absl::Time t = t0_ + absl::Seconds(10);
  ASSERT_TRUE(b.Allow(t));
  b.OnSuccess(t);
  EXPECT_EQ(b.phase(t), BreakerPhase::kHalfOpen);
  ASSERT_TRUE(b.Allow(t));
  b.OnSuccess(t);
  EXPECT_EQ(b.phase(t), BreakerPhase::kClosed);
  using P = BreakerPhase;
  EXPECT_EQ(transitions_,
            (std::vector<std::pair<P, P>>{{P::kClosed, P::kOpen},
                                          {P::kOpen, P::kHalfOpen},
                                          {P::kHalfOpen, P::kClosed}}));
}

TEST_F(CircuitBreakerTest, ReopensWithGrowingCappedRecoveryTime) {
  CircuitBreaker b = Make();
  for (int i = 0; i < 3; ++i) b.OnFailure(t0_);
  EXPECT_EQ(b.half_open_at() - t0_, absl::Seconds(10));
  absl::Time t = t0_;
  std::vector<absl::Duration> open_for;
  for (int i = 0; i < 4; ++i) {
    t = b.half_open_at();
    ASSERT_TRUE(b.Allow(t));
    b.OnFailure(t);  // the probe fails: reopen
    open_for.push_back(b.half_open_at() - t);
  }
  // Reopens: 10 x 2 = 20, then 40 capped at 35.
  EXPECT_EQ(open_for, (std::vector<absl::Duration>{
                          absl::Seconds(20), absl::Seconds(35),
                          absl::Seconds(35), absl::Seconds(35)}));
  // A success streak later resets the multiplier.
  t = b.half_open_at();
  ASSERT_TRUE(b.Allow(t));
  b.OnSuccess(t);
  for (int i = 0; i < 3; ++i) b.OnFailure(t);
  EXPECT_EQ(b.half_open_at() - t, absl::Seconds(10));
}

TEST_F(CircuitBreakerTest, DisabledBreakerNeverOpens) {
  config_.enabled = false;
  CircuitBreaker b = Make();
  for (int i = 0; i < 100; ++i) b.OnFailure(t0_);
  EXPECT_TRUE(b.Allow(t0_));
  EXPECT_EQ(b.phase(t0_), BreakerPhase::kClosed);
}

TEST_F(CircuitBreakerTest, PeekPhaseDoesNotTransition) {
  CircuitBreaker b = Make();
  for (int i = 0; i < 3; ++i) b.OnFailure(t0_);
  absl::Time t = t0_ + absl::Seconds(11);
  EXPECT_EQ(b.PeekPhase(t), BreakerPhase::kHalfOpen);
  EXPECT_EQ(transitions_.size(), 1u);
}

TEST_F(CircuitBreakerTest, ForceOpenAndCloseApplyAnotherReplicasVerdict) {
  CircuitBreaker b = Make();
  b.ForceOpen(t0_, t0_ + absl::Seconds(20));
  EXPECT_EQ(b.phase(t0_), BreakerPhase::kOpen);
  EXPECT_EQ(b.half_open_at(), t0_ + absl::Seconds(20));
  // A shorter verdict does not shorten the open time; a past one is void.
  b.ForceOpen(t0_, t0_ + absl::Seconds(5));
  EXPECT_EQ(b.half_open_at(), t0_ + absl::Seconds(20));
  EXPECT_EQ(b.reopen_count(), 0);
  EXPECT_EQ(b.phase(t0_ + absl::Seconds(20)), BreakerPhase::kHalfOpen);
  EXPECT_TRUE(b.Allow(t0_ + absl::Seconds(20)));
  b.ForceClose(t0_ + absl::Seconds(21));
  EXPECT_EQ(b.phase(t0_ + absl::Seconds(21)), BreakerPhase::kClosed);
  // The probe that was in flight finishing late does not break the count.
  b.OnSuccess(t0_ + absl::Seconds(22));
  EXPECT_EQ(b.phase(t0_ + absl::Seconds(22)), BreakerPhase::kClosed);
  b.ForceOpen(t0_ + absl::Seconds(30), t0_ + absl::Seconds(29));
  EXPECT_EQ(b.phase(t0_ + absl::Seconds(30)), BreakerPhase::kClosed);
  ASSERT_EQ(transitions_.size(), 3u);
  EXPECT_EQ(transitions_[2].second, BreakerPhase::kClosed);
}

}  // namespace
}  // namespace echelon
