// HTTPS on the HTTP front: a real EpollEventLoop and a scripted Router,
// certificates made by the openssl CLI at test time
// (tests/integration/security_testdata/make_certs.sh), libcurl as the
// client, plus a blocking OpenSSL client and raw sockets where the test
// needs to see the TLS layer itself (close_notify, stalled handshakes,
// plain HTTP on the TLS port).
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
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
#include "adapters/http_front.h"
#include "adapters/http_tls.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"
#include "tests/adapters/curl_test_client.h"
#include "tests/fakes/scripted_router.h"

namespace echelon {
namespace {

constexpr char kChat[] =
    R"({"model":"fast","messages":[{"role":"user","content":"hi"}]})";
constexpr char kStreamChat[] =
    R"({"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]})";

std::string PkiDir() {
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TEST_TMPDIR");
    auto* d = new std::string(absl::StrCat(tmp ? tmp : "/tmp", "/pki"));
    const char* srcdir = std::getenv("TEST_SRCDIR");
    const char* ws = std::getenv("TEST_WORKSPACE");
    std::string script =
        absl::StrCat(srcdir ? srcdir : ".", "/", ws ? ws : "echelon",
                     "/tests/integration/security_testdata/make_certs.sh");
    int rc = std::system(absl::StrCat("/bin/sh ", script, " ", *d).c_str());
    EXPECT_EQ(rc, 0) << "make_certs.sh failed";
    return d;
  }();
  return *dir;
}

std::string Pki(const std::string& name) {
  return absl::StrCat(PkiDir(), "/", name);
}

using HttpResult = CurlTestResult;

// A keep-alive libcurl client for https://127.0.0.1:<port>.
class Client {
 public:
  struct Tls {
    std::string ca = "ca.pem";  // trusted CA (file in the PKI dir)
    std::string client;         // client cert/key base name; empty = none
  };
  Client(int port, Tls tls) : port_(port), tls_(std::move(tls)) {}

  HttpResult Do(const std::string& method, const std::string& path,
                const std::string& body = "", bool https = true) {
    CurlTestTls files;
    files.ca_file = Pki(tls_.ca);
    if (!tls_.client.empty()) {
      files.cert_file = Pki(tls_.client + ".pem");
      files.key_file = Pki(tls_.client + ".key");
    }
    return curl_.Do(
        method,
        absl::StrCat(https ? "https" : "http", "://127.0.0.1:", port_, path),
        body, {}, absl::Seconds(10), files);
  }
  long connects() const { return curl_.connects(); }

 private:
  int port_;
  Tls tls_;
  CurlTestClient curl_;
};

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// True when the peer closes `fd` within its receive timeout.
bool WaitEof(int fd) {
  char buf[4096];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  for (absl::string_view event : absl::StrSplit(body, "\n\n")) {
    if (absl::StartsWith(event, "data: ")) out.emplace_back(event.substr(6));
  }
  return out;
}

class HttpFrontTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    PkiDir();
  }

  void SetUp() override {
    auto loop = EpollEventLoop::Create(EpollEventLoop::Options());
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    loop_->Start();
    router_ = std::make_shared<ScriptedRouter>();
    std::vector<TargetView> targets(1);
    targets[0].name = "fast";
    targets[0].kind = TargetView::Kind::kTaskGroup;
    router_->set_targets(targets);
  }

  void StartFront(bool mutual, HttpFront::Options options = {}) {
    HttpTlsFiles files;
    files.cert_file = Pki("server.pem");
    files.key_file = Pki("server.key");
    if (mutual) files.client_ca_file = Pki("ca.pem");
    auto tls = TlsServerContext::Create(files);
    ASSERT_TRUE(tls.ok()) << tls.status();
    ASSERT_NE(*tls, nullptr);
    EXPECT_EQ((*tls)->mutual(), mutual);
    options.tls = *tls;
    options.port = 0;
    options.bind_address = "127.0.0.1";
    std::shared_ptr<Router> router = router_;
    options.router = [router] { return router; };
    auto front = HttpFront::Create(options, *loop_);
    ASSERT_TRUE(front.ok()) << front.status();
    front_ = std::move(*front);
  }

  void TearDown() override {
    if (front_ != nullptr) RunOnLoop([&] { front_.reset(); });
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

  size_t Connections() {
    size_t n = 0;
    RunOnLoop([&] { n = front_->connections(); });
    return n;
  }

  // Waits (bounded) until the front holds `n` connections.
  bool WaitConnections(size_t n) {
    absl::Time until = absl::Now() + absl::Seconds(10);
    while (absl::Now() < until) {
      if (Connections() == n) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  // Answers the next chat call with `content`.
  void AnswerNext(const std::string& content) {
    ScriptedRouter::Call call = router_->NextCall();
    ASSERT_NE(call.sink, nullptr);
    RunOnLoop([&] {
      RoutedResponse r;
      r.model = "sim-fast";
      r.response.message.content = content;
      r.response.finish_reason = FinishReason::kStop;
      call.sink->OnComplete(absl::OkStatus(), std::move(r));
    });
  }

  HttpResult ChatWith(Client::Tls tls, const std::string& content = "hello") {
    HttpResult result;
    std::thread client([&] {
      Client c(front_->port(), tls);
      result = c.Do("POST", "/v1/chat/completions", kChat);
    });
    AnswerNext(content);
    client.join();
    return result;
  }

  std::unique_ptr<EpollEventLoop> loop_;
  std::shared_ptr<ScriptedRouter> router_;
  std::unique_ptr<HttpFront> front_;
};

std::string Content(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("choices")) {
    return "<bad json: " + body.substr(0, 200) + ">";
  }
  return d["choices"][0]["message"]["content"].GetString();
}

TEST_F(HttpFrontTlsTest, ChatCompletionOverHttpsOnOneKeepAliveConnection) {
  StartFront(/*mutual=*/false);
  std::vector<HttpResult> results(2);
  long connects = 0;
  std::thread client([&] {
    Client c(front_->port(), {});
    results[0] = c.Do("POST", "/v1/chat/completions", kChat);
    results[1] = c.Do("POST", "/v1/chat/completions", kChat);
    connects = c.connects();
  });
  AnswerNext("hello over tls");
  AnswerNext("again");
  client.join();
  ASSERT_EQ(results[0].rc, CURLE_OK) << curl_easy_strerror(results[0].rc);
  EXPECT_EQ(results[0].status, 200);
  EXPECT_EQ(Content(results[0].body), "hello over tls");
  ASSERT_EQ(results[1].rc, CURLE_OK);
  EXPECT_EQ(Content(results[1].body), "again");
  EXPECT_EQ(connects, 1);
}

TEST_F(HttpFrontTlsTest, SseStreamOverHttps) {
  StartFront(/*mutual=*/false);
  HttpResult result;
  std::thread client([&] {
    Client c(front_->port(), {});
    result = c.Do("POST", "/v1/chat/completions", kStreamChat);
  });
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  ASSERT_TRUE(call.req.stream);
  constexpr int kDeltas = 300;
  RunOnLoop([&] {
    for (int i = 0; i < kDeltas; ++i) {
      StreamDelta d;
      d.content = absl::StrCat("tok", i, " ");
      call.sink->OnDelta(d);
    }
    RoutedResponse r;
    r.response.finish_reason = FinishReason::kStop;
    call.sink->OnComplete(absl::OkStatus(), std::move(r));
  });
  client.join();
  ASSERT_EQ(result.rc, CURLE_OK) << curl_easy_strerror(result.rc);
  EXPECT_EQ(result.status, 200);
  std::vector<std::string> events = SseData(result.body);
  // role chunk, the deltas, finish chunk, [DONE]
  ASSERT_EQ(events.size(), static_cast<size_t>(kDeltas + 3)) << result.body;
  std::string joined;
  for (size_t i = 1; i <= kDeltas; ++i) {
    rapidjson::Document d;
    d.Parse(events[i].c_str());
    ASSERT_FALSE(d.HasParseError()) << events[i];
    joined += d["choices"][0]["delta"]["content"].GetString();
  }
  std::string expected;
  for (int i = 0; i < kDeltas; ++i) absl::StrAppend(&expected, "tok", i, " ");
  EXPECT_EQ(joined, expected);
  EXPECT_EQ(events.back(), "[DONE]");
}

TEST_F(HttpFrontTlsTest, LargeResponseSurvivesPartialTlsWrites) {
  StartFront(/*mutual=*/false);
  // Far above the socket buffers: SSL_write hits WANT_WRITE many times.
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 997) big[i] = 'a' + (i % 26);
  HttpResult result = ChatWith({}, big);
  ASSERT_EQ(result.rc, CURLE_OK) << curl_easy_strerror(result.rc);
  EXPECT_EQ(result.status, 200);
  EXPECT_TRUE(Content(result.body) == big) << "body differs";
}

TEST_F(HttpFrontTlsTest, ServerCertificateIsRefusedByAnotherCa) {
  StartFront(/*mutual=*/false);
  Client c(front_->port(), {"other-ca.pem", ""});
  HttpResult r = c.Do("GET", "/healthz");
  EXPECT_NE(r.rc, CURLE_OK);
  EXPECT_EQ(r.status, 0);
  // The front survives the failed handshake and closes it.
  EXPECT_TRUE(WaitConnections(0));
  Client good(front_->port(), {});
  HttpResult ok = good.Do("GET", "/healthz");
  EXPECT_EQ(ok.rc, CURLE_OK) << curl_easy_strerror(ok.rc);
  EXPECT_EQ(ok.body, "ok\n");
}

TEST_F(HttpFrontTlsTest, PlainHttpToTheTlsPortGets400AndIsClosed) {
  StartFront(/*mutual=*/false);
  int fd = Connect(front_->port());
  std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, n);
  EXPECT_EQ(n, 0) << "expected a clean FIN";
  close(fd);
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 400 ")) << got;
  EXPECT_TRUE(absl::StrContains(got, "HTTPS")) << got;
  // libcurl speaking http:// sees the same answer.
  Client c(front_->port(), {});
  HttpResult r = c.Do("GET", "/healthz", "", /*https=*/false);
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(WaitConnections(0));
}

TEST_F(HttpFrontTlsTest, MutualTlsRefusesMissingOrForeignClientCertificates) {
  StartFront(/*mutual=*/true);
  for (const std::string& client :
       {std::string(""), std::string("other-client")}) {
    Client c(front_->port(), {"ca.pem", client});
    HttpResult r = c.Do("GET", "/healthz");
    EXPECT_NE(r.rc, CURLE_OK) << "client cert '" << client << "' accepted";
    EXPECT_NE(r.status, 200);
  }
  // A chat request without a client certificate never reaches the router.
  {
    Client c(front_->port(), {"ca.pem", ""});
    HttpResult r = c.Do("POST", "/v1/chat/completions", kChat);
    EXPECT_NE(r.rc, CURLE_OK);
  }
  EXPECT_TRUE(WaitConnections(0));
  HttpResult ok = ChatWith({"ca.pem", "client"}, "mutual");
  ASSERT_EQ(ok.rc, CURLE_OK) << curl_easy_strerror(ok.rc);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(Content(ok.body), "mutual");
}

TEST_F(HttpFrontTlsTest, StalledOrTricklingHandshakeIsClosedByTheTimeout) {
  HttpFront::Options options;
  options.request_read_timeout = absl::Milliseconds(300);
  StartFront(/*mutual=*/false, options);
  absl::Time start = absl::Now();
  int silent = Connect(front_->port());  // connects, never says hello
  int partial = Connect(front_->port());
  // The first bytes of a ClientHello record, then nothing.
  const char hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
  ASSERT_EQ(send(partial, hello, sizeof(hello), MSG_NOSIGNAL),
            static_cast<ssize_t>(sizeof(hello)));
  EXPECT_TRUE(WaitEof(silent));
  EXPECT_TRUE(WaitEof(partial));
  absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Seconds(5));
  close(silent);
  close(partial);
  EXPECT_TRUE(WaitConnections(0));
}

// A blocking OpenSSL client that reads to the end, to see how the front
// ends the session.
TEST_F(HttpFrontTlsTest, ConnectionCloseEndsWithCloseNotifyAndTls12IsTheFloor) {
  StartFront(/*mutual=*/false);
  for (int max_version : {TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(max_version);
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_NE(ctx, nullptr);
    SSL_CTX_set_security_level(ctx, 0);  // let the client offer TLS 1.1
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, max_version);
    ASSERT_EQ(
        SSL_CTX_load_verify_locations(ctx, Pki("ca.pem").c_str(), nullptr), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL* ssl = SSL_new(ctx);
    int fd = Connect(front_->port());
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "127.0.0.1");
    int rc = SSL_connect(ssl);
    if (max_version == TLS1_1_VERSION) {
      EXPECT_NE(rc, 1) << "TLS 1.1 was accepted";
    } else {
      ASSERT_EQ(rc, 1) << ERR_error_string(ERR_get_error(), nullptr);
      EXPECT_EQ(SSL_version(ssl), max_version);
      std::string req =
          "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      ASSERT_EQ(SSL_write(ssl, req.data(), static_cast<int>(req.size())),
                static_cast<int>(req.size()));
      std::string got;
      char buf[4096];
      int n;
      while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) got.append(buf, n);
      EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 200 ")) << got;
      EXPECT_TRUE(absl::EndsWith(got, "ok\n")) << got;
      // A close_notify alert, not a bare TCP close.
      EXPECT_EQ(SSL_get_error(ssl, n), SSL_ERROR_ZERO_RETURN);
      EXPECT_TRUE(SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN);
    }
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
  }
  EXPECT_TRUE(WaitConnections(0));
}

TEST(TlsServerContextTest, FileErrorsNameTheFileButNeverItsContent) {
  HttpTlsFiles none;
  auto plain = TlsServerContext::Create(none);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, nullptr);

  HttpTlsFiles key_only;
  key_only.key_file = Pki("server.key");
  EXPECT_EQ(TlsServerContext::Create(key_only).status().code(),
            absl::StatusCode::kInvalidArgument);

  HttpTlsFiles no_key;
  no_key.cert_file = Pki("server.pem");
  EXPECT_EQ(TlsServerContext::Create(no_key).status().code(),
            absl::StatusCode::kInvalidArgument);

  HttpTlsFiles missing;
  missing.cert_file = Pki("server.pem");
  missing.key_file = Pki("missing.key");
  absl::Status s = TlsServerContext::Create(missing).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(s.message(), "missing.key")) << s;

  HttpTlsFiles mismatched;
  mismatched.cert_file = Pki("server.pem");
  mismatched.key_file = Pki("client.key");
  s = TlsServerContext::Create(mismatched).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "client.key")) << s;
  EXPECT_FALSE(absl::StrContains(s.message(), "BEGIN")) << s;

  HttpTlsFiles key_as_cert;  // a key where the certificate should be
  key_as_cert.cert_file = Pki("server.key");
  key_as_cert.key_file = Pki("server.key");
  s = TlsServerContext::Create(key_as_cert).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(absl::StrContains(s.message(), "BEGIN")) << s;
  EXPECT_FALSE(absl::StrContains(s.message(), "MII")) << s;
}

}  // namespace
}  // namespace echelon
