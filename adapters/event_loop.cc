#include "adapters/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace echelon {
namespace {

constexpr uint64_t kWakeToken = 0;

absl::Status ErrnoStatus(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<EpollEventLoop>> EpollEventLoop::Create(
    const Options& options) {
  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return ErrnoStatus("epoll_create1");
  int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    absl::Status status = ErrnoStatus("eventfd");
    close(epoll_fd);
    return status;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeToken;
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev) != 0) {
    absl::Status status = ErrnoStatus("epoll_ctl(eventfd)");
    close(wake_fd);
    close(epoll_fd);
    return status;
  }
  Options fixed = options;
  if (fixed.max_events < 1) fixed.max_events = 1;
  return std::unique_ptr<EpollEventLoop>(
      new EpollEventLoop(fixed, epoll_fd, wake_fd));
}

EpollEventLoop::EpollEventLoop(const Options& options, int epoll_fd,
                               int wake_fd)
    : options_(options), epoll_fd_(epoll_fd), wake_fd_(wake_fd) {}

EpollEventLoop::~EpollEventLoop() {
  Stop();
  // Destroy tasks and timers before the fds go away: their captures may
  // unwatch fds.
  {
    absl::MutexLock lock(&mu_);
    posted_.clear();
  }
  running_.clear();
  timers_.clear();
  watches_by_token_.clear();
  watches_by_fd_.clear();
  close(wake_fd_);
  close(epoll_fd_);
}

void EpollEventLoop::Start() {
  thread_ = std::thread([this] { Run(); });
}

void EpollEventLoop::Stop() {
  stopping_.store(true);
  Wake();
  if (thread_.joinable()) thread_.join();
}

void EpollEventLoop::Post(absl::AnyInvocable<void()> task) {
  bool first;
  {
    absl::MutexLock lock(&mu_);
    first = posted_.empty();
    posted_.push_back(std::move(task));
  }
  // One wake per batch: the loop swaps the whole queue out under mu_ and
  // checks it again before it sleeps (NextTimeoutMs), so a task behind
  // another one is seen without a second eventfd write. A task posted from
  // the loop thread itself needs no wake either (the loop is awake).
  if (first && !InLoopThread()) Wake();
}

void EpollEventLoop::Wake() {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop wakes anyway.
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

EventLoop::TimerId EpollEventLoop::RunAt(absl::Time when,
                                         absl::AnyInvocable<void()> task) {
  TimerId id = next_timer_id_++;
  timers_.emplace(std::make_pair(when, id), std::move(task));
  timer_deadlines_.emplace(id, when);
  return id;
}

void EpollEventLoop::CancelTimer(TimerId id) {
  auto it = timer_deadlines_.find(id);
  if (it == timer_deadlines_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_deadlines_.erase(it);
}

bool EpollEventLoop::InLoopThread() const {
  return loop_thread_id_.load() == std::this_thread::get_id();
}

absl::Status EpollEventLoop::WatchFd(int fd, uint32_t events,
                                     FdCallback callback) {
  if (watches_by_fd_.count(fd) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("fd ", fd, " is watched"));
  }
  auto watch = std::make_unique<Watch>();
  watch->fd = fd;
  watch->token = next_watch_token_++;
  watch->callback = std::move(callback);
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = watch->token;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return ErrnoStatus("epoll_ctl(ADD)");
  }
  watches_by_token_.emplace(watch->token, watch.get());
  watches_by_fd_.emplace(fd, std::move(watch));
  return absl::OkStatus();
}

absl::Status EpollEventLoop::ModifyFd(int fd, uint32_t events) {
  auto it = watches_by_fd_.find(fd);
  if (it == watches_by_fd_.end()) {
    return absl::NotFoundError(absl::StrCat("fd ", fd, " is not watched"));
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = it->second->token;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0) {
    return ErrnoStatus("epoll_ctl(MOD)");
  }
  return absl::OkStatus();
}

void EpollEventLoop::UnwatchFd(int fd) {
  auto it = watches_by_fd_.find(fd);
  if (it == watches_by_fd_.end()) return;
  // May fail if the fd was already closed; the kernel dropped it then.
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  watches_by_token_.erase(it->second->token);
  if (in_dispatch_) {
    // The callback being run may be this watch's own: keep it alive until
    // the dispatch finishes.
    graveyard_.push_back(std::move(it->second));
  }
  watches_by_fd_.erase(it);
}

int EpollEventLoop::NextTimeoutMs() const {
  {
    absl::MutexLock lock(&mu_);
    if (!posted_.empty()) return 0;
  }
  if (timers_.empty()) return -1;
  absl::Duration left = timers_.begin()->first.first - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  // Round up so that a timer never fires early.
  int64_t ms =
      absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)));
  if (ms > 60'000) ms = 60'000;
  return static_cast<int>(ms);
}

void EpollEventLoop::RunPosted() {
  {
    absl::MutexLock lock(&mu_);
    if (posted_.empty()) return;
    running_.swap(posted_);  // both keep their capacity: no allocation
  }
  for (auto& task : running_) {
    if (stopping_.load()) break;
    task();
  }
  running_.clear();
}

void EpollEventLoop::RunDueTimers() {
  absl::Time now = absl::Now();
  // Timers added while running (even already due) wait for the next round,
  // so a timer that re-arms itself at "now" cannot starve fds.
  TimerId limit = next_timer_id_;
  while (!timers_.empty() && !stopping_.load()) {
    auto it = timers_.begin();
    if (it->first.first > now) break;
    if (it->first.second >= limit) {
      // Find the next due timer that existed before this round.
      auto jt = it;
      while (jt != timers_.end() && jt->first.first <= now &&
             jt->first.second >= limit) {
        ++jt;
      }
      if (jt == timers_.end() || jt->first.first > now) break;
      it = jt;
    }
    absl::AnyInvocable<void()> task = std::move(it->second);
    timer_deadlines_.erase(it->first.second);
    timers_.erase(it);
    task();
  }
}

void EpollEventLoop::Run() {
  loop_thread_id_.store(std::this_thread::get_id());
  std::vector<epoll_event> events(options_.max_events);
  while (!stopping_.load()) {
    int n = epoll_wait(epoll_fd_, events.data(), options_.max_events,
                       NextTimeoutMs());
    if (n < 0 && errno != EINTR) break;
    in_dispatch_ = true;
    for (int i = 0; i < n && !stopping_.load(); ++i) {
      uint64_t token = events[i].data.u64;
      if (token == kWakeToken) {
        uint64_t value;
        [[maybe_unused]] ssize_t r = read(wake_fd_, &value, sizeof(value));
        continue;
      }
      auto it = watches_by_token_.find(token);
      if (it == watches_by_token_.end()) continue;  // unwatched meanwhile
      it->second->callback(events[i].events);
    }
    in_dispatch_ = false;
    graveyard_.clear();
    RunDueTimers();
    RunPosted();
  }
  loop_thread_id_.store(std::thread::id());
}

}  // namespace echelon
