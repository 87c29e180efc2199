// TLS and mutual TLS on the gRPC listener and on the OpenAI-compatible HTTP
// listener, with certificates made by the openssl CLI at test time:
// handshakes succeed only with the right CA and, for mTLS, a client
// certificate that CA signed.
#include <curl/curl.h>
#include <sys/wait.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/security_env.h"

namespace echelon::testing {
namespace {

class SecurityTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("pki"));
    absl::Status s = RunShell(absl::StrCat(
        RunfilePath("tests/integration/security_testdata/make_certs.sh"), " ",
        *dir_));
    ASSERT_TRUE(s.ok()) << s;
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string File(const std::string& name) {
    return absl::StrCat(*dir_, "/", name);
  }

  void Start(bool mutual, const std::string& prefix = "grpc") {
    SecurityEnvOptions options;
    options.config = "tests/integration/security_testdata/plain.yaml";
    options.extra_flags = {
        absl::StrCat("--", prefix, "_tls_cert=", File("server.pem")),
        absl::StrCat("--", prefix, "_tls_key=", File("server.key"))};
    if (mutual) {
      options.extra_flags.push_back(
          absl::StrCat("--", prefix, "_tls_client_ca=", File("ca.pem")));
    }
    auto p = StartSecurityProcesses(options);
    ASSERT_TRUE(p.ok()) << p.status();
    p_ = *std::move(p);
  }

  // ListTargets over a fresh channel with `creds`; the handshake decides.
  grpc::Status Call(std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    auto channel = grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", p_->grpc_port), creds, args);
    auto stub = v1::Gateway::NewStub(channel);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    v1::ListTargetsResponse resp;
    grpc::Status s = stub->ListTargets(&ctx, {}, &resp);
    if (s.ok() && resp.targets_size() == 0) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "no targets");
    }
    return s;
  }

  static std::shared_ptr<grpc::ChannelCredentials> Tls(
      const std::string& ca, const std::string& client = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadFileOrEmpty(File(ca));
    if (!client.empty()) {
      o.pem_cert_chain = ReadFileOrEmpty(File(client + ".pem"));
      o.pem_private_key = ReadFileOrEmpty(File(client + ".key"));
    }
    return grpc::SslCredentials(o);
  }

  static std::string* dir_;
  std::unique_ptr<SecurityProcesses> p_;
};

std::string* SecurityTlsTest::dir_ = nullptr;

TEST_F(SecurityTlsTest, TlsHandshakeSucceedsOnlyWithTheServersCa) {
  Start(/*mutual=*/false);
  grpc::Status ok = Call(Tls("ca.pem"));
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_FALSE(Call(Tls("other-ca.pem")).ok());
  EXPECT_FALSE(Call(grpc::InsecureChannelCredentials()).ok());
}

TEST_F(SecurityTlsTest, TlsRoutesAChatRequest) {
  Start(/*mutual=*/false);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", p_->grpc_port),
                                     Tls("ca.pem"));
  auto stub = v1::Gateway::NewStub(channel);
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  v1::ExecuteResponse resp;
  grpc::Status s = stub->Execute(&ctx, UserRequest("fast-pool"), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(SecurityTlsTest, MutualTlsNeedsAClientCertificateFromTheClientCa) {
  Start(/*mutual=*/true);
  grpc::Status ok = Call(Tls("ca.pem", "client"));
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_FALSE(Call(Tls("ca.pem")).ok());
  EXPECT_FALSE(Call(Tls("ca.pem", "other-client")).ok());
  EXPECT_FALSE(Call(grpc::InsecureChannelCredentials()).ok());
}

// An HTTPS upstream whose certificate the test CA signed.
class HttpsUpstream {
 public:
  static absl::StatusOr<std::unique_ptr<HttpsUpstream>> Start(
      const std::string& cert, const std::string& key) {
    auto p = Subprocess::Start(
        {"/usr/bin/python3", "-u",
         RunfilePath("tests/integration/security_testdata/https_upstream.py"),
         cert, key});
    if (!p.ok()) return p.status();
    auto up = std::make_unique<HttpsUpstream>();
    up->process_ = *std::move(p);
    auto port = up->process_->WaitForLine("LISTENING ", absl::Seconds(20));
    if (!port.ok()) return port.status();
    up->url_ = absl::StrCat("https://127.0.0.1:", *port, "/v1");
    return up;
  }
  const std::string& url() const { return url_; }

 private:
  std::unique_ptr<Subprocess> process_;
  std::string url_;
};

TEST_F(SecurityTlsTest, UpstreamCertificateIsVerifiedAgainstUpstreamCaFile) {
  auto upstream = HttpsUpstream::Start(File("server.pem"), File("server.key"));
  ASSERT_TRUE(upstream.ok()) << upstream.status();
  for (bool trust : {true, false}) {
    SecurityEnvOptions options;
    options.config = "tests/integration/security_testdata/https_upstream.yaml";
    options.env = {{"ECHELON_TLS_URL", (*upstream)->url()}};
    if (trust) {
      options.extra_flags = {
          absl::StrCat("--upstream_ca_file=", File("ca.pem"))};
    }
    auto p = StartSecurityProcesses(options);
    ASSERT_TRUE(p.ok()) << p.status();
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*p)->grpc_port),
                            grpc::InsecureChannelCredentials());
    auto stub = v1::Gateway::NewStub(channel);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(10));
    v1::ExecuteResponse resp;
    grpc::Status s = stub->Execute(&ctx, UserRequest("tls-pool"), &resp);
    if (trust) {
      EXPECT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(resp.message().content(), "hello over tls");
    } else {
      // The system store does not know the test CA: the handshake fails.
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
          << s.error_message();
    }
  }
}

struct HttpsAnswer {
  CURLcode rc = CURLE_OK;
  long status = 0;
  std::string body;
};

size_t AppendBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// One request to the gateway's HTTP listener with libcurl; `ca` and
// `client` are PKI file names ("" = none).
HttpsAnswer HttpsFetch(const std::string& url, const std::string& post_body,
                       const std::string& ca, const std::string& client) {
  HttpsAnswer a;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  if (!post_body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post_body.c_str());
  }
  curl_slist* headers =
      curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (!ca.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca.c_str());
  curl_easy_setopt(curl, CURLOPT_CAPATH, nullptr);
  std::string cert = client + ".pem", key = client + ".key";
  if (!client.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, cert.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, key.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &a.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  a.rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return a;
}

constexpr char kHttpChat[] =
    R"({"model":"fast-pool","messages":[{"role":"user","content":"hi"}]})";
constexpr char kHttpStream[] =
    R"({"model":"fast-pool","stream":true,"messages":[{"role":"user","content":"hi"}]})";

TEST_F(SecurityTlsTest, HttpFrontServesChatAndStreamsOverTls) {
  Start(/*mutual=*/false, "http");
  const std::string https =
      absl::StrCat("https://127.0.0.1:", p_->http_port, "/v1/chat/completions");
  HttpsAnswer chat = HttpsFetch(https, kHttpChat, File("ca.pem"), "");
  ASSERT_EQ(chat.rc, CURLE_OK) << curl_easy_strerror(chat.rc);
  EXPECT_EQ(chat.status, 200) << chat.body;
  EXPECT_TRUE(absl::StrContains(chat.body, "\"chat.completion\"")) << chat.body;

  HttpsAnswer stream = HttpsFetch(https, kHttpStream, File("ca.pem"), "");
  ASSERT_EQ(stream.rc, CURLE_OK) << curl_easy_strerror(stream.rc);
  EXPECT_EQ(stream.status, 200) << stream.body;
  EXPECT_TRUE(absl::StrContains(stream.body, "chat.completion.chunk"))
      << stream.body;
  EXPECT_TRUE(absl::EndsWith(stream.body, "data: [DONE]\n\n")) << stream.body;

  // The wrong CA fails the handshake; plain HTTP gets a plain 400.
  EXPECT_NE(HttpsFetch(https, kHttpChat, File("other-ca.pem"), "").rc,
            CURLE_OK);
  HttpsAnswer plain = HttpsFetch(
      absl::StrCat("http://127.0.0.1:", p_->http_port, "/healthz"), "", "", "");
  EXPECT_EQ(plain.status, 400) << plain.body;
  // gRPC stays plaintext: the two listeners are configured apart.
  EXPECT_TRUE(Call(grpc::InsecureChannelCredentials()).ok());
}

TEST_F(SecurityTlsTest, HttpFrontMutualTlsNeedsAClientCertificateFromTheCa) {
  Start(/*mutual=*/true, "http");
  const std::string https =
      absl::StrCat("https://127.0.0.1:", p_->http_port, "/v1/chat/completions");
  HttpsAnswer ok = HttpsFetch(https, kHttpChat, File("ca.pem"), File("client"));
  ASSERT_EQ(ok.rc, CURLE_OK) << curl_easy_strerror(ok.rc);
  EXPECT_EQ(ok.status, 200) << ok.body;
  auto before = p_->StatsJson();
  ASSERT_TRUE(before.ok());
  for (const std::string& client : {std::string(""), File("other-client")}) {
    HttpsAnswer refused = HttpsFetch(https, kHttpChat, File("ca.pem"), client);
    EXPECT_NE(refused.rc, CURLE_OK) << "client '" << client << "' accepted";
    EXPECT_NE(refused.status, 200);
  }
  // Refused handshakes never reach the upstream.
  auto after = p_->StatsJson();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(SimTotalAttempts(*after), SimTotalAttempts(*before));
}

TEST_F(SecurityTlsTest, IncompleteTlsFlagsStopTheGatewayWithoutLeakingKeys) {
  const std::string log = File("bad_flags.log");
  auto sim = StartSecurityProcesses(
      {"tests/integration/security_testdata/plain.yaml",
       {absl::StrCat("--grpc_tls_cert=", File("server.pem")),
        absl::StrCat("--grpc_tls_key=", File("missing.key"))},
       {},
       log,
       ""});
  ASSERT_FALSE(sim.ok());
  const std::string err = ReadFileOrEmpty(log);
  EXPECT_NE(err.find("missing.key"), std::string::npos) << err;
  EXPECT_EQ(err.find("BEGIN"), std::string::npos) << err;

  // The same for the HTTP listener, and a key that is not the cert's.
  const std::string http_log = File("bad_http_flags.log");
  auto http = StartSecurityProcesses(
      {"tests/integration/security_testdata/plain.yaml",
       {absl::StrCat("--http_tls_cert=", File("server.pem")),
        absl::StrCat("--http_tls_key=", File("client.key"))},
       {},
       http_log,
       ""});
  ASSERT_FALSE(http.ok());
  const std::string http_err = ReadFileOrEmpty(http_log);
  EXPECT_NE(http_err.find("client.key"), std::string::npos) << http_err;
  EXPECT_EQ(http_err.find("BEGIN"), std::string::npos) << http_err;
}

}  // namespace
}  // namespace echelon::testing
