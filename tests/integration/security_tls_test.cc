// TLS and mutual TLS on the gRPC listener, with certificates made by the
// openssl CLI at test time: handshakes succeed only with the right CA and,
// for mTLS, a client certificate that CA signed.
#include <sys/wait.h>

#include <memory>
#include <string>

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

  void Start(bool mutual) {
    SecurityEnvOptions options;
    options.config = "tests/integration/security_testdata/plain.yaml";
    options.extra_flags = {absl::StrCat("--grpc_tls_cert=", File("server.pem")),
                           absl::StrCat("--grpc_tls_key=", File("server.key"))};
    if (mutual) {
      options.extra_flags.push_back(
          absl::StrCat("--grpc_tls_client_ca=", File("ca.pem")));
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
}

}  // namespace
}  // namespace echelon::testing
