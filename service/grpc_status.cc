#include "service/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace echelon {

grpc::Status ToGrpcStatus(const absl::Status& status,
                          absl::Duration retry_after,
                          grpc::CallbackServerContext* context) {
  if (status.ok()) return grpc::Status::OK;
  std::string message(status.message());
  if (retry_after > absl::ZeroDuration()) {
    int64_t ms = absl::ToInt64Milliseconds(retry_after);
    absl::StrAppend(&message, " (retry after ", ms, " ms)");
    if (context != nullptr) {
      context->AddTrailingMetadata(kRetryAfterTrailer, absl::StrCat(ms));
    }
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message);
}

}  // namespace echelon
