// Unit tests of the Anthropic wire dialect. The HTTP path runs against the
// upstream simulator in provider_conformance_test.
#include "adapters/anthropic_provider.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"

namespace echelon {
namespace {

using anthropic::AnthropicDialect;

rapidjson::Document ParseJson(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  EXPECT_FALSE(doc.HasParseError()) << text;
  return doc;
}

ChatMessage Msg(Role role, std::string content) {
  ChatMessage m;
  m.role = role;
  m.content = std::move(content);
  return m;
}

TEST(AnthropicRequestTest, MovesSystemAndDeveloperToTopLevel) {
  ChatRequest r;
  r.messages = {Msg(Role::kSystem, "rule one"), Msg(Role::kDeveloper, "two"),
                Msg(Role::kUser, "hi")};
  rapidjson::Document doc =
      ParseJson(anthropic::BuildRequestBody(r, "claude", false));
  EXPECT_STREQ(doc["model"].GetString(), "claude");
  EXPECT_STREQ(doc["system"].GetString(), "rule one\n\ntwo");
  ASSERT_EQ(doc["messages"].Size(), 1u);
  EXPECT_STREQ(doc["messages"][0]["role"].GetString(), "user");
  EXPECT_STREQ(doc["messages"][0]["content"].GetString(), "hi");
  EXPECT_EQ(doc["max_tokens"].GetInt(), 4096);
  EXPECT_FALSE(doc.HasMember("stream"));
}

TEST(AnthropicRequestTest, MapsToolCallsToolResultsImagesAndParams) {
  ChatRequest r;
  ChatMessage user;
  user.role = Role::kUser;
  user.parts = {
      {ContentPart::Type::kText, "look", "", ""},
      {ContentPart::Type::kImageUrl, "", "https://x/a.png", ""},
      {ContentPart::Type::kImageUrl, "", "data:image/png;base64,QUJD", ""}};
  ChatMessage assistant = Msg(Role::kAssistant, "checking");
  assistant.tool_calls = {{"tu_1", "lookup", R"({"q":"cat"})"},
                          {"tu_2", "lookup", R"({"q":"dog"})"}};
  ChatMessage r1 = Msg(Role::kTool, "a cat");
  r1.tool_call_id = "tu_1";
  ChatMessage r2 = Msg(Role::kTool, "a dog");
  r2.tool_call_id = "tu_2";
  r.messages = {user, assistant, r1, r2};
  r.params.max_tokens = 50;
  r.params.temperature = 0.3;
  r.params.stop = {"END"};
  r.params.seed = 1;  // not supported: dropped
  r.tools = {{"lookup", "looks up", R"({"type":"object"})"}};
  r.tool_choice.mode = ToolChoice::Mode::kRequired;
  rapidjson::Document doc =
      ParseJson(anthropic::BuildRequestBody(r, "claude", true));
  EXPECT_EQ(doc["max_tokens"].GetInt(), 50);
  EXPECT_DOUBLE_EQ(doc["temperature"].GetDouble(), 0.3);
  EXPECT_STREQ(doc["stop_sequences"][0].GetString(), "END");
  EXPECT_FALSE(doc.HasMember("seed"));
  EXPECT_TRUE(doc["stream"].GetBool());
  const auto& msgs = doc["messages"];
  ASSERT_EQ(msgs.Size(), 3u);  // the two tool results share one user turn
  const auto& parts = msgs[0]["content"];
  EXPECT_STREQ(parts[1]["source"]["type"].GetString(), "url");
  EXPECT_STREQ(parts[1]["source"]["url"].GetString(), "https://x/a.png");
  EXPECT_STREQ(parts[2]["source"]["type"].GetString(), "base64");
  EXPECT_STREQ(parts[2]["source"]["media_type"].GetString(), "image/png");
  EXPECT_STREQ(parts[2]["source"]["data"].GetString(), "QUJD");
  const auto& a = msgs[1]["content"];
  EXPECT_STREQ(a[0]["text"].GetString(), "checking");
  EXPECT_STREQ(a[1]["type"].GetString(), "tool_use");
  EXPECT_STREQ(a[1]["id"].GetString(), "tu_1");
  EXPECT_STREQ(a[1]["input"]["q"].GetString(), "cat");
  EXPECT_STREQ(msgs[2]["role"].GetString(), "user");
  EXPECT_STREQ(msgs[2]["content"][0]["type"].GetString(), "tool_result");
  EXPECT_STREQ(msgs[2]["content"][1]["tool_use_id"].GetString(), "tu_2");
  EXPECT_STREQ(doc["tools"][0]["input_schema"]["type"].GetString(), "object");
  EXPECT_STREQ(doc["tool_choice"]["type"].GetString(), "any");
}

TEST(AnthropicRequestTest, HeadersCarryKeyAndVersion) {
  auto ep = std::make_shared<Endpoint>();
  ep->base_url = "http://h/v1";
  ep->api_key = "k";
  UpstreamCall call;
  call.endpoint = ep;
  call.request = std::make_shared<ChatRequest>();
  HttpRequest req = AnthropicDialect().BuildRequest(call);
  EXPECT_EQ(req.url, "http://h/v1/messages");
  int found = 0;
  for (const auto& [k, v] : req.headers) {
    if (k == "x-api-key" && v == "k") ++found;
    if (k == "anthropic-version" && v == "2023-06-01") ++found;
    EXPECT_NE(k, "Authorization");
  }
  EXPECT_EQ(found, 2);
}

TEST(AnthropicResponseTest, DecodesBlocksStopReasonAndUsage) {
  ChatResponse resp;
  UpstreamError err = AnthropicDialect().ParseResponse(
      R"({"type":"message","role":"assistant","content":[
          {"type":"text","text":"Hi"},
          {"type":"tool_use","id":"tu","name":"f","input":{"a":1}}],
          "stop_reason":"tool_use","usage":{"input_tokens":10,
          "cache_read_input_tokens":5,"output_tokens":3}})",
      &resp);
  ASSERT_TRUE(err.ok()) << err.message;
  EXPECT_EQ(resp.message.content, "Hi");
  ASSERT_EQ(resp.message.tool_calls.size(), 1u);
  EXPECT_EQ(resp.message.tool_calls[0].arguments, R"({"a":1})");
  EXPECT_EQ(resp.finish_reason, FinishReason::kToolCalls);
  EXPECT_EQ(resp.usage.prompt_tokens, 15);
  EXPECT_EQ(resp.usage.cached_tokens, 5);
  EXPECT_EQ(resp.usage.completion_tokens, 3);
  EXPECT_EQ(resp.usage.total_tokens, 18);
}

TEST(AnthropicResponseTest, MapsStopReasons) {
  EXPECT_EQ(anthropic::ParseStopReason("end_turn"), FinishReason::kStop);
  EXPECT_EQ(anthropic::ParseStopReason("stop_sequence"), FinishReason::kStop);
  EXPECT_EQ(anthropic::ParseStopReason("max_tokens"), FinishReason::kLength);
  EXPECT_EQ(anthropic::ParseStopReason("tool_use"), FinishReason::kToolCalls);
}

StreamDecoder::Outcome Decode(StreamDecoder& d, const std::string& event,
                              const std::string& data, StreamDelta* delta,
                              UpstreamError* error) {
  SseEvent e;
  e.event = event;
  e.data = data;
  *delta = {};
  return d.OnEvent(e, delta, error);
}

TEST(AnthropicStreamTest, DecodesEventSequence) {
  auto d = AnthropicDialect().NewStreamDecoder();
  StreamDelta delta;
  UpstreamError error;
  Decode(*d, "message_start",
         R"({"type":"message_start","message":{"usage":{"input_tokens":7,)"
         R"("output_tokens":1}}})",
         &delta, &error);
  Decode(*d, "content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":)"
         R"("text_delta","text":"Hel"}})",
         &delta, &error);
  EXPECT_EQ(delta.content, "Hel");
  Decode(*d, "content_block_start",
         R"({"type":"content_block_start","index":1,"content_block":{"type":)"
         R"("tool_use","id":"tu","name":"f","input":{}}})",
         &delta, &error);
  ASSERT_EQ(delta.tool_calls.size(), 1u);
  EXPECT_EQ(delta.tool_calls[0].index, 0);
  EXPECT_EQ(delta.tool_calls[0].id, "tu");
  EXPECT_EQ(delta.tool_calls[0].name, "f");
  Decode(*d, "content_block_delta",
         R"({"type":"content_block_delta","index":1,"delta":{"type":)"
         R"("input_json_delta","partial_json":"{\"a\""}})",
         &delta, &error);
  ASSERT_EQ(delta.tool_calls.size(), 1u);
  EXPECT_EQ(delta.tool_calls[0].index, 0);
  EXPECT_EQ(delta.tool_calls[0].arguments_delta, "{\"a\"");
  EXPECT_EQ(Decode(*d, "ping", R"({"type":"ping"})", &delta, &error),
            StreamDecoder::Outcome::kContinue);
  EXPECT_FALSE(d->saw_finish_reason());
  Decode(*d, "message_delta",
         R"({"type":"message_delta","delta":{"stop_reason":"max_tokens"},)"
         R"("usage":{"output_tokens":9}})",
         &delta, &error);
  EXPECT_EQ(delta.finish_reason, FinishReason::kLength);
  ASSERT_TRUE(delta.usage.has_value());
  EXPECT_EQ(delta.usage->prompt_tokens, 7);
  EXPECT_EQ(delta.usage->completion_tokens, 9);
  EXPECT_TRUE(d->saw_finish_reason());
  EXPECT_EQ(
      Decode(*d, "message_stop", R"({"type":"message_stop"})", &delta, &error),
      StreamDecoder::Outcome::kDone);
}

TEST(AnthropicStreamTest, ErrorEventAndMalformedData) {
  auto d = AnthropicDialect().NewStreamDecoder();
  StreamDelta delta;
  UpstreamError error;
  EXPECT_EQ(Decode(*d, "error",
                   R"({"type":"error","error":{"type":"overloaded_error",)"
                   R"("message":"Overloaded"}})",
                   &delta, &error),
            StreamDecoder::Outcome::kError);
  EXPECT_EQ(error.error_class, ErrorClass::kOverloaded);
  auto d2 = AnthropicDialect().NewStreamDecoder();
  EXPECT_EQ(Decode(*d2, "content_block_delta", "{not json", &delta, &error),
            StreamDecoder::Outcome::kError);
  EXPECT_EQ(error.error_class, ErrorClass::kProtocolError);
}

std::string ErrorBody(const std::string& type, const std::string& message) {
  return absl::StrCat(R"({"type":"error","error":{"type":")", type,
                      R"(","message":")", message, R"("}})");
}

TEST(AnthropicErrorTest, ClassifiesByStatusTypeAndMessage) {
  auto classify = [](int status, const std::string& body) {
    return AnthropicDialect()
        .ClassifyHttpError(status, HttpHeaders{}, body, absl::Now())
        .error_class;
  };
  EXPECT_EQ(classify(529, ErrorBody("overloaded_error", "Overloaded")),
            ErrorClass::kOverloaded);
  EXPECT_EQ(classify(429, ErrorBody("rate_limit_error", "slow down")),
            ErrorClass::kRateLimited);
  EXPECT_EQ(classify(400, ErrorBody("invalid_request_error",
                                    "Your credit balance is too low")),
            ErrorClass::kQuotaExhausted);
  EXPECT_EQ(classify(400, ErrorBody("invalid_request_error",
                                    "prompt is too long: 300000 tokens")),
            ErrorClass::kContextLengthExceeded);
  EXPECT_EQ(classify(401, ErrorBody("authentication_error", "bad key")),
            ErrorClass::kAuthError);
  EXPECT_EQ(classify(403, ErrorBody("permission_error", "no")),
            ErrorClass::kAuthError);
  EXPECT_EQ(classify(500, ErrorBody("api_error", "oops")),
            ErrorClass::kServerError);
  EXPECT_EQ(classify(400, ErrorBody("invalid_request_error", "bad field")),
            ErrorClass::kBadRequest);
}

TEST(AnthropicRateLimitTest, ParsesRemainingAndResetTimes) {
  HttpHeaders h;
  h.entries = {{"anthropic-ratelimit-requests-remaining", "49"},
               {"anthropic-ratelimit-tokens-remaining", "9000"},
               {"anthropic-ratelimit-requests-reset", "2024-01-01T00:00:10Z"},
               {"anthropic-ratelimit-tokens-reset", "2024-01-01T00:01:00Z"}};
  absl::Time now;
  std::string err;
  ASSERT_TRUE(
      absl::ParseTime(absl::RFC3339_full, "2024-01-01T00:00:00Z", &now, &err));
  UpstreamRateLimits l = AnthropicDialect().ParseRateLimits(h, now);
  EXPECT_EQ(l.remaining_requests, 49);
  EXPECT_EQ(l.remaining_tokens, 9000);
  EXPECT_EQ(l.reset_requests, absl::Seconds(10));
  EXPECT_EQ(l.reset_tokens, absl::Minutes(1));
}

}  // namespace
}  // namespace echelon
