// Watches a configuration directory (recursively) with inotify and calls a
// callback once a burst of changes has settled. A building block for hot
// reload: the caller reloads with LoadConfig() and swaps its snapshot; SIGHUP
// and the ReloadConfig RPC are separate triggers wired elsewhere.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace echelon {

class ConfigWatcher {
 public:
  struct Options {
    // Quiet time after the last file event before the callback runs, so an
    // editor's save or a `git checkout` of many files gives one reload.
    absl::Duration debounce = absl::Milliseconds(200);
    // Upper bound on the wait while events keep coming.
    absl::Duration max_delay = absl::Seconds(2);
    // When the watched directory is moved away or deleted, how often to look
    // for a new one at the same path (its appearance is a change).
    absl::Duration root_retry_interval = absl::Milliseconds(250);
  };

  // Runs on the watcher's own thread, never concurrently with itself. It
  // should hand the work over (e.g. EventLoop::Post) rather than block long.
  using Callback = std::function<void()>;

  // Starts watching `path`: a directory (with every subdirectory, including
  // ones created later, and a new directory put in its place) or a single
  // file (its directory is watched).
  // Errors: kNotFound when `path` does not exist; kInternal when inotify or
  // the thread cannot be set up.
  static absl::StatusOr<std::unique_ptr<ConfigWatcher>> Create(
      const std::string& path, Callback callback, Options options);
  static absl::StatusOr<std::unique_ptr<ConfigWatcher>> Create(
      const std::string& path, Callback callback) {
    return Create(path, std::move(callback), Options());
  }

  // Stops the thread. No callback runs after the destructor returns (one in
  // progress is waited for).
  ~ConfigWatcher();

  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

 private:
  ConfigWatcher(int inotify_fd, int wake_fd, Callback callback,
                Options options);
  void Run();
  // Adds a watch on `dir` and every directory below it.
  void WatchTree(const std::string& dir);

  const int inotify_fd_;
  const int wake_fd_;  // eventfd; written by the destructor
  Callback callback_;
  const Options options_;
  // Set up by Create(), then only touched by the watcher thread.
  std::string root_;                        // the watched directory
  std::map<int, std::string> directories_;  // watch descriptor -> path
  std::thread thread_;
};

}  // namespace echelon
