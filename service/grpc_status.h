// The one place where domain statuses become gRPC statuses.
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace echelon {

// Trailing-metadata key carrying a retry hint in milliseconds on
// RESOURCE_EXHAUSTED and UNAVAILABLE.
inline constexpr char kRetryAfterTrailer[] = "echelon-retry-after-ms";

// Same code and message (absl and gRPC codes share numbering). When
// `retry_after` is positive it is added to the message and, when `context`
// is given, sent as the kRetryAfterTrailer trailer.
grpc::Status ToGrpcStatus(const absl::Status& status,
                          absl::Duration retry_after = absl::ZeroDuration(),
                          grpc::CallbackServerContext* context = nullptr);

}  // namespace echelon
