// The HTTP front on a real EpollEventLoop against a scripted Router, called
// over real sockets with libcurl (and raw sockets where curl is too polite:
// pipelining, a reader that never reads, idle connections).
#include "adapters/http_front.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"
#include "tests/adapters/curl_test_client.h"
#include "tests/fakes/scripted_router.h"

namespace echelon {
namespace {

using HttpResult = CurlTestResult;

// One keep-alive client: requests on the same client reuse the connection.
class Client {
 public:
  explicit Client(int port) : base_(absl::StrCat("http://127.0.0.1:", port)) {}

  HttpResult Do(const std::string& method, const std::string& path,
                const std::string& body = "",
                std::vector<std::string> headers = {},
                absl::Duration timeout = absl::Seconds(10)) {
    return curl_.Do(method, base_ + path, body, std::move(headers), timeout);
  }

  // Connections curl opened so far on this client.
  long connects() const { return curl_.connects(); }

 private:
  std::string base_;
  CurlTestClient curl_;
};

// A raw TCP connection to the front.
class RawConn {
 public:
  explicit RawConn(int port, int rcvbuf = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawConn() { close(fd_); }
  bool connected() const { return connected_; }
  void Send(const std::string& s) {
    ASSERT_EQ(send(fd_, s.data(), s.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(s.size()));
  }
  // Reads until `needle` appears, EOF, or the receive timeout.
  std::string ReadUntil(const std::string& needle) {
    std::string got;
    char buf[4096];
    while (!absl::StrContains(got, needle)) {
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  // True when the server closes within the receive timeout (data before the
  // close is discarded).
  bool WaitEof() {
    char buf[4096];
    while (true) {
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  for (absl::string_view event : absl::StrSplit(body, "\n\n")) {
    if (absl::StartsWith(event, "data: ")) {
      out.emplace_back(event.substr(6));
    } else {
      EXPECT_TRUE(event.empty()) << "unexpected SSE text: " << event;
    }
  }
  return out;
}

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  EXPECT_FALSE(d.HasParseError()) << text;
  return d;
}

constexpr char kChat[] =
    R"({"model":"fast","messages":[{"role":"user","content":"hi"}]})";
constexpr char kStreamChat[] =
    R"({"model":"fast","stream":true,"stream_options":{"include_usage":true},
        "messages":[{"role":"user","content":"hi"}]})";

class HttpFrontTest : public ::testing::Test {
 protected:
  void SetUp() override {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    auto loop = EpollEventLoop::Create(EpollEventLoop::Options());
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    loop_->Start();
    router_ = std::make_shared<ScriptedRouter>();
    std::vector<TargetView> targets(2);
    targets[0].name = "fast-pool";
    targets[0].kind = TargetView::Kind::kPool;
    targets[1].name = "fast";
    targets[1].kind = TargetView::Kind::kTaskGroup;
    router_->set_targets(targets);
    installed_ = router_;
  }

  void StartFront(HttpFront::Options options = HttpFront::Options()) {
    options.port = 0;
    options.bind_address = "127.0.0.1";
    options.router = [this] {
      absl::MutexLock lock(&mu_);
      return installed_;
    };
    auto front = HttpFront::Create(options, *loop_);
    ASSERT_TRUE(front.ok()) << front.status();
    front_ = std::move(*front);
    ASSERT_GT(front_->port(), 0);
  }

  void TearDown() override {
    if (front_ != nullptr) {
      RunOnLoop([&] { front_.reset(); });
    }
    loop_->Stop();
  }

  void RunOnLoop(absl::AnyInvocable<void()> fn) {
    absl::Notification done;
    loop_->Post([&] {
      fn();
      done.Notify();
    });
    done.WaitForNotification();
  }

  void Install(std::shared_ptr<Router> r) {
    absl::MutexLock lock(&mu_);
    installed_ = std::move(r);
  }

  size_t Connections() {
    size_t n = 0;
    RunOnLoop([&] { n = front_->connections(); });
    return n;
  }

  static StreamDelta Text(const std::string& s) {
    StreamDelta d;
    d.content = s;
    return d;
  }

  std::unique_ptr<EpollEventLoop> loop_;
  std::shared_ptr<ScriptedRouter> router_;
  absl::Mutex mu_;
  std::shared_ptr<Router> installed_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<HttpFront> front_;
};

TEST_F(HttpFrontTest, NonStreamedCompletionTranslatesRequestAndResponse) {
  StartFront();
  HttpResult result;
  std::thread client([&] {
    Client c(front_->port());
    result = c.Do("POST", "/v1/chat/completions",
                  R"({"model":"fast","temperature":0.2,"messages":[
                      {"role":"system","content":"sys"},
                      {"role":"user","content":"hi"}]})",
                  {"x-request-id: req-42", "x-echelon-timeout-ms: 5000"});
  });
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  EXPECT_EQ(call.req.target, "fast");
  EXPECT_FALSE(call.req.stream);
  EXPECT_LT(call.req.deadline, absl::Now() + absl::Seconds(6));
  ASSERT_EQ(call.req.request->messages.size(), 2u);
  EXPECT_EQ(call.req.request->messages[1].content, "hi");
  EXPECT_EQ(call.req.request->params.temperature, 0.2);
  EXPECT_EQ(call.req.request->request_id, "req-42");
  RunOnLoop([&] {
    RoutedResponse r;
    r.model = "sim-fast";
    r.instance = "sim-fast/a";
    r.response.message.content = "hello there";
    r.response.finish_reason = FinishReason::kStop;
    r.response.usage = {5, 2, 7, 0};
    call.sink->OnComplete(absl::OkStatus(), std::move(r));
  });
  client.join();
  ASSERT_EQ(result.rc, CURLE_OK);
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.headers["content-type"], "application/json");
  EXPECT_EQ(result.headers["x-request-id"], "req-42");
  EXPECT_EQ(result.headers["x-echelon-model"], "sim-fast");
  rapidjson::Document d = Json(result.body);
  EXPECT_STREQ(d["object"].GetString(), "chat.completion");
  EXPECT_STREQ(d["id"].GetString(), "chatcmpl-req-42");
  EXPECT_STREQ(d["model"].GetString(), "sim-fast");
  EXPECT_STREQ(d["choices"][0]["message"]["content"].GetString(),
               "hello there");
  EXPECT_STREQ(d["choices"][0]["finish_reason"].GetString(), "stop");
  EXPECT_EQ(d["usage"]["total_tokens"].GetInt(), 7);
}

TEST_F(HttpFrontTest, StreamSendsRoleContentToolFinishUsageThenDone) {
  StartFront();
  HttpResult result;
  std::thread client([&] {
    Client c(front_->port());
    result = c.Do("POST", "/v1/chat/completions", kStreamChat);
  });
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  EXPECT_TRUE(call.req.stream);
  RunOnLoop([&] {
    call.sink->OnDelta(Text("tok1 "));
    call.sink->OnDelta(Text("tok2"));
    StreamDelta tool;
    tool.tool_calls.push_back({0, "call_1", "lookup", "{\"q\""});
    call.sink->OnDelta(tool);
    StreamDelta tool2;
    tool2.tool_calls.push_back({0, "", "", ":1}"});
    call.sink->OnDelta(tool2);
    StreamDelta usage;
    usage.usage = Usage{4, 3, 7, 0};
    call.sink->OnDelta(usage);
    RoutedResponse r;
    r.response.finish_reason = FinishReason::kToolCalls;
    call.sink->OnComplete(absl::OkStatus(), std::move(r));
  });
  client.join();
  ASSERT_EQ(result.rc, CURLE_OK);
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.headers["content-type"], "text/event-stream");
  std::vector<std::string> events = SseData(result.body);
  ASSERT_EQ(events.size(), 8u) << result.body;
  rapidjson::Document d = Json(events[0]);
  EXPECT_STREQ(d["object"].GetString(), "chat.completion.chunk");
  EXPECT_STREQ(d["choices"][0]["delta"]["role"].GetString(), "assistant");
  EXPECT_STREQ(Json(events[1])["choices"][0]["delta"]["content"].GetString(),
               "tok1 ");
  EXPECT_STREQ(Json(events[2])["choices"][0]["delta"]["content"].GetString(),
               "tok2");
  d = Json(events[3]);
  const auto& tc = d["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_EQ(tc["index"].GetInt(), 0);
  EXPECT_STREQ(tc["id"].GetString(), "call_1");
  EXPECT_STREQ(tc["function"]["name"].GetString(), "lookup");
  d = Json(events[4]);
  EXPECT_STREQ(
      d["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
          .GetString(),
      ":1}");
  d = Json(events[5]);
  EXPECT_STREQ(d["choices"][0]["finish_reason"].GetString(), "tool_calls");
  d = Json(events[6]);
  EXPECT_TRUE(d["choices"].Empty());
  EXPECT_EQ(d["usage"]["total_tokens"].GetInt(), 7);
  EXPECT_EQ(events[7], "[DONE]");
}

TEST_F(HttpFrontTest, StreamFailingAfterStartEndsWithErrorEventAndNoDone) {
  StartFront();
  HttpResult result;
  std::thread client([&] {
    Client c(front_->port());
    result = c.Do("POST", "/v1/chat/completions", kStreamChat);
  });
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  RunOnLoop([&] {
    call.sink->OnDelta(Text("partial"));
    call.sink->OnComplete(absl::AbortedError("partial: upstream cut"),
                          RoutedResponse());
  });
  client.join();
  // The chunked body is properly terminated (curl would report a transfer
  // error otherwise), but the last event is an error, not [DONE].
  ASSERT_EQ(result.rc, CURLE_OK);
  EXPECT_EQ(result.status, 200);
  std::vector<std::string> events = SseData(result.body);
  ASSERT_EQ(events.size(), 3u) << result.body;
  rapidjson::Document d = Json(events[2]);
  ASSERT_TRUE(d.HasMember("error")) << events[2];
  EXPECT_STREQ(d["error"]["message"].GetString(), "partial: upstream cut");
  EXPECT_FALSE(absl::StrContains(result.body, "[DONE]"));
}

TEST_F(HttpFrontTest, StreamFailingBeforeAnyContentIsAPlainHttpError) {
  StartFront();
  HttpResult result;
  std::thread client([&] {
    Client c(front_->port());
    result = c.Do("POST", "/v1/chat/completions", kStreamChat);
  });
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  RunOnLoop([&] {
    StreamDelta invisible;
    invisible.usage = Usage{1, 0, 1, 0};
    call.sink->OnDelta(invisible);
    RoutedResponse r;
    r.retry_after = absl::Milliseconds(2500);
    call.sink->OnComplete(absl::ResourceExhaustedError("slow down"),
                          std::move(r));
  });
  client.join();
  EXPECT_EQ(result.status, 429);
  EXPECT_EQ(result.headers["retry-after"], "3");
  EXPECT_STREQ(Json(result.body)["error"]["message"].GetString(), "slow down");
}

TEST_F(HttpFrontTest, ErrorStatusesMapToHttpStatusesOnOneKeepAliveConnection) {
  StartFront();
  struct Case {
    absl::Status status;
    long http;
    const char* type;
    const char* code;  // "" = null
  };
  std::vector<Case> cases = {
      {absl::InvalidArgumentError("bad"), 400, "invalid_request_error", ""},
      {absl::UnauthenticatedError("who"), 401, "authentication_error",
       "invalid_api_key"},
      {absl::PermissionDeniedError("no"), 403, "permission_error", ""},
      {absl::NotFoundError("unknown target"), 404, "invalid_request_error",
       "model_not_found"},
      {absl::ResourceExhaustedError("limit"), 429, "rate_limit_error",
       "rate_limit_exceeded"},
      {absl::UnavailableError("down"), 503, "service_unavailable",
       "service_unavailable"},
      {absl::DeadlineExceededError("late"), 504, "timeout", "timeout"},
      {absl::FailedPreconditionError("filtered"), 400, "invalid_request_error",
       "content_filter"},
      {absl::InternalError("boom"), 500, "server_error", ""},
  };
  std::vector<HttpResult> results;
  long connects = 0;
  std::thread client([&] {
    Client c(front_->port());
    for (size_t i = 0; i < cases.size(); ++i) {
      results.push_back(c.Do("POST", "/v1/chat/completions", kChat));
    }
    connects = c.connects();
  });
  for (const Case& k : cases) {
    ScriptedRouter::Call call = router_->NextCall();
    ASSERT_NE(call.sink, nullptr);
    RunOnLoop([&] {
      RoutedResponse r;
      r.retry_after = absl::Seconds(1);
      call.sink->OnComplete(k.status, std::move(r));
    });
  }
  client.join();
  ASSERT_EQ(results.size(), cases.size());
  EXPECT_EQ(connects, 1) << "keep-alive should reuse one connection";
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].status.ToString());
    EXPECT_EQ(results[i].status, cases[i].http);
    rapidjson::Document d = Json(results[i].body);
    ASSERT_TRUE(d.HasMember("error"));
    EXPECT_STREQ(d["error"]["type"].GetString(), cases[i].type);
    EXPECT_STREQ(d["error"]["message"].GetString(),
                 std::string(cases[i].status.message()).c_str());
    if (*cases[i].code == '\0') {
      EXPECT_TRUE(d["error"]["code"].IsNull());
    } else {
      EXPECT_STREQ(d["error"]["code"].GetString(), cases[i].code);
    }
    if (cases[i].http == 429 || cases[i].http == 503) {
      EXPECT_EQ(results[i].headers["retry-after"], "1");
    } else {
      EXPECT_EQ(results[i].headers.count("retry-after"), 0u);
    }
  }
}

TEST_F(HttpFrontTest, BadRequestBodyIs400NamingTheParameter) {
  StartFront();
  Client c(front_->port());
  HttpResult r = c.Do("POST", "/v1/chat/completions",
                      R"({"model":"fast","messages":[{"role":"wizard"}]})");
  EXPECT_EQ(r.status, 400);
  rapidjson::Document d = Json(r.body);
  EXPECT_STREQ(d["error"]["type"].GetString(), "invalid_request_error");
  EXPECT_STREQ(d["error"]["param"].GetString(), "messages[0].role");
  r = c.Do("POST", "/v1/chat/completions", "{nope");
  EXPECT_EQ(r.status, 400);
  r = c.Do("POST", "/v1/chat/completions", kChat,
           {"x-echelon-timeout-ms: soon"});
  EXPECT_EQ(r.status, 400);
}

TEST_F(HttpFrontTest, OversizedBodyIs413AndOversizedHeadersAre431) {
  HttpFront::Options options;
  options.max_request_bytes = 1024;
  options.max_header_bytes = 2048;
  StartFront(options);
  Client c(front_->port());
  HttpResult r = c.Do("POST", "/v1/chat/completions", std::string(2000, ' '));
  EXPECT_EQ(r.status, 413);
  r = c.Do("GET", "/healthz", "", {"x-big: " + std::string(4000, 'a')});
  EXPECT_EQ(r.status, 431);
}

TEST_F(HttpFrontTest, ModelsHealthAndReadiness) {
  StartFront();
  Client c(front_->port());
  HttpResult r = c.Do("GET", "/v1/models");
  EXPECT_EQ(r.status, 200);
  rapidjson::Document d = Json(r.body);
  ASSERT_EQ(d["data"].Size(), 2u);
  EXPECT_STREQ(d["data"][0]["id"].GetString(), "fast-pool");
  EXPECT_STREQ(d["data"][1]["id"].GetString(), "fast");
  r = c.Do("GET", "/v1/models/fast");
  EXPECT_EQ(r.status, 200);
  EXPECT_STREQ(Json(r.body)["id"].GetString(), "fast");
  r = c.Do("GET", "/v1/models/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(c.Do("GET", "/healthz").status, 200);
  EXPECT_EQ(c.Do("GET", "/readyz").status, 200);
  EXPECT_EQ(c.Do("GET", "/v1/other").status, 404);
  EXPECT_EQ(c.Do("GET", "/v1/chat/completions").status, 405);

  Install(nullptr);
  EXPECT_EQ(c.Do("GET", "/readyz").status, 503);
  EXPECT_EQ(c.Do("GET", "/healthz").status, 200);
  EXPECT_EQ(c.Do("POST", "/v1/chat/completions", kChat).status, 503);
}

TEST_F(HttpFrontTest, ClientDisconnectCancelsTheRoute) {
  StartFront();
  std::thread client([&] {
    Client c(front_->port());
    HttpResult r = c.Do("POST", "/v1/chat/completions", kChat, {},
                        absl::Milliseconds(300));
    EXPECT_EQ(r.rc, CURLE_OPERATION_TIMEDOUT);
  });
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  client.join();
  EXPECT_TRUE(router_->WaitCancelled(call));
  // The router still completes; the front must cope with a gone client.
  RunOnLoop([&] {
    call.sink->OnComplete(absl::CancelledError("cancelled"), RoutedResponse());
  });
  EXPECT_EQ(Connections(), 0u);
}

TEST_F(HttpFrontTest, SlowReaderStreamIsCancelledOnceOutputPassesTheCap) {
  HttpFront::Options options;
  options.max_output_buffer = 64 * 1024;
  StartFront(options);
  RawConn conn(front_->port(), /*rcvbuf=*/4096);
  ASSERT_TRUE(conn.connected());
  std::string body = kStreamChat;
  conn.Send(
      absl::StrCat("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: ",
                   body.size(), "\r\n\r\n", body));
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  // Push up to 64 MiB while the client reads nothing; the kernel buffers
  // hold a few MiB at most, so the front must give up long before.
  const std::string piece(16 * 1024, 'x');
  int sent = 0;
  for (; sent < 4096 && !router_->IsCancelled(call); ++sent) {
    RunOnLoop([&] { call.sink->OnDelta(Text(piece)); });
  }
  EXPECT_TRUE(router_->IsCancelled(call)) << "still streaming after " << sent;
  EXPECT_LT(sent, 4096);
  EXPECT_EQ(Connections(), 0u);
  RunOnLoop([&] {
    call.sink->OnComplete(absl::CancelledError("cancelled"), RoutedResponse());
  });
  EXPECT_TRUE(conn.WaitEof());
}

TEST_F(HttpFrontTest, PipelinedRequestsAreAnsweredInOrder) {
  StartFront();
  RawConn conn(front_->port());
  ASSERT_TRUE(conn.connected());
  std::string body = kChat;
  conn.Send(absl::StrCat(
      "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: ", body.size(),
      "\r\n\r\n", body, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"));
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  RunOnLoop([&] {
    RoutedResponse r;
    r.response.message.content = "first";
    call.sink->OnComplete(absl::OkStatus(), std::move(r));
  });
  std::string got = conn.ReadUntil("ok\n");
  size_t first = got.find("\"first\"");
  size_t second = got.find("ok\n");
  ASSERT_NE(first, std::string::npos) << got;
  ASSERT_NE(second, std::string::npos) << got;
  EXPECT_LT(first, second);
  EXPECT_TRUE(conn.WaitEof());  // Connection: close honoured
}

TEST_F(HttpFrontTest, Http10StreamIsCloseDelimitedWithoutChunking) {
  StartFront();
  RawConn conn(front_->port());
  std::string body = kStreamChat;
  conn.Send(absl::StrCat(
      "POST /v1/chat/completions HTTP/1.0\r\nContent-Length: ", body.size(),
      "\r\n\r\n", body));
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  RunOnLoop([&] {
    call.sink->OnDelta(Text("tok1"));
    call.sink->OnComplete(absl::OkStatus(), RoutedResponse());
  });
  std::string got = conn.ReadUntil("no such text: read to EOF");
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 200 OK\r\n")) << got;
  EXPECT_FALSE(absl::StrContains(got, "Transfer-Encoding")) << got;
  EXPECT_TRUE(absl::StrContains(got, "Connection: close")) << got;
  std::string payload = got.substr(got.find("\r\n\r\n") + 4);
  EXPECT_TRUE(absl::StartsWith(payload, "data: {")) << payload;
  EXPECT_TRUE(absl::EndsWith(payload, "data: [DONE]\n\n")) << payload;
}

TEST_F(HttpFrontTest, MalformedRequestGets400AndTheConnectionCloses) {
  StartFront();
  RawConn conn(front_->port());
  conn.Send("NOT HTTP AT ALL\r\n\r\n");
  std::string got = conn.ReadUntil("}}");
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 400 ")) << got;
  EXPECT_TRUE(conn.WaitEof());
}

TEST_F(HttpFrontTest, IdleKeepAliveConnectionIsClosed) {
  HttpFront::Options options;
  options.idle_timeout = absl::Milliseconds(200);
  StartFront(options);
  RawConn conn(front_->port());
  conn.Send("GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::StrContains(conn.ReadUntil("ok\n"), "200 OK"));
  EXPECT_TRUE(conn.WaitEof());
}

TEST_F(HttpFrontTest, TricklingRequestGets408AndIsClosed) {
  HttpFront::Options options;
  options.request_read_timeout = absl::Milliseconds(200);
  StartFront(options);
  RawConn conn(front_->port());
  conn.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n");  // never finished
  std::string got = conn.ReadUntil("}}");
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 408 ")) << got;
  EXPECT_TRUE(conn.WaitEof());
}

TEST_F(HttpFrontTest, ShutdownLetsInFlightRequestFinishAndRefusesNewOnes) {
  StartFront();
  HttpResult result;
  std::thread client([&] {
    Client c(front_->port());
    result = c.Do("POST", "/v1/chat/completions", kChat);
  });
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  std::thread shutdown([&] { front_->Shutdown(absl::Seconds(5)); });
  // Shutdown is under way once the listener is gone.
  absl::Time end = absl::Now() + absl::Seconds(5);
  bool refused = false;
  while (!refused && absl::Now() < end) {
    RawConn probe(front_->port());
    refused = !probe.connected();
    if (!refused) absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(refused);
  RunOnLoop([&] {
    RoutedResponse r;
    r.response.message.content = "late but fine";
    call.sink->OnComplete(absl::OkStatus(), std::move(r));
  });
  client.join();
  shutdown.join();
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.headers["connection"], "close");
  EXPECT_EQ(Connections(), 0u);
}

TEST_F(HttpFrontTest, ShutdownCancelsRequestsStillRunningAtTheDeadline) {
  StartFront();
  std::thread client([&] {
    Client c(front_->port());
    HttpResult r = c.Do("POST", "/v1/chat/completions", kChat);
    EXPECT_NE(r.rc, CURLE_OK);
  });
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  front_->Shutdown(absl::Milliseconds(100));
  EXPECT_TRUE(router_->IsCancelled(call));
  client.join();
  RunOnLoop([&] {
    call.sink->OnComplete(absl::CancelledError("cancelled"), RoutedResponse());
  });
}

}  // namespace
}  // namespace echelon
