#include "adapters/config_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace echelon {
namespace {

constexpr uint32_t kEvents = IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE |
                             IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                             IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int ToPollTimeout(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  // Round up so that we do not wake just before the deadline.
  return static_cast<int>(absl::ToInt64Milliseconds(d + absl::Milliseconds(1)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConfigWatcher>> ConfigWatcher::Create(
    const std::string& path, Callback callback, Options options) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot watch ", path, ": ", strerror(errno)));
  }
  std::string dir = path;
  if (!S_ISDIR(st.st_mode)) {
    dir = std::filesystem::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
  }
  const int inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd < 0) {
    return absl::InternalError(
        absl::StrCat("inotify_init1: ", strerror(errno)));
  }
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int error = errno;
    close(inotify_fd);
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(error)));
  }
  std::unique_ptr<ConfigWatcher> watcher(
      new ConfigWatcher(inotify_fd, wake_fd, std::move(callback), options));
  watcher->root_ = dir;
  watcher->WatchTree(dir);
  if (watcher->directories_.empty()) {
    return absl::InternalError(
        absl::StrCat("inotify_add_watch ", dir, ": ", strerror(errno)));
  }
  try {
    watcher->thread_ = std::thread([w = watcher.get()] { w->Run(); });
  } catch (const std::system_error& e) {
    return absl::InternalError(
        absl::StrCat("cannot start the watcher thread: ", e.what()));
  }
  return watcher;
}

ConfigWatcher::ConfigWatcher(int inotify_fd, int wake_fd, Callback callback,
                             Options options)
    : inotify_fd_(inotify_fd),
      wake_fd_(wake_fd),
      callback_(std::move(callback)),
      options_(options) {}

ConfigWatcher::~ConfigWatcher() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    // A full eventfd counter still wakes the thread; nothing to handle.
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  close(inotify_fd_);
  close(wake_fd_);
}

void ConfigWatcher::WatchTree(const std::string& dir) {
  const int wd = inotify_add_watch(inotify_fd_, dir.c_str(), kEvents);
  if (wd < 0) return;
  directories_[wd] = dir;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    std::error_code type_error;
    if (entry.is_directory(type_error) && !entry.is_symlink(type_error)) {
      WatchTree(entry.path().string());
    }
  }
}

void ConfigWatcher::Run() {
  bool pending = false;
  // The watched directory itself was moved away or deleted (e.g. replaced by
  // a deployment); we look for a new one at the same path.
  bool root_lost = false;
  absl::Time first_event;
  absl::Time last_event;
  alignas(struct inotify_event) char buffer[16 * 1024];
  auto note_event = [&] {
    const absl::Time now = absl::Now();
    if (!pending) first_event = now;
    last_event = now;
    pending = true;
  };
  while (true) {
    if (root_lost && IsDirectory(root_)) {
      WatchTree(root_);
      root_lost = directories_.empty();
      if (!root_lost) note_event();
    }
    int timeout = -1;
    if (pending) {
      const absl::Time now = absl::Now();
      const absl::Time fire = std::min(last_event + options_.debounce,
                                       first_event + options_.max_delay);
      timeout = ToPollTimeout(fire - now);
    }
    if (root_lost) {
      const int retry = ToPollTimeout(options_.root_retry_interval);
      timeout = timeout < 0 ? retry : std::min(timeout, retry);
    }
    struct pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int ready = poll(fds, 2, timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;  // stopping
    if (fds[0].revents & POLLIN) {
      while (true) {
        const ssize_t n = read(inotify_fd_, buffer, sizeof(buffer));
        if (n <= 0) break;
        for (ssize_t offset = 0; offset < n;) {
          const auto* event =
              reinterpret_cast<const struct inotify_event*>(buffer + offset);
          offset += sizeof(struct inotify_event) + event->len;
          if (event->mask & IN_IGNORED) {
            directories_.erase(event->wd);
            continue;
          }
          auto watched = directories_.find(event->wd);
          if ((event->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) &&
              watched != directories_.end() && watched->second == root_) {
            // Every path below the old root is stale now.
            for (const auto& [wd, path] : directories_) {
              inotify_rm_watch(inotify_fd_, wd);
            }
            directories_.clear();
            root_lost = true;
            continue;
          }
          // A new (or moved-in) subdirectory is watched too.
          if ((event->mask & IN_ISDIR) &&
              (event->mask & (IN_CREATE | IN_MOVED_TO)) && event->len > 0) {
            auto dir = directories_.find(event->wd);
            if (dir != directories_.end()) {
              const std::string path =
                  absl::StrCat(dir->second, "/", event->name);
              if (IsDirectory(path)) WatchTree(path);
            }
          }
        }
        note_event();
      }
      continue;
    }
    if (pending) {
      const absl::Time now = absl::Now();
      if (now >= last_event + options_.debounce ||
          now >= first_event + options_.max_delay) {
        pending = false;
        callback_();
      }
    }
  }
}

}  // namespace echelon
