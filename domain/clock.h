// Time source. Production code uses RealClock(); tests use a fake clock so
// that no unit test ever sleeps.
#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace echelon {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The process-wide wall clock. Thread-safe; never destroyed.
Clock& RealClock();

}  // namespace echelon
