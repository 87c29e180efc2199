// The domain's model of a chat completion: what callers ask for and what
// upstreams answer. Independent of any wire format (proto, OpenAI JSON,
// Anthropic JSON); the edges translate to and from these types.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace echelon {

enum class Role { kSystem, kUser, kAssistant, kTool, kDeveloper };

struct ContentPart {
  enum class Type { kText, kImageUrl };
  Type type = Type::kText;
  std::string text;       // kText
  std::string image_url;  // kImageUrl: https: or data: URI
  std::string detail;     // kImageUrl: "auto", "low", "high" or empty
};

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON object as text
};

struct ChatMessage {
  Role role = Role::kUser;
  std::string content;             // used when `parts` is empty
  std::vector<ContentPart> parts;  // multi-part content, in order
  std::string name;
  std::vector<ToolCall> tool_calls;  // assistant only
  std::string tool_call_id;          // tool only
};

struct ToolSpec {
  std::string name;
  std::string description;
  std::string parameters_json;  // JSON Schema as text; empty means "{}"
};

struct ToolChoice {
  enum class Mode { kUnspecified, kAuto, kNone, kRequired, kFunction };
  Mode mode = Mode::kUnspecified;
  std::string function_name;  // kFunction only
};

struct ResponseFormat {
  enum class Type { kUnspecified, kText, kJsonObject, kJsonSchema };
  Type type = Type::kUnspecified;
  std::string schema_name;  // kJsonSchema only
  std::string json_schema;  // kJsonSchema only, JSON text
  bool strict = false;
};

// Unset optionals take the echelon's defaults, then the provider's.
struct GenerationParams {
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> max_tokens;
  std::vector<std::string> stop;
  std::optional<int64_t> seed;
  std::optional<double> presence_penalty;
  std::optional<double> frequency_penalty;
  ResponseFormat response_format;
};

struct ChatRequest {
  std::vector<ChatMessage> messages;
  GenerationParams params;
  std::vector<ToolSpec> tools;
  ToolChoice tool_choice;
  std::map<std::string, std::string> metadata;  // never sent upstream
  std::string request_id;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t total_tokens = 0;
  int64_t cached_tokens = 0;
};

enum class FinishReason {
  kUnspecified,
  kStop,
  kLength,
  kToolCalls,
  kContentFilter
};

struct ChatResponse {
  ChatMessage message;  // role kAssistant
  FinishReason finish_reason = FinishReason::kUnspecified;
  Usage usage;
  bool has_usage = false;  // whether the upstream reported usage
};

struct ToolCallDelta {
  int index = 0;
  std::string id;    // first delta of a call only
  std::string name;  // first delta of a call only
  std::string arguments_delta;
};

// One increment of a streamed completion, already decoded from the
// provider's dialect. Any combination of fields may be set.
struct StreamDelta {
  std::string content;
  std::vector<ToolCallDelta> tool_calls;
  std::optional<Usage> usage;
  FinishReason finish_reason = FinishReason::kUnspecified;

  // Whether this delta carries something the caller sees (content or tool
  // call); the first such delta commits a stream to its instance.
  bool IsVisible() const { return !content.empty() || !tool_calls.empty(); }
};

// Rough prompt size in tokens (4 bytes per token), used to reserve token
// rate-limit capacity before the upstream reports the real count.
int64_t EstimatePromptTokens(const ChatRequest& request);

}  // namespace echelon
