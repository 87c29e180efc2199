// A single-threaded EventLoop with manual time, for deterministic tests.
// Posted tasks and due timers run only inside RunUntilIdle()/AdvanceBy(), on
// the calling thread, which counts as the loop thread.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "domain/event_loop.h"

namespace echelon {

class FakeEventLoop : public EventLoop {
 public:
  explicit FakeEventLoop(absl::Time start = absl::FromUnixSeconds(1'000'000))
      : now_(start) {}

  absl::Time Now() const override { return now_; }

  void Post(absl::AnyInvocable<void()> task) override {
    posted_.push_back(std::move(task));
  }

  TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> task) override {
    TimerId id = next_id_++;
    timers_.emplace(std::make_pair(when, id), std::move(task));
    return id;
  }

  void CancelTimer(TimerId id) override {
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (it->first.second == id) {
        timers_.erase(it);
        return;
      }
    }
  }

  bool InLoopThread() const override { return true; }

  // Runs posted tasks and timers due now until none is left.
  void RunUntilIdle() {
    for (;;) {
      if (!posted_.empty()) {
        auto task = std::move(posted_.front());
        posted_.pop_front();
        task();
        continue;
      }
      auto it = timers_.begin();
      if (it != timers_.end() && it->first.first <= now_) {
        auto task = std::move(it->second);
        timers_.erase(it);
        task();
        continue;
      }
      return;
    }
  }

  // Moves time forward by `d`, firing timers in time order at their own due
  // time (Now() reads the timer's time inside its task).
  void AdvanceBy(absl::Duration d) { AdvanceTo(now_ + d); }

  void AdvanceTo(absl::Time t) {
    RunUntilIdle();
    for (;;) {
      auto it = timers_.begin();
      if (it == timers_.end() || it->first.first > t) break;
      if (it->first.first > now_) now_ = it->first.first;
      RunUntilIdle();
    }
    if (t > now_) now_ = t;
    RunUntilIdle();
  }

  size_t pending_timers() const { return timers_.size(); }

 private:
  absl::Time now_;
  TimerId next_id_ = 1;
  std::deque<absl::AnyInvocable<void()>> posted_;
  std::map<std::pair<absl::Time, TimerId>, absl::AnyInvocable<void()>> timers_;
};

}  // namespace echelon
