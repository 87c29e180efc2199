#include "domain/errors.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace echelon {
namespace {

TEST(ErrorsTest, RateLimitIsNotAHealthFailureButIsRetryable) {
  EXPECT_FALSE(IsHealthFailure(ErrorClass::kRateLimited));
  EXPECT_TRUE(IsRetryable(ErrorClass::kRateLimited));
}

TEST(ErrorsTest, ContentFilterAndBadRequestAreNeverRetried) {
  EXPECT_FALSE(IsRetryable(ErrorClass::kContentFiltered));
  EXPECT_FALSE(IsRetryable(ErrorClass::kBadRequest));
  EXPECT_FALSE(IsHealthFailure(ErrorClass::kBadRequest));
}

TEST(ErrorsTest, MapsClassesToSpecificStatusCodes) {
  UpstreamError e;
  e.error_class = ErrorClass::kRateLimited;
  e.message = "slow down";
  absl::Status s = ToStatus(e);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "rate_limited: slow down");
  e.error_class = ErrorClass::kTimeoutTotal;
  EXPECT_EQ(ToStatus(e).code(), absl::StatusCode::kDeadlineExceeded);
  e.error_class = ErrorClass::kStreamCut;
  EXPECT_EQ(ToStatus(e).code(), absl::StatusCode::kAborted);
  e.error_class = ErrorClass::kBadRequest;
  EXPECT_EQ(ToStatus(e).code(), absl::StatusCode::kInvalidArgument);
  e.error_class = ErrorClass::kNone;
  EXPECT_TRUE(ToStatus(e).ok());
}

TEST(ErrorsTest, EveryClassHasADistinctName) {
  std::set<std::string> names;
  for (int c = 0; c <= static_cast<int>(ErrorClass::kCancelled); ++c) {
    names.insert(std::string(ErrorClassName(static_cast<ErrorClass>(c))));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(ErrorClass::kCancelled) + 1);
  EXPECT_EQ(names.count("unknown"), 0u);
}

}  // namespace
}  // namespace echelon
