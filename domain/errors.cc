#include "domain/errors.h"

#include "absl/strings/str_cat.h"

namespace echelon {

absl::string_view ErrorClassName(ErrorClass c) {
  switch (c) {
    case ErrorClass::kNone:
      return "ok";
    case ErrorClass::kRateLimited:
      return "rate_limited";
    case ErrorClass::kOverloaded:
      return "overloaded";
    case ErrorClass::kServerError:
      return "server_error";
    case ErrorClass::kConnectError:
      return "connect_error";
    case ErrorClass::kTimeoutConnect:
      return "timeout_connect";
    case ErrorClass::kTimeoutFirstToken:
      return "timeout_first_token";
    case ErrorClass::kTimeoutStall:
      return "timeout_stall";
    case ErrorClass::kTimeoutTotal:
      return "timeout_total";
    case ErrorClass::kContextLengthExceeded:
      return "context_length_exceeded";
    case ErrorClass::kContentFiltered:
      return "content_filtered";
    case ErrorClass::kAuthError:
      return "auth_error";
    case ErrorClass::kQuotaExhausted:
      return "quota_exhausted";
    case ErrorClass::kBadRequest:
      return "bad_request";
    case ErrorClass::kStreamCut:
      return "stream_cut";
    case ErrorClass::kProtocolError:
      return "protocol_error";
    case ErrorClass::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

bool IsHealthFailure(ErrorClass c) {
  switch (c) {
    case ErrorClass::kOverloaded:
    case ErrorClass::kServerError:
    case ErrorClass::kConnectError:
    case ErrorClass::kTimeoutConnect:
    case ErrorClass::kTimeoutFirstToken:
    case ErrorClass::kTimeoutStall:
    case ErrorClass::kStreamCut:
    case ErrorClass::kProtocolError:
      return true;
    default:
      return false;
  }
}

bool IsRetryable(ErrorClass c) {
  switch (c) {
    case ErrorClass::kRateLimited:
    case ErrorClass::kOverloaded:
    case ErrorClass::kServerError:
    case ErrorClass::kConnectError:
    case ErrorClass::kTimeoutConnect:
    case ErrorClass::kTimeoutFirstToken:
    case ErrorClass::kTimeoutStall:
    case ErrorClass::kStreamCut:
    case ErrorClass::kProtocolError:
    case ErrorClass::kAuthError:       // another instance may have a good key
    case ErrorClass::kQuotaExhausted:  // likewise
    case ErrorClass::kContextLengthExceeded:  // only on a larger model
      return true;
    default:
      return false;
  }
}

absl::Status ToStatus(const UpstreamError& e) {
  std::string msg = absl::StrCat(ErrorClassName(e.error_class),
                                 e.message.empty() ? "" : ": ", e.message);
  switch (e.error_class) {
    case ErrorClass::kNone:
      return absl::OkStatus();
    case ErrorClass::kRateLimited:
    case ErrorClass::kQuotaExhausted:
      return absl::ResourceExhaustedError(msg);
    case ErrorClass::kTimeoutTotal:
      return absl::DeadlineExceededError(msg);
    case ErrorClass::kContextLengthExceeded:
    case ErrorClass::kBadRequest:
      return absl::InvalidArgumentError(msg);
    case ErrorClass::kContentFiltered:
      return absl::FailedPreconditionError(msg);
    case ErrorClass::kAuthError:
      return absl::UnavailableError(msg);  // our credentials, not the caller's
    case ErrorClass::kCancelled:
      return absl::CancelledError(msg);
    case ErrorClass::kStreamCut:
      return absl::AbortedError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

}  // namespace echelon
