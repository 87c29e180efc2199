// The current routing snapshot. A config reload swaps in a new Router; calls
// already running keep the one they started with (they hold a reference).
#pragma once

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "domain/router.h"

namespace echelon {

class RouterHolder {
 public:
  explicit RouterHolder(std::shared_ptr<Router> router)
      : router_(std::move(router)) {}

  // Thread-safe; the returned router stays valid while the caller holds it.
  std::shared_ptr<Router> Get() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return router_;
  }

  // Installs `next`; returns the previous router.
  std::shared_ptr<Router> Swap(std::shared_ptr<Router> next)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::swap(router_, next);
    return next;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<Router> router_ ABSL_GUARDED_BY(mu_);
};

}  // namespace echelon
