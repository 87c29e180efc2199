#include "domain/concurrency_limiter.h"

#include <memory>
#include <utility>

namespace echelon {

bool ConcurrencyLimiter::TryAcquire() {
  if (config_.max_concurrency > 0 && in_flight_ >= config_.max_concurrency) {
    return false;
  }
  ++in_flight_;
  return true;
}

ConcurrencyLimiter::Ticket ConcurrencyLimiter::Enqueue(Waiter waiter) {
  if (static_cast<int64_t>(queue_.size()) >= config_.queue_size) {
    return kNoTicket;
  }
  Ticket t = next_ticket_++;
  EventLoop::TimerId timer =
      loop_.RunAfter(config_.queue_timeout, [this, t] { TimeOut(t); });
  queue_.push_back({t, std::move(waiter), timer});
  queued_ = static_cast<int64_t>(queue_.size());
  return t;
}

void ConcurrencyLimiter::TimeOut(Ticket ticket) {
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->ticket == ticket) {
      Waiter w = std::move(it->waiter);
      queue_.erase(it);
      queued_ = static_cast<int64_t>(queue_.size());
      w(false);
      return;
    }
  }
}

void ConcurrencyLimiter::Abandon(Ticket ticket) {
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->ticket == ticket) {
      loop_.CancelTimer(it->timer);
      queue_.erase(it);
      queued_ = static_cast<int64_t>(queue_.size());
      return;
    }
  }
}

void ConcurrencyLimiter::Release() {
  if (in_flight_ > 0) --in_flight_;
  if (queue_.empty()) return;
  if (config_.max_concurrency > 0 && in_flight_ >= config_.max_concurrency) {
    return;
  }
  Entry e = std::move(queue_.front());
  queue_.pop_front();
  queued_ = static_cast<int64_t>(queue_.size());
  loop_.CancelTimer(e.timer);
  ++in_flight_;  // the slot passes straight to the waiter
  auto waiter = std::make_shared<Waiter>(std::move(e.waiter));
  loop_.Post([waiter] { (*waiter)(true); });
}

}  // namespace echelon
