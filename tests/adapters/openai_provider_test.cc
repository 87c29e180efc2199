// Unit tests of the OpenAI wire dialect (request encoding, response and
// stream decoding, error classification). The HTTP path runs against the
// upstream simulator in provider_conformance_test.
#include "adapters/openai_provider.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"

namespace echelon {
namespace {

using openai::OpenAiDialect;

rapidjson::Document ParseJson(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  EXPECT_FALSE(doc.HasParseError()) << text;
  return doc;
}

ChatRequest RichRequest() {
  ChatRequest r;
  ChatMessage dev;
  dev.role = Role::kDeveloper;
  dev.content = "be brief";
  ChatMessage user;
  user.role = Role::kUser;
  user.name = "ann";
  user.parts = {{ContentPart::Type::kText, "what is this?", "", ""},
                {ContentPart::Type::kImageUrl, "", "https://x/y.png", "low"}};
  ChatMessage assistant;
  assistant.role = Role::kAssistant;
  assistant.tool_calls = {{"call_1", "lookup", "{\"q\":\"cat\"}"}};
  ChatMessage tool;
  tool.role = Role::kTool;
  tool.tool_call_id = "call_1";
  tool.content = "a cat";
  r.messages = {dev, user, assistant, tool};
  r.params.temperature = 0.5;
  r.params.top_p = 0.9;
  r.params.max_tokens = 100;
  r.params.stop = {"END"};
  r.params.seed = 7;
  r.params.presence_penalty = 0.1;
  r.params.frequency_penalty = 0.2;
  r.params.response_format.type = ResponseFormat::Type::kJsonSchema;
  r.params.response_format.schema_name = "answer";
  r.params.response_format.json_schema = R"({"type":"object"})";
  r.params.response_format.strict = true;
  r.tools = {{"lookup", "looks up", R"({"type":"object","properties":{}})"}};
  r.tool_choice.mode = ToolChoice::Mode::kFunction;
  r.tool_choice.function_name = "lookup";
  r.metadata = {{"tenant", "t1"}};
  return r;
}

TEST(OpenAiRequestTest, EncodesMessagesParamsToolsAndStreamOptions) {
  std::string body = openai::BuildRequestBody(RichRequest(), "gpt-4o", true);
  rapidjson::Document doc = ParseJson(body);
  EXPECT_STREQ(doc["model"].GetString(), "gpt-4o");
  const auto& msgs = doc["messages"];
  ASSERT_EQ(msgs.Size(), 4u);
  EXPECT_STREQ(msgs[0]["role"].GetString(), "developer");
  EXPECT_STREQ(msgs[0]["content"].GetString(), "be brief");
  EXPECT_STREQ(msgs[1]["name"].GetString(), "ann");
  EXPECT_STREQ(msgs[1]["content"][0]["type"].GetString(), "text");
  EXPECT_STREQ(msgs[1]["content"][1]["image_url"]["url"].GetString(),
               "https://x/y.png");
  EXPECT_STREQ(msgs[1]["content"][1]["image_url"]["detail"].GetString(), "low");
  EXPECT_TRUE(msgs[2]["content"].IsNull());
  EXPECT_STREQ(msgs[2]["tool_calls"][0]["id"].GetString(), "call_1");
  EXPECT_STREQ(msgs[2]["tool_calls"][0]["function"]["arguments"].GetString(),
               "{\"q\":\"cat\"}");
  EXPECT_STREQ(msgs[3]["role"].GetString(), "tool");
  EXPECT_STREQ(msgs[3]["tool_call_id"].GetString(), "call_1");
  EXPECT_DOUBLE_EQ(doc["temperature"].GetDouble(), 0.5);
  EXPECT_DOUBLE_EQ(doc["top_p"].GetDouble(), 0.9);
  EXPECT_EQ(doc["max_tokens"].GetInt(), 100);
  EXPECT_STREQ(doc["stop"][0].GetString(), "END");
  EXPECT_EQ(doc["seed"].GetInt(), 7);
  EXPECT_DOUBLE_EQ(doc["presence_penalty"].GetDouble(), 0.1);
  EXPECT_DOUBLE_EQ(doc["frequency_penalty"].GetDouble(), 0.2);
  EXPECT_STREQ(doc["response_format"]["type"].GetString(), "json_schema");
  EXPECT_STREQ(doc["response_format"]["json_schema"]["name"].GetString(),
               "answer");
  EXPECT_STREQ(
      doc["response_format"]["json_schema"]["schema"]["type"].GetString(),
      "object");
  EXPECT_TRUE(doc["response_format"]["json_schema"]["strict"].GetBool());
  EXPECT_STREQ(doc["tools"][0]["function"]["name"].GetString(), "lookup");
  EXPECT_TRUE(doc["tools"][0]["function"]["parameters"].IsObject());
  EXPECT_STREQ(doc["tool_choice"]["function"]["name"].GetString(), "lookup");
  EXPECT_TRUE(doc["stream"].GetBool());
  EXPECT_TRUE(doc["stream_options"]["include_usage"].GetBool());
  EXPECT_FALSE(absl::StrContains(body, "tenant"));  // metadata stays home
}

TEST(OpenAiRequestTest, OmitsUnsetParamsAndStreamWhenUnary) {
  ChatRequest r;
  r.messages = {{Role::kUser, "hi", {}, "", {}, ""}};
  rapidjson::Document doc = ParseJson(openai::BuildRequestBody(r, "m", false));
  EXPECT_FALSE(doc.HasMember("temperature"));
  EXPECT_FALSE(doc.HasMember("stream"));
  EXPECT_FALSE(doc.HasMember("tools"));
  EXPECT_FALSE(doc.HasMember("tool_choice"));
  EXPECT_FALSE(doc.HasMember("response_format"));
  EXPECT_STREQ(doc["messages"][0]["content"].GetString(), "hi");
}

TEST(OpenAiRequestTest, InvalidSchemaTextCannotBreakTheBody) {
  ChatRequest r = RichRequest();
  r.tools[0].parameters_json = "{oops";
  r.params.response_format.json_schema = "";
  ParseJson(openai::BuildRequestBody(r, "m", false));
}

TEST(OpenAiRequestTest, UrlAuthAndExtraHeaders) {
  auto ep = std::make_shared<Endpoint>();
  ep->base_url = "http://h:1/v1/";
  ep->api_key = "sk-secret";
  ep->upstream_model = "m";
  ep->headers = {{"OpenAI-Organization", "org"}};
  UpstreamCall call;
  call.endpoint = ep;
  call.request = std::make_shared<ChatRequest>();
  HttpRequest req = OpenAiDialect().BuildRequest(call);
  EXPECT_EQ(req.url, "http://h:1/v1/chat/completions");
  bool auth = false, org = false;
  for (const auto& [k, v] : req.headers) {
    if (k == "Authorization") auth = v == "Bearer sk-secret";
    if (k == "OpenAI-Organization") org = v == "org";
  }
  EXPECT_TRUE(auth);
  EXPECT_TRUE(org);

  ep->api_key.clear();
  req = OpenAiDialect().BuildRequest(call);
  for (const auto& [k, v] : req.headers) EXPECT_NE(k, "Authorization");
}

TEST(OpenAiResponseTest, DecodesContentToolCallsFinishAndUsage) {
  ChatResponse resp;
  UpstreamError err = OpenAiDialect().ParseResponse(
      R"({"choices":[{"index":0,"message":{"role":"assistant","content":null,
          "tool_calls":[{"id":"c1","type":"function","function":{"name":"f",
          "arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],
          "usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,
          "prompt_tokens_details":{"cached_tokens":4}}})",
      &resp);
  ASSERT_TRUE(err.ok()) << err.message;
  EXPECT_EQ(resp.message.role, Role::kAssistant);
  EXPECT_EQ(resp.message.content, "");
  ASSERT_EQ(resp.message.tool_calls.size(), 1u);
  EXPECT_EQ(resp.message.tool_calls[0].id, "c1");
  EXPECT_EQ(resp.message.tool_calls[0].name, "f");
  EXPECT_EQ(resp.message.tool_calls[0].arguments, "{\"a\":1}");
  EXPECT_EQ(resp.finish_reason, FinishReason::kToolCalls);
  EXPECT_TRUE(resp.has_usage);
  EXPECT_EQ(resp.usage.prompt_tokens, 10);
  EXPECT_EQ(resp.usage.completion_tokens, 3);
  EXPECT_EQ(resp.usage.total_tokens, 13);
  EXPECT_EQ(resp.usage.cached_tokens, 4);
}

TEST(OpenAiResponseTest, MalformedBodyIsProtocolError) {
  ChatResponse resp;
  EXPECT_EQ(OpenAiDialect().ParseResponse("{nope", &resp).error_class,
            ErrorClass::kProtocolError);
  EXPECT_EQ(OpenAiDialect().ParseResponse("{}", &resp).error_class,
            ErrorClass::kProtocolError);
}

StreamDecoder::Outcome Decode(StreamDecoder& d, const std::string& data,
                              StreamDelta* delta, UpstreamError* error) {
  SseEvent e;
  e.data = data;
  return d.OnEvent(e, delta, error);
}

TEST(OpenAiStreamTest, DecodesContentToolDeltasUsageAndDone) {
  auto d = OpenAiDialect().NewStreamDecoder();
  StreamDelta delta;
  UpstreamError error;
  EXPECT_EQ(Decode(*d,
                   R"({"choices":[{"index":0,"delta":{"role":"assistant",)"
                   R"("content":"Hel"},"finish_reason":null}]})",
                   &delta, &error),
            StreamDecoder::Outcome::kContinue);
  EXPECT_EQ(delta.content, "Hel");

  delta = {};
  Decode(*d,
         R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,)"
         R"("id":"c9","type":"function","function":{"name":"f",)"
         R"("arguments":"{\"a"}}]}}]})",
         &delta, &error);
  ASSERT_EQ(delta.tool_calls.size(), 1u);
  EXPECT_EQ(delta.tool_calls[0].index, 1);
  EXPECT_EQ(delta.tool_calls[0].id, "c9");
  EXPECT_EQ(delta.tool_calls[0].name, "f");
  EXPECT_EQ(delta.tool_calls[0].arguments_delta, "{\"a");

  delta = {};
  EXPECT_FALSE(d->saw_finish_reason());
  Decode(*d, R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})",
         &delta, &error);
  EXPECT_EQ(delta.finish_reason, FinishReason::kStop);
  EXPECT_TRUE(d->saw_finish_reason());

  delta = {};
  Decode(*d,
         R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,)"
         R"("total_tokens":7}})",
         &delta, &error);
  ASSERT_TRUE(delta.usage.has_value());
  EXPECT_EQ(delta.usage->completion_tokens, 2);
  EXPECT_TRUE(d->summary().has_usage);
  EXPECT_EQ(d->summary().finish_reason, FinishReason::kStop);

  delta = {};
  EXPECT_EQ(Decode(*d, "[DONE]", &delta, &error),
            StreamDecoder::Outcome::kDone);
}

TEST(OpenAiStreamTest, MalformedChunkIsProtocolError) {
  auto d = OpenAiDialect().NewStreamDecoder();
  StreamDelta delta;
  UpstreamError error;
  EXPECT_EQ(Decode(*d, "{not json", &delta, &error),
            StreamDecoder::Outcome::kError);
  EXPECT_EQ(error.error_class, ErrorClass::kProtocolError);
}

TEST(OpenAiStreamTest, ErrorInsideStreamIsClassified) {
  auto d = OpenAiDialect().NewStreamDecoder();
  StreamDelta delta;
  UpstreamError error;
  EXPECT_EQ(Decode(*d, R"({"error":{"message":"boom","type":"server_error"}})",
                   &delta, &error),
            StreamDecoder::Outcome::kError);
  EXPECT_EQ(error.error_class, ErrorClass::kServerError);
  EXPECT_TRUE(absl::StrContains(error.message, "boom"));

  auto d2 = OpenAiDialect().NewStreamDecoder();
  Decode(*d2, R"({"error":{"message":"x","code":"rate_limit_exceeded"}})",
         &delta, &error);
  EXPECT_EQ(error.error_class, ErrorClass::kRateLimited);
}

HttpHeaders Headers(std::vector<std::pair<std::string, std::string>> entries) {
  HttpHeaders h;
  h.entries = std::move(entries);
  return h;
}

UpstreamError Classify(int status, const std::string& body,
                       const HttpHeaders& headers = {}) {
  return OpenAiDialect().ClassifyHttpError(status, headers, body,
                                           absl::FromUnixSeconds(1000));
}

std::string ErrorBody(const std::string& code, const std::string& type,
                      const std::string& message = "msg") {
  return absl::StrCat(R"({"error":{"message":")", message, R"(","type":")",
                      type, R"(","param":null,"code":")", code, R"("}})");
}

TEST(OpenAiErrorTest, ClassifiesByStatusAndErrorCode) {
  EXPECT_EQ(
      Classify(429, ErrorBody("rate_limit_exceeded", "requests")).error_class,
      ErrorClass::kRateLimited);
  EXPECT_EQ(Classify(429, ErrorBody("insufficient_quota", "insufficient_quota"))
                .error_class,
            ErrorClass::kQuotaExhausted);
  EXPECT_EQ(Classify(400, ErrorBody("context_length_exceeded",
                                    "invalid_request_error"))
                .error_class,
            ErrorClass::kContextLengthExceeded);
  UpstreamError filtered =
      Classify(400, ErrorBody("content_policy_violation",
                              "invalid_request_error", "rejected: violence"));
  EXPECT_EQ(filtered.error_class, ErrorClass::kContentFiltered);
  EXPECT_TRUE(absl::StrContains(filtered.message, "rejected: violence"));
  EXPECT_EQ(Classify(400, ErrorBody("content_filter", "x")).error_class,
            ErrorClass::kContentFiltered);
  EXPECT_EQ(Classify(503, ErrorBody("", "server_error")).error_class,
            ErrorClass::kOverloaded);
  EXPECT_EQ(Classify(529, "").error_class, ErrorClass::kOverloaded);
  EXPECT_EQ(Classify(500, ErrorBody("server_is_overloaded", "server_error"))
                .error_class,
            ErrorClass::kOverloaded);
  EXPECT_EQ(Classify(500, "oops").error_class, ErrorClass::kServerError);
  EXPECT_EQ(Classify(502, "").error_class, ErrorClass::kServerError);
  EXPECT_EQ(Classify(401, ErrorBody("invalid_api_key", "x")).error_class,
            ErrorClass::kAuthError);
  EXPECT_EQ(Classify(403, "").error_class, ErrorClass::kAuthError);
  EXPECT_EQ(Classify(404, "").error_class, ErrorClass::kBadRequest);
  EXPECT_EQ(Classify(422, "").error_class, ErrorClass::kBadRequest);
  EXPECT_EQ(Classify(500, "").http_status, 500);
}

TEST(OpenAiErrorTest, ReadsRetryAfterVariants) {
  EXPECT_EQ(Classify(429, "", Headers({{"retry-after", "2"}})).retry_after,
            absl::Seconds(2));
  EXPECT_EQ(
      Classify(429, "", Headers({{"retry-after-ms", "1500"}})).retry_after,
      absl::Milliseconds(1500));
}

TEST(OpenAiErrorTest, ShouldRetryFalseMakesTransientErrorsFinal) {
  HttpHeaders no = Headers({{"x-should-retry", "false"}});
  EXPECT_EQ(Classify(429, ErrorBody("rate_limit_exceeded", "requests"), no)
                .error_class,
            ErrorClass::kBadRequest);
  EXPECT_EQ(Classify(500, "", no).error_class, ErrorClass::kBadRequest);
  EXPECT_EQ(Classify(401, "", no).error_class, ErrorClass::kAuthError);
  EXPECT_EQ(
      Classify(500, "", Headers({{"x-should-retry", "true"}})).error_class,
      ErrorClass::kServerError);
}

TEST(OpenAiErrorTest, MessageNeverCarriesTheKey) {
  // The body is the upstream's; the key lives only in request headers,
  // which classification never sees.
  UpstreamError e = Classify(401, ErrorBody("invalid_api_key", "x", "bad"));
  EXPECT_FALSE(absl::StrContains(e.message, "Bearer"));
}

TEST(OpenAiRateLimitTest, ParsesRemainingAndResetHeaders) {
  UpstreamRateLimits l = OpenAiDialect().ParseRateLimits(
      Headers({{"x-ratelimit-remaining-requests", "59"},
               {"x-ratelimit-remaining-tokens", "149000"},
               {"x-ratelimit-reset-requests", "1s"},
               {"x-ratelimit-reset-tokens", "6m0s"}}),
      absl::FromUnixSeconds(0));
  EXPECT_EQ(l.remaining_requests, 59);
  EXPECT_EQ(l.remaining_tokens, 149000);
  EXPECT_EQ(l.reset_requests, absl::Seconds(1));
  EXPECT_EQ(l.reset_tokens, absl::Minutes(6));

  UpstreamRateLimits none =
      OpenAiDialect().ParseRateLimits(HttpHeaders{}, absl::FromUnixSeconds(0));
  EXPECT_EQ(none.remaining_requests, -1);
  EXPECT_EQ(none.remaining_tokens, -1);
}

}  // namespace
}  // namespace echelon
