#include "adapters/openai_front_json.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"
#include "rapidjson/writer.h"

namespace echelon {
namespace {

// Deeper JSON is refused before parsing: RapidJSON's Accept() (used to copy
// schemas out) recurses, and no real request nests this deep.
constexpr int kMaxJsonDepth = 128;

// Writer output that appends to a std::string without a temporary buffer.
class StringSink {
 public:
  using Ch = char;
  explicit StringSink(std::string* out) : out_(out) {}
  void Put(char c) { out_->push_back(c); }
  void Flush() {}

 private:
  std::string* out_;
};

using JsonWriter = rapidjson::Writer<StringSink>;

void Str(JsonWriter& w, absl::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
void Key(JsonWriter& w, absl::string_view s) {
  w.Key(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

bool TooDeep(absl::string_view body) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

std::string ToJsonText(const rapidjson::Value& v) {
  std::string out;
  StringSink sink(&out);
  JsonWriter w(sink);
  v.Accept(w);
  return out;
}

absl::string_view View(const rapidjson::Value& v) {
  return absl::string_view(v.GetString(), v.GetStringLength());
}

// Field-by-field reader that records the first error and its path.
class RequestReader {
 public:
  explicit RequestReader(std::string* param) : param_(param) {}

  absl::Status Error(absl::string_view path, absl::string_view message) {
    if (param_ != nullptr) *param_ = std::string(path);
    return absl::InvalidArgumentError(message);
  }
  absl::Status TypeError(absl::string_view path, absl::string_view want) {
    return Error(path, absl::StrCat("'", path, "' must be ", want));
  }

  // Member `name` of `obj`, or null when absent or JSON null.
  static const rapidjson::Value* Get(const rapidjson::Value& obj,
                                     const char* name) {
    auto it = obj.FindMember(name);
    if (it == obj.MemberEnd() || it->value.IsNull()) return nullptr;
    return &it->value;
  }

  absl::Status ReadString(const rapidjson::Value& obj, const char* name,
                          absl::string_view path, std::string* out) {
    const rapidjson::Value* v = Get(obj, name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->IsString()) return TypeError(path, "a string");
    out->assign(v->GetString(), v->GetStringLength());
    return absl::OkStatus();
  }

  absl::Status ReadDouble(const rapidjson::Value& obj, const char* name,
                          std::optional<double>* out) {
    const rapidjson::Value* v = Get(obj, name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->IsNumber()) return TypeError(name, "a number");
    *out = v->GetDouble();
    return absl::OkStatus();
  }

  absl::Status ReadInt(const rapidjson::Value& obj, const char* name,
                       std::optional<int64_t>* out) {
    const rapidjson::Value* v = Get(obj, name);
    if (v == nullptr) return absl::OkStatus();
    if (v->IsInt64()) {
      *out = v->GetInt64();
    } else if (v->IsDouble() && std::isfinite(v->GetDouble()) &&
               std::floor(v->GetDouble()) == v->GetDouble() &&
               std::fabs(v->GetDouble()) < 9e15) {
      *out = static_cast<int64_t>(v->GetDouble());
    } else {
      return TypeError(name, "an integer");
    }
    return absl::OkStatus();
  }

  absl::Status ReadBool(const rapidjson::Value& obj, const char* name,
                        absl::string_view path, bool* out) {
    const rapidjson::Value* v = Get(obj, name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->IsBool()) return TypeError(path, "a boolean");
    *out = v->GetBool();
    return absl::OkStatus();
  }

  absl::Status ReadContent(const rapidjson::Value& content,
                           const std::string& path, ChatMessage* m) {
    if (content.IsString()) {
      m->content.assign(content.GetString(), content.GetStringLength());
      return absl::OkStatus();
    }
    if (!content.IsArray()) {
      return TypeError(path, "a string or an array of content parts");
    }
    for (rapidjson::SizeType j = 0; j < content.Size(); ++j) {
      const rapidjson::Value& part = content[j];
      std::string ppath = absl::StrCat(path, "[", j, "]");
      if (!part.IsObject()) return TypeError(ppath, "an object");
      std::string type;
      absl::Status s = ReadString(part, "type", ppath + ".type", &type);
      if (!s.ok()) return s;
      ContentPart p;
      if (type == "text") {
        p.type = ContentPart::Type::kText;
        const rapidjson::Value* text = Get(part, "text");
        if (text == nullptr || !text->IsString()) {
          return TypeError(ppath + ".text", "a string");
        }
        p.text.assign(text->GetString(), text->GetStringLength());
      } else if (type == "image_url") {
        p.type = ContentPart::Type::kImageUrl;
        const rapidjson::Value* img = Get(part, "image_url");
        if (img != nullptr && img->IsString()) {
          p.image_url.assign(img->GetString(), img->GetStringLength());
        } else if (img != nullptr && img->IsObject()) {
          s = ReadString(*img, "url", ppath + ".image_url.url", &p.image_url);
          if (!s.ok()) return s;
          s = ReadString(*img, "detail", ppath + ".image_url.detail",
                         &p.detail);
          if (!s.ok()) return s;
        }
        if (p.image_url.empty()) {
          return Error(ppath + ".image_url.url",
                       "image_url part needs a non-empty url");
        }
      } else if (type == "refusal") {
        // An assistant's earlier refusal, echoed back: keep it as text.
        p.type = ContentPart::Type::kText;
        s = ReadString(part, "refusal", ppath + ".refusal", &p.text);
        if (!s.ok()) return s;
      } else {
        return Error(ppath + ".type",
                     absl::StrCat("unsupported content part type '", type,
                                  "'; supported: text, image_url"));
      }
      m->parts.push_back(std::move(p));
    }
    return absl::OkStatus();
  }

  absl::Status ReadMessage(const rapidjson::Value& msg, const std::string& path,
                           ChatMessage* m) {
    if (!msg.IsObject()) return TypeError(path, "an object");
    const rapidjson::Value* role = Get(msg, "role");
    if (role == nullptr || !role->IsString()) {
      return Error(path + ".role", "each message needs a string 'role'");
    }
    absl::string_view r = View(*role);
    if (r == "system") {
      m->role = Role::kSystem;
    } else if (r == "developer") {
      m->role = Role::kDeveloper;
    } else if (r == "user") {
      m->role = Role::kUser;
    } else if (r == "assistant") {
      m->role = Role::kAssistant;
    } else if (r == "tool") {
      m->role = Role::kTool;
    } else {
      return Error(path + ".role",
                   absl::StrCat("unsupported role '", r,
                                "'; supported: system, developer, user, "
                                "assistant, tool"));
    }
    const rapidjson::Value* content = Get(msg, "content");
    if (content != nullptr) {
      absl::Status s = ReadContent(*content, path + ".content", m);
      if (!s.ok()) return s;
    }
    absl::Status s = ReadString(msg, "name", path + ".name", &m->name);
    if (!s.ok()) return s;
    if (m->role == Role::kTool) {
      s = ReadString(msg, "tool_call_id", path + ".tool_call_id",
                     &m->tool_call_id);
      if (!s.ok()) return s;
      if (m->tool_call_id.empty()) {
        return Error(path + ".tool_call_id",
                     "a tool message needs 'tool_call_id'");
      }
    }
    const rapidjson::Value* calls = Get(msg, "tool_calls");
    if (calls != nullptr) {
      std::string cpath = path + ".tool_calls";
      if (m->role != Role::kAssistant) {
        return Error(cpath, "only assistant messages carry tool_calls");
      }
      if (!calls->IsArray()) return TypeError(cpath, "an array");
      for (rapidjson::SizeType k = 0; k < calls->Size(); ++k) {
        const rapidjson::Value& c = (*calls)[k];
        std::string kpath = absl::StrCat(cpath, "[", k, "]");
        if (!c.IsObject()) return TypeError(kpath, "an object");
        ToolCall call;
        s = ReadString(c, "id", kpath + ".id", &call.id);
        if (!s.ok()) return s;
        const rapidjson::Value* fn = Get(c, "function");
        if (fn == nullptr || !fn->IsObject()) {
          return TypeError(kpath + ".function", "an object");
        }
        s = ReadString(*fn, "name", kpath + ".function.name", &call.name);
        if (!s.ok()) return s;
        s = ReadString(*fn, "arguments", kpath + ".function.arguments",
                       &call.arguments);
        if (!s.ok()) return s;
        if (call.name.empty()) {
          return Error(kpath + ".function.name", "a tool call needs a name");
        }
        m->tool_calls.push_back(std::move(call));
      }
    }
    return absl::OkStatus();
  }

  absl::Status ReadStop(const rapidjson::Value& root, GenerationParams* p) {
    const rapidjson::Value* stop = Get(root, "stop");
    if (stop == nullptr) return absl::OkStatus();
    if (stop->IsString()) {
      p->stop.emplace_back(stop->GetString(), stop->GetStringLength());
      return absl::OkStatus();
    }
    if (!stop->IsArray()) {
      return TypeError("stop", "a string or an array of strings");
    }
    for (rapidjson::SizeType i = 0; i < stop->Size(); ++i) {
      if (!(*stop)[i].IsString()) {
        return TypeError(absl::StrCat("stop[", i, "]"), "a string");
      }
      p->stop.emplace_back((*stop)[i].GetString(),
                           (*stop)[i].GetStringLength());
    }
    return absl::OkStatus();
  }

  absl::Status ReadResponseFormat(const rapidjson::Value& root,
                                  ResponseFormat* f) {
    const rapidjson::Value* rf = Get(root, "response_format");
    if (rf == nullptr) return absl::OkStatus();
    if (!rf->IsObject()) return TypeError("response_format", "an object");
    std::string type;
    absl::Status s = ReadString(*rf, "type", "response_format.type", &type);
    if (!s.ok()) return s;
    if (type == "text") {
      f->type = ResponseFormat::Type::kText;
    } else if (type == "json_object") {
      f->type = ResponseFormat::Type::kJsonObject;
    } else if (type == "json_schema") {
      f->type = ResponseFormat::Type::kJsonSchema;
      const rapidjson::Value* js = Get(*rf, "json_schema");
      if (js == nullptr || !js->IsObject()) {
        return TypeError("response_format.json_schema", "an object");
      }
      s = ReadString(*js, "name", "response_format.json_schema.name",
                     &f->schema_name);
      if (!s.ok()) return s;
      if (f->schema_name.empty()) {
        return Error("response_format.json_schema.name",
                     "json_schema needs a name");
      }
      const rapidjson::Value* schema = Get(*js, "schema");
      if (schema != nullptr) {
        if (!schema->IsObject()) {
          return TypeError("response_format.json_schema.schema", "an object");
        }
        f->json_schema = ToJsonText(*schema);
      }
      s = ReadBool(*js, "strict", "response_format.json_schema.strict",
                   &f->strict);
      if (!s.ok()) return s;
    } else {
      return Error("response_format.type",
                   absl::StrCat("unsupported response_format type '", type,
                                "'; supported: text, json_object, "
                                "json_schema"));
    }
    return absl::OkStatus();
  }

  absl::Status ReadTools(const rapidjson::Value& root, ChatRequest* req) {
    const rapidjson::Value* tools = Get(root, "tools");
    if (tools != nullptr) {
      if (!tools->IsArray()) return TypeError("tools", "an array");
      for (rapidjson::SizeType i = 0; i < tools->Size(); ++i) {
        const rapidjson::Value& t = (*tools)[i];
        std::string path = absl::StrCat("tools[", i, "]");
        if (!t.IsObject()) return TypeError(path, "an object");
        std::string type = "function";
        absl::Status s = ReadString(t, "type", path + ".type", &type);
        if (!s.ok()) return s;
        if (type != "function") {
          return Error(path + ".type",
                       absl::StrCat("unsupported tool type '", type,
                                    "'; supported: function"));
        }
        const rapidjson::Value* fn = Get(t, "function");
        if (fn == nullptr || !fn->IsObject()) {
          return TypeError(path + ".function", "an object");
        }
        ToolSpec spec;
        s = ReadString(*fn, "name", path + ".function.name", &spec.name);
        if (!s.ok()) return s;
        if (spec.name.empty()) {
          return Error(path + ".function.name", "a tool needs a name");
        }
        s = ReadString(*fn, "description", path + ".function.description",
                       &spec.description);
        if (!s.ok()) return s;
        const rapidjson::Value* params = Get(*fn, "parameters");
        if (params != nullptr) {
          if (!params->IsObject()) {
            return TypeError(path + ".function.parameters", "an object");
          }
          spec.parameters_json = ToJsonText(*params);
        }
        req->tools.push_back(std::move(spec));
      }
    }
    const rapidjson::Value* choice = Get(root, "tool_choice");
    if (choice == nullptr) return absl::OkStatus();
    if (choice->IsString()) {
      absl::string_view c = View(*choice);
      if (c == "auto") {
        req->tool_choice.mode = ToolChoice::Mode::kAuto;
      } else if (c == "none") {
        req->tool_choice.mode = ToolChoice::Mode::kNone;
      } else if (c == "required") {
        req->tool_choice.mode = ToolChoice::Mode::kRequired;
      } else {
        return Error("tool_choice",
                     absl::StrCat("unsupported tool_choice '", c,
                                  "'; supported: auto, none, required, or "
                                  "a function"));
      }
    } else if (choice->IsObject()) {
      const rapidjson::Value* fn = Get(*choice, "function");
      std::string name;
      if (fn != nullptr && fn->IsObject()) {
        absl::Status s =
            ReadString(*fn, "name", "tool_choice.function.name", &name);
        if (!s.ok()) return s;
      }
      if (name.empty()) {
        return Error("tool_choice.function.name",
                     "tool_choice object needs function.name");
      }
      req->tool_choice.mode = ToolChoice::Mode::kFunction;
      req->tool_choice.function_name = std::move(name);
    } else {
      return TypeError("tool_choice", "a string or an object");
    }
    if (req->tool_choice.mode != ToolChoice::Mode::kNone &&
        req->tool_choice.mode != ToolChoice::Mode::kAuto &&
        req->tools.empty()) {
      return Error("tool_choice", "tool_choice requires 'tools'");
    }
    return absl::OkStatus();
  }

  absl::Status ReadMetadata(const rapidjson::Value& root, ChatRequest* req) {
    const rapidjson::Value* md = Get(root, "metadata");
    if (md != nullptr) {
      if (!md->IsObject()) return TypeError("metadata", "an object");
      for (auto it = md->MemberBegin(); it != md->MemberEnd(); ++it) {
        if (!it->value.IsString()) {
          return TypeError(absl::StrCat("metadata.", View(it->name)),
                           "a string");
        }
        req->metadata[std::string(View(it->name))] =
            std::string(View(it->value));
      }
    }
    std::string user;
    absl::Status s = ReadString(root, "user", "user", &user);
    if (!s.ok()) return s;
    if (!user.empty()) req->metadata["user"] = std::move(user);
    return absl::OkStatus();
  }

 private:
  std::string* param_;
};

void WriteUsage(JsonWriter& w, const Usage& u) {
  Key(w, "usage");
  w.StartObject();
  Key(w, "prompt_tokens");
  w.Int64(u.prompt_tokens);
  Key(w, "completion_tokens");
  w.Int64(u.completion_tokens);
  Key(w, "total_tokens");
  w.Int64(u.total_tokens != 0 ? u.total_tokens
                              : u.prompt_tokens + u.completion_tokens);
  if (u.cached_tokens > 0) {
    Key(w, "prompt_tokens_details");
    w.StartObject();
    Key(w, "cached_tokens");
    w.Int64(u.cached_tokens);
    w.EndObject();
  }
  w.EndObject();
}

void WriteMetaFields(JsonWriter& w, const OpenAiCompletionMeta& meta,
                     absl::string_view object) {
  Key(w, "id");
  Str(w, meta.id);
  Key(w, "object");
  Str(w, object);
  Key(w, "created");
  w.Int64(meta.created);
  Key(w, "model");
  Str(w, meta.model);
}

// Starts {"id":..,"object":"chat.completion.chunk",..,"choices":[{"index":0,
// "delta":{ ... and leaves the delta object open.
void StartChunk(JsonWriter& w, const OpenAiCompletionMeta& meta) {
  w.StartObject();
  WriteMetaFields(w, meta, "chat.completion.chunk");
  Key(w, "choices");
  w.StartArray();
  w.StartObject();
  Key(w, "index");
  w.Int(0);
  Key(w, "delta");
  w.StartObject();
}

void EndChunk(JsonWriter& w, FinishReason reason) {
  w.EndObject();  // delta
  Key(w, "logprobs");
  w.Null();
  Key(w, "finish_reason");
  if (reason == FinishReason::kUnspecified) {
    w.Null();
  } else {
    Str(w, OpenAiFinishReason(reason));
  }
  w.EndObject();  // choice
  w.EndArray();
  w.EndObject();
}

absl::string_view TargetKindName(TargetView::Kind kind) {
  switch (kind) {
    case TargetView::Kind::kPool:
      return "pool";
    case TargetView::Kind::kTaskGroup:
      return "task_group";
    case TargetView::Kind::kEchelon:
      return "echelon";
    case TargetView::Kind::kModel:
      return "model";
  }
  return "model";
}

void WriteModel(JsonWriter& w, const TargetView& t) {
  w.StartObject();
  Key(w, "id");
  Str(w, t.name);
  Key(w, "object");
  Str(w, "model");
  Key(w, "created");
  w.Int(0);
  Key(w, "owned_by");
  Str(w, "echelon");
  Key(w, "echelon_kind");
  Str(w, TargetKindName(t.kind));
  if (!t.description.empty()) {
    Key(w, "description");
    Str(w, t.description);
  }
  w.EndObject();
}

}  // namespace

absl::StatusOr<OpenAiChatCall> ParseOpenAiChatRequest(absl::string_view body,
                                                      std::string* param) {
  if (param != nullptr) param->clear();
  RequestReader r(param);
  if (TooDeep(body)) {
    return r.Error("", "request JSON nests too deeply");
  }
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError()) {
    return r.Error(
        "", absl::StrCat("request body is not valid JSON: ",
                         rapidjson::GetParseError_En(doc.GetParseError()),
                         " at offset ", doc.GetErrorOffset()));
  }
  if (!doc.IsObject()) return r.Error("", "request body must be an object");

  OpenAiChatCall call;
  call.request = std::make_shared<ChatRequest>();
  ChatRequest& req = *call.request;
  absl::Status s = r.ReadString(doc, "model", "model", &call.model);
  if (!s.ok()) return s;
  if (call.model.empty()) return r.Error("model", "'model' is required");

  const rapidjson::Value* messages = RequestReader::Get(doc, "messages");
  if (messages == nullptr || !messages->IsArray() || messages->Empty()) {
    return r.Error("messages", "'messages' must be a non-empty array");
  }
  req.messages.resize(messages->Size());
  for (rapidjson::SizeType i = 0; i < messages->Size(); ++i) {
    s = r.ReadMessage((*messages)[i], absl::StrCat("messages[", i, "]"),
                      &req.messages[i]);
    if (!s.ok()) return s;
  }

  GenerationParams& p = req.params;
  if (!(s = r.ReadDouble(doc, "temperature", &p.temperature)).ok()) return s;
  if (!(s = r.ReadDouble(doc, "top_p", &p.top_p)).ok()) return s;
  if (!(s = r.ReadDouble(doc, "presence_penalty", &p.presence_penalty)).ok()) {
    return s;
  }
  if (!(s = r.ReadDouble(doc, "frequency_penalty", &p.frequency_penalty))
           .ok()) {
    return s;
  }
  std::optional<int64_t> max_tokens;
  if (!(s = r.ReadInt(doc, "max_tokens", &max_tokens)).ok()) return s;
  std::optional<int64_t> max_completion_tokens;
  if (!(s = r.ReadInt(doc, "max_completion_tokens", &max_completion_tokens))
           .ok()) {
    return s;
  }
  // The newer name wins when both are sent.
  p.max_tokens = max_completion_tokens ? max_completion_tokens : max_tokens;
  if (p.max_tokens && *p.max_tokens < 1) {
    return r.Error(
        max_completion_tokens ? "max_completion_tokens" : "max_tokens",
        "the token limit must be at least 1");
  }
  if (!(s = r.ReadInt(doc, "seed", &p.seed)).ok()) return s;
  std::optional<int64_t> n;
  if (!(s = r.ReadInt(doc, "n", &n)).ok()) return s;
  if (n && *n != 1) return r.Error("n", "only n=1 is supported");
  if (!(s = r.ReadStop(doc, &p)).ok()) return s;
  if (!(s = r.ReadResponseFormat(doc, &p.response_format)).ok()) return s;
  if (!(s = r.ReadTools(doc, &req)).ok()) return s;
  if (!(s = r.ReadMetadata(doc, &req)).ok()) return s;

  if (!(s = r.ReadBool(doc, "stream", "stream", &call.stream)).ok()) return s;
  const rapidjson::Value* so = RequestReader::Get(doc, "stream_options");
  if (so != nullptr) {
    if (!so->IsObject()) return r.TypeError("stream_options", "an object");
    s = r.ReadBool(*so, "include_usage", "stream_options.include_usage",
                   &call.include_usage);
    if (!s.ok()) return s;
  }
  return call;
}

OpenAiError OpenAiErrorFromStatus(const absl::Status& status,
                                  absl::Duration retry_after) {
  OpenAiError e;
  e.message = std::string(status.message());
  if (e.message.empty()) e.message = absl::StatusCodeToString(status.code());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      e.http_status = 400;
      e.type = "invalid_request_error";
      break;
    case absl::StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "authentication_error";
      e.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      e.http_status = 403;
      e.type = "permission_error";
      break;
    case absl::StatusCode::kNotFound:
      e.http_status = 404;
      e.type = "invalid_request_error";
      e.code = "model_not_found";
      e.param = "model";
      break;
    case absl::StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      e.code = "rate_limit_exceeded";
      break;
    case absl::StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "service_unavailable";
      e.code = "service_unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      e.http_status = 504;
      e.type = "timeout";
      e.code = "timeout";
      break;
    case absl::StatusCode::kFailedPrecondition:
      e.http_status = 400;
      e.type = "invalid_request_error";
      e.code = "content_filter";
      break;
    case absl::StatusCode::kCancelled:
      e.http_status = 499;
      e.type = "cancelled";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
      break;
  }
  if (e.http_status == 429 ||
      (e.http_status == 503 && retry_after > absl::ZeroDuration())) {
    int64_t secs =
        absl::ToInt64Seconds(absl::Ceil(retry_after, absl::Seconds(1)));
    if (secs < 1) secs = 1;
    if (secs > 86400) secs = 86400;
    e.retry_after_seconds = static_cast<int>(secs);
  }
  return e;
}

void AppendOpenAiErrorJson(const OpenAiError& error, std::string* out) {
  StringSink sink(out);
  JsonWriter w(sink);
  w.StartObject();
  Key(w, "error");
  w.StartObject();
  Key(w, "message");
  Str(w, error.message);
  Key(w, "type");
  Str(w, error.type);
  Key(w, "param");
  if (error.param.empty()) {
    w.Null();
  } else {
    Str(w, error.param);
  }
  Key(w, "code");
  if (error.code.empty()) {
    w.Null();
  } else {
    Str(w, error.code);
  }
  w.EndObject();
  w.EndObject();
}

absl::string_view OpenAiFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kToolCalls:
      return "tool_calls";
    case FinishReason::kContentFilter:
      return "content_filter";
    case FinishReason::kStop:
    case FinishReason::kUnspecified:
      return "stop";
  }
  return "stop";
}

void AppendOpenAiCompletionJson(const OpenAiCompletionMeta& meta,
                                const ChatResponse& response,
                                std::string* out) {
  StringSink sink(out);
  JsonWriter w(sink);
  const ChatMessage& m = response.message;
  w.StartObject();
  WriteMetaFields(w, meta, "chat.completion");
  Key(w, "choices");
  w.StartArray();
  w.StartObject();
  Key(w, "index");
  w.Int(0);
  Key(w, "message");
  w.StartObject();
  Key(w, "role");
  Str(w, "assistant");
  Key(w, "content");
  std::string joined;
  if (!m.parts.empty()) {
    for (const ContentPart& p : m.parts) {
      if (p.type == ContentPart::Type::kText) joined += p.text;
    }
  }
  const std::string& text = m.parts.empty() ? m.content : joined;
  if (text.empty() && !m.tool_calls.empty()) {
    w.Null();
  } else {
    Str(w, text);
  }
  Key(w, "refusal");
  w.Null();
  if (!m.tool_calls.empty()) {
    Key(w, "tool_calls");
    w.StartArray();
    for (const ToolCall& c : m.tool_calls) {
      w.StartObject();
      Key(w, "id");
      Str(w, c.id);
      Key(w, "type");
      Str(w, "function");
      Key(w, "function");
      w.StartObject();
      Key(w, "name");
      Str(w, c.name);
      Key(w, "arguments");
      Str(w, c.arguments.empty() ? absl::string_view("{}")
                                 : absl::string_view(c.arguments));
      w.EndObject();
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();  // message
  Key(w, "logprobs");
  w.Null();
  Key(w, "finish_reason");
  FinishReason reason = response.finish_reason;
  if (reason == FinishReason::kUnspecified) {
    reason =
        m.tool_calls.empty() ? FinishReason::kStop : FinishReason::kToolCalls;
  }
  Str(w, OpenAiFinishReason(reason));
  w.EndObject();  // choice
  w.EndArray();
  WriteUsage(w, response.usage);
  w.EndObject();
}

void AppendOpenAiRoleChunk(const OpenAiCompletionMeta& meta, std::string* out) {
  StringSink sink(out);
  JsonWriter w(sink);
  StartChunk(w, meta);
  Key(w, "role");
  Str(w, "assistant");
  Key(w, "content");
  Str(w, "");
  EndChunk(w, FinishReason::kUnspecified);
}

void AppendOpenAiDeltaChunk(const OpenAiCompletionMeta& meta,
                            const StreamDelta& delta, std::string* out) {
  StringSink sink(out);
  JsonWriter w(sink);
  StartChunk(w, meta);
  if (!delta.content.empty()) {
    Key(w, "content");
    Str(w, delta.content);
  }
  if (!delta.tool_calls.empty()) {
    Key(w, "tool_calls");
    w.StartArray();
    for (const ToolCallDelta& c : delta.tool_calls) {
      w.StartObject();
      Key(w, "index");
      w.Int(c.index);
      if (!c.id.empty()) {
        Key(w, "id");
        Str(w, c.id);
        Key(w, "type");
        Str(w, "function");
      }
      Key(w, "function");
      w.StartObject();
      if (!c.name.empty()) {
        Key(w, "name");
        Str(w, c.name);
      }
      Key(w, "arguments");
      Str(w, c.arguments_delta);
      w.EndObject();
      w.EndObject();
    }
    w.EndArray();
  }
  EndChunk(w, FinishReason::kUnspecified);
}

void AppendOpenAiFinishChunk(const OpenAiCompletionMeta& meta,
                             FinishReason reason, std::string* out) {
  StringSink sink(out);
  JsonWriter w(sink);
  StartChunk(w, meta);
  EndChunk(w,
           reason == FinishReason::kUnspecified ? FinishReason::kStop : reason);
}

void AppendOpenAiUsageChunk(const OpenAiCompletionMeta& meta,
                            const Usage& usage, std::string* out) {
  StringSink sink(out);
  JsonWriter w(sink);
  w.StartObject();
  WriteMetaFields(w, meta, "chat.completion.chunk");
  Key(w, "choices");
  w.StartArray();
  w.EndArray();
  WriteUsage(w, usage);
  w.EndObject();
}

void AppendOpenAiModelListJson(const std::vector<TargetView>& targets,
                               std::string* out) {
  StringSink sink(out);
  JsonWriter w(sink);
  w.StartObject();
  Key(w, "object");
  Str(w, "list");
  Key(w, "data");
  w.StartArray();
  for (const TargetView& t : targets) WriteModel(w, t);
  w.EndArray();
  w.EndObject();
}

void AppendOpenAiModelJson(const TargetView& target, std::string* out) {
  StringSink sink(out);
  JsonWriter w(sink);
  WriteModel(w, target);
}

}  // namespace echelon
