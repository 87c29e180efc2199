// The production event loop: one thread, epoll for fd readiness, an eventfd
// to wake the thread for Post(), and a timer map whose earliest deadline sets
// the epoll_wait timeout. The HTTP client (adapters/http_client.h) registers
// libcurl's sockets here with WatchFd().
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "domain/event_loop.h"

namespace echelon {

class EpollEventLoop : public EventLoop {
 public:
  struct Options {
    // Most fd events handled per epoll_wait call.
    int max_events = 256;
  };

  // Called on the loop thread with the ready epoll event bits (EPOLLIN,
  // EPOLLOUT, EPOLLERR, EPOLLHUP).
  using FdCallback = absl::AnyInvocable<void(uint32_t events)>;

  // Fails with kInternal when epoll or eventfd cannot be created.
  static absl::StatusOr<std::unique_ptr<EpollEventLoop>> Create(
      const Options& options);

  // Stops and joins the thread; pending posted tasks and timers are dropped.
  ~EpollEventLoop() override;

  // Spawns the loop thread. Call once.
  void Start();
  // Asks the loop to exit and joins it. Idempotent; must not be called on
  // the loop thread. Tasks posted after Stop() never run.
  void Stop();

  // EventLoop. Post() is thread-safe; the rest is loop thread only.
  absl::Time Now() const override { return absl::Now(); }
  void Post(absl::AnyInvocable<void()> task) override;
  TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> task) override;
  void CancelTimer(TimerId id) override;
  bool InLoopThread() const override;

  // Watches `fd` for `events` (EPOLLIN | EPOLLOUT bits). Loop thread only.
  // Returns kAlreadyExists when the fd is already watched (use ModifyFd) and
  // kInternal when epoll_ctl fails.
  absl::Status WatchFd(int fd, uint32_t events, FdCallback callback);
  // Changes the watched event bits of a watched fd; kNotFound if unwatched.
  absl::Status ModifyFd(int fd, uint32_t events);
  // Stops watching `fd`; no callback for it runs afterwards, not even for
  // events already collected in the current epoll_wait batch. A no-op for an
  // unwatched fd. Call it before closing the fd.
  void UnwatchFd(int fd);

  // Number of pending timers (for tests and metrics). Loop thread only.
  size_t pending_timers() const { return timers_.size(); }

 private:
  EpollEventLoop(const Options& options, int epoll_fd, int wake_fd);

  void Run();
  void Wake();
  void RunPosted();
  void RunDueTimers();
  int NextTimeoutMs() const;

  struct Watch {
    int fd;
    uint64_t token;  // epoll data; unique per registration
    FdCallback callback;
  };

  const Options options_;
  const int epoll_fd_;
  const int wake_fd_;
  std::thread thread_;
  std::atomic<std::thread::id> loop_thread_id_{};
  std::atomic<bool> stopping_{false};

  mutable absl::Mutex mu_;
  std::vector<absl::AnyInvocable<void()>> posted_ ABSL_GUARDED_BY(mu_);
  // Loop thread only: the batch RunPosted() is running.
  std::vector<absl::AnyInvocable<void()>> running_;

  // Loop thread only.
  TimerId next_timer_id_ = 1;
  std::map<std::pair<absl::Time, TimerId>, absl::AnyInvocable<void()>> timers_;
  std::unordered_map<TimerId, absl::Time> timer_deadlines_;
  uint64_t next_watch_token_ = 1;
  std::unordered_map<int, std::unique_ptr<Watch>> watches_by_fd_;
  std::unordered_map<uint64_t, Watch*> watches_by_token_;
  bool in_dispatch_ = false;
  std::vector<std::unique_ptr<Watch>> graveyard_;  // unwatched mid-dispatch
};

}  // namespace echelon
