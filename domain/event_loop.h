// The port to the event loop that runs the request path.
//
// Threading model: all routing state of a request, every upstream callback
// and every timer run on the loop's thread, so per-request state needs no
// locks. Other threads (gRPC, HTTP front, admin) hand work to the loop with
// Post(). Production implementation: adapters/event_loop.h (epoll + timerfd +
// libcurl multi). Tests: tests/fakes/fake_event_loop.h (manual time).
#pragma once

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "domain/clock.h"

namespace echelon {

class EventLoop : public Clock {
 public:
  using TimerId = uint64_t;
  static constexpr TimerId kNoTimer = 0;

  // Runs `task` on the loop thread soon, in FIFO order. Thread-safe.
  virtual void Post(absl::AnyInvocable<void()> task) = 0;

  // Runs `task` on the loop thread at or after `when`. Loop thread only.
  // Returns an id for CancelTimer(); never kNoTimer.
  virtual TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> task) = 0;

  TimerId RunAfter(absl::Duration delay, absl::AnyInvocable<void()> task) {
    return RunAt(Now() + delay, std::move(task));
  }

  // Cancels a pending timer; a no-op for a timer that already ran or was
  // cancelled, or for kNoTimer. Loop thread only.
  virtual void CancelTimer(TimerId id) = 0;

  // Whether the caller runs on the loop thread.
  virtual bool InLoopThread() const = 0;
};

}  // namespace echelon
