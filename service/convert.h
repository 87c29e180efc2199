// Translation between the echelon.v1 wire types and the domain's types. The
// only place that knows both; handlers stay thin.
#pragma once

#include "absl/status/status.h"
#include "domain/chat.h"
#include "domain/router.h"
#include "domain/status.h"
#include "echelon/v1/gateway.pb.h"

namespace echelon {

// Validates and converts a request. Errors: INVALID_ARGUMENT naming the
// offending field (e.g. "messages[2].role is required").
absl::Status FromProto(const v1::ExecuteRequest& in, ChatRequest* out);

// Fills an ExecuteResponse from a completed routed response.
void ToProto(const RoutedResponse& in, v1::ExecuteResponse* out);

// The final summary chunk of a completed stream.
void ToSummaryProto(const RoutedResponse& in, v1::StreamSummary* out);

void ToProto(const Usage& in, v1::Usage* out);
void ToProto(const AttemptRecord& in, v1::Attempt* out);
void ToProto(const PoolStatusView& in, v1::PoolStatus* out);
void ToProto(const InstanceStatusView& in, v1::InstanceStatus* out);
void ToProto(const TaskGroupStatusView& in, v1::TaskGroupStatus* out);
void ToProto(const TargetView& in, v1::Target* out);
v1::FinishReason ToProto(FinishReason reason);

}  // namespace echelon
