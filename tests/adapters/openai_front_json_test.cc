#include "adapters/openai_front_json.h"

#include <string>

#include "gtest/gtest.h"
#include "rapidjson/document.h"

namespace echelon {
namespace {

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  EXPECT_FALSE(d.HasParseError()) << text;
  return d;
}

OpenAiCompletionMeta Meta() {
  OpenAiCompletionMeta m;
  m.id = "chatcmpl-1";
  m.created = 1700000000;
  m.model = "fast";
  return m;
}

TEST(ParseOpenAiChatRequestTest, MapsMessagesAndParameters) {
  std::string param;
  auto call = ParseOpenAiChatRequest(R"({
    "model": "fast-pool",
    "messages": [
      {"role": "system", "content": "be brief"},
      {"role": "developer", "content": "dev says"},
      {"role": "user", "name": "ann", "content": [
        {"type": "text", "text": "what is"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
      ]},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
      ]},
      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ],
    "temperature": 0.5, "top_p": 0.9, "max_tokens": 10,
    "max_completion_tokens": 20, "stop": ["a", "b"], "seed": 7,
    "presence_penalty": 0.1, "frequency_penalty": -0.2,
    "response_format": {"type": "json_schema", "json_schema": {
      "name": "answer", "strict": true,
      "schema": {"type": "object", "properties": {"x": {"type": "number"}}}}},
    "tools": [{"type": "function", "function": {"name": "get_weather",
      "description": "weather", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "user": "u-1", "metadata": {"team": "search"},
    "stream": true, "stream_options": {"include_usage": true},
    "logprobs": false, "some_future_field": {"ignored": [1, 2]}
  })",
                                     &param);
  ASSERT_TRUE(call.ok()) << call.status() << " param=" << param;
  EXPECT_EQ(call->model, "fast-pool");
  EXPECT_TRUE(call->stream);
  EXPECT_TRUE(call->include_usage);
  const ChatRequest& r = *call->request;
  ASSERT_EQ(r.messages.size(), 5u);
  EXPECT_EQ(r.messages[0].role, Role::kSystem);
  EXPECT_EQ(r.messages[0].content, "be brief");
  EXPECT_EQ(r.messages[1].role, Role::kDeveloper);
  EXPECT_EQ(r.messages[2].role, Role::kUser);
  EXPECT_EQ(r.messages[2].name, "ann");
  ASSERT_EQ(r.messages[2].parts.size(), 2u);
  EXPECT_EQ(r.messages[2].parts[0].type, ContentPart::Type::kText);
  EXPECT_EQ(r.messages[2].parts[0].text, "what is");
  EXPECT_EQ(r.messages[2].parts[1].type, ContentPart::Type::kImageUrl);
  EXPECT_EQ(r.messages[2].parts[1].image_url, "https://x/y.png");
  EXPECT_EQ(r.messages[2].parts[1].detail, "low");
  EXPECT_EQ(r.messages[3].role, Role::kAssistant);
  ASSERT_EQ(r.messages[3].tool_calls.size(), 1u);
  EXPECT_EQ(r.messages[3].tool_calls[0].id, "call_1");
  EXPECT_EQ(r.messages[3].tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.messages[3].tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
  EXPECT_EQ(r.messages[4].role, Role::kTool);
  EXPECT_EQ(r.messages[4].tool_call_id, "call_1");
  EXPECT_EQ(r.messages[4].content, "sunny");

  const GenerationParams& p = r.params;
  EXPECT_EQ(p.temperature, 0.5);
  EXPECT_EQ(p.top_p, 0.9);
  EXPECT_EQ(p.max_tokens, 20);  // max_completion_tokens wins
  EXPECT_EQ(p.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(p.seed, 7);
  EXPECT_EQ(p.presence_penalty, 0.1);
  EXPECT_EQ(p.frequency_penalty, -0.2);
  EXPECT_EQ(p.response_format.type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(p.response_format.schema_name, "answer");
  EXPECT_TRUE(p.response_format.strict);
  EXPECT_EQ(p.response_format.json_schema,
            R"({"type":"object","properties":{"x":{"type":"number"}}})");
  ASSERT_EQ(r.tools.size(), 1u);
  EXPECT_EQ(r.tools[0].name, "get_weather");
  EXPECT_EQ(r.tools[0].description, "weather");
  EXPECT_EQ(r.tools[0].parameters_json, R"({"type":"object"})");
  EXPECT_EQ(r.tool_choice.mode, ToolChoice::Mode::kFunction);
  EXPECT_EQ(r.tool_choice.function_name, "get_weather");
  EXPECT_EQ(r.metadata.at("user"), "u-1");
  EXPECT_EQ(r.metadata.at("team"), "search");
}

TEST(ParseOpenAiChatRequestTest, AcceptsStringStopAndSimpleChoices) {
  for (const char* choice : {"auto", "none", "required"}) {
    std::string body = std::string(R"({"model":"m","messages":[{"role":"user",
      "content":"hi"}],"stop":"END","max_tokens":5,"response_format":
      {"type":"json_object"},"tools":[{"type":"function","function":
      {"name":"f"}}],"tool_choice":")") +
                       choice + "\"}";
    auto call = ParseOpenAiChatRequest(body, nullptr);
    ASSERT_TRUE(call.ok()) << call.status();
    EXPECT_EQ(call->request->params.stop, std::vector<std::string>{"END"});
    EXPECT_EQ(call->request->params.max_tokens, 5);
    EXPECT_EQ(call->request->params.response_format.type,
              ResponseFormat::Type::kJsonObject);
    EXPECT_FALSE(call->stream);
  }
}

TEST(ParseOpenAiChatRequestTest, NullOptionalFieldsAreAbsent) {
  auto call = ParseOpenAiChatRequest(
      R"({"model":"m","messages":[{"role":"user","content":"hi"}],
          "temperature":null,"stop":null,"tools":null,"stream":null})",
      nullptr);
  ASSERT_TRUE(call.ok()) << call.status();
  EXPECT_FALSE(call->request->params.temperature.has_value());
  EXPECT_TRUE(call->request->params.stop.empty());
}

TEST(ParseOpenAiChatRequestTest, BadInputNamesTheParameter) {
  struct Case {
    const char* body;
    const char* param;
  };
  for (const Case& c : {
           Case{"not json", ""},
           Case{"[1]", ""},
           Case{R"({"messages":[{"role":"user","content":"x"}]})", "model"},
           Case{R"({"model":"m","messages":[]})", "messages"},
           Case{R"({"model":"m","messages":[{"role":"wizard","content":"x"}]})",
                "messages[0].role"},
           Case{R"({"model":"m","messages":[{"role":"user","content":5}]})",
                "messages[0].content"},
           Case{R"({"model":"m","messages":[{"role":"user","content":
                [{"type":"input_audio"}]}]})",
                "messages[0].content[0].type"},
           Case{R"({"model":"m","messages":[{"role":"tool","content":"x"}]})",
                "messages[0].tool_call_id"},
           Case{R"({"model":"m","messages":[{"role":"user","content":"x"}],
                "temperature":"hot"})",
                "temperature"},
           Case{R"({"model":"m","messages":[{"role":"user","content":"x"}],
                "max_tokens":1.5})",
                "max_tokens"},
           Case{R"({"model":"m","messages":[{"role":"user","content":"x"}],
                "stop":[1]})",
                "stop[0]"},
           Case{R"({"model":"m","messages":[{"role":"user","content":"x"}],
                "tool_choice":"sometimes"})",
                "tool_choice"},
           Case{R"({"model":"m","messages":[{"role":"user","content":"x"}],
                "tools":[{"type":"function","function":{}}]})",
                "tools[0].function.name"},
           Case{R"({"model":"m","messages":[{"role":"user","content":"x"}],
                "response_format":{"type":"yaml"}})",
                "response_format.type"},
           Case{R"({"model":"m","messages":[{"role":"user","content":"x"}],
                "n":2})",
                "n"},
       }) {
    std::string param = "unset";
    auto call = ParseOpenAiChatRequest(c.body, &param);
    ASSERT_FALSE(call.ok()) << c.body;
    EXPECT_EQ(call.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(param, c.param) << c.body;
  }
}

TEST(ParseOpenAiChatRequestTest, RefusesDeeplyNestedJson) {
  std::string body = R"({"model":"m","messages":[{"role":"user","content":"x"}],
      "metadata":)" + std::string(1000, '[') +
                     std::string(1000, ']') + "}";
  auto call = ParseOpenAiChatRequest(body, nullptr);
  ASSERT_FALSE(call.ok());
  EXPECT_EQ(call.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(OpenAiErrorFromStatusTest, MapsEachCodeToHttpStatusAndType) {
  struct Case {
    absl::Status status;
    int http;
    const char* code;
  };
  for (const Case& c : {
           Case{absl::InvalidArgumentError("x"), 400, ""},
           Case{absl::UnauthenticatedError("x"), 401, "invalid_api_key"},
           Case{absl::PermissionDeniedError("x"), 403, ""},
           Case{absl::NotFoundError("x"), 404, "model_not_found"},
           Case{absl::ResourceExhaustedError("x"), 429, "rate_limit_exceeded"},
           Case{absl::UnavailableError("x"), 503, "service_unavailable"},
           Case{absl::DeadlineExceededError("x"), 504, "timeout"},
           Case{absl::FailedPreconditionError("x"), 400, "content_filter"},
           Case{absl::InternalError("x"), 500, ""},
           Case{absl::AbortedError("x"), 500, ""},
       }) {
    OpenAiError e = OpenAiErrorFromStatus(c.status, absl::ZeroDuration());
    EXPECT_EQ(e.http_status, c.http) << c.status;
    EXPECT_EQ(e.code, c.code) << c.status;
    EXPECT_EQ(e.message, "x");
  }
}

TEST(OpenAiErrorFromStatusTest, RetryAfterRoundsUpToWholeSeconds) {
  EXPECT_EQ(OpenAiErrorFromStatus(absl::ResourceExhaustedError("x"),
                                  absl::Milliseconds(1200))
                .retry_after_seconds,
            2);
  EXPECT_EQ(OpenAiErrorFromStatus(absl::ResourceExhaustedError("x"),
                                  absl::ZeroDuration())
                .retry_after_seconds,
            1);
  EXPECT_EQ(
      OpenAiErrorFromStatus(absl::UnavailableError("x"), absl::ZeroDuration())
          .retry_after_seconds,
      0);
  EXPECT_EQ(OpenAiErrorFromStatus(absl::UnavailableError("x"), absl::Seconds(3))
                .retry_after_seconds,
            3);
}

TEST(OpenAiErrorJsonTest, WritesOpenAiErrorShape) {
  OpenAiError e = OpenAiErrorFromStatus(absl::NotFoundError("no \"such\""),
                                        absl::ZeroDuration());
  std::string out;
  AppendOpenAiErrorJson(e, &out);
  rapidjson::Document d = Json(out);
  const auto& err = d["error"];
  EXPECT_STREQ(err["message"].GetString(), "no \"such\"");
  EXPECT_STREQ(err["type"].GetString(), "invalid_request_error");
  EXPECT_STREQ(err["param"].GetString(), "model");
  EXPECT_STREQ(err["code"].GetString(), "model_not_found");
}

TEST(OpenAiCompletionJsonTest, WritesChatCompletionObject) {
  ChatResponse r;
  r.message.role = Role::kAssistant;
  r.message.content = "hello";
  r.finish_reason = FinishReason::kLength;
  r.usage = {3, 4, 7, 1};
  std::string out = "prefix:";
  AppendOpenAiCompletionJson(Meta(), r, &out);
  ASSERT_EQ(out.rfind("prefix:", 0), 0u);
  rapidjson::Document d = Json(out.substr(7));
  EXPECT_STREQ(d["object"].GetString(), "chat.completion");
  EXPECT_STREQ(d["id"].GetString(), "chatcmpl-1");
  EXPECT_EQ(d["created"].GetInt64(), 1700000000);
  EXPECT_STREQ(d["model"].GetString(), "fast");
  const auto& choice = d["choices"][0];
  EXPECT_STREQ(choice["message"]["role"].GetString(), "assistant");
  EXPECT_STREQ(choice["message"]["content"].GetString(), "hello");
  EXPECT_STREQ(choice["finish_reason"].GetString(), "length");
  EXPECT_EQ(d["usage"]["prompt_tokens"].GetInt(), 3);
  EXPECT_EQ(d["usage"]["completion_tokens"].GetInt(), 4);
  EXPECT_EQ(d["usage"]["total_tokens"].GetInt(), 7);
  EXPECT_EQ(d["usage"]["prompt_tokens_details"]["cached_tokens"].GetInt(), 1);
}

TEST(OpenAiCompletionJsonTest, ToolCallsHaveNullContentAndToolCallsReason) {
  ChatResponse r;
  r.message.tool_calls.push_back({"call_9", "lookup", "{\"q\":1}"});
  std::string out;
  AppendOpenAiCompletionJson(Meta(), r, &out);
  rapidjson::Document d = Json(out);
  const auto& msg = d["choices"][0]["message"];
  EXPECT_TRUE(msg["content"].IsNull());
  EXPECT_STREQ(msg["tool_calls"][0]["id"].GetString(), "call_9");
  EXPECT_STREQ(msg["tool_calls"][0]["type"].GetString(), "function");
  EXPECT_STREQ(msg["tool_calls"][0]["function"]["name"].GetString(), "lookup");
  EXPECT_STREQ(msg["tool_calls"][0]["function"]["arguments"].GetString(),
               "{\"q\":1}");
  EXPECT_STREQ(d["choices"][0]["finish_reason"].GetString(), "tool_calls");
}

TEST(OpenAiChunkJsonTest, WritesRoleContentToolFinishAndUsageChunks) {
  std::string role;
  AppendOpenAiRoleChunk(Meta(), &role);
  rapidjson::Document d = Json(role);
  EXPECT_STREQ(d["object"].GetString(), "chat.completion.chunk");
  EXPECT_STREQ(d["choices"][0]["delta"]["role"].GetString(), "assistant");
  EXPECT_TRUE(d["choices"][0]["finish_reason"].IsNull());

  StreamDelta delta;
  delta.content = "tok";
  delta.tool_calls.push_back({0, "call_1", "f", "{\"a\""});
  delta.tool_calls.push_back({0, "", "", ":1}"});
  std::string chunk;
  AppendOpenAiDeltaChunk(Meta(), delta, &chunk);
  d = Json(chunk);
  const auto& dd = d["choices"][0]["delta"];
  EXPECT_FALSE(dd.HasMember("role"));
  EXPECT_STREQ(dd["content"].GetString(), "tok");
  EXPECT_EQ(dd["tool_calls"][0]["index"].GetInt(), 0);
  EXPECT_STREQ(dd["tool_calls"][0]["id"].GetString(), "call_1");
  EXPECT_STREQ(dd["tool_calls"][0]["function"]["name"].GetString(), "f");
  EXPECT_STREQ(dd["tool_calls"][0]["function"]["arguments"].GetString(),
               "{\"a\"");
  EXPECT_FALSE(dd["tool_calls"][1].HasMember("id"));
  EXPECT_FALSE(dd["tool_calls"][1]["function"].HasMember("name"));

  std::string finish;
  AppendOpenAiFinishChunk(Meta(), FinishReason::kToolCalls, &finish);
  d = Json(finish);
  EXPECT_TRUE(d["choices"][0]["delta"].ObjectEmpty());
  EXPECT_STREQ(d["choices"][0]["finish_reason"].GetString(), "tool_calls");

  std::string usage;
  AppendOpenAiUsageChunk(Meta(), Usage{1, 2, 3, 0}, &usage);
  d = Json(usage);
  EXPECT_TRUE(d["choices"].Empty());
  EXPECT_EQ(d["usage"]["total_tokens"].GetInt(), 3);
}

TEST(OpenAiModelListJsonTest, ListsTargetsWithKinds) {
  std::vector<TargetView> targets(2);
  targets[0].name = "fast-pool";
  targets[0].kind = TargetView::Kind::kPool;
  targets[1].name = "fast.primary";
  targets[1].kind = TargetView::Kind::kEchelon;
  std::string out;
  AppendOpenAiModelListJson(targets, &out);
  rapidjson::Document d = Json(out);
  EXPECT_STREQ(d["object"].GetString(), "list");
  ASSERT_EQ(d["data"].Size(), 2u);
  EXPECT_STREQ(d["data"][0]["id"].GetString(), "fast-pool");
  EXPECT_STREQ(d["data"][0]["object"].GetString(), "model");
  EXPECT_STREQ(d["data"][0]["echelon_kind"].GetString(), "pool");
  EXPECT_STREQ(d["data"][1]["echelon_kind"].GetString(), "echelon");
}

}  // namespace
}  // namespace echelon
