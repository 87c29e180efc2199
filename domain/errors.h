// Error classes of upstream attempts. Adapters classify every failure into
// one of these; the domain decides retry, fallback, health and the status the
// caller sees from the class alone.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace echelon {

enum class ErrorClass {
  kNone,                   // success
  kRateLimited,            // 429: capacity, not a fault; honour retry_after
  kOverloaded,             // 503/529 "overloaded": retry elsewhere
  kServerError,            // 5xx
  kConnectError,           // refused, reset, DNS, TLS handshake
  kTimeoutConnect,         // no connection within the connect timeout
  kTimeoutFirstToken,      // no first byte/token within its timeout
  kTimeoutStall,           // silence between chunks longer than allowed
  kTimeoutTotal,           // attempt or request deadline passed
  kContextLengthExceeded,  // prompt too long for this model
  kContentFiltered,        // provider refused on policy; never retried
  kAuthError,              // 401/403: instance leaves rotation
  kQuotaExhausted,         // billing quota: instance leaves rotation
  kBadRequest,             // 400/422: the caller's fault; no health impact
  kStreamCut,              // stream ended early after content was sent
  kProtocolError,          // upstream answered something we cannot parse
  kCancelled,              // the caller went away
};

// Stable snake_case name, used in traces, logs and metric labels.
absl::string_view ErrorClassName(ErrorClass c);

// Whether the failure says something about the instance's health (and so
// counts for breakers and ejection). Rate limits, caller errors and
// cancellations do not.
bool IsHealthFailure(ErrorClass c);

// Whether another attempt (same or other instance) may succeed.
bool IsRetryable(ErrorClass c);

struct UpstreamError {
  ErrorClass error_class = ErrorClass::kNone;
  int http_status = 0;  // 0 when no HTTP status was received
  // Human-readable detail. Must never contain a secret (API key, token).
  std::string message;
  // Upstream's Retry-After (or retry-after-ms); zero when not given.
  absl::Duration retry_after = absl::ZeroDuration();

  bool ok() const { return error_class == ErrorClass::kNone; }
};

// The status a caller sees for a final failure of this class.
absl::Status ToStatus(const UpstreamError& error);

}  // namespace echelon
