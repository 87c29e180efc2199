#include "adapters/http_tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace echelon {
namespace {

constexpr unsigned char kAlpnHttp11[] = {8,   'h', 't', 't', 'p',
                                         '/', '1', '.', '1'};
constexpr char kSessionContext[] = "echelon-http-front";

// The oldest queued OpenSSL error as text ("" when none); clears the queue.
std::string TakeOpenSslError() {
  unsigned long e = ERR_get_error();
  std::string out;
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    out = buf;
  }
  ERR_clear_error();
  return out;
}

// Can `path` be opened? Mirrors ReadPemFile's (adapters/tls.h) errors
// without pulling gRPC into the HTTP front.
absl::Status CheckReadable(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f != nullptr) {
    std::fclose(f);
    return absl::OkStatus();
  }
  const int err = errno;
  std::string why =
      absl::StrCat("cannot read ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(why);
  if (err == EACCES) return absl::PermissionDeniedError(why);
  return absl::InternalError(why);
}

// A BIO on the front's socket that sends with MSG_NOSIGNAL: OpenSSL's own
// socket BIO uses write(2), which raises SIGPIPE when the client has reset
// the connection.
int BioWrite(BIO* bio, const char* data, int size) {
  const int fd =
      static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
  BIO_clear_retry_flags(bio);
  for (;;) {
    ssize_t n = send(fd, data, static_cast<size_t>(size), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
    return -1;
  }
}

int BioRead(BIO* bio, char* buf, int size) {
  const int fd =
      static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
  BIO_clear_retry_flags(bio);
  for (;;) {
    ssize_t n = recv(fd, buf, static_cast<size_t>(size), 0);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(bio);
    return -1;
  }
}

long BioCtrl(BIO*, int cmd, long, void*) {
  // OpenSSL flushes after each flight; send() has nothing to flush.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int BioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* SocketBioMethod() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "echelon socket");
    BIO_meth_set_write(m, BioWrite);
    BIO_meth_set_read(m, BioRead);
    BIO_meth_set_ctrl(m, BioCtrl);
    BIO_meth_set_create(m, BioCreate);
    return m;
  }();
  return method;
}

// Offers only HTTP/1.1 (the front speaks nothing else); a client that
// offers ALPN without it gets no ALPN answer and may give up.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnHttp11, sizeof(kAlpnHttp11),
                            in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// An encrypted key would make OpenSSL prompt on the terminal; refuse.
int NoPassword(char*, int, int, void*) { return 0; }

}  // namespace

absl::StatusOr<std::shared_ptr<TlsServerContext>> TlsServerContext::Create(
    const HttpTlsFiles& files) {
  if (files.cert_file.empty()) {
    if (!files.key_file.empty() || !files.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--http_tls_key and --http_tls_client_ca need --http_tls_cert");
    }
    return std::shared_ptr<TlsServerContext>();
  }
  if (files.key_file.empty()) {
    return absl::InvalidArgumentError("--http_tls_cert needs --http_tls_key");
  }
  for (const std::string* path :
       {&files.cert_file, &files.key_file, &files.client_ca_file}) {
    if (path->empty()) continue;
    absl::Status s = CheckReadable(*path);
    if (!s.ok()) return s;
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    return absl::InternalError(
        absl::StrCat("SSL_CTX_new: ", TakeOpenSslError()));
  }
  // From here the context is owned, freed on every error path.
  std::shared_ptr<TlsServerContext> owner(
      new TlsServerContext(ctx, !files.client_ca_file.empty()));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
               SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Partial writes: SSL_write returns after each record like send(2);
  // moving buffer: the front's output string may grow (and move) between a
  // WANT_WRITE and the retry. Release buffers: idle keep-alive connections
  // do not hold ~34 KiB of record buffers each.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(ctx, NoPassword);
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  SSL_CTX_set_session_id_context(
      ctx, reinterpret_cast<const unsigned char*>(kSessionContext),
      sizeof(kSessionContext) - 1);
  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(files.cert_file, " holds no usable PEM certificate (",
                     TakeOpenSslError(), ")"));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, files.key_file.c_str(),
                                  SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        files.key_file, " holds no usable unencrypted PEM private key (",
        TakeOpenSslError(), ")"));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    TakeOpenSslError();
    return absl::InvalidArgumentError(
        absl::StrCat(files.key_file, " does not match ", files.cert_file));
  }
  if (!files.client_ca_file.empty()) {
    const char* ca = files.client_ca_file.c_str();
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca);
    if (SSL_CTX_load_verify_locations(ctx, ca, nullptr) != 1 ||
        names == nullptr) {
      if (names != nullptr) sk_X509_NAME_pop_free(names, X509_NAME_free);
      return absl::InvalidArgumentError(
          absl::StrCat(files.client_ca_file, " holds no usable PEM CA (",
                       TakeOpenSslError(), ")"));
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       nullptr);
  }
  ERR_clear_error();
  return owner;
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

std::unique_ptr<TlsSession> TlsSession::Accept(
    std::shared_ptr<TlsServerContext> context, int fd) {
  ERR_clear_error();
  SSL* ssl = SSL_new(context->native());
  if (ssl == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  std::unique_ptr<TlsSession> session(new TlsSession(std::move(context), ssl));
  BIO* bio = BIO_new(SocketBioMethod());
  if (bio == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd)));
  SSL_set_bio(ssl, bio, bio);  // one reference, owned by ssl
  SSL_set_accept_state(ssl);
  return session;
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

TlsSession::Io TlsSession::Classify(int rc) {
  const int saved_errno = errno;
  const int e = SSL_get_error(ssl_, rc);
  switch (e) {
    case SSL_ERROR_WANT_READ:
      return Io::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Io::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      return Io::kClosed;
    case SSL_ERROR_SYSCALL:
      failed_ = true;
      error_ = TakeOpenSslError();
      if (error_.empty()) {
        error_ =
            saved_errno != 0 ? std::strerror(saved_errno) : "connection closed";
      }
      return Io::kError;
    default:
      failed_ = true;
      error_ = TakeOpenSslError();
      if (error_.empty()) error_ = absl::StrCat("SSL error ", e);
      return Io::kError;
  }
}

TlsSession::Io TlsSession::Handshake() {
  if (handshake_done_) return Io::kOk;
  ERR_clear_error();
  errno = 0;
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    handshake_done_ = true;
    return Io::kOk;
  }
  Io io = Classify(rc);
  // A clean close in the middle of a handshake is still a failed handshake.
  if (io == Io::kClosed) {
    failed_ = true;
    error_ = "closed during the handshake";
    return Io::kError;
  }
  return io;
}

TlsSession::Io TlsSession::Read(char* buf, size_t size, size_t* n) {
  *n = 0;
  ERR_clear_error();
  errno = 0;
  int rc =
      SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(size, INT_MAX)));
  if (rc > 0) {
    *n = static_cast<size_t>(rc);
    return Io::kOk;
  }
  return Classify(rc);
}

TlsSession::Io TlsSession::Write(const char* data, size_t size, size_t* n) {
  *n = 0;
  if (size == 0) return Io::kOk;
  ERR_clear_error();
  errno = 0;
  int rc =
      SSL_write(ssl_, data, static_cast<int>(std::min<size_t>(size, INT_MAX)));
  if (rc > 0) {
    *n = static_cast<size_t>(rc);
    return Io::kOk;
  }
  return Classify(rc);
}

bool TlsSession::HasBuffered() const { return SSL_has_pending(ssl_) == 1; }

void TlsSession::Shutdown() {
  if (!handshake_done_ || failed_ || shut_down_) return;
  shut_down_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // sends close_notify; the peer's is not awaited
  ERR_clear_error();
}

}  // namespace echelon
