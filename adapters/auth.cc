#include "adapters/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace echelon {
namespace {

bool Sha256(absl::string_view data, unsigned char out[32]) {
  unsigned int len = 0;
  return EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(),
                    nullptr) == 1 &&
         len == 32;
}

bool ParseHex32(const std::string& hex, unsigned char out[32]) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  std::string bytes = absl::HexStringToBytes(hex);
  if (bytes.size() != 32) return false;
  std::memcpy(out, bytes.data(), 32);
  return true;
}

const char kUnauthenticated[] =
    "missing or invalid client token (send 'authorization: Bearer <token>' "
    "or 'x-api-key')";

}  // namespace

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[32];
  if (!Sha256(data, digest)) return "";
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), 32));
}

bool TargetMatches(absl::string_view pattern, absl::string_view target) {
  if (pattern == "*") return true;
  if (absl::EndsWith(pattern, "*")) {
    pattern.remove_suffix(1);
    return absl::StartsWith(target, pattern);
  }
  return pattern == target;
}

std::string ExtractToken(absl::string_view authorization,
                         absl::string_view api_key) {
  absl::string_view auth = absl::StripAsciiWhitespace(authorization);
  if (!auth.empty()) {
    if (auth.size() > 7 && absl::StartsWithIgnoreCase(auth, "bearer ")) {
      return std::string(absl::StripAsciiWhitespace(auth.substr(7)));
    }
    return "";  // another scheme: not ours
  }
  return std::string(absl::StripAsciiWhitespace(api_key));
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(
    const AuthConfig& config, const Clock& clock,
    const Authenticator* previous) {
  std::unique_ptr<Authenticator> auth(new Authenticator(config, clock));
  for (const ClientTokenConfig& t : config.tokens) {
    Entry e;
    e.config = t;
    if (!ParseHex32(absl::AsciiStrToLower(t.sha256), e.hash)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "auth.tokens.", t.name, ".sha256: expected 64 hex digits"));
    }
    if (t.requests_per_minute > 0 || t.tokens_per_minute > 0) {
      RateLimitConfig rl;
      rl.requests_per_minute = t.requests_per_minute;
      rl.tokens_per_minute = t.tokens_per_minute;
      // Keep the usage of an unchanged token across a reload.
      if (previous != nullptr) {
        for (const Entry& old : previous->entries_) {
          if (old.config.name == t.name && old.limiter != nullptr &&
              old.limiter->config.requests_per_minute ==
                  rl.requests_per_minute &&
              old.limiter->config.tokens_per_minute == rl.tokens_per_minute) {
            e.limiter = old.limiter;
          }
        }
      }
      if (e.limiter == nullptr) e.limiter = std::make_shared<Limiter>(rl);
    }
    auth->entries_.push_back(std::move(e));
  }
  return auth;
}

const Authenticator::Entry* Authenticator::Find(absl::string_view token) const {
  if (token.empty()) return nullptr;
  unsigned char digest[32];
  if (!Sha256(token, digest)) return nullptr;
  const Entry* found = nullptr;
  // Every entry is compared, whatever matched before.
  for (const Entry& e : entries_) {
    if (CRYPTO_memcmp(digest, e.hash, sizeof(digest)) == 0) found = &e;
  }
  return found;
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    absl::string_view token) const {
  if (!config_.enabled) {
    return Principal{"anonymous", /*admin=*/true, /*anonymous=*/true};
  }
  const Entry* e = Find(token);
  if (e == nullptr) return absl::UnauthenticatedError(kUnauthenticated);
  return Principal{e->config.name, e->config.admin, /*anonymous=*/false};
}

absl::Status Authenticator::Check(absl::string_view token,
                                  absl::string_view target,
                                  int64_t estimated_tokens,
                                  Principal* principal,
                                  absl::Duration* retry_after) {
  if (!config_.enabled) {
    if (principal != nullptr) *principal = {"anonymous", true, true};
    return absl::OkStatus();
  }
  const Entry* e = Find(token);
  if (e == nullptr) return absl::UnauthenticatedError(kUnauthenticated);
  if (principal != nullptr) {
    *principal = {e->config.name, e->config.admin, false};
  }
  bool allowed = false;
  for (const std::string& pattern : e->config.allowed_targets) {
    if (TargetMatches(pattern, target)) {
      allowed = true;
      break;
    }
  }
  if (!allowed) {
    return absl::PermissionDeniedError(absl::StrCat(
        "client '", e->config.name, "' may not call target '", target, "'"));
  }
  if (e->limiter != nullptr) {
    absl::Duration wait = absl::ZeroDuration();
    bool ok;
    {
      absl::MutexLock lock(&e->limiter->mu);
      ok =
          e->limiter->limiter.TryAcquire(clock_.Now(), estimated_tokens, &wait);
    }
    if (!ok) {
      if (retry_after != nullptr) *retry_after = wait;
      return absl::ResourceExhaustedError(
          absl::StrCat("client '", e->config.name,
                       "' is over its per-minute request or token limit"));
    }
  }
  return absl::OkStatus();
}

absl::Status Authenticator::CheckAdmin(absl::string_view token,
                                       Principal* principal) const {
  absl::StatusOr<Principal> p = Authenticate(token);
  if (!p.ok()) return p.status();
  if (principal != nullptr) *principal = *p;
  if (!p->admin) {
    return absl::PermissionDeniedError(absl::StrCat(
        "client '", p->name, "' may not call admin RPCs (needs admin: true)"));
  }
  return absl::OkStatus();
}

absl::Status Authenticator::CheckStatus(absl::string_view token,
                                        Principal* principal) const {
  if (!protect_status()) {
    if (principal != nullptr) *principal = {"anonymous", false, true};
    return absl::OkStatus();
  }
  absl::StatusOr<Principal> p = Authenticate(token);
  if (!p.ok()) return p.status();
  if (principal != nullptr) *principal = *p;
  return absl::OkStatus();
}

}  // namespace echelon
