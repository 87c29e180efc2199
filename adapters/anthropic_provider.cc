#include "adapters/anthropic_provider.h"

#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "adapters/json_util.h"

namespace echelon {
namespace anthropic {
namespace {

constexpr size_t kMaxMessageBytes = 1024;

std::string Truncate(absl::string_view s) {
  if (s.size() <= kMaxMessageBytes) return std::string(s);
  return absl::StrCat(s.substr(0, kMaxMessageBytes), "...");
}

// "data:image/png;base64,AAAA" -> media type and payload.
bool SplitDataUri(absl::string_view uri, absl::string_view* media_type,
                  absl::string_view* data) {
  if (!absl::StartsWith(uri, "data:")) return false;
  size_t comma = uri.find(',');
  size_t semi = uri.find(";base64");
  if (comma == absl::string_view::npos || semi == absl::string_view::npos ||
      semi > comma) {
    return false;
  }
  *media_type = uri.substr(5, semi - 5);
  *data = uri.substr(comma + 1);
  return true;
}

void WriteImage(json::Writer& w, const ContentPart& part) {
  w.StartObject();
  json::Key(w, "type");
  json::String(w, "image");
  json::Key(w, "source");
  w.StartObject();
  absl::string_view media_type, data;
  if (SplitDataUri(part.image_url, &media_type, &data)) {
    json::Key(w, "type");
    json::String(w, "base64");
    json::Key(w, "media_type");
    json::String(w, media_type);
    json::Key(w, "data");
    json::String(w, data);
  } else {
    json::Key(w, "type");
    json::String(w, "url");
    json::Key(w, "url");
    json::String(w, part.image_url);
  }
  w.EndObject();
  w.EndObject();
}

void WriteText(json::Writer& w, absl::string_view text) {
  w.StartObject();
  json::Key(w, "type");
  json::String(w, "text");
  json::Key(w, "text");
  json::String(w, text);
  w.EndObject();
}

// Writes the content blocks of a user or assistant message.
void WriteBlocks(json::Writer& w, const ChatMessage& m) {
  if (m.parts.empty()) {
    if (!m.content.empty()) WriteText(w, m.content);
  } else {
    for (const ContentPart& part : m.parts) {
      if (part.type == ContentPart::Type::kImageUrl) {
        WriteImage(w, part);
      } else {
        WriteText(w, part.text);
      }
    }
  }
  for (const ToolCall& call : m.tool_calls) {
    w.StartObject();
    json::Key(w, "type");
    json::String(w, "tool_use");
    json::Key(w, "id");
    json::String(w, call.id);
    json::Key(w, "name");
    json::String(w, call.name);
    json::Key(w, "input");
    json::RawOrFallback(w, call.arguments, "{}");
    w.EndObject();
  }
}

void WriteToolResult(json::Writer& w, const ChatMessage& m) {
  w.StartObject();
  json::Key(w, "type");
  json::String(w, "tool_result");
  json::Key(w, "tool_use_id");
  json::String(w, m.tool_call_id);
  json::Key(w, "content");
  if (m.parts.empty()) {
    json::String(w, m.content);
  } else {
    w.StartArray();
    for (const ContentPart& part : m.parts) {
      if (part.type == ContentPart::Type::kImageUrl) {
        WriteImage(w, part);
      } else {
        WriteText(w, part.text);
      }
    }
    w.EndArray();
  }
  w.EndObject();
}

std::string SystemText(const ChatRequest& r) {
  std::string system;
  for (const ChatMessage& m : r.messages) {
    if (m.role != Role::kSystem && m.role != Role::kDeveloper) continue;
    std::string text = m.content;
    for (const ContentPart& part : m.parts) {
      if (part.type == ContentPart::Type::kText) text += part.text;
    }
    if (!system.empty()) system += "\n\n";
    system += text;
  }
  return system;
}

void WriteMessages(json::Writer& w, const ChatRequest& r) {
  json::Key(w, "messages");
  w.StartArray();
  const auto& msgs = r.messages;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == Role::kSystem || m.role == Role::kDeveloper) continue;
    w.StartObject();
    json::Key(w, "role");
    if (m.role == Role::kTool) {
      // Tool results travel in a user turn; merge consecutive ones.
      json::String(w, "user");
      json::Key(w, "content");
      w.StartArray();
      WriteToolResult(w, m);
      while (i + 1 < msgs.size() && msgs[i + 1].role == Role::kTool) {
        WriteToolResult(w, msgs[++i]);
      }
      w.EndArray();
    } else {
      json::String(w, m.role == Role::kAssistant ? "assistant" : "user");
      json::Key(w, "content");
      if (m.parts.empty() && m.tool_calls.empty()) {
        json::String(w, m.content);
      } else {
        w.StartArray();
        WriteBlocks(w, m);
        w.EndArray();
      }
    }
    w.EndObject();
  }
  w.EndArray();
}

void WriteTools(json::Writer& w, const ChatRequest& r) {
  if (!r.tools.empty()) {
    json::Key(w, "tools");
    w.StartArray();
    for (const ToolSpec& tool : r.tools) {
      w.StartObject();
      json::Key(w, "name");
      json::String(w, tool.name);
      if (!tool.description.empty()) {
        json::Key(w, "description");
        json::String(w, tool.description);
      }
      json::Key(w, "input_schema");
      json::RawOrFallback(w, tool.parameters_json,
                          R"({"type":"object","properties":{}})");
      w.EndObject();
    }
    w.EndArray();
  }
  const char* type = nullptr;
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::kUnspecified:
      return;
    case ToolChoice::Mode::kAuto:
      type = "auto";
      break;
    case ToolChoice::Mode::kNone:
      type = "none";
      break;
    case ToolChoice::Mode::kRequired:
      type = "any";
      break;
    case ToolChoice::Mode::kFunction:
      type = "tool";
      break;
  }
  json::Key(w, "tool_choice");
  w.StartObject();
  json::Key(w, "type");
  json::String(w, type);
  if (r.tool_choice.mode == ToolChoice::Mode::kFunction) {
    json::Key(w, "name");
    json::String(w, r.tool_choice.function_name);
  }
  w.EndObject();
}

// Anthropic's input_tokens exclude cache reads and writes; the domain's
// prompt_tokens count everything the prompt cost.
void ReadUsage(const rapidjson::Value& u, Usage* usage) {
  int64_t cache_read = json::IntMember(u, "cache_read_input_tokens");
  int64_t cache_write = json::IntMember(u, "cache_creation_input_tokens");
  if (json::Member(u, "input_tokens") != nullptr) {
    usage->prompt_tokens =
        json::IntMember(u, "input_tokens") + cache_read + cache_write;
    usage->cached_tokens = cache_read;
  }
  if (json::Member(u, "output_tokens") != nullptr) {
    usage->completion_tokens = json::IntMember(u, "output_tokens");
  }
  usage->total_tokens = usage->prompt_tokens + usage->completion_tokens;
}

UpstreamError ClassifyErrorObject(int status, const rapidjson::Value* error,
                                  absl::string_view raw_body) {
  UpstreamError e;
  e.http_status = status;
  std::string type;
  absl::string_view message = raw_body;
  if (error != nullptr && error->IsObject()) {
    type = absl::AsciiStrToLower(json::StringMember(*error, "type"));
    message = json::StringMember(*error, "message");
  }
  std::string lower = absl::AsciiStrToLower(message);
  auto says = [&](absl::string_view what) {
    return absl::StrContains(lower, what);
  };
  if (type == "overloaded_error" || status == 529 || status == 503) {
    e.error_class = ErrorClass::kOverloaded;
  } else if (says("quota") || says("credit balance")) {
    e.error_class = ErrorClass::kQuotaExhausted;
  } else if (type == "rate_limit_error" || status == 429) {
    e.error_class = ErrorClass::kRateLimited;
  } else if (says("prompt is too long") || says("context length") ||
             says("context window")) {
    e.error_class = ErrorClass::kContextLengthExceeded;
  } else if (says("safety system") || says("content policy") ||
             says("content filter")) {
    e.error_class = ErrorClass::kContentFiltered;
  } else if (type == "authentication_error" || type == "permission_error" ||
             status == 401 || status == 403) {
    e.error_class = ErrorClass::kAuthError;
  } else if (type == "api_error" || status >= 500 || status == 0) {
    e.error_class = ErrorClass::kServerError;
  } else {
    e.error_class = ErrorClass::kBadRequest;
  }
  e.message = status == 0
                  ? absl::StrCat("stream error: ", Truncate(message))
                  : absl::StrCat("HTTP ", status, ": ", Truncate(message));
  return e;
}

class AnthropicStreamDecoder : public StreamDecoder {
 public:
  // User-provided on purpose: see OpenAiStreamDecoder.
  AnthropicStreamDecoder() {}  // NOLINT(modernize-use-equals-default)
  Outcome OnEvent(const SseEvent& event, StreamDelta* delta,
                  UpstreamError* error) override {
    const rapidjson::Document* doc = parser_.Parse(event.data);
    if (doc == nullptr || !doc->IsObject()) {
      *error = {ErrorClass::kProtocolError, 0,
                absl::StrCat("malformed stream event: ", Truncate(event.data))};
      return Outcome::kError;
    }
    absl::string_view type = event.event;
    if (type.empty() || type == "message") {
      type = json::StringMember(*doc, "type");
    }
    if (type == "message_start") {
      if (const rapidjson::Value* msg = json::Member(*doc, "message")) {
        if (const rapidjson::Value* u = json::Member(*msg, "usage")) {
          ReadUsage(*u, &summary_.usage);
          summary_.has_usage = true;
        }
      }
    } else if (type == "content_block_start") {
      const rapidjson::Value* block = json::Member(*doc, "content_block");
      if (block != nullptr &&
          json::StringMember(*block, "type") == "tool_use") {
        int tool_index = static_cast<int>(tool_indexes_.size());
        tool_indexes_[json::IntMember(*doc, "index")] = tool_index;
        ToolCallDelta tc;
        tc.index = tool_index;
        absl::string_view id = json::StringMember(*block, "id");
        absl::string_view name = json::StringMember(*block, "name");
        tc.id.assign(id.data(), id.size());
        tc.name.assign(name.data(), name.size());
        delta->tool_calls.push_back(std::move(tc));
      } else if (block != nullptr) {
        absl::string_view text = json::StringMember(*block, "text");
        delta->content.assign(text.data(), text.size());
      }
    } else if (type == "content_block_delta") {
      const rapidjson::Value* d = json::Member(*doc, "delta");
      if (d == nullptr) {
        *error = {ErrorClass::kProtocolError, 0,
                  "content_block_delta "
                  "without delta"};
        return Outcome::kError;
      }
      absl::string_view dtype = json::StringMember(*d, "type");
      if (dtype == "text_delta") {
        absl::string_view text = json::StringMember(*d, "text");
        delta->content.assign(text.data(), text.size());
      } else if (dtype == "input_json_delta") {
        auto it = tool_indexes_.find(json::IntMember(*doc, "index"));
        ToolCallDelta tc;
        tc.index = it == tool_indexes_.end() ? 0 : it->second;
        absl::string_view partial = json::StringMember(*d, "partial_json");
        tc.arguments_delta.assign(partial.data(), partial.size());
        if (!tc.arguments_delta.empty()) {
          delta->tool_calls.push_back(std::move(tc));
        }
      }
      // thinking/signature deltas are not part of the domain's model.
    } else if (type == "message_delta") {
      if (const rapidjson::Value* d = json::Member(*doc, "delta")) {
        absl::string_view reason = json::StringMember(*d, "stop_reason");
        if (!reason.empty()) {
          delta->finish_reason = ParseStopReason(reason);
          summary_.finish_reason = delta->finish_reason;
          saw_finish_ = true;
        }
      }
      if (const rapidjson::Value* u = json::Member(*doc, "usage")) {
        ReadUsage(*u, &summary_.usage);
        summary_.has_usage = true;
        delta->usage = summary_.usage;
      }
    } else if (type == "message_stop") {
      return Outcome::kDone;
    } else if (type == "error") {
      *error = ClassifyErrorObject(0, json::Member(*doc, "error"), event.data);
      return Outcome::kError;
    }
    // ping, content_block_stop and unknown events carry nothing.
    return Outcome::kContinue;
  }

  bool saw_finish_reason() const override { return saw_finish_; }
  const ChatResponse& summary() const override { return summary_; }

 private:
  json::ScratchParser parser_;
  ChatResponse summary_;
  bool saw_finish_ = false;
  std::map<int64_t, int> tool_indexes_;  // content block index -> tool index
};

absl::Duration UntilRfc3339(const std::string* value, absl::Time now) {
  if (value == nullptr) return absl::ZeroDuration();
  absl::Time when;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, *value, &when, &err)) {
    return absl::ZeroDuration();
  }
  return when > now ? when - now : absl::ZeroDuration();
}

}  // namespace

FinishReason ParseStopReason(absl::string_view reason) {
  if (reason == "end_turn" || reason == "stop_sequence") {
    return FinishReason::kStop;
  }
  if (reason == "max_tokens") return FinishReason::kLength;
  if (reason == "tool_use") return FinishReason::kToolCalls;
  if (reason == "refusal") return FinishReason::kContentFilter;
  return FinishReason::kUnspecified;
}

std::string BuildRequestBody(const ChatRequest& request,
                             absl::string_view model, bool stream) {
  rapidjson::StringBuffer buffer;
  json::Writer w(buffer);
  w.StartObject();
  json::Key(w, "model");
  json::String(w, model);
  json::Key(w, "max_tokens");
  w.Int64(request.params.max_tokens.value_or(kDefaultMaxTokens));
  std::string system = SystemText(request);
  if (!system.empty()) {
    json::Key(w, "system");
    json::String(w, system);
  }
  WriteMessages(w, request);
  const GenerationParams& p = request.params;
  if (p.temperature) {
    json::Key(w, "temperature");
    w.Double(*p.temperature);
  }
  if (p.top_p) {
    json::Key(w, "top_p");
    w.Double(*p.top_p);
  }
  if (!p.stop.empty()) {
    json::Key(w, "stop_sequences");
    w.StartArray();
    for (const std::string& s : p.stop) json::String(w, s);
    w.EndArray();
  }
  WriteTools(w, request);
  if (stream) {
    json::Key(w, "stream");
    w.Bool(true);
  }
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

UpstreamError ClassifyError(int status, absl::string_view body) {
  rapidjson::Document doc;
  const rapidjson::Value* error = nullptr;
  if (!doc.Parse(body.data(), body.size()).HasParseError()) {
    error = json::Member(doc, "error");
  }
  return ClassifyErrorObject(status, error, body);
}

HttpRequest AnthropicDialect::BuildRequest(const UpstreamCall& call) const {
  HttpRequest r;
  r.method = "POST";
  const Endpoint& ep = *call.endpoint;
  absl::string_view base = ep.base_url;
  while (absl::EndsWith(base, "/")) base.remove_suffix(1);
  r.url = absl::StrCat(base, "/messages");
  r.headers.emplace_back("Content-Type", "application/json");
  r.headers.emplace_back(
      "Accept", call.stream ? "text/event-stream" : "application/json");
  r.headers.emplace_back("anthropic-version", "2023-06-01");
  if (!ep.api_key.empty()) r.headers.emplace_back("x-api-key", ep.api_key);
  for (const auto& [name, value] : ep.headers) {
    r.headers.emplace_back(name, value);
  }
  r.body = BuildRequestBody(*call.request, ep.upstream_model, call.stream);
  return r;
}

UpstreamError AnthropicDialect::ClassifyHttpError(int status,
                                                  const HttpHeaders& headers,
                                                  absl::string_view body,
                                                  absl::Time now) const {
  UpstreamError e = ClassifyError(status, body);
  e.retry_after = ParseRetryAfter(headers, now);
  return e;
}

UpstreamRateLimits AnthropicDialect::ParseRateLimits(const HttpHeaders& headers,
                                                     absl::Time now) const {
  UpstreamRateLimits limits;
  if (const std::string* v =
          headers.Find("anthropic-ratelimit-requests-remaining")) {
    if (!absl::SimpleAtoi(*v, &limits.remaining_requests)) {
      limits.remaining_requests = -1;
    }
  }
  if (const std::string* v =
          headers.Find("anthropic-ratelimit-tokens-remaining")) {
    if (!absl::SimpleAtoi(*v, &limits.remaining_tokens)) {
      limits.remaining_tokens = -1;
    }
  }
  limits.reset_requests =
      UntilRfc3339(headers.Find("anthropic-ratelimit-requests-reset"), now);
  limits.reset_tokens =
      UntilRfc3339(headers.Find("anthropic-ratelimit-tokens-reset"), now);
  return limits;
}

UpstreamError AnthropicDialect::ParseResponse(absl::string_view body,
                                              ChatResponse* response) const {
  json::LocalDocument local;
  const json::LocalDocument::Doc& doc = local.Parse(body);
  if (doc.HasParseError() || !doc.IsObject()) {
    return {ErrorClass::kProtocolError, 0,
            absl::StrCat("malformed response: ", Truncate(body))};
  }
  if (json::StringMember(doc, "type") == "error") {
    return ClassifyErrorObject(0, json::Member(doc, "error"), body);
  }
  const rapidjson::Value* content = json::Member(doc, "content");
  if (content == nullptr || !content->IsArray()) {
    return {ErrorClass::kProtocolError, 0, "response without content"};
  }
  response->message.role = Role::kAssistant;
  for (const auto& block : content->GetArray()) {
    absl::string_view type = json::StringMember(block, "type");
    if (type == "text") {
      absl::string_view text = json::StringMember(block, "text");
      response->message.content.append(text.data(), text.size());
    } else if (type == "tool_use") {
      ToolCall tc;
      absl::string_view id = json::StringMember(block, "id");
      absl::string_view name = json::StringMember(block, "name");
      tc.id.assign(id.data(), id.size());
      tc.name.assign(name.data(), name.size());
      if (const rapidjson::Value* input = json::Member(block, "input")) {
        rapidjson::StringBuffer buffer;
        json::Writer w(buffer);
        input->Accept(w);
        tc.arguments.assign(buffer.GetString(), buffer.GetSize());
      } else {
        tc.arguments = "{}";
      }
      response->message.tool_calls.push_back(std::move(tc));
    }
  }
  response->finish_reason =
      ParseStopReason(json::StringMember(doc, "stop_reason"));
  if (const rapidjson::Value* u = json::Member(doc, "usage");
      u != nullptr && u->IsObject()) {
    ReadUsage(*u, &response->usage);
    response->has_usage = true;
  }
  return {};
}

std::unique_ptr<StreamDecoder> AnthropicDialect::NewStreamDecoder() const {
  return std::make_unique<AnthropicStreamDecoder>();
}

}  // namespace anthropic
}  // namespace echelon
