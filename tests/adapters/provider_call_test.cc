// ProviderCall edge cases the simulator does not script: response headers
// reaching the result, callbacks never inside Start/Cancel, a handle
// destroyed inside its own callback, a stream reset mid-way. Runs the
// OpenAI dialect against a scripted local HTTP server.
#include "adapters/provider_call.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "adapters/event_loop.h"
#include "adapters/http_client.h"
#include "adapters/openai_provider.h"
#include "gtest/gtest.h"
#include "tests/adapters/test_http_server.h"

namespace echelon {
namespace {

constexpr absl::Duration kWait = absl::Seconds(20);

std::string Chunk(absl::string_view content) {
  return absl::StrCat(R"(data: {"choices":[{"index":0,"delta":{"content":")",
                      content, R"("},"finish_reason":null}]})", "\n\n");
}

std::string HttpChunk(const std::string& payload) {
  return absl::StrCat(absl::Hex(payload.size()), "\r\n", payload, "\r\n");
}

class Recorder : public UpstreamObserver {
 public:
  void OnDelta(StreamDelta delta) override {
    if (in_start != nullptr && *in_start) ++inside_start;
    deltas.push_back(std::move(delta));
    if (destroy_handle_after > 0 &&
        static_cast<int>(deltas.size()) == destroy_handle_after) {
      handle.reset();
      destroyed.Notify();
    }
  }
  void OnFinish(UpstreamResult r) override {
    if (in_start != nullptr && *in_start) ++inside_start;
    ++finishes;
    result = std::move(r);
    finished.Notify();
  }

  const bool* in_start = nullptr;
  int inside_start = 0;
  int destroy_handle_after = -1;
  std::unique_ptr<UpstreamHandle> handle;
  std::vector<StreamDelta> deltas;
  UpstreamResult result;
  int finishes = 0;
  absl::Notification finished;
  absl::Notification destroyed;
};

class ProviderCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EpollEventLoop::Create({});
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    auto http = HttpClient::Create({}, *loop_);
    ASSERT_TRUE(http.ok());
    http_ = std::move(*http);
    provider_ = std::make_unique<OpenAiProvider>(*http_);
    loop_->Start();
  }

  void TearDown() override {
    loop_->Stop();
    recorders_.clear();
    provider_.reset();
    http_.reset();
    loop_.reset();
  }

  Recorder* Start(const std::string& base_url, bool stream,
                  int destroy_handle_after = -1) {
    auto owned = std::make_unique<Recorder>();
    Recorder* r = owned.get();
    r->destroy_handle_after = destroy_handle_after;
    recorders_.push_back(std::move(owned));
    auto endpoint = std::make_shared<Endpoint>();
    endpoint->base_url = base_url;
    endpoint->api_key = "sk-hidden";
    endpoint->upstream_model = "m";
    auto request = std::make_shared<ChatRequest>();
    request->messages = {{Role::kUser, "hi", {}, "", {}, ""}};
    UpstreamCall call;
    call.endpoint = endpoint;
    call.request = request;
    call.stream = stream;
    loop_->Post([this, r, call = std::move(call)]() mutable {
      r->in_start = &in_start_;
      in_start_ = true;
      r->handle = provider_->Start(std::move(call), r);
      in_start_ = false;
    });
    return r;
  }

  void Sync() {
    absl::Notification n;
    loop_->Post([&] { n.Notify(); });
    ASSERT_TRUE(n.WaitForNotificationWithTimeout(kWait));
  }

  bool in_start_ = false;  // loop thread only
  std::unique_ptr<EpollEventLoop> loop_;
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<OpenAiProvider> provider_;
  std::vector<std::unique_ptr<Recorder>> recorders_;
};

TEST_F(ProviderCallTest, RateLimitHeadersReachTheResult) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    std::string body =
        R"({"choices":[{"index":0,"message":{"role":"assistant",)"
        R"("content":"hi"},"finish_reason":"stop"}]})";
    c.Write(
        absl::StrCat("HTTP/1.1 200 OK\r\nx-ratelimit-remaining-requests: 9\r\n"
                     "x-ratelimit-remaining-tokens: 900\r\n"
                     "x-ratelimit-reset-requests: 2s\r\nContent-Length: ",
                     body.size(), "\r\n\r\n", body));
    return true;
  });
  Recorder* r = Start(server.url("/v1"), false);
  ASSERT_TRUE(r->finished.WaitForNotificationWithTimeout(kWait));
  Sync();
  ASSERT_TRUE(r->result.ok()) << r->result.error.message;
  EXPECT_EQ(r->result.response.message.content, "hi");
  EXPECT_EQ(r->result.rate_limits.remaining_requests, 9);
  EXPECT_EQ(r->result.rate_limits.remaining_tokens, 900);
  EXPECT_EQ(r->result.rate_limits.reset_requests, absl::Seconds(2));
}

TEST_F(ProviderCallTest, ShouldRetryFalseMakesRateLimitFinal) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    std::string body = R"({"error":{"message":"slow","type":"requests",)"
                       R"("code":"rate_limit_exceeded"}})";
    c.Write(absl::StrCat(
        "HTTP/1.1 429 Too Many Requests\r\nx-should-retry: false\r\n"
        "Retry-After: 3\r\nContent-Length: ",
        body.size(), "\r\n\r\n", body));
    return true;
  });
  Recorder* r = Start(server.url("/v1"), true);
  ASSERT_TRUE(r->finished.WaitForNotificationWithTimeout(kWait));
  Sync();
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kBadRequest);
  EXPECT_EQ(r->result.error.http_status, 429);
  EXPECT_EQ(r->result.error.retry_after, absl::Seconds(3));
  EXPECT_EQ(r->result.error.message.find("sk-hidden"), std::string::npos);
}

TEST_F(ProviderCallTest, FailureNeverReportsInsideStart) {
  int port;
  {
    TestHttpServer closed(
        [](const std::string&, TestHttpServer::Conn&) { return false; });
    port = closed.port();
  }
  Recorder* r = Start(absl::StrCat("http://127.0.0.1:", port, "/v1"), true);
  ASSERT_TRUE(r->finished.WaitForNotificationWithTimeout(kWait));
  Sync();
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kConnectError);
  EXPECT_EQ(r->inside_start, 0);
}

TEST_F(ProviderCallTest, HandleDestroyedInsideOnDeltaEndsTheCall) {
  absl::Notification peer_closed;
  TestHttpServer server([&](const std::string&, TestHttpServer::Conn& c) {
    c.Write(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n");
    c.Write(HttpChunk(Chunk("a") + Chunk("b") + Chunk("c")));
    if (c.WaitPeerClosed(kWait)) peer_closed.Notify();
    return false;
  });
  Recorder* r = Start(server.url("/v1"), true, /*destroy_handle_after=*/2);
  ASSERT_TRUE(r->destroyed.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(peer_closed.WaitForNotificationWithTimeout(kWait));
  Sync();
  EXPECT_EQ(r->deltas.size(), 2u);  // "c" was in the same read: dropped
  EXPECT_EQ(r->finishes, 0);
}

TEST_F(ProviderCallTest, ResetAfterContentIsStreamCut) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    c.Write(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n");
    c.Write(HttpChunk(Chunk("a")));
    absl::SleepFor(absl::Milliseconds(50));
    c.Reset();
    return false;
  });
  Recorder* r = Start(server.url("/v1"), true);
  ASSERT_TRUE(r->finished.WaitForNotificationWithTimeout(kWait));
  Sync();
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kStreamCut)
      << r->result.error.message;
  ASSERT_EQ(r->deltas.size(), 1u);
}

TEST_F(ProviderCallTest, ErrorStatusOnStreamIsClassifiedFromJsonBody) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    std::string body = R"({"error":{"message":"kaput","type":"server_error"}})";
    c.Write(
        absl::StrCat("HTTP/1.1 500 Internal Server Error\r\n"
                     "Content-Length: ",
                     body.size(), "\r\n\r\n", body));
    return true;
  });
  Recorder* r = Start(server.url("/v1"), true);
  ASSERT_TRUE(r->finished.WaitForNotificationWithTimeout(kWait));
  Sync();
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kServerError);
  EXPECT_NE(r->result.error.message.find("kaput"), std::string::npos);
  EXPECT_TRUE(r->deltas.empty());
}

}  // namespace
}  // namespace echelon
