// Per-request caps (the config's `limits:` section), shared by both fronts
// so that a request is judged the same way whether it came over gRPC or the
// OpenAI-compatible HTTP front. Checked after decoding and before any
// routing: a request over a cap never reaches an upstream.
//
// Stateless and thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "domain/chat.h"
#include "domain/config.h"

namespace echelon {

// The caps in force for one config snapshot.
struct RequestLimits {
  LimitsConfig config;
  // limits.max_tokens, or (when 0) the largest max_output_tokens of the
  // catalogue; 0 = no cap.
  int64_t max_tokens = 0;

  static RequestLimits FromConfig(const GatewayConfig& config);
};

// Content bytes of a request: every message's text, parts (text and image
// URLs), tool call names/arguments and the tool definitions.
int64_t RequestContentBytes(const ChatRequest& request);

// Checks `request` (its messages, content bytes, metadata and max_tokens).
// Errors: INVALID_ARGUMENT naming the cap and the value, e.g.
// "too many messages: 2000 (limit 1024)".
absl::Status CheckRequestLimits(const RequestLimits& limits,
                                const ChatRequest& request);

// Checks a call's headers / gRPC metadata: `entries` and their total
// key+value `bytes`. Errors: INVALID_ARGUMENT.
absl::Status CheckMetadataLimits(const RequestLimits& limits, int64_t entries,
                                 int64_t bytes);

}  // namespace echelon
