// A Router whose requests the test answers by hand: Start() queues the
// request with its sink, NextCall() hands it to the test, which then plays
// the event-loop thread and calls the sink. For testing the fronts (gRPC,
// HTTP) without the routing core.
#pragma once

#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "domain/router.h"
#include "gtest/gtest.h"

namespace echelon {

class ScriptedRouter : public Router {
 public:
  struct Call {
    RouteRequest req;
    ResponseSink* sink = nullptr;
    std::shared_ptr<bool> cancelled;  // guarded by the router's mutex
  };

  // What GetPoolStatus (one pool or all) and ListTargets answer.
  void set_pools(std::vector<PoolStatusView> pools) {
    absl::MutexLock lock(&mu_);
    pools_ = std::move(pools);
  }
  void set_targets(std::vector<TargetView> targets) {
    absl::MutexLock lock(&mu_);
    targets_ = std::move(targets);
  }

  std::shared_ptr<RequestHandle> Start(RouteRequest req,
                                       ResponseSink* sink) override {
    absl::MutexLock lock(&mu_);
    auto flag = std::make_shared<bool>(false);
    calls_.push_back({std::move(req), sink, flag});
    return std::make_shared<Handle>(flag, &mu_);
  }

  absl::StatusOr<std::vector<PoolStatusView>> GetPoolStatus(
      absl::string_view pool) const override {
    absl::MutexLock lock(&mu_);
    if (pool.empty()) return pools_;
    for (const PoolStatusView& p : pools_) {
      if (p.name == pool) return std::vector<PoolStatusView>{p};
    }
    return absl::NotFoundError("unknown pool");
  }

  std::vector<TargetView> ListTargets() const override {
    absl::MutexLock lock(&mu_);
    return targets_;
  }

  // The next started request, waiting up to 10 s (a test failure if none).
  Call NextCall() {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](std::deque<Call>* c) { return !c->empty(); }, &calls_),
        absl::Seconds(10));
    EXPECT_FALSE(calls_.empty()) << "no request reached the router";
    if (calls_.empty()) return Call();
    Call c = std::move(calls_.front());
    calls_.pop_front();
    return c;
  }

  bool IsCancelled(const Call& call) {
    absl::MutexLock lock(&mu_);
    return *call.cancelled;
  }

  // Waits up to 10 s for the request's handle to be cancelled.
  bool WaitCancelled(const Call& call) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(call.cancelled.get()),
                                absl::Seconds(10));
  }

 private:
  class Handle : public RequestHandle {
   public:
    Handle(std::shared_ptr<bool> flag, absl::Mutex* mu)
        : flag_(std::move(flag)), mu_(mu) {}
    void Cancel() override {
      absl::MutexLock lock(mu_);
      *flag_ = true;
    }

   private:
    std::shared_ptr<bool> flag_;
    absl::Mutex* mu_;
  };

  mutable absl::Mutex mu_;
  std::deque<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<PoolStatusView> pools_ ABSL_GUARDED_BY(mu_);
  std::vector<TargetView> targets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace echelon
