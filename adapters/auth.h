// Client authentication for both fronts: bearer tokens from the config's
// `auth:` section, each mapped to the targets it may call and its own
// per-minute limits.
//
// Tokens are stored only as their SHA-256 (OpenSSL libcrypto). A presented
// token is hashed and compared with every configured hash using
// CRYPTO_memcmp and without an early exit, so neither the comparison nor
// the loop reveals how much of a hash matched or which token was close.
// The token itself is never stored, logged or put into an error: callers
// get the token's configured `name` instead.
//
// Thread-safe: the configuration is immutable after Create(); the per-token
// rate limiters are guarded by a mutex. A config reload builds a new
// Authenticator from the new AuthConfig and passes the old one as
// `previous` so that tokens whose limits did not change keep their usage.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "domain/clock.h"
#include "domain/config.h"
#include "domain/rate_limiter.h"

namespace echelon {

// Who is calling. `name` is the token's configured name ("anonymous" when
// auth is disabled); safe to log.
struct Principal {
  std::string name;
  bool admin = false;
  bool anonymous = false;
};

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// Whether `target` matches `pattern`: equal, "*", or "prefix*" with
// `target` starting with "prefix".
bool TargetMatches(absl::string_view pattern, absl::string_view target);

// The token of a call from its `authorization` value ("Bearer <token>",
// scheme case-insensitive) or, when that is empty, its `x-api-key` value.
// Empty when neither carries one.
std::string ExtractToken(absl::string_view authorization,
                         absl::string_view api_key);

class Authenticator {
 public:
  // Errors: INVALID_ARGUMENT for a malformed hash (the validator reports
  // these first). `clock` must outlive the authenticator.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(
      const AuthConfig& config, const Clock& clock,
      const Authenticator* previous = nullptr);

  bool enabled() const { return config_.enabled; }
  bool protect_status() const {
    return config_.enabled && config_.protect_status;
  }

  // Identifies the caller of `token`. When auth is disabled every caller
  // is an anonymous admin. Errors: UNAUTHENTICATED (missing or unknown
  // token; the message never contains the token).
  absl::StatusOr<Principal> Authenticate(absl::string_view token) const;

  // Everything a routed call needs: authenticates, checks `target` against
  // the token's allowed targets and takes one request and
  // `estimated_tokens` from the token's limits. On success `*principal`
  // (optional) names the caller. Errors: UNAUTHENTICATED, PERMISSION_DENIED
  // (target not allowed), RESOURCE_EXHAUSTED (the token's limit;
  // `*retry_after` says when to try again).
  absl::Status Check(absl::string_view token, absl::string_view target,
                     int64_t estimated_tokens, Principal* principal,
                     absl::Duration* retry_after);

  // For admin RPCs. Errors: UNAUTHENTICATED, PERMISSION_DENIED (not an
  // admin token).
  absl::Status CheckAdmin(absl::string_view token, Principal* principal) const;

  // For status RPCs: any valid token when protect_status, else anyone.
  // Errors: UNAUTHENTICATED.
  absl::Status CheckStatus(absl::string_view token, Principal* principal) const;

 private:
  // A token's limiter; shared with the next Authenticator after a reload
  // (calls may still run on the old one), hence its own lock. RateLimiter
  // is not thread-safe.
  struct Limiter {
    explicit Limiter(const RateLimitConfig& c) : config(c), limiter(c) {}
    const RateLimitConfig config;
    absl::Mutex mu;
    RateLimiter limiter ABSL_GUARDED_BY(mu);
  };

  struct Entry {
    ClientTokenConfig config;
    unsigned char hash[32];
    std::shared_ptr<Limiter> limiter;  // null when no limits
  };

  Authenticator(const AuthConfig& config, const Clock& clock)
      : config_(config), clock_(clock) {}

  // The matching entry or nullptr; constant time in the number of tokens.
  const Entry* Find(absl::string_view token) const;

  const AuthConfig config_;
  const Clock& clock_;
  std::vector<Entry> entries_;
};

}  // namespace echelon
