// Starts the real upstream_sim binary and talks to it over HTTP with libcurl.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "rapidjson/document.h"
#include "tests/tools/sim_process.h"

namespace echelon {
namespace sim {
namespace {

using Clock = std::chrono::steady_clock;

struct Response {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::vector<std::string> headers;  // raw header lines, lower-cased
  int writes = 0;                    // body pieces delivered by curl
  Clock::duration elapsed{};
  int abort_after_writes = 0;  // > 0: abort once this many pieces arrived

  bool HasHeader(const std::string& lower_line_prefix) const {
    for (const std::string& h : headers) {
      if (h.rfind(lower_line_prefix, 0) == 0) return true;
    }
    return false;
  }
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  r->body.append(data, size * n);
  ++r->writes;
  if (r->abort_after_writes > 0 && r->writes >= r->abort_after_writes) {
    return 0;  // makes curl abort the transfer and drop the connection
  }
  return size * n;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  std::string line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
    line.pop_back();
  }
  for (char& c : line) c = static_cast<char>(std::tolower(c));
  r->headers.push_back(line);
  return size * n;
}

Response Request(const std::string& url, const std::string* body,
                 const std::vector<std::string>& headers = {},
                 long timeout_ms = 10000, int abort_after_writes = 0) {
  Response r;
  r.abort_after_writes = abort_after_writes;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_slist* list = nullptr;
  for (const std::string& h : headers)
    list = curl_slist_append(list, h.c_str());
  list = curl_slist_append(list, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  if (body != nullptr) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(body->size()));
  }
  Clock::time_point start = Clock::now();
  r.code = curl_easy_perform(curl);
  r.elapsed = Clock::now() - start;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return r;
}

std::string ChatBody(const std::string& model, bool stream,
                     const std::string& extra = "") {
  return "{\"model\":\"" + model +
         "\",\"stream\":" + (stream ? "true" : "false") +
         ",\"messages\":[{\"role\":\"user\",\"content\":\"hello world!\"}]" +
         extra + "}";
}

struct SseEvent {
  std::string event;
  std::string data;
};

std::vector<SseEvent> ParseSse(const std::string& body) {
  std::vector<SseEvent> events;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    std::string block = body.substr(pos, end - pos);
    pos = end + 2;
    SseEvent e;
    size_t line_start = 0;
    while (line_start < block.size()) {
      size_t nl = block.find('\n', line_start);
      if (nl == std::string::npos) nl = block.size();
      std::string line = block.substr(line_start, nl - line_start);
      line_start = nl + 1;
      if (line.rfind("event: ", 0) == 0) e.event = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data = line.substr(6);
    }
    if (!e.event.empty() || !e.data.empty()) events.push_back(e);
  }
  return events;
}

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  return d;
}

class UpstreamSimTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }

  void SetUp() override {
    auto process = SimProcess::Start(SimProcess::Options());
    ASSERT_TRUE(process.ok()) << process.status();
    sim_ = *std::move(process);
    base_ = sim_->base_url();
  }

  Response Chat(const std::string& body,
                const std::vector<std::string>& headers = {},
                long timeout_ms = 10000) {
    return Request(base_ + "/v1/chat/completions", &body, headers, timeout_ms);
  }

  Response Messages(const std::string& body) {
    return Request(base_ + "/v1/messages", &body);
  }

  rapidjson::Document Stats() {
    Response r = Request(base_ + "/_stats", nullptr);
    EXPECT_EQ(r.status, 200);
    return Json(r.body);
  }

  // Polls /_stats until pred(stats) holds or ~5 s pass.
  template <typename Pred>
  rapidjson::Document WaitForStats(Pred pred) {
    for (int i = 0; i < 250; ++i) {
      rapidjson::Document s = Stats();
      if (pred(s)) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return Stats();
  }

  static int64_t KeyStat(const rapidjson::Document& s, const char* key,
                         const char* field) {
    if (!s.IsObject() || !s.HasMember("keys")) return -999;
    const auto& keys = s["keys"];
    if (!keys.HasMember(key)) return -999;
    return keys[key][field].GetInt64();
  }

  std::unique_ptr<SimProcess> sim_;
  std::string base_;
};

TEST_F(UpstreamSimTest, OpenAiUnaryReturnsDeterministicContentAndUsage) {
  Response r = Chat(ChatBody("gpt-sim@tokens=3", false));
  ASSERT_EQ(r.code, CURLE_OK);
  ASSERT_EQ(r.status, 200);
  rapidjson::Document d = Json(r.body);
  ASSERT_TRUE(d.IsObject()) << r.body;
  EXPECT_STREQ(d["object"].GetString(), "chat.completion");
  EXPECT_STREQ(d["model"].GetString(), "gpt-sim@tokens=3");
  const auto& choice = d["choices"][0];
  EXPECT_STREQ(choice["message"]["role"].GetString(), "assistant");
  EXPECT_STREQ(choice["message"]["content"].GetString(), "tok1 tok2 tok3");
  EXPECT_STREQ(choice["finish_reason"].GetString(), "stop");
  // "hello world!" is 12 bytes -> 3 prompt tokens.
  EXPECT_EQ(d["usage"]["prompt_tokens"].GetInt(), 3);
  EXPECT_EQ(d["usage"]["completion_tokens"].GetInt(), 3);
  EXPECT_EQ(d["usage"]["total_tokens"].GetInt(), 6);
  EXPECT_EQ(d["usage"]["prompt_tokens_details"]["cached_tokens"].GetInt(), 0);
}

TEST_F(UpstreamSimTest, OpenAiStreamSendsTokensThenFinishUsageAndDone) {
  Response r = Chat(ChatBody("gpt-sim@tokens=4;itl_ms=30", true,
                             ",\"stream_options\":{\"include_usage\":true}"));
  ASSERT_EQ(r.code, CURLE_OK);
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.HasHeader("content-type: text/event-stream"));
  std::vector<SseEvent> events = ParseSse(r.body);
  ASSERT_EQ(events.size(), 7u) << r.body;  // 4 tokens, finish, usage, DONE
  std::string content;
  for (int i = 0; i < 4; ++i) {
    rapidjson::Document c = Json(events[i].data);
    ASSERT_TRUE(c.IsObject()) << events[i].data;
    EXPECT_STREQ(c["object"].GetString(), "chat.completion.chunk");
    const auto& delta = c["choices"][0]["delta"];
    EXPECT_EQ(delta.HasMember("role"), i == 0);
    content += delta["content"].GetString();
  }
  EXPECT_EQ(content, "tok1 tok2 tok3 tok4");
  rapidjson::Document finish = Json(events[4].data);
  EXPECT_STREQ(finish["choices"][0]["finish_reason"].GetString(), "stop");
  rapidjson::Document usage = Json(events[5].data);
  EXPECT_TRUE(usage["choices"].Empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"].GetInt(), 4);
  EXPECT_EQ(events[6].data, "[DONE]");
  // Tokens were paced: they arrived in several pieces, and the stream could
  // not have finished before three inter-token delays elapsed.
  EXPECT_GT(r.writes, 1);
  EXPECT_GE(r.elapsed, std::chrono::milliseconds(90));
}

TEST_F(UpstreamSimTest, MaxTokensTruncatesWithFinishReasonLength) {
  Response r = Chat(ChatBody("gpt-sim@tokens=10", false, ",\"max_tokens\":2"));
  ASSERT_EQ(r.status, 200);
  rapidjson::Document d = Json(r.body);
  EXPECT_STREQ(d["choices"][0]["message"]["content"].GetString(), "tok1 tok2");
  EXPECT_STREQ(d["choices"][0]["finish_reason"].GetString(), "length");
}

TEST_F(UpstreamSimTest, ToolCallIsStreamedAsFragments) {
  std::string body =
      "{\"model\":\"gpt-sim\",\"stream\":true,\"tools\":[{\"type\":"
      "\"function\","
      "\"function\":{\"name\":\"get_weather\"}}],\"messages\":[{\"role\":"
      "\"user\",\"content\":\"please CALL_TOOL now\"}]}";
  Response r = Chat(body);
  ASSERT_EQ(r.status, 200);
  std::vector<SseEvent> events = ParseSse(r.body);
  ASSERT_GE(events.size(), 3u);
  rapidjson::Document first = Json(events[0].data);
  const auto& call = first["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_STREQ(call["function"]["name"].GetString(), "get_weather");
  EXPECT_TRUE(call.HasMember("id"));
  std::string arguments;
  std::string finish;
  for (const SseEvent& e : events) {
    if (e.data == "[DONE]") continue;
    rapidjson::Document c = Json(e.data);
    const auto& choice = c["choices"][0];
    if (choice["delta"].HasMember("tool_calls")) {
      arguments +=
          choice["delta"]["tool_calls"][0]["function"]["arguments"].GetString();
    }
    if (choice["finish_reason"].IsString()) {
      finish = choice["finish_reason"].GetString();
    }
  }
  EXPECT_EQ(arguments, "{\"city\":\"Paris\"}");
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_EQ(events.back().data, "[DONE]");
}

TEST_F(UpstreamSimTest, AnthropicUnaryReturnsAMessage) {
  std::string body =
      "{\"model\":\"claude-sim@tokens=2\",\"max_tokens\":100,\"system\":"
      "\"be brief\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
      "\"text\",\"text\":\"hello\"}]}]}";
  Response r = Messages(body);
  ASSERT_EQ(r.status, 200);
  rapidjson::Document d = Json(r.body);
  ASSERT_TRUE(d.IsObject()) << r.body;
  EXPECT_STREQ(d["type"].GetString(), "message");
  EXPECT_STREQ(d["role"].GetString(), "assistant");
  EXPECT_STREQ(d["content"][0]["type"].GetString(), "text");
  EXPECT_STREQ(d["content"][0]["text"].GetString(), "tok1 tok2");
  EXPECT_STREQ(d["stop_reason"].GetString(), "end_turn");
  // "be brief" + "hello" = 13 bytes -> 4 tokens.
  EXPECT_EQ(d["usage"]["input_tokens"].GetInt(), 4);
  EXPECT_EQ(d["usage"]["output_tokens"].GetInt(), 2);
}

TEST_F(UpstreamSimTest, AnthropicStreamSendsTheEventSequence) {
  Response r = Messages(ChatBody("claude-sim@tokens=3;itl_ms=5", true));
  ASSERT_EQ(r.status, 200);
  std::vector<SseEvent> events = ParseSse(r.body);
  std::vector<std::string> names;
  std::string text;
  for (const SseEvent& e : events) {
    names.push_back(e.event);
    rapidjson::Document d = Json(e.data);
    ASSERT_TRUE(d.IsObject()) << e.data;
    EXPECT_EQ(e.event, d["type"].GetString());
    if (e.event == "content_block_delta") {
      EXPECT_STREQ(d["delta"]["type"].GetString(), "text_delta");
      text += d["delta"]["text"].GetString();
    }
    if (e.event == "message_start") {
      EXPECT_EQ(d["message"]["usage"]["input_tokens"].GetInt(), 3);
    }
    if (e.event == "message_delta") {
      EXPECT_STREQ(d["delta"]["stop_reason"].GetString(), "end_turn");
      EXPECT_EQ(d["usage"]["output_tokens"].GetInt(), 3);
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{
                       "message_start", "content_block_start", "ping",
                       "content_block_delta", "content_block_delta",
                       "content_block_delta", "content_block_stop",
                       "message_delta", "message_stop"}));
  EXPECT_EQ(text, "tok1 tok2 tok3");
}

TEST_F(UpstreamSimTest, AnthropicOverloadedIs529InAnthropicShape) {
  Response r = Messages(ChatBody("claude-sim@fault=overloaded", false));
  EXPECT_EQ(r.status, 529);
  rapidjson::Document d = Json(r.body);
  EXPECT_STREQ(d["type"].GetString(), "error");
  EXPECT_STREQ(d["error"]["type"].GetString(), "overloaded_error");
}

TEST_F(UpstreamSimTest, RateLimitSends429WithRetryAfterOnlyWhenAsked) {
  Response with =
      Chat(ChatBody("gpt-sim@fault=rate_limit;retry_after=7", false));
  EXPECT_EQ(with.status, 429);
  EXPECT_TRUE(with.HasHeader("retry-after: 7"));
  rapidjson::Document d = Json(with.body);
  EXPECT_STREQ(d["error"]["code"].GetString(), "rate_limit_exceeded");
  EXPECT_STREQ(d["error"]["type"].GetString(), "requests");

  Response without = Chat(ChatBody("gpt-sim@fault=rate_limit", false));
  EXPECT_EQ(without.status, 429);
  EXPECT_FALSE(without.HasHeader("retry-after"));
}

TEST_F(UpstreamSimTest, Http500OnceFailsFirstRequestOfTheKeyOnly) {
  const std::string body = ChatBody("flaky@fault=http_500_once", false);
  EXPECT_EQ(Chat(body).status, 500);
  EXPECT_EQ(Chat(body).status, 200);
  EXPECT_EQ(Chat(body).status, 200);
  EXPECT_EQ(KeyStat(Stats(), "flaky@fault=http_500_once", "attempts"), 3);
}

TEST_F(UpstreamSimTest, CutAfterClosesTheStreamWithoutFinishOrDone) {
  Response r = Chat(ChatBody("cut@tokens=5;cut_after=2", true));
  EXPECT_NE(r.code, CURLE_OK);  // chunked body ended by a bare close
  std::vector<SseEvent> events = ParseSse(r.body);
  ASSERT_EQ(events.size(), 2u) << r.body;
  for (const SseEvent& e : events) {
    EXPECT_EQ(Json(e.data)["choices"][0]["finish_reason"].IsNull(), true);
  }
  EXPECT_EQ(r.body.find("[DONE]"), std::string::npos);
  EXPECT_EQ(KeyStat(Stats(), "cut@tokens=5;cut_after=2", "server_closed"), 1);
}

TEST_F(UpstreamSimTest, NoDoneCompletesTheStreamButOmitsDone) {
  Response r = Chat(ChatBody("nd@tokens=2;fault=no_done", true));
  EXPECT_EQ(r.code, CURLE_OK);
  std::vector<SseEvent> events = ParseSse(r.body);
  ASSERT_EQ(events.size(), 3u) << r.body;  // 2 tokens + finish chunk
  EXPECT_STREQ(Json(events[2].data)["choices"][0]["finish_reason"].GetString(),
               "stop");
  EXPECT_EQ(r.body.find("[DONE]"), std::string::npos);
}

TEST_F(UpstreamSimTest, ErrorEventAndMalformedChunkAppearMidStream) {
  Response err = Chat(ChatBody("ee@tokens=3;error_event_after=1", true));
  std::vector<SseEvent> events = ParseSse(err.body);
  ASSERT_EQ(events.size(), 2u) << err.body;
  EXPECT_TRUE(Json(events[1].data).HasMember("error"));

  Response bad = Chat(ChatBody("mf@tokens=2;malformed_after=1", true));
  events = ParseSse(bad.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[1].data, "{not json");
  EXPECT_EQ(events.back().data, "[DONE]");
}

TEST_F(UpstreamSimTest, ContextLengthIs400WithItsCode) {
  Response r = Chat(ChatBody("gpt-sim@fault=context_length", false));
  EXPECT_EQ(r.status, 400);
  rapidjson::Document d = Json(r.body);
  EXPECT_STREQ(d["error"]["code"].GetString(), "context_length_exceeded");
  EXPECT_STREQ(d["error"]["type"].GetString(), "invalid_request_error");
}

TEST_F(UpstreamSimTest, ResetFaultDropsTheConnection) {
  Response r = Chat(ChatBody("rst@fault=reset", false));
  EXPECT_NE(r.code, CURLE_OK);
  EXPECT_EQ(r.status, 0);
}

TEST_F(UpstreamSimTest, ScenarioSourcesLayerPathModelAndHeader) {
  std::string body = ChatBody("gpt-sim@tokens=3", false);
  Response path =
      Request(base_ + "/s/tokens%3D2;key%3Dp/v1/chat/completions", &body);
  ASSERT_EQ(path.status, 200);
  // The model suffix comes after the path prefix, so it wins.
  EXPECT_STREQ(Json(path.body)["choices"][0]["message"]["content"].GetString(),
               "tok1 tok2 tok3");
  Response header = Chat(body, {"X-Sim-Scenario: tokens=1"});
  EXPECT_STREQ(
      Json(header.body)["choices"][0]["message"]["content"].GetString(),
      "tok1");
  EXPECT_EQ(KeyStat(Stats(), "p", "attempts"), 1);  // key= from the path
}

TEST_F(UpstreamSimTest, StatsCountAuthHeadersAndConcurrency) {
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([this] {
      Chat(ChatBody("conc@latency_ms=2000", false),
           {"Authorization: Bearer sk-secret"});
    });
  }
  // All three are in flight at once (each waits 2 s before answering).
  rapidjson::Document during = WaitForStats([](const rapidjson::Document& d) {
    return KeyStat(d, "conc@latency_ms=2000", "active") == 3;
  });
  EXPECT_EQ(KeyStat(during, "conc@latency_ms=2000", "active"), 3);
  for (std::thread& t : threads) t.join();
  rapidjson::Document s = Stats();
  EXPECT_EQ(KeyStat(s, "conc@latency_ms=2000", "attempts"), 3);
  EXPECT_EQ(KeyStat(s, "conc@latency_ms=2000", "completed"), 3);
  EXPECT_EQ(KeyStat(s, "conc@latency_ms=2000", "active"), 0);
  EXPECT_EQ(KeyStat(s, "conc@latency_ms=2000", "max_active"), 3);
  EXPECT_EQ(KeyStat(s, "conc@latency_ms=2000", "auth_header_seen"), 3);
  EXPECT_EQ(s["total_attempts"].GetInt64(), 3);
  EXPECT_EQ(Request(base_ + "/_stats", nullptr).body.find("sk-secret"),
            std::string::npos);  // the key itself is never echoed
}

TEST_F(UpstreamSimTest, ClientDisconnectIsCountedAndTimed) {
  Response r = Chat(ChatBody("hang@fault=hang", false), {}, /*timeout_ms=*/200);
  EXPECT_EQ(r.code, CURLE_OPERATION_TIMEDOUT);
  rapidjson::Document s = WaitForStats([](const rapidjson::Document& d) {
    return KeyStat(d, "hang@fault=hang", "client_closed") == 1;
  });
  EXPECT_EQ(KeyStat(s, "hang@fault=hang", "client_closed"), 1);
  EXPECT_EQ(KeyStat(s, "hang@fault=hang", "active"), 0);
  EXPECT_GE(KeyStat(s, "hang@fault=hang", "last_close_ms"),
            KeyStat(s, "hang@fault=hang", "last_start_ms"));
}

TEST_F(UpstreamSimTest, ClientCancellingAStreamIsSeenAsAClose) {
  std::string body = ChatBody("cancel@tokens=100;itl_ms=50", true);
  Response r = Request(base_ + "/v1/chat/completions", &body, {}, 10000,
                       /*abort_after_writes=*/1);
  EXPECT_EQ(r.code, CURLE_WRITE_ERROR);
  rapidjson::Document s = WaitForStats([](const rapidjson::Document& d) {
    return KeyStat(d, "cancel@tokens=100;itl_ms=50", "client_closed") == 1;
  });
  const char* key = "cancel@tokens=100;itl_ms=50";
  EXPECT_EQ(KeyStat(s, key, "client_closed"), 1);
  EXPECT_EQ(KeyStat(s, key, "completed"), 0);
  EXPECT_EQ(KeyStat(s, key, "active"), 0);
  EXPECT_GE(KeyStat(s, key, "last_close_ms"), KeyStat(s, key, "last_start_ms"));
  EXPECT_LE(KeyStat(s, key, "last_close_ms"), s["now_ms"].GetInt64());
}

TEST_F(UpstreamSimTest, StallAfterSendsSomeTokensThenGoesSilent) {
  Response r = Chat(ChatBody("stall@tokens=5;stall_after=2", true), {},
                    /*timeout_ms=*/300);
  EXPECT_EQ(r.code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(ParseSse(r.body).size(), 2u) << r.body;
}

TEST_F(UpstreamSimTest, FlapFailsForItsWindowThenRecovers) {
  const std::string body = ChatBody("flap@flap=300", false);
  EXPECT_EQ(Chat(body).status, 503);
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    status = static_cast<int>(Chat(body).status);
  }
  EXPECT_EQ(status, 200);
}

TEST_F(UpstreamSimTest, AnthropicToolUseAndApiKeyHeader) {
  std::string body = R"({"model":"claude-sim@tool_call=1","max_tokens":50,)"
                     R"("tools":[{"name":"get_weather","input_schema":{}}],)"
                     R"("messages":[{"role":"user","content":"weather?"}]})";
  Response r = Request(base_ + "/v1/messages", &body, {"x-api-key: sk-ant"});
  ASSERT_EQ(r.status, 200);
  rapidjson::Document d = Json(r.body);
  EXPECT_STREQ(d["stop_reason"].GetString(), "tool_use");
  EXPECT_STREQ(d["content"][0]["type"].GetString(), "tool_use");
  EXPECT_STREQ(d["content"][0]["name"].GetString(), "get_weather");
  EXPECT_STREQ(d["content"][0]["input"]["city"].GetString(), "Paris");
  EXPECT_EQ(KeyStat(Stats(), "claude-sim@tool_call=1", "auth_header_seen"), 1);
}

TEST_F(UpstreamSimTest, ResetClearsStatsAndOverrides) {
  std::string override_body = "fault=http_503";
  Request(base_ + "/_scenario?key=k", &override_body);
  EXPECT_EQ(Chat(ChatBody("k", false)).status, 503);
  std::string empty;
  Response reset = Request(base_ + "/_reset", &empty);
  EXPECT_EQ(reset.status, 200);
  rapidjson::Document s = Stats();
  EXPECT_EQ(s["total_attempts"].GetInt64(), 0);
  EXPECT_FALSE(s["keys"].HasMember("k"));
  EXPECT_EQ(Chat(ChatBody("k", false)).status, 200);
}

TEST_F(UpstreamSimTest, ScenarioOverrideFlipsAKeyLive) {
  std::string down = "fault=http_503";
  ASSERT_EQ(Request(base_ + "/_scenario?key=live", &down).status, 200);
  EXPECT_EQ(Chat(ChatBody("live", false)).status, 503);
  std::string healthy;
  ASSERT_EQ(Request(base_ + "/_scenario?key=live", &healthy).status, 200);
  EXPECT_EQ(Chat(ChatBody("live", false)).status, 200);
  std::string bad = "fault=nonsense";
  EXPECT_EQ(Request(base_ + "/_scenario?key=live", &bad).status, 400);
}

TEST_F(UpstreamSimTest, GarbageRequestGets400AndServerKeepsServing) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(sim_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const char kGarbage[] = "\x01\x02 GARBAGE\r\n\r\n";
  ASSERT_GT(write(fd, kGarbage, sizeof(kGarbage) - 1), 0);
  std::string reply;
  char buf[512];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) reply.append(buf, n);
  close(fd);
  EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;

  std::string not_json = "{oops";
  EXPECT_EQ(Chat(not_json).status, 400);
  EXPECT_EQ(Chat(ChatBody("gpt-sim@fault=bogus", false)).status, 400);
  EXPECT_EQ(Chat(ChatBody("gpt-sim", false)).status, 200);
}

TEST_F(UpstreamSimTest, LargeBodyWithExpectContinueIsServed) {
  std::string big(20000, 'x');
  Response r = Chat(
      "{\"model\":\"big\",\"messages\":[{\"role\":\"user\",\"content\":\"" +
      big + "\"}]}");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Json(r.body)["usage"]["prompt_tokens"].GetInt(), 5000);
}

TEST_F(UpstreamSimTest, LongStreamSurvivesBackpressure) {
  Response r = Chat(ChatBody("long@tokens=20000", true));
  ASSERT_EQ(r.code, CURLE_OK);
  std::vector<SseEvent> events = ParseSse(r.body);
  ASSERT_EQ(events.size(), 20002u);  // tokens, finish chunk, [DONE]
  EXPECT_STREQ(
      Json(events[19999].data)["choices"][0]["delta"]["content"].GetString(),
      " tok20000");
  EXPECT_EQ(events.back().data, "[DONE]");
}

TEST_F(UpstreamSimTest, ExitsCleanlyOnSigterm) { EXPECT_EQ(sim_->Stop(), 0); }

}  // namespace
}  // namespace sim
}  // namespace echelon
