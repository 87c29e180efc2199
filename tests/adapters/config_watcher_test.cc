#include "adapters/config_watcher.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

// Real inotify in a temporary directory. Waits are bounded; nothing sleeps
// for a fixed time except the quiet periods that check "no more callbacks".
class ConfigWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info =
        ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::string(std::getenv("TEST_TMPDIR")) + "/" + info->name();
    ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir((dir_ + "/pools").c_str(), 0755), 0);
    Write("_registry.yaml", "version: 1\n");
  }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream out(dir_ + "/" + name);
    out << text;
  }

  ConfigWatcher::Callback Counter() {
    return [this] {
      absl::MutexLock lock(&mu_);
      ++calls_;
    };
  }

  // Waits until at least `n` callbacks ran, for at most `timeout`.
  bool WaitForCalls(int n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return calls_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  std::string dir_;
  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(ConfigWatcherTest, FiresWhenAFileChanges) {
  auto watcher = ConfigWatcher::Create(dir_, Counter());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  Write("_registry.yaml", "version: 1\n# changed\n");
  EXPECT_TRUE(WaitForCalls(1));
}

TEST_F(ConfigWatcherTest, FiresForFilesInSubdirectories) {
  auto watcher = ConfigWatcher::Create(dir_, Counter());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  Write("pools/fast.yaml", "pools: []\n");
  EXPECT_TRUE(WaitForCalls(1));
}

TEST_F(ConfigWatcherTest, WatchesSubdirectoriesCreatedLater) {
  auto watcher = ConfigWatcher::Create(dir_, Counter());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_EQ(mkdir((dir_ + "/models").c_str(), 0755), 0);
  ASSERT_TRUE(WaitForCalls(1));
  Write("models/catalogue.yaml", "models: []\n");
  EXPECT_TRUE(WaitForCalls(2));
}

TEST_F(ConfigWatcherTest, KeepsWatchingWhenTheDirectoryIsReplaced) {
  auto watcher = ConfigWatcher::Create(dir_, Counter());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  const std::string next = dir_ + ".next";
  ASSERT_EQ(mkdir(next.c_str(), 0755), 0);
  ASSERT_EQ(rename(dir_.c_str(), (dir_ + ".old").c_str()), 0);
  ASSERT_EQ(rename(next.c_str(), dir_.c_str()), 0);
  ASSERT_TRUE(WaitForCalls(1));
  // Changes in the new directory are seen; the old one is not watched.
  const int before = calls();
  Write("_registry.yaml", "version: 1\n");
  EXPECT_TRUE(WaitForCalls(before + 1));
}

TEST_F(ConfigWatcherTest, ABurstOfChangesGivesOneCallback) {
  ConfigWatcher::Options options;
  options.debounce = absl::Milliseconds(500);
  options.max_delay = absl::Seconds(5);
  auto watcher = ConfigWatcher::Create(dir_, Counter(), options);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  for (int i = 0; i < 10; ++i) {
    Write("pools/p" + std::to_string(i) + ".yaml", "pools: []\n");
  }
  ASSERT_TRUE(WaitForCalls(1));
  // Nothing else changed: no second callback within a few debounce periods.
  EXPECT_FALSE(WaitForCalls(2, absl::Milliseconds(1500)));
  EXPECT_EQ(calls(), 1);
}

TEST_F(ConfigWatcherTest, NoCallbackWithoutChanges) {
  ConfigWatcher::Options options;
  options.debounce = absl::Milliseconds(50);
  auto watcher = ConfigWatcher::Create(dir_, Counter(), options);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  EXPECT_FALSE(WaitForCalls(1, absl::Milliseconds(300)));
}

TEST_F(ConfigWatcherTest, NoCallbackAfterDestruction) {
  ConfigWatcher::Options options;
  options.debounce = absl::Milliseconds(300);
  auto watcher = ConfigWatcher::Create(dir_, Counter(), options);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  Write("_registry.yaml", "version: 1\n# changed\n");
  watcher->reset();  // before the debounce period ends
  EXPECT_FALSE(WaitForCalls(1, absl::Milliseconds(600)));
}

TEST_F(ConfigWatcherTest, WatchingASingleFileWatchesItsDirectory) {
  auto watcher = ConfigWatcher::Create(dir_ + "/_registry.yaml", Counter());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  Write("_registry.yaml", "version: 1\n# changed\n");
  EXPECT_TRUE(WaitForCalls(1));
}

TEST_F(ConfigWatcherTest, MissingPathIsNotFound) {
  auto watcher = ConfigWatcher::Create(dir_ + "/nope", Counter());
  EXPECT_EQ(watcher.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace echelon
