#include "adapters/openai_provider.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "adapters/json_util.h"

namespace echelon {
namespace openai {
namespace {

constexpr size_t kMaxMessageBytes = 1024;

const char* RoleName(Role role) {
  switch (role) {
    case Role::kSystem:
      return "system";
    case Role::kUser:
      return "user";
    case Role::kAssistant:
      return "assistant";
    case Role::kTool:
      return "tool";
    case Role::kDeveloper:
      return "developer";
  }
  return "user";
}

void WriteContent(json::Writer& w, const ChatMessage& m) {
  json::Key(w, "content");
  if (m.parts.empty()) {
    if (m.content.empty() && !m.tool_calls.empty()) {
      w.Null();
    } else {
      json::String(w, m.content);
    }
    return;
  }
  w.StartArray();
  for (const ContentPart& part : m.parts) {
    w.StartObject();
    if (part.type == ContentPart::Type::kImageUrl) {
      json::Key(w, "type");
      json::String(w, "image_url");
      json::Key(w, "image_url");
      w.StartObject();
      json::Key(w, "url");
      json::String(w, part.image_url);
      if (!part.detail.empty()) {
        json::Key(w, "detail");
        json::String(w, part.detail);
      }
      w.EndObject();
    } else {
      json::Key(w, "type");
      json::String(w, "text");
      json::Key(w, "text");
      json::String(w, part.text);
    }
    w.EndObject();
  }
  w.EndArray();
}

void WriteMessage(json::Writer& w, const ChatMessage& m) {
  w.StartObject();
  json::Key(w, "role");
  json::String(w, RoleName(m.role));
  WriteContent(w, m);
  if (!m.name.empty()) {
    json::Key(w, "name");
    json::String(w, m.name);
  }
  if (!m.tool_calls.empty()) {
    json::Key(w, "tool_calls");
    w.StartArray();
    for (const ToolCall& call : m.tool_calls) {
      w.StartObject();
      json::Key(w, "id");
      json::String(w, call.id);
      json::Key(w, "type");
      json::String(w, "function");
      json::Key(w, "function");
      w.StartObject();
      json::Key(w, "name");
      json::String(w, call.name);
      json::Key(w, "arguments");
      json::String(w, call.arguments.empty() ? "{}" : call.arguments);
      w.EndObject();
      w.EndObject();
    }
    w.EndArray();
  }
  if (!m.tool_call_id.empty()) {
    json::Key(w, "tool_call_id");
    json::String(w, m.tool_call_id);
  }
  w.EndObject();
}

void WriteResponseFormat(json::Writer& w, const ResponseFormat& f) {
  if (f.type == ResponseFormat::Type::kUnspecified) return;
  json::Key(w, "response_format");
  w.StartObject();
  json::Key(w, "type");
  switch (f.type) {
    case ResponseFormat::Type::kText:
    case ResponseFormat::Type::kUnspecified:
      json::String(w, "text");
      break;
    case ResponseFormat::Type::kJsonObject:
      json::String(w, "json_object");
      break;
    case ResponseFormat::Type::kJsonSchema:
      json::String(w, "json_schema");
      json::Key(w, "json_schema");
      w.StartObject();
      json::Key(w, "name");
      json::String(w, f.schema_name.empty() ? "response" : f.schema_name);
      json::Key(w, "schema");
      json::RawOrFallback(w, f.json_schema, "{}");
      json::Key(w, "strict");
      w.Bool(f.strict);
      w.EndObject();
      break;
  }
  w.EndObject();
}

void WriteTools(json::Writer& w, const ChatRequest& r) {
  if (!r.tools.empty()) {
    json::Key(w, "tools");
    w.StartArray();
    for (const ToolSpec& tool : r.tools) {
      w.StartObject();
      json::Key(w, "type");
      json::String(w, "function");
      json::Key(w, "function");
      w.StartObject();
      json::Key(w, "name");
      json::String(w, tool.name);
      if (!tool.description.empty()) {
        json::Key(w, "description");
        json::String(w, tool.description);
      }
      json::Key(w, "parameters");
      json::RawOrFallback(w, tool.parameters_json,
                          R"({"type":"object","properties":{}})");
      w.EndObject();
      w.EndObject();
    }
    w.EndArray();
  }
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::kUnspecified:
      break;
    case ToolChoice::Mode::kAuto:
      json::Key(w, "tool_choice");
      json::String(w, "auto");
      break;
    case ToolChoice::Mode::kNone:
      json::Key(w, "tool_choice");
      json::String(w, "none");
      break;
    case ToolChoice::Mode::kRequired:
      json::Key(w, "tool_choice");
      json::String(w, "required");
      break;
    case ToolChoice::Mode::kFunction:
      json::Key(w, "tool_choice");
      w.StartObject();
      json::Key(w, "type");
      json::String(w, "function");
      json::Key(w, "function");
      w.StartObject();
      json::Key(w, "name");
      json::String(w, r.tool_choice.function_name);
      w.EndObject();
      w.EndObject();
      break;
  }
}

void ReadUsage(const rapidjson::Value& u, Usage* usage) {
  usage->prompt_tokens = json::IntMember(u, "prompt_tokens");
  usage->completion_tokens = json::IntMember(u, "completion_tokens");
  usage->total_tokens = json::IntMember(
      u, "total_tokens", usage->prompt_tokens + usage->completion_tokens);
  usage->cached_tokens = 0;
  if (const rapidjson::Value* d = json::Member(u, "prompt_tokens_details")) {
    usage->cached_tokens = json::IntMember(*d, "cached_tokens");
  }
}

std::string Truncate(absl::string_view s) {
  if (s.size() <= kMaxMessageBytes) return std::string(s);
  return absl::StrCat(s.substr(0, kMaxMessageBytes), "...");
}

UpstreamError ClassifyErrorObject(int status, const rapidjson::Value* error,
                                  absl::string_view raw_body) {
  UpstreamError e;
  e.http_status = status;
  std::string code, type;
  absl::string_view message;
  if (error != nullptr && error->IsObject()) {
    code = absl::AsciiStrToLower(json::StringMember(*error, "code"));
    type = absl::AsciiStrToLower(json::StringMember(*error, "type"));
    message = json::StringMember(*error, "message");
  } else if (error != nullptr && error->IsString()) {
    message = json::View(*error);
  } else {
    message = raw_body;
  }
  auto is = [&](absl::string_view what) {
    return code == what || type == what;
  };
  if (is("insufficient_quota")) {
    e.error_class = ErrorClass::kQuotaExhausted;
  } else if (is("context_length_exceeded")) {
    e.error_class = ErrorClass::kContextLengthExceeded;
  } else if (is("content_policy_violation") || is("content_filter")) {
    e.error_class = ErrorClass::kContentFiltered;
  } else if (status == 429 || is("rate_limit_exceeded")) {
    e.error_class = ErrorClass::kRateLimited;
  } else if (status == 503 || status == 529 || is("server_is_overloaded") ||
             is("overloaded_error")) {
    e.error_class = ErrorClass::kOverloaded;
  } else if (status >= 500 || status == 0) {
    e.error_class = ErrorClass::kServerError;
  } else if (status == 401 || status == 403) {
    e.error_class = ErrorClass::kAuthError;
  } else {
    e.error_class = ErrorClass::kBadRequest;
  }
  e.message = status == 0
                  ? absl::StrCat("stream error: ", Truncate(message))
                  : absl::StrCat("HTTP ", status, ": ", Truncate(message));
  return e;
}

class OpenAiStreamDecoder : public StreamDecoder {
 public:
  // User-provided on purpose: make_unique value-initialises, and an
  // implicit constructor would zero the parser's inline buffer per stream.
  OpenAiStreamDecoder() {}  // NOLINT(modernize-use-equals-default)
  Outcome OnEvent(const SseEvent& event, StreamDelta* delta,
                  UpstreamError* error) override {
    absl::string_view data = event.data;
    if (data == "[DONE]") return Outcome::kDone;
    const rapidjson::Document* doc = parser_.Parse(data);
    if (doc == nullptr || !doc->IsObject()) {
      *error = {ErrorClass::kProtocolError, 0,
                absl::StrCat("malformed stream chunk: ", Truncate(data))};
      return Outcome::kError;
    }
    if (const rapidjson::Value* err = json::Member(*doc, "error")) {
      *error = ClassifyErrorObject(0, err, data);
      return Outcome::kError;
    }
    if (const rapidjson::Value* usage = json::Member(*doc, "usage");
        usage != nullptr && usage->IsObject()) {
      Usage u;
      ReadUsage(*usage, &u);
      summary_.usage = u;
      summary_.has_usage = true;
      delta->usage = u;
    }
    const rapidjson::Value* choices = json::Member(*doc, "choices");
    if (choices == nullptr || !choices->IsArray() || choices->Empty()) {
      return Outcome::kContinue;
    }
    const rapidjson::Value& choice = (*choices)[0];
    if (const rapidjson::Value* d = json::Member(choice, "delta")) {
      absl::string_view content = json::StringMember(*d, "content");
      delta->content.assign(content.data(), content.size());
      if (const rapidjson::Value* calls = json::Member(*d, "tool_calls");
          calls != nullptr && calls->IsArray()) {
        for (const auto& call : calls->GetArray()) {
          ToolCallDelta tc;
          tc.index = static_cast<int>(json::IntMember(call, "index"));
          absl::string_view id = json::StringMember(call, "id");
          tc.id.assign(id.data(), id.size());
          if (const rapidjson::Value* fn = json::Member(call, "function")) {
            absl::string_view name = json::StringMember(*fn, "name");
            absl::string_view args = json::StringMember(*fn, "arguments");
            tc.name.assign(name.data(), name.size());
            tc.arguments_delta.assign(args.data(), args.size());
          }
          delta->tool_calls.push_back(std::move(tc));
        }
      }
    }
    absl::string_view finish = json::StringMember(choice, "finish_reason");
    if (!finish.empty()) {
      delta->finish_reason = ParseFinishReason(finish);
      summary_.finish_reason = delta->finish_reason;
      saw_finish_ = true;
    }
    return Outcome::kContinue;
  }

  bool saw_finish_reason() const override { return saw_finish_; }
  const ChatResponse& summary() const override { return summary_; }

 private:
  json::ScratchParser parser_;
  ChatResponse summary_;
  bool saw_finish_ = false;
};

}  // namespace

FinishReason ParseFinishReason(absl::string_view reason) {
  if (reason == "stop") return FinishReason::kStop;
  if (reason == "length") return FinishReason::kLength;
  if (reason == "tool_calls" || reason == "function_call") {
    return FinishReason::kToolCalls;
  }
  if (reason == "content_filter") return FinishReason::kContentFilter;
  return FinishReason::kUnspecified;
}

std::string BuildRequestBody(const ChatRequest& request,
                             absl::string_view model, bool stream) {
  rapidjson::StringBuffer buffer;
  json::Writer w(buffer);
  w.StartObject();
  json::Key(w, "model");
  json::String(w, model);
  json::Key(w, "messages");
  w.StartArray();
  for (const ChatMessage& m : request.messages) WriteMessage(w, m);
  w.EndArray();
  const GenerationParams& p = request.params;
  if (p.temperature) {
    json::Key(w, "temperature");
    w.Double(*p.temperature);
  }
  if (p.top_p) {
    json::Key(w, "top_p");
    w.Double(*p.top_p);
  }
  if (p.max_tokens) {
    json::Key(w, "max_tokens");
    w.Int64(*p.max_tokens);
  }
  if (!p.stop.empty()) {
    json::Key(w, "stop");
    w.StartArray();
    for (const std::string& s : p.stop) json::String(w, s);
    w.EndArray();
  }
  if (p.seed) {
    json::Key(w, "seed");
    w.Int64(*p.seed);
  }
  if (p.presence_penalty) {
    json::Key(w, "presence_penalty");
    w.Double(*p.presence_penalty);
  }
  if (p.frequency_penalty) {
    json::Key(w, "frequency_penalty");
    w.Double(*p.frequency_penalty);
  }
  WriteResponseFormat(w, p.response_format);
  WriteTools(w, request);
  if (stream) {
    json::Key(w, "stream");
    w.Bool(true);
    json::Key(w, "stream_options");
    w.StartObject();
    json::Key(w, "include_usage");
    w.Bool(true);
    w.EndObject();
  }
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

UpstreamError ClassifyError(int status, absl::string_view body) {
  rapidjson::Document doc;
  const rapidjson::Value* error = nullptr;
  if (!doc.Parse(body.data(), body.size()).HasParseError()) {
    error = json::Member(doc, "error");
    if (error == nullptr && doc.IsObject()) error = &doc;
  }
  return ClassifyErrorObject(status, error, body);
}

HttpRequest OpenAiDialect::BuildRequest(const UpstreamCall& call) const {
  HttpRequest r;
  r.method = "POST";
  const Endpoint& ep = *call.endpoint;
  absl::string_view base = ep.base_url;
  while (absl::EndsWith(base, "/")) base.remove_suffix(1);
  r.url = absl::StrCat(base, "/chat/completions");
  r.headers.emplace_back("Content-Type", "application/json");
  r.headers.emplace_back(
      "Accept", call.stream ? "text/event-stream" : "application/json");
  if (!ep.api_key.empty()) {
    r.headers.emplace_back("Authorization",
                           absl::StrCat("Bearer ", ep.api_key));
  }
  for (const auto& [name, value] : ep.headers)
    r.headers.emplace_back(name, value);
  r.body = BuildRequestBody(*call.request, ep.upstream_model, call.stream);
  return r;
}

UpstreamError OpenAiDialect::ClassifyHttpError(int status,
                                               const HttpHeaders& headers,
                                               absl::string_view body,
                                               absl::Time now) const {
  UpstreamError e = ClassifyError(status, body);
  e.retry_after = ParseRetryAfter(headers, now);
  const std::string* should_retry = headers.Find("x-should-retry");
  if (should_retry != nullptr && *should_retry == "false" &&
      (e.error_class == ErrorClass::kRateLimited ||
       e.error_class == ErrorClass::kOverloaded ||
       e.error_class == ErrorClass::kServerError)) {
    e.error_class = ErrorClass::kBadRequest;
    absl::StrAppend(&e.message, " (x-should-retry: false)");
  }
  return e;
}

UpstreamRateLimits OpenAiDialect::ParseRateLimits(const HttpHeaders& headers,
                                                  absl::Time /*now*/) const {
  UpstreamRateLimits limits;
  if (const std::string* v = headers.Find("x-ratelimit-remaining-requests")) {
    if (!absl::SimpleAtoi(*v, &limits.remaining_requests)) {
      limits.remaining_requests = -1;
    }
  }
  if (const std::string* v = headers.Find("x-ratelimit-remaining-tokens")) {
    if (!absl::SimpleAtoi(*v, &limits.remaining_tokens)) {
      limits.remaining_tokens = -1;
    }
  }
  if (const std::string* v = headers.Find("x-ratelimit-reset-requests")) {
    limits.reset_requests = ParseResetDuration(*v);
  }
  if (const std::string* v = headers.Find("x-ratelimit-reset-tokens")) {
    limits.reset_tokens = ParseResetDuration(*v);
  }
  return limits;
}

UpstreamError OpenAiDialect::ParseResponse(absl::string_view body,
                                           ChatResponse* response) const {
  json::LocalDocument local;
  const json::LocalDocument::Doc& doc = local.Parse(body);
  if (doc.HasParseError() || !doc.IsObject()) {
    return {ErrorClass::kProtocolError, 0,
            absl::StrCat("malformed response: ", Truncate(body))};
  }
  if (const rapidjson::Value* err = json::Member(doc, "error")) {
    return ClassifyErrorObject(0, err, body);
  }
  const rapidjson::Value* choices = json::Member(doc, "choices");
  if (choices == nullptr || !choices->IsArray() || choices->Empty()) {
    return {ErrorClass::kProtocolError, 0, "response without choices"};
  }
  const rapidjson::Value& choice = (*choices)[0];
  response->message.role = Role::kAssistant;
  if (const rapidjson::Value* m = json::Member(choice, "message")) {
    absl::string_view content = json::StringMember(*m, "content");
    response->message.content.assign(content.data(), content.size());
    if (const rapidjson::Value* calls = json::Member(*m, "tool_calls");
        calls != nullptr && calls->IsArray()) {
      for (const auto& call : calls->GetArray()) {
        ToolCall tc;
        absl::string_view id = json::StringMember(call, "id");
        tc.id.assign(id.data(), id.size());
        if (const rapidjson::Value* fn = json::Member(call, "function")) {
          absl::string_view name = json::StringMember(*fn, "name");
          absl::string_view args = json::StringMember(*fn, "arguments");
          tc.name.assign(name.data(), name.size());
          tc.arguments.assign(args.data(), args.size());
        }
        response->message.tool_calls.push_back(std::move(tc));
      }
    }
  }
  response->finish_reason =
      ParseFinishReason(json::StringMember(choice, "finish_reason"));
  if (const rapidjson::Value* usage = json::Member(doc, "usage");
      usage != nullptr && usage->IsObject()) {
    ReadUsage(*usage, &response->usage);
    response->has_usage = true;
  }
  return {};
}

std::unique_ptr<StreamDecoder> OpenAiDialect::NewStreamDecoder() const {
  return std::make_unique<OpenAiStreamDecoder>();
}

}  // namespace openai
}  // namespace echelon
