#include "domain/instance.h"

#include "gtest/gtest.h"

namespace echelon {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(9000);

Instance Make(InstanceConfig c = {}) {
  c.id = "a";
  auto ep = std::make_shared<Endpoint>();
  ep->base_url = "http://a";
  return Instance({"m", "a", "http://a", "key"}, "p", c, ep);
}

TEST(InstanceTest, NameIsModelSlashId) {
  Instance i = Make();
  EXPECT_EQ(i.name(), "m/a");
  EXPECT_EQ(i.provider(), "p");
  EXPECT_TRUE(i.Unavailable(kT0).empty());
}

TEST(InstanceTest, CooldownAndDisableKeepItOutUntilTheirTime) {
  Instance i = Make();
  i.CoolDown(kT0 + absl::Seconds(5));
  EXPECT_EQ(i.Unavailable(kT0), "rate_limit_cooldown");
  EXPECT_TRUE(i.Unavailable(kT0 + absl::Seconds(5)).empty());
  i.Disable(kT0 + absl::Hours(1));
  EXPECT_EQ(i.Unavailable(kT0 + absl::Minutes(59)), "disabled");
  EXPECT_TRUE(i.Unavailable(kT0 + absl::Hours(1)).empty());
}

TEST(InstanceTest, MaxConcurrencyCapsInFlight) {
  InstanceConfig c;
  c.max_concurrency = 1;
  Instance i = Make(c);
  i.AttemptStarted(kT0);
  EXPECT_EQ(i.Unavailable(kT0), "max_concurrency");
  i.AttemptFinished(kT0, ErrorClass::kNone, absl::Seconds(1),
                    absl::ZeroDuration(), "", 1, 1);
  EXPECT_TRUE(i.Unavailable(kT0).empty());
}

TEST(InstanceTest, OwnRpmAndTpmLimits) {
  InstanceConfig c;
  c.requests_per_minute = 2;
  c.tokens_per_minute = 100;
  Instance i = Make(c);
  EXPECT_TRUE(i.TryReserve(kT0, 10, nullptr));
  EXPECT_FALSE(i.TryReserve(kT0, 95, nullptr));  // TPM
  EXPECT_TRUE(i.TryReserve(kT0, 10, nullptr));
  EXPECT_FALSE(i.TryReserve(kT0, 1, nullptr));  // RPM
  EXPECT_TRUE(i.TryReserve(kT0 + absl::Minutes(1), 1, nullptr));
}

TEST(InstanceTest, TracksLatencyTtftTokensAndLastError) {
  Instance i = Make();
  i.AttemptStarted(kT0);
  i.AttemptFinished(kT0, ErrorClass::kNone, absl::Milliseconds(400),
                    absl::Milliseconds(100), "", 30, 7);
  i.AttemptStarted(kT0);
  i.AttemptFinished(kT0, ErrorClass::kServerError, absl::Milliseconds(50),
                    absl::ZeroDuration(), "HTTP 502", 0, 0);
  Instance::Snapshot s = i.GetSnapshot(kT0);
  EXPECT_EQ(s.stats.requests, 2);
  EXPECT_EQ(s.stats.successes, 1);
  EXPECT_EQ(s.stats.failures, 1);
  EXPECT_EQ(s.stats.failures_by_class["server_error"], 1);
  EXPECT_EQ(s.stats.latency.value(), absl::Milliseconds(400));
  EXPECT_EQ(s.stats.ttft.value(), absl::Milliseconds(100));
  EXPECT_EQ(s.stats.tokens_in, 30);
  EXPECT_EQ(s.stats.tokens_out, 7);
  EXPECT_EQ(s.last_error, "server_error: HTTP 502");
  EXPECT_DOUBLE_EQ(s.success_rate, 0.5);
  EXPECT_EQ(s.last_used, kT0);
  EXPECT_EQ(s.stats.in_flight, 0);
}

}  // namespace
}  // namespace echelon
