#include "domain/rotation.h"

#include <algorithm>
#include <string>

#include "absl/random/distributions.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace echelon {
namespace {

// Next slot at or after the cursor, cyclically.
class RoundRobin : public RotationStrategy {
 public:
  explicit RoundRobin(int num_slots) : num_slots_(std::max(1, num_slots)) {}
  size_t Pick(const std::vector<Candidate>& c, absl::BitGenRef) override {
    size_t best = 0;
    int best_distance = num_slots_ + 1;
    for (size_t i = 0; i < c.size(); ++i) {
      int d = ((c[i].slot - next_) % num_slots_ + num_slots_) % num_slots_;
      if (d < best_distance) {
        best_distance = d;
        best = i;
      }
    }
    next_ = (c[best].slot + 1) % num_slots_;
    return best;
  }
  absl::string_view name() const override { return "round_robin"; }

 private:
  int num_slots_;
  int next_ = 0;
};

class Random : public RotationStrategy {
 public:
  size_t Pick(const std::vector<Candidate>& c, absl::BitGenRef rng) override {
    return absl::Uniform<size_t>(rng, 0, c.size());
  }
  absl::string_view name() const override { return "random"; }
};

// Smooth weighted round robin (nginx): every pick adds each candidate's
// weight to its current weight, takes the largest and subtracts the total.
class Weighted : public RotationStrategy {
 public:
  explicit Weighted(int num_slots) : current_(std::max(1, num_slots), 0) {}
  size_t Pick(const std::vector<Candidate>& c, absl::BitGenRef) override {
    int64_t total = 0;
    size_t best = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      int64_t w = std::max(1, c[i].weight);
      total += w;
      current_[Slot(c[i])] += w;
      if (current_[Slot(c[i])] > current_[Slot(c[best])]) best = i;
    }
    current_[Slot(c[best])] -= total;
    return best;
  }
  absl::string_view name() const override { return "weighted"; }

 private:
  size_t Slot(const Candidate& c) const {
    return static_cast<size_t>(c.slot) % current_.size();
  }
  std::vector<int64_t> current_;
};

// Two distinct random candidates; `better(a, b)` says a wins.
template <typename Better>
size_t PowerOfTwo(const std::vector<Candidate>& c, absl::BitGenRef rng,
                  Better better) {
  if (c.size() == 1) return 0;
  size_t a = absl::Uniform<size_t>(rng, 0, c.size());
  size_t b = absl::Uniform<size_t>(rng, 0, c.size() - 1);
  if (b >= a) ++b;
  return better(c[b], c[a]) ? b : a;
}

class LeastConnections : public RotationStrategy {
 public:
  size_t Pick(const std::vector<Candidate>& c, absl::BitGenRef rng) override {
    return PowerOfTwo(c, rng, [](const Candidate& x, const Candidate& y) {
      return x.in_flight < y.in_flight;
    });
  }
  absl::string_view name() const override { return "least_connections"; }
};

class LeastRecentlyUsed : public RotationStrategy {
 public:
  size_t Pick(const std::vector<Candidate>& c, absl::BitGenRef) override {
    size_t best = 0;
    for (size_t i = 1; i < c.size(); ++i) {
      if (c[i].last_used < c[best].last_used) best = i;
    }
    return best;
  }
  absl::string_view name() const override { return "least_recently_used"; }
};

class P2cEwma : public RotationStrategy {
 public:
  size_t Pick(const std::vector<Candidate>& c, absl::BitGenRef rng) override {
    return PowerOfTwo(c, rng, [](const Candidate& x, const Candidate& y) {
      return Load(x) < Load(y);
    });
  }
  absl::string_view name() const override { return "p2c_ewma"; }

 private:
  static double Load(const Candidate& c) {
    return c.cost_seconds * static_cast<double>(c.in_flight + 1);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<RotationStrategy>> RotationStrategy::Create(
    absl::string_view name, int num_slots) {
  if (name == "round_robin") return std::make_unique<RoundRobin>(num_slots);
  if (name == "random") return std::make_unique<Random>();
  if (name == "weighted") return std::make_unique<Weighted>(num_slots);
  if (name == "least_connections") return std::make_unique<LeastConnections>();
  if (name == "least_recently_used") {
    return std::make_unique<LeastRecentlyUsed>();
  }
  if (name == "p2c_ewma") return std::make_unique<P2cEwma>();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown rotation strategy '", name, "'"));
}

}  // namespace echelon
