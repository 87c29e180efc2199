// The port through which replicas of the gateway share state: RPM/TPM
// limits of echelons and instances, rate-limit cooldowns, quota/auth
// disablement, passive ejections and circuit-breaker open state.
// Production adapter: adapters/redis_shared_state.h (Redis, hiredis async on
// the event loop). Tests: tests/fakes/fake_shared_state.h.
//
// Threading: every call and every callback happens on the event loop thread.
//
// Limits. The router asks Acquire() before it takes an echelon's or an
// instance's RPM/TPM reservation. The store answers kAllowed (taken in the
// shared count) or kRefused (with a retry hint) within its decision budget;
// when it cannot (unreachable, slow), it answers kLocal and the router
// decides with its in-process limiter, which then enforces the configured
// local share of the limit. A reservation taken with kAllowed is corrected
// through Adjust() once the real usage is known, exactly like the in-process
// limiter's Reconcile/Cancel.
//
// Events. Local observations (a 429 cooldown, a disablement, an ejection, a
// breaker opening or closing) are published; other replicas' observations
// arrive through the listener and are applied without being published again.
#pragma once

#include <cstdint>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "domain/config.h"

namespace echelon {

// One shared limit, identified across replicas by `key`
// ("echelon/<group>/<echelon>" or "instance/<model>/<id>"), with the global
// figures from the config.
struct SharedLimit {
  std::string key;
  RateLimitConfig limits;
};

struct SharedDecision {
  enum class Kind {
    kAllowed,  // taken from the shared limit
    kRefused,  // the shared limit is spent; see retry_after
    kLocal,    // no shared answer in time: decide locally
  };
  Kind kind = Kind::kLocal;
  absl::Duration retry_after = absl::ZeroDuration();
};

enum class SharedEventKind {
  kCooldown,       // instance-wide: rate-limit cooldown until `until`
  kDisable,        // instance-wide: auth/quota disablement until `until`
  kEject,          // pool `scope`: instance ejected until `until`
  kBreakerOpen,    // breaker open until `until` (then half-open)
  kBreakerClosed,  // breaker closed again (probes succeeded somewhere)
};

const char* SharedEventKindName(SharedEventKind k);

struct SharedEvent {
  SharedEventKind kind = SharedEventKind::kCooldown;
  // kEject and instance breakers: the pool; echelon breakers: the task
  // group; empty for instance-wide events.
  std::string scope;
  // "instance" or "echelon" for breaker events; empty otherwise.
  std::string breaker_kind;
  // "model/id" for instances, the echelon name for echelon breakers.
  std::string name;
  absl::Time until = absl::InfinitePast();
};

class SharedState {
 public:
  virtual ~SharedState() = default;

  // Takes one request and `tokens` tokens from `limit`, or nothing. `done`
  // runs exactly once, on the loop thread, never inside this call, and no
  // later than the decision budget after it.
  virtual void Acquire(const SharedLimit& limit, int64_t tokens,
                       absl::AnyInvocable<void(SharedDecision)> done) = 0;

  // Corrects what an earlier kAllowed took: `requests` and `tokens` are
  // added (negative values give back). Fire and forget.
  virtual void Adjust(const SharedLimit& limit, int64_t requests,
                      int64_t tokens) = 0;

  // Tells the other replicas about a local observation. Fire and forget.
  virtual void Publish(const SharedEvent& event) = 0;

  // Whether shared decisions are currently possible (for status/health).
  virtual bool connected() const = 0;
};

}  // namespace echelon
