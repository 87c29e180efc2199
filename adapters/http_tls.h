// TLS for the OpenAI-compatible HTTP front, with OpenSSL on the front's own
// non-blocking sockets: no thread, no blocking call, the handshake driven by
// epoll readiness like every other byte the front moves.
//
// TlsServerContext is the listener's configuration (certificate chain, key,
// optional client CA for mutual TLS, TLS 1.2 as the lowest version, ALPN
// "http/1.1"), shared by every connection. TlsSession is one connection's
// SSL object on a socket fd the caller owns; it reads and writes through
// recv/send(MSG_NOSIGNAL), so a client that resets the connection never
// raises SIGPIPE. OpenSSL types stay out of this header.
//
// Errors name the files, never their content (a key must not reach a log).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

struct ssl_ctx_st;
struct ssl_st;

namespace echelon {

struct HttpTlsFiles {
  std::string cert_file;       // PEM certificate chain; empty = plaintext
  std::string key_file;        // PEM private key; required with cert_file
  std::string client_ca_file;  // PEM CA bundle; set = require client certs
};

class TlsServerContext {
 public:
  // Null (plaintext) when `files.cert_file` is empty. Errors:
  // INVALID_ARGUMENT (key or client CA without cert, cert without key, a
  // file that holds no usable PEM, a key that does not match the
  // certificate), NOT_FOUND / PERMISSION_DENIED (a file cannot be read).
  static absl::StatusOr<std::shared_ptr<TlsServerContext>> Create(
      const HttpTlsFiles& files);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  bool mutual() const { return mutual_; }
  ssl_ctx_st* native() const { return ctx_; }

 private:
  TlsServerContext(ssl_ctx_st* ctx, bool mutual) : ctx_(ctx), mutual_(mutual) {}
  ssl_ctx_st* ctx_;
  bool mutual_;
};

// The server side of one TLS connection on a non-blocking socket.
class TlsSession {
 public:
  enum class Io {
    kOk,         // Handshake: done. Read/Write: `*n` bytes moved (> 0).
    kWantRead,   // wait for EPOLLIN, then call the same function again
    kWantWrite,  // wait for EPOLLOUT, then call the same function again
    kClosed,     // the peer closed (close_notify or EOF)
    kError,      // protocol, certificate or socket error; see error()
  };

  // Null when OpenSSL cannot allocate the session.
  static std::unique_ptr<TlsSession> Accept(
      std::shared_ptr<TlsServerContext> context, int fd);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  Io Handshake();
  bool handshake_done() const { return handshake_done_; }
  // Read: up to `size` plaintext bytes into `buf`. Write: from `data`;
  // after kWantRead/kWantWrite the caller retries with the same bytes at
  // the start (the buffer may have moved and grown).
  Io Read(char* buf, size_t size, size_t* n);
  Io Write(const char* data, size_t size, size_t* n);
  // Plaintext already decrypted and buffered inside OpenSSL, which epoll
  // cannot see: the caller must read again without waiting for EPOLLIN.
  bool HasBuffered() const;
  // Sends close_notify once, without waiting for the peer's. Skipped after
  // an error (OpenSSL forbids it) or before the handshake finished.
  void Shutdown();
  // The last failure in words (OpenSSL's reason, or errno's), for logs;
  // never contains key material.
  const std::string& error() const { return error_; }

 private:
  TlsSession(std::shared_ptr<TlsServerContext> context, ssl_st* ssl)
      : context_(std::move(context)), ssl_(ssl) {}
  Io Classify(int rc);

  std::shared_ptr<TlsServerContext> context_;
  ssl_st* ssl_;
  bool handshake_done_ = false;
  bool failed_ = false;
  bool shut_down_ = false;
  std::string error_;
};

}  // namespace echelon
