// An echelon's in-flight limit with an optional bounded FIFO queue whose
// waiters time out. Loop thread only; in_flight() and queued() may be read
// from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "domain/config.h"
#include "domain/event_loop.h"

namespace echelon {

class ConcurrencyLimiter {
 public:
  // Called once: true when a slot was granted (the waiter now holds it),
  // false when the wait timed out or was abandoned.
  using Waiter = absl::AnyInvocable<void(bool granted)>;
  using Ticket = uint64_t;
  static constexpr Ticket kNoTicket = 0;

  ConcurrencyLimiter(const ConcurrencyConfig& config, EventLoop& loop)
      : config_(config), loop_(loop) {}

  // Takes a slot if one is free (always, with no limit).
  bool TryAcquire();
  // Queues for a slot if the queue has room; `waiter` runs from a loop task
  // (never inside Enqueue). Returns kNoTicket when the queue is full.
  Ticket Enqueue(Waiter waiter);
  // Leaves the queue without a callback (the request went away).
  void Abandon(Ticket ticket);
  // Gives a slot back; the oldest waiter, if any, gets it.
  void Release();

  int64_t in_flight() const { return in_flight_.load(); }
  int64_t queued() const { return queued_.load(); }
  const ConcurrencyConfig& config() const { return config_; }

 private:
  struct Entry {
    Ticket ticket;
    Waiter waiter;
    EventLoop::TimerId timer;
  };
  void TimeOut(Ticket ticket);

  ConcurrencyConfig config_;
  EventLoop& loop_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> queued_{0};
  Ticket next_ticket_ = 1;
  std::deque<Entry> queue_;
};

}  // namespace echelon
