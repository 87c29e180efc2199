// An in-memory stand-in for the store replicas share (Redis in
// production), for unit tests of the router's use of the SharedState port.
// FakeSharedStore holds the global limits (the domain's own RateLimiter per
// key, so the arithmetic matches the in-process limiter) and the event bus;
// each replica talks to it through its own FakeSharedState. Answers and
// events travel after `latency` on the fake loop; a disconnected replica
// answers kLocal and neither sends nor receives events.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "domain/rate_limiter.h"
#include "domain/shared_state.h"
#include "tests/fakes/fake_event_loop.h"

namespace echelon {

class FakeSharedState;

class FakeSharedStore {
 public:
  explicit FakeSharedStore(FakeEventLoop& loop) : loop_(loop) {}

  FakeEventLoop& loop() { return loop_; }
  absl::Duration latency = absl::Microseconds(200);

  RateLimiter& Limiter(const SharedLimit& l) {
    auto it = limiters_.find(l.key);
    if (it == limiters_.end()) {
      it = limiters_.emplace(l.key, std::make_unique<RateLimiter>(l.limits))
               .first;
    }
    return *it->second;
  }
  RateLimiter::Usage Usage(const std::string& key) {
    auto it = limiters_.find(key);
    return it == limiters_.end() ? RateLimiter::Usage{}
                                 : it->second->GetUsage(loop_.Now());
  }

  void Attach(FakeSharedState* s) { replicas_.push_back(s); }
  void Broadcast(FakeSharedState* from, const SharedEvent& e);

  std::vector<SharedEvent> published;  // every event published, in order

 private:
  FakeEventLoop& loop_;
  std::map<std::string, std::unique_ptr<RateLimiter>> limiters_;
  std::vector<FakeSharedState*> replicas_;
};

class FakeSharedState : public SharedState {
 public:
  explicit FakeSharedState(FakeSharedStore& store) : store_(store) {
    store_.Attach(this);
  }

  void SetListener(absl::AnyInvocable<void(const SharedEvent&)> l) {
    listener_ = std::move(l);
  }
  void set_connected(bool c) { connected_ = c; }

  void Acquire(const SharedLimit& limit, int64_t tokens,
               absl::AnyInvocable<void(SharedDecision)> done) override {
    acquires++;
    if (!connected_) {
      store_.loop().Post([done = std::move(done)]() mutable {
        done(
            SharedDecision{SharedDecision::Kind::kLocal, absl::ZeroDuration()});
      });
      return;
    }
    store_.loop().RunAfter(store_.latency, [this, limit, tokens,
                                            done = std::move(done)]() mutable {
      absl::Duration wait = absl::ZeroDuration();
      bool ok =
          store_.Limiter(limit).TryAcquire(store_.loop().Now(), tokens, &wait);
      done(SharedDecision{
          ok ? SharedDecision::Kind::kAllowed : SharedDecision::Kind::kRefused,
          wait});
    });
  }

  void Adjust(const SharedLimit& limit, int64_t requests,
              int64_t tokens) override {
    adjusts++;
    RateLimiter& l = store_.Limiter(limit);
    absl::Time now = store_.loop().Now();
    if (requests < 0) {
      l.Cancel(now, -tokens);  // gives back the request and its tokens
    } else if (tokens != 0) {
      l.Reconcile(now, 0, tokens);
    }
  }

  void Publish(const SharedEvent& e) override {
    if (!connected_) return;
    store_.published.push_back(e);
    store_.Broadcast(this, e);
  }

  bool connected() const override { return connected_; }

  void Deliver(const SharedEvent& e) {
    if (connected_ && listener_) listener_(e);
  }

  int acquires = 0;
  int adjusts = 0;

 private:
  FakeSharedStore& store_;
  bool connected_ = true;
  absl::AnyInvocable<void(const SharedEvent&)> listener_;
};

inline void FakeSharedStore::Broadcast(FakeSharedState* from,
                                       const SharedEvent& e) {
  for (FakeSharedState* r : replicas_) {
    if (r == from) continue;
    loop_.RunAfter(latency, [r, e] { r->Deliver(e); });
  }
}

}  // namespace echelon
