// Rotation strategies: how a pool picks one instance among the eligible
// ones. Each strategy is a small class behind RotationStrategy, chosen by
// name from the pool's config. Loop thread only (strategies keep state).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace echelon {

// What a strategy may know about one eligible instance.
struct Candidate {
  int slot = 0;  // stable index of the instance in its pool, 0..num_slots-1
  int weight = 1;
  int64_t in_flight = 0;
  double cost_seconds = 0;  // peak-EWMA latency
  absl::Time last_used = absl::InfinitePast();
};

class RotationStrategy {
 public:
  virtual ~RotationStrategy() = default;
  // Returns an index into `candidates`, which is never empty. Strategies
  // stay fair when the eligible set changes between picks (slots keep
  // their identity).
  virtual size_t Pick(const std::vector<Candidate>& candidates,
                      absl::BitGenRef rng) = 0;
  virtual absl::string_view name() const = 0;

  // round_robin, random, weighted (smooth weighted round robin),
  // least_connections (power of two choices on in-flight),
  // least_recently_used, p2c_ewma (power of two choices on
  // peak-EWMA latency x (in-flight + 1)).
  // Errors: INVALID_ARGUMENT for an unknown name.
  static absl::StatusOr<std::unique_ptr<RotationStrategy>> Create(
      absl::string_view name, int num_slots);
};

}  // namespace echelon
