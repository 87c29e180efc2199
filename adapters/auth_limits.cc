#include "adapters/auth_limits.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace echelon {
namespace {

absl::Status Over(const char* what, int64_t value, int64_t limit) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": ", value, " (limit ", limit, ")"));
}

bool Exceeds(int64_t value, int64_t limit) {
  return limit > 0 && value > limit;
}

}  // namespace

RequestLimits RequestLimits::FromConfig(const GatewayConfig& config) {
  RequestLimits out;
  out.config = config.limits;
  out.max_tokens = config.limits.max_tokens;
  if (out.max_tokens == 0) {
    for (const ModelConfig& m : config.models) {
      out.max_tokens = std::max(out.max_tokens, m.max_output_tokens);
    }
  }
  return out;
}

int64_t RequestContentBytes(const ChatRequest& request) {
  int64_t bytes = 0;
  for (const ChatMessage& m : request.messages) {
    bytes += static_cast<int64_t>(m.content.size() + m.name.size());
    for (const ContentPart& p : m.parts) {
      bytes += static_cast<int64_t>(p.text.size() + p.image_url.size());
    }
    for (const ToolCall& c : m.tool_calls) {
      bytes += static_cast<int64_t>(c.name.size() + c.arguments.size());
    }
  }
  for (const ToolSpec& t : request.tools) {
    bytes += static_cast<int64_t>(t.name.size() + t.description.size() +
                                  t.parameters_json.size());
  }
  bytes +=
      static_cast<int64_t>(request.params.response_format.json_schema.size());
  return bytes;
}

absl::Status CheckRequestLimits(const RequestLimits& limits,
                                const ChatRequest& request) {
  const LimitsConfig& c = limits.config;
  const int64_t messages = static_cast<int64_t>(request.messages.size());
  if (Exceeds(messages, c.max_messages)) {
    return Over("too many messages", messages, c.max_messages);
  }
  const int64_t content = RequestContentBytes(request);
  if (Exceeds(content, c.max_content_bytes)) {
    return Over("request content too large (bytes)", content,
                c.max_content_bytes);
  }
  int64_t metadata_bytes = 0;
  for (const auto& [k, v] : request.metadata) {
    metadata_bytes += static_cast<int64_t>(k.size() + v.size());
  }
  absl::Status s = CheckMetadataLimits(
      limits, static_cast<int64_t>(request.metadata.size()), metadata_bytes);
  if (!s.ok()) return s;
  if (request.params.max_tokens.has_value() &&
      Exceeds(*request.params.max_tokens, limits.max_tokens)) {
    return Over("max_tokens too large", *request.params.max_tokens,
                limits.max_tokens);
  }
  return absl::OkStatus();
}

absl::Status CheckMetadataLimits(const RequestLimits& limits, int64_t entries,
                                 int64_t bytes) {
  if (Exceeds(entries, limits.config.max_metadata_entries)) {
    return Over("too many metadata entries", entries,
                limits.config.max_metadata_entries);
  }
  if (Exceeds(bytes, limits.config.max_metadata_bytes)) {
    return Over("metadata too large (bytes)", bytes,
                limits.config.max_metadata_bytes);
  }
  return absl::OkStatus();
}

}  // namespace echelon
