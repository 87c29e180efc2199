#include "adapters/event_loop.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

// Generous: these tests wait on real threads, never on exact timing.
constexpr absl::Duration kWait = absl::Seconds(10);

class EpollEventLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EpollEventLoop::Create({});
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    loop_->Start();
  }

  std::unique_ptr<EpollEventLoop> loop_;
};

TEST_F(EpollEventLoopTest, RunsPostedTasksOnLoopThreadInOrder) {
  std::vector<int> order;
  absl::Notification done;
  bool in_loop = false;
  for (int i = 0; i < 100; ++i) {
    loop_->Post([&, i] {
      order.push_back(i);
      if (i == 99) {
        in_loop = loop_->InLoopThread();
        done.Notify();
      }
    });
  }
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_TRUE(in_loop);
  EXPECT_FALSE(loop_->InLoopThread());
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST_F(EpollEventLoopTest, AcceptsPostsFromManyThreads) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 1000;
  std::atomic<int> count{0};
  absl::Notification done;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        loop_->Post([&] {
          if (++count == kThreads * kPerThread) done.Notify();
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(count.load(), kThreads * kPerThread);
}

TEST_F(EpollEventLoopTest, FiresTimersInDeadlineOrderNotInsertionOrder) {
  std::vector<int> order;
  absl::Notification done;
  loop_->Post([&] {
    absl::Time now = loop_->Now();
    loop_->RunAt(now + absl::Milliseconds(30), [&] {
      order.push_back(3);
      done.Notify();
    });
    loop_->RunAt(now + absl::Milliseconds(10), [&] { order.push_back(1); });
    loop_->RunAt(now + absl::Milliseconds(20), [&] { order.push_back(2); });
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST_F(EpollEventLoopTest, TimerNeverFiresBeforeItsDeadline) {
  absl::Notification done;
  absl::Time deadline;
  absl::Time fired;
  loop_->Post([&] {
    deadline = loop_->Now() + absl::Milliseconds(20);
    loop_->RunAt(deadline, [&] {
      fired = loop_->Now();
      done.Notify();
    });
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_GE(fired, deadline);
}

TEST_F(EpollEventLoopTest, CancelledTimerDoesNotRun) {
  std::atomic<bool> cancelled_ran{false};
  absl::Notification done;
  loop_->Post([&] {
    EventLoop::TimerId id =
        loop_->RunAfter(absl::Milliseconds(5), [&] { cancelled_ran = true; });
    EXPECT_NE(id, EventLoop::kNoTimer);
    loop_->CancelTimer(id);
    loop_->CancelTimer(id);  // idempotent
    loop_->CancelTimer(EventLoop::kNoTimer);
    loop_->RunAfter(absl::Milliseconds(20), [&] { done.Notify(); });
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_FALSE(cancelled_ran.load());
}

TEST_F(EpollEventLoopTest, TimerCanCancelAnotherDueTimer) {
  std::atomic<bool> second_ran{false};
  absl::Notification done;
  loop_->Post([&] {
    absl::Time when = loop_->Now() + absl::Milliseconds(5);
    auto second = std::make_shared<EventLoop::TimerId>(EventLoop::kNoTimer);
    loop_->RunAt(when, [this, second] { loop_->CancelTimer(*second); });
    *second = loop_->RunAt(when, [&] { second_ran = true; });
    loop_->RunAt(when + absl::Milliseconds(10), [&] { done.Notify(); });
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_FALSE(second_ran.load());
}

TEST_F(EpollEventLoopTest, WatchedFdCallsBackWhenReadable) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  absl::Notification watching;
  absl::Notification readable;
  std::string got;
  loop_->Post([&] {
    absl::Status status = loop_->WatchFd(fds[0], EPOLLIN, [&](uint32_t ev) {
      if ((ev & EPOLLIN) == 0) return;
      char buf[16];
      ssize_t n = read(fds[0], buf, sizeof(buf));
      if (n > 0) got.assign(buf, n);
      loop_->UnwatchFd(fds[0]);
      readable.Notify();
    });
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(loop_->WatchFd(fds[0], EPOLLIN, [](uint32_t) {}).code(),
              absl::StatusCode::kAlreadyExists);
    watching.Notify();
  });
  ASSERT_TRUE(watching.WaitForNotificationWithTimeout(kWait));
  ASSERT_EQ(write(fds[1], "hi", 2), 2);
  ASSERT_TRUE(readable.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(got, "hi");
  close(fds[0]);
  close(fds[1]);
}

TEST_F(EpollEventLoopTest, UnwatchedFdGetsNoCallback) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  std::atomic<int> calls{0};
  absl::Notification unwatched;
  loop_->Post([&] {
    ASSERT_TRUE(
        loop_->WatchFd(fds[0], EPOLLIN, [&](uint32_t) { ++calls; }).ok());
    EXPECT_EQ(loop_->ModifyFd(fds[0], EPOLLIN | EPOLLOUT).code(),
              absl::StatusCode::kOk);
    loop_->UnwatchFd(fds[0]);
    EXPECT_EQ(loop_->ModifyFd(fds[0], EPOLLIN).code(),
              absl::StatusCode::kNotFound);
    unwatched.Notify();
  });
  ASSERT_TRUE(unwatched.WaitForNotificationWithTimeout(kWait));
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  absl::Notification flushed;
  loop_->Post([&] {
    loop_->RunAfter(absl::Milliseconds(20), [&] { flushed.Notify(); });
  });
  ASSERT_TRUE(flushed.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(calls.load(), 0);
  close(fds[0]);
  close(fds[1]);
}

TEST(EpollEventLoopLifecycleTest, StopIsIdempotentAndDropsLaterPosts) {
  auto loop = EpollEventLoop::Create({});
  ASSERT_TRUE(loop.ok());
  (*loop)->Start();
  absl::Notification ran;
  (*loop)->Post([&] { ran.Notify(); });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kWait));
  (*loop)->Stop();
  (*loop)->Stop();
  bool late_ran = false;
  (*loop)->Post([&] { late_ran = true; });
  loop->reset();
  EXPECT_FALSE(late_ran);
}

}  // namespace
}  // namespace echelon
