#include "adapters/http_client.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "adapters/event_loop.h"
#include "gtest/gtest.h"
#include "tests/adapters/test_http_server.h"

namespace echelon {
namespace {

constexpr absl::Duration kWait = absl::Seconds(20);

struct Outcome {
  HttpResult result;
  int header_status = 0;
  HttpHeaders headers;
  std::vector<std::string> chunks;
  int completions = 0;

  std::string body() const {
    std::string s;
    for (const auto& c : chunks) s += c;
    return s;
  }
};

class HttpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EpollEventLoop::Create({});
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    auto client = HttpClient::Create({}, *loop_);
    ASSERT_TRUE(client.ok());
    client_ = std::move(*client);
    loop_->Start();
  }

  void TearDown() override {
    loop_->Stop();
    client_.reset();
    loop_.reset();
  }

  // Runs one request to completion on the loop and returns what was seen.
  Outcome Fetch(HttpRequest request) {
    auto outcome = std::make_shared<Outcome>();
    absl::Notification done;
    loop_->Post([&, outcome] {
      HttpCallbacks cb;
      cb.on_headers = [outcome](int status, const HttpHeaders& h) {
        outcome->header_status = status;
        outcome->headers = h;
      };
      cb.on_data = [outcome](absl::string_view b) {
        outcome->chunks.emplace_back(b);
      };
      cb.on_complete = [outcome, &done](HttpResult r) {
        outcome->result = std::move(r);
        ++outcome->completions;
        done.Notify();
      };
      client_->Start(std::move(request), std::move(cb));
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(kWait));
    // Let any (wrong) late callback show up in the counters.
    absl::Notification flushed;
    loop_->Post([&] { flushed.Notify(); });
    flushed.WaitForNotificationWithTimeout(kWait);
    return *outcome;
  }

  std::unique_ptr<EpollEventLoop> loop_;
  std::unique_ptr<HttpClient> client_;
};

const char kOkResponse[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Thing: Yes\r\n"
    "Content-Length: 5\r\n\r\nhello";

TEST_F(HttpClientTest, DeliversStatusHeadersAndBody) {
  std::string seen_request;
  TestHttpServer server([&](const std::string& req, TestHttpServer::Conn& c) {
    seen_request = req;
    c.Write(kOkResponse);
    return true;
  });
  HttpRequest req;
  req.url = server.url("/v1/x");
  req.headers = {{"Authorization", "Bearer secret"}};
  req.body = "{\"a\":1}";
  Outcome out = Fetch(req);
  EXPECT_EQ(out.result.error_class, ErrorClass::kNone) << out.result.message;
  EXPECT_EQ(out.result.http_status, 200);
  EXPECT_EQ(out.header_status, 200);
  ASSERT_NE(out.headers.Find("x-thing"), nullptr);
  EXPECT_EQ(*out.headers.Find("x-thing"), "Yes");
  EXPECT_EQ(out.body(), "hello");
  EXPECT_EQ(out.result.body_bytes, 5);
  EXPECT_TRUE(absl::StartsWith(seen_request, "POST /v1/x HTTP/1.1\r\n"));
  EXPECT_TRUE(absl::StrContains(seen_request, "Authorization: Bearer secret"));
  EXPECT_TRUE(absl::EndsWith(seen_request, "\r\n\r\n{\"a\":1}"));
  EXPECT_FALSE(absl::StrContains(seen_request, "Expect:"));
}

TEST_F(HttpClientTest, ReportsErrorStatusesAsCompletedTransfers) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    c.Write(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\n"
        "Content-Length: 2\r\n\r\n{}");
    return true;
  });
  HttpRequest req;
  req.url = server.url("/");
  Outcome out = Fetch(req);
  EXPECT_EQ(out.result.error_class, ErrorClass::kNone);
  EXPECT_EQ(out.result.http_status, 429);
  EXPECT_EQ(out.body(), "{}");
  EXPECT_EQ(ParseRetryAfter(out.headers, absl::Now()), absl::Seconds(2));
}

TEST_F(HttpClientTest, StreamsChunkedBodyPiecesAsTheyArrive) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    c.Write(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; ++i) {
      std::string piece = absl::StrCat("data: ", i, "\n\n");
      c.Write(absl::StrCat(absl::Hex(piece.size()), "\r\n", piece, "\r\n"));
      absl::SleepFor(absl::Milliseconds(20));
    }
    c.Write("0\r\n\r\n");
    return true;
  });
  HttpRequest req;
  req.url = server.url("/");
  Outcome out = Fetch(req);
  EXPECT_EQ(out.result.error_class, ErrorClass::kNone) << out.result.message;
  EXPECT_EQ(out.body(), "data: 0\n\ndata: 1\n\ndata: 2\n\n");
  EXPECT_GE(out.chunks.size(), 2u);
}

TEST_F(HttpClientTest, ReusesKeptAliveConnection) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    c.Write(kOkResponse);
    return true;
  });
  HttpRequest req;
  req.url = server.url("/");
  EXPECT_EQ(Fetch(req).result.error_class, ErrorClass::kNone);
  EXPECT_EQ(Fetch(req).result.error_class, ErrorClass::kNone);
  EXPECT_EQ(Fetch(req).result.error_class, ErrorClass::kNone);
  EXPECT_EQ(server.accepted(), 1);
}

// Four transfers in flight at once go to four multi handles (each opens a
// connection); the next four go to the same handles and reuse those
// connections, and so does a request on its own afterwards.
TEST_F(HttpClientTest, ConcurrentTransfersSpreadOverHandlesAndReuseThem) {
  // std::mutex and std::condition_variable rather than Abseil's: this test
  // runs under ThreadSanitizer, which cannot see the happens-before edges of
  // Debian's uninstrumented absl::BlockingCounter or Mutex::Await.
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;     // requests the server has seen
  int release_at = 4;  // it answers once this many have arrived
  int completed = 0;   // transfers completed in the current round
  int failures = 0;
  std::vector<size_t> spread;
  TestHttpServer server([&](const std::string&, TestHttpServer::Conn& c) {
    {
      std::unique_lock<std::mutex> lock(mu);
      ++arrived;
      cv.notify_all();
      cv.wait(lock, [&] { return arrived >= release_at; });
    }
    c.Write(kOkResponse);
    return true;
  });
  std::vector<size_t> one_each(16, 0);
  for (int i = 0; i < 4; ++i) one_each[i] = 1;
  auto round = [&](int n) {
    {
      std::lock_guard<std::mutex> lock(mu);
      completed = failures = 0;
    }
    loop_->Post([&, n] {
      for (int i = 0; i < n; ++i) {
        HttpRequest req;
        req.url = server.url("/");
        HttpCallbacks cb;
        cb.on_complete = [&](HttpResult r) {
          std::lock_guard<std::mutex> lock(mu);
          if (r.error_class != ErrorClass::kNone || r.http_status != 200) {
            ++failures;
          }
          ++completed;
          cv.notify_all();
        };
        client_->Start(std::move(req), std::move(cb));
      }
      std::vector<size_t> now = client_->transfers_per_handle();
      std::lock_guard<std::mutex> lock(mu);
      spread = std::move(now);
    });
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(20),
                            [&] { return completed == n; }));
    return failures;
  };
  auto release = [&](int at) {
    std::lock_guard<std::mutex> lock(mu);
    release_at = at;
    cv.notify_all();
  };
  auto spread_now = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return spread;
  };
  ASSERT_EQ(HttpClient::Options().multi_handles, 16);
  EXPECT_EQ(round(4), 0);
  EXPECT_EQ(spread_now(), one_each);
  EXPECT_EQ(server.accepted(), 4);
  release(8);
  EXPECT_EQ(round(4), 0);
  EXPECT_EQ(spread_now(), one_each);
  EXPECT_EQ(server.accepted(), 4);
  release(9);
  HttpRequest req;
  req.url = server.url("/");
  EXPECT_EQ(Fetch(req).result.error_class, ErrorClass::kNone);
  EXPECT_EQ(server.accepted(), 4);
}

TEST_F(HttpClientTest, RefusedConnectionIsConnectError) {
  int port;
  {
    TestHttpServer server(
        [](const std::string&, TestHttpServer::Conn&) { return false; });
    port = server.port();
  }
  HttpRequest req;
  req.url = absl::StrCat("http://127.0.0.1:", port, "/");
  Outcome out = Fetch(req);
  EXPECT_EQ(out.result.error_class, ErrorClass::kConnectError);
  EXPECT_EQ(out.result.http_status, 0);
  EXPECT_EQ(out.completions, 1);
  EXPECT_EQ(out.result.curl_code, 7);  // CURLE_COULDNT_CONNECT
}

TEST_F(HttpClientTest, UnansweredConnectIsConnectTimeout) {
  // A listener that never accepts, with its accept queue already full:
  // the kernel drops further SYNs, so connect() hangs.
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
            0);
  socklen_t len = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  ASSERT_EQ(listen(listener, 0), 0);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    fillers.push_back(fd);
  }
  HttpRequest req;
  req.url = absl::StrCat("http://127.0.0.1:", ntohs(addr.sin_port), "/");
  req.connect_timeout = absl::Milliseconds(200);
  req.first_byte_timeout = absl::Seconds(15);
  Outcome out = Fetch(req);
  EXPECT_EQ(out.result.error_class, ErrorClass::kTimeoutConnect)
      << out.result.message;
  for (int fd : fillers) close(fd);
  close(listener);
}

TEST_F(HttpClientTest, SilentServerIsFirstByteTimeout) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    c.Hang();
    return false;
  });
  HttpRequest req;
  req.url = server.url("/");
  req.first_byte_timeout = absl::Milliseconds(100);
  Outcome out = Fetch(req);
  EXPECT_EQ(out.result.error_class, ErrorClass::kTimeoutFirstToken);
  EXPECT_EQ(out.completions, 1);
}

TEST_F(HttpClientTest, SilenceAfterFirstChunkIsStallTimeout) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    c.Write(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n");
    c.Hang();
    return false;
  });
  HttpRequest req;
  req.url = server.url("/");
  req.stall_timeout = absl::Milliseconds(100);
  Outcome out = Fetch(req);
  EXPECT_EQ(out.result.error_class, ErrorClass::kTimeoutStall);
  EXPECT_EQ(out.result.http_status, 200);
  EXPECT_EQ(out.body(), "hello");
}

TEST_F(HttpClientTest, DeadlineIsTotalTimeoutEvenWhileDataFlows) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    c.Write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 500; ++i) {
      if (!c.Write("1\r\nx\r\n")) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  });
  HttpRequest req;
  req.url = server.url("/");
  req.stall_timeout = absl::Seconds(10);
  req.deadline = absl::Now() + absl::Milliseconds(200);
  Outcome out = Fetch(req);
  EXPECT_EQ(out.result.error_class, ErrorClass::kTimeoutTotal);
}

TEST_F(HttpClientTest, ResetMidBodyIsConnectError) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    c.Write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    absl::SleepFor(absl::Milliseconds(20));
    c.Reset();
    return false;
  });
  HttpRequest req;
  req.url = server.url("/");
  Outcome out = Fetch(req);
  EXPECT_EQ(out.result.error_class, ErrorClass::kConnectError);
  EXPECT_EQ(out.result.http_status, 200);
}

TEST_F(HttpClientTest, CancelInsideDataCallbackClosesConnectionSilently) {
  absl::Notification peer_closed;
  TestHttpServer server([&](const std::string&, TestHttpServer::Conn& c) {
    c.Write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.Write("5\r\nfirst\r\n");
    if (c.WaitPeerClosed(kWait)) peer_closed.Notify();
    return false;
  });
  auto calls = std::make_shared<std::atomic<int>>(0);
  loop_->Post([&, calls] {
    auto id = std::make_shared<HttpClient::RequestId>(0);
    HttpRequest req;
    req.url = server.url("/");
    HttpCallbacks cb;
    cb.on_data = [this, id, calls](absl::string_view) {
      ++*calls;
      client_->Cancel(*id);
      client_->Cancel(*id);  // idempotent
    };
    cb.on_complete = [calls](HttpResult) { *calls += 100; };
    *id = client_->Start(std::move(req), std::move(cb));
  });
  ASSERT_TRUE(peer_closed.WaitForNotificationWithTimeout(kWait));
  absl::Notification flushed;
  loop_->Post([&] {
    EXPECT_EQ(client_->active_requests(), 0u);
    flushed.Notify();
  });
  ASSERT_TRUE(flushed.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(calls->load(), 1);
}

TEST_F(HttpClientTest, StartInsideCompletionCallbackWorks) {
  TestHttpServer server([](const std::string&, TestHttpServer::Conn& c) {
    c.Write(kOkResponse);
    return true;
  });
  absl::Notification second_done;
  std::string second_body;
  loop_->Post([&] {
    HttpRequest req;
    req.url = server.url("/1");
    HttpCallbacks cb;
    cb.on_complete = [&](HttpResult) {
      HttpRequest req2;
      req2.url = server.url("/2");
      HttpCallbacks cb2;
      cb2.on_data = [&](absl::string_view b) {
        second_body.append(b.data(), b.size());
      };
      cb2.on_complete = [&](HttpResult) { second_done.Notify(); };
      client_->Start(std::move(req2), std::move(cb2));
    };
    client_->Start(std::move(req), std::move(cb));
  });
  ASSERT_TRUE(second_done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(second_body, "hello");
}

TEST(RetryAfterTest, ParsesSecondsMillisecondsAndHttpDate) {
  absl::Time now = absl::FromUnixSeconds(784111777);  // 06 Nov 1994 08:49:37
  HttpHeaders h;
  h.entries = {{"retry-after", "3"}};
  EXPECT_EQ(ParseRetryAfter(h, now), absl::Seconds(3));
  h.entries = {{"retry-after", "Sun, 06 Nov 1994 08:49:47 GMT"}};
  EXPECT_EQ(ParseRetryAfter(h, now), absl::Seconds(10));
  h.entries = {{"retry-after", "1"}, {"retry-after-ms", "250"}};
  EXPECT_EQ(ParseRetryAfter(h, now), absl::Milliseconds(250));
  h.entries = {{"retry-after", "soon"}};
  EXPECT_EQ(ParseRetryAfter(h, now), absl::ZeroDuration());
  h.entries = {};
  EXPECT_EQ(ParseRetryAfter(h, now), absl::ZeroDuration());
}

TEST(ResetDurationTest, ParsesGoStyleAndPlainSeconds) {
  EXPECT_EQ(ParseResetDuration("1s"), absl::Seconds(1));
  EXPECT_EQ(ParseResetDuration("6m0s"), absl::Minutes(6));
  EXPECT_EQ(ParseResetDuration("20ms"), absl::Milliseconds(20));
  EXPECT_EQ(ParseResetDuration("1h2m3.5s"),
            absl::Hours(1) + absl::Minutes(2) + absl::Milliseconds(3500));
  EXPECT_EQ(ParseResetDuration("30"), absl::Seconds(30));
  EXPECT_EQ(ParseResetDuration("bogus"), absl::ZeroDuration());
}

}  // namespace
}  // namespace echelon
