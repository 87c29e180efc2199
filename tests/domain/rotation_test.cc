#include "domain/rotation.h"

#include <map>
#include <random>
#include <vector>

#include "absl/random/random.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

std::vector<Candidate> Slots(int n) {
  std::vector<Candidate> c;
  for (int i = 0; i < n; ++i) c.push_back({i, 1, 0, 0, absl::InfinitePast()});
  return c;
}

std::unique_ptr<RotationStrategy> Make(const char* name, int slots) {
  auto s = RotationStrategy::Create(name, slots);
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

TEST(RotationTest, UnknownNameIsInvalidArgument) {
  auto s = RotationStrategy::Create("fastest", 2);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("fastest"), absl::string_view::npos);
}

TEST(RotationTest, EveryNamedStrategyExists) {
  for (const char* n :
       {"round_robin", "random", "weighted", "least_connections",
        "least_recently_used", "p2c_ewma"}) {
    auto s = RotationStrategy::Create(n, 3);
    ASSERT_TRUE(s.ok()) << n;
    EXPECT_EQ((*s)->name(), n);
  }
}

TEST(RotationTest, RoundRobinCyclesAndSkipsIneligibleSlots) {
  absl::BitGen gen(std::seed_seq{1});
  auto s = Make("round_robin", 3);
  auto c = Slots(3);
  std::vector<int> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(c[s->Pick(c, gen)].slot);
  EXPECT_EQ(picks, (std::vector<int>{0, 1, 2, 0, 1, 2}));
  // Slot 1 leaves: rotation continues 0, 2, 0, 2 without bias.
  std::vector<Candidate> without1 = {c[0], c[2]};
  picks.clear();
  for (int i = 0; i < 4; ++i)
    picks.push_back(without1[s->Pick(without1, gen)].slot);
  EXPECT_EQ(picks, (std::vector<int>{0, 2, 0, 2}));
}

TEST(RotationTest, RandomIsRoughlyUniform) {
  absl::BitGen gen(std::seed_seq{2});
  auto s = Make("random", 4);
  auto c = Slots(4);
  std::map<int, int> n;
  for (int i = 0; i < 10000; ++i) n[c[s->Pick(c, gen)].slot]++;
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(n[i] / 10000.0, 0.25, 0.02);
}

TEST(RotationTest, WeightedThreeToOneGivesSeventyFivePercent) {
  absl::BitGen gen(std::seed_seq{3});
  auto s = Make("weighted", 2);
  auto c = Slots(2);
  c[0].weight = 3;
  c[1].weight = 1;
  int first = 0;
  for (int i = 0; i < 10000; ++i) first += c[s->Pick(c, gen)].slot == 0;
  EXPECT_NEAR(first / 10000.0, 0.75, 0.02);
}

TEST(RotationTest, WeightedIsSmoothNotBursty) {
  absl::BitGen gen(std::seed_seq{3});
  auto s = Make("weighted", 3);
  auto c = Slots(3);
  c[0].weight = 5;
  std::vector<int> picks;
  for (int i = 0; i < 7; ++i) picks.push_back(c[s->Pick(c, gen)].slot);
  // nginx's smooth WRR for 5:1:1 interleaves: a a b a c a a.
  EXPECT_EQ(picks, (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
}

TEST(RotationTest, LeastConnectionsAvoidsBusyInstance) {
  absl::BitGen gen(std::seed_seq{4});
  auto s = Make("least_connections", 3);
  auto c = Slots(3);
  c[0].in_flight = 10;
  int busy = 0;
  for (int i = 0; i < 3000; ++i) busy += c[s->Pick(c, gen)].slot == 0;
  // Slot 0 only wins when paired with itself, which P2C never does.
  EXPECT_EQ(busy, 0);
  // Two choices: the less loaded of two random ones.
  c[0].in_flight = 0;
  c[1].in_flight = 1;
  c[2].in_flight = 2;
  std::map<int, int> n;
  for (int i = 0; i < 9000; ++i) n[c[s->Pick(c, gen)].slot]++;
  EXPECT_NEAR(n[0] / 9000.0, 2.0 / 3, 0.03);
  EXPECT_NEAR(n[1] / 9000.0, 1.0 / 3, 0.03);
  EXPECT_EQ(n[2], 0);
}

TEST(RotationTest, LeastRecentlyUsedPicksOldest) {
  absl::BitGen gen(std::seed_seq{5});
  auto s = Make("least_recently_used", 3);
  auto c = Slots(3);
  absl::Time t0 = absl::FromUnixSeconds(100);
  c[0].last_used = t0 + absl::Seconds(2);
  c[1].last_used = t0;
  c[2].last_used = t0 + absl::Seconds(1);
  EXPECT_EQ(c[s->Pick(c, gen)].slot, 1);
  c[1].last_used = t0 + absl::Seconds(3);
  EXPECT_EQ(c[s->Pick(c, gen)].slot, 2);
}

TEST(RotationTest, P2cEwmaWeighsLatencyByInFlight) {
  absl::BitGen gen(std::seed_seq{6});
  auto s = Make("p2c_ewma", 3);
  auto c = Slots(3);
  c[0].cost_seconds = 1.0;  // 10x slower
  c[1].cost_seconds = 0.1;
  c[2].cost_seconds = 0.1;
  int slow = 0;
  for (int i = 0; i < 3000; ++i) slow += c[s->Pick(c, gen)].slot == 0;
  EXPECT_EQ(slow, 0);
  // 0.1 x (10+1) > 1.0 x (0+1): a fast but saturated instance loses.
  c[1].in_flight = 10;
  c[2].in_flight = 12;
  int to_slow = 0;
  for (int i = 0; i < 3000; ++i) to_slow += c[s->Pick(c, gen)].slot == 0;
  EXPECT_NEAR(to_slow / 3000.0, 2.0 / 3, 0.04);
}

}  // namespace
}  // namespace echelon
