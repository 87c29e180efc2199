// The OpenAI-compatible HTTP front of Echelon: POST /v1/chat/completions
// (JSON and SSE streaming), GET /v1/models[/{id}], GET /healthz, GET
// /readyz. It serves the same Router as the gRPC front and runs on the same
// EpollEventLoop as the upstream HTTP client, so a request's socket, its
// routing state and its upstream transfer are all handled on one thread
// without locks or hand-offs.
//
// Design: a small HTTP/1.1 server of our own (adapters/http1_parser.h,
// adapters/http1_writer.h). Non-blocking accept and sockets, level-triggered
// epoll through EpollEventLoop::WatchFd, incremental parsing, keep-alive
// with in-order pipelining (one request served at a time per connection,
// later ones wait in the parser buffer), TCP_NODELAY, one idle timer per
// connection, no thread per connection.
//
// TLS (optional, Options::tls): the same sockets carry OpenSSL sessions
// (adapters/http_tls.h). The handshake is a state machine driven by epoll
// readiness (SSL_ERROR_WANT_READ/WANT_WRITE decide the next interest) and
// must finish within min(request_read_timeout, idle_timeout) of the
// accept, else the connection is closed; SSL_read/SSL_write replace
// recv/send; a close the front decides on sends close_notify first. A
// plaintext HTTP request on a TLS port gets a plaintext 400 and is closed.
// With Options::tls null nothing of this runs: plaintext connections take
// the same recv/send path, without extra copies, as before TLS existed.
//
// Why not an off-the-shelf HTTP server:
// - libevent's evhttp brings its own event_base loop: we would run two loops
//   (or drive libcurl from evhttp's), and hand every request and every SSE
//   chunk across threads. Its streaming API (evhttp_send_reply_chunk) has no
//   output-buffer bound or drain callback short of poking at bufferevents,
//   which is exactly the slow-reader control we need.
// - libmicrohttpd runs its own threads (or an external select/epoll mode
//   that is awkward to combine with timers) and produces streamed bodies by
//   pulling from a content-reader callback; a push-style SSE from router
//   callbacks needs suspend/resume juggling per chunk.
// - Boost.Beast (Boost.Asio) would need an io_context as THE event loop:
//   either we rewrite EpollEventLoop and the libcurl integration on Asio or
//   run two reactors. It also adds Boost headers and build time to a
//   Debian-only, offline Bazel build.
// What we need from HTTP is small (Content-Length request bodies from JSON
// clients, fixed or chunked responses, keep-alive, caps and timeouts), and
// owning it keeps backpressure and cancellation exact: when a stream's
// output buffer passes max_output_buffer the upstream request is cancelled
// and the connection closed; when a client disconnects, the route is
// cancelled at once.
//
// Measured (wrk -t1 -c64, 6-8 s runs, loopback, -c opt / -O2, on a shared
// 2-vCPU VM with load average ~10, so +-40% noise; two rounds each):
//   GET /healthz, trivial answer:   this front 19-24k req/s (p50 ~0.9 ms),
//     evhttp 7.5-15.6k, libmicrohttpd (epoll, one thread) 13-18.5k.
//   POST /v1/chat/completions:      this front 12-19k req/s with the full
//     path (RapidJSON parse -> ChatRequest -> router -> completion JSON;
//     tests/adapters/http_front_bench.cc); evhttp 7.7-9.2k and
//     libmicrohttpd 15-21k returning a canned body without parsing it.
//   SSE stream of 8 deltas + finish + [DONE]: ~5k streams/s.
//   TLS (2026-11-30, -c opt, wrk -t1 -c32 5 s, keep-alive; noisy shared
//   box): plaintext healthz 55-83k req/s and chat 45-61k both before and
//   after TLS support was added (the quietest pair: 81.6k vs 82.8k, 61.4k
//   vs 60.5k); HTTPS (TLS 1.3) 40-53k healthz, ~33k chat.
// So the HTTP layer is not the bottleneck either way; the choice is about
// living on one loop with exact backpressure and cancellation.
//
// Threading: Create() may run on any thread while the loop runs (it waits
// for the registration on the loop). Shutdown() is thread-safe. The
// destructor must run on the loop thread or after the loop stopped.
// Everything else happens on the loop thread.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "adapters/auth_policy.h"
#include "adapters/event_loop.h"
#include "adapters/http_tls.h"
#include "domain/router.h"

namespace echelon {

class HttpFront {
 public:
  struct Options {
    // TCP port; 0 picks a free one (read it back with port()).
    int port = 8080;
    // Numeric IPv4/IPv6 address or host name to bind.
    std::string bind_address = "0.0.0.0";
    // Largest accepted request body (Content-Length); larger -> 413.
    size_t max_request_bytes = 8 * 1024 * 1024;
    // Largest request line + header section; larger -> 431.
    size_t max_header_bytes = 64 * 1024;
    // A connection with no bytes moving for this long is closed: an idle
    // keep-alive connection, a half-sent request, or a reader that stopped
    // reading. Waiting on the upstream does not count as idle (the route
    // has its own deadline). InfiniteDuration disables the timer.
    absl::Duration idle_timeout = absl::Seconds(60);
    // A request must arrive whole within this from its first byte, else
    // 408 and close (guards against clients trickling bytes to hold a
    // connection). InfiniteDuration disables it.
    absl::Duration request_read_timeout = absl::Seconds(30);
    // Bytes queued for a slow client. Above it the connection stops reading
    // further (pipelined) requests; a stream that goes above it is
    // cancelled upstream and the connection closed.
    size_t max_output_buffer = 1024 * 1024;
    // listen(2) backlog.
    int listen_backlog = 1024;
    // The current router (may return null before the first config is
    // installed: chat and models answer 503, /readyz says 503). Called on
    // the loop thread once per request. Required.
    std::function<std::shared_ptr<Router>()> router;
    // Auth and request caps of the current config, shared with the gRPC
    // front; a null getter or result means none. Loop thread, once per
    // request.
    std::function<std::shared_ptr<const EdgePolicy>()> policy;
    // Serve HTTPS (and require client certificates when the context has a
    // client CA); null serves plaintext. See TlsServerContext::Create.
    std::shared_ptr<TlsServerContext> tls;
  };

  // Parses "host:port", "[v6]:port" or ":port" into bind_address and port.
  // Errors: INVALID_ARGUMENT.
  static absl::Status ParseAddress(absl::string_view address, Options* options);

  // Binds, listens and starts accepting on `loop`, which must be running
  // (or the caller is on its thread). Errors: INVALID_ARGUMENT (no router
  // getter, bad address), UNAVAILABLE (cannot bind/listen).
  static absl::StatusOr<std::unique_ptr<HttpFront>> Create(
      const Options& options, EpollEventLoop& loop);

  // Closes the listener and every connection; routes in flight are
  // cancelled. Loop thread, or after the loop stopped.
  ~HttpFront();

  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  // The bound port.
  int port() const;

  // Stops accepting; /readyz answers 503 from now on (on connections that
  // are still open); idle connections close, busy ones close after their
  // current response. Requests still running at now + `drain` are
  // cancelled and their connections closed. Thread-safe; from another
  // thread it blocks until every connection is closed (at most about
  // `drain`); on the loop thread it returns at once.
  void Shutdown(absl::Duration drain);

  // Open connections. Loop thread only (for tests and metrics).
  size_t connections() const;

  class Impl;

 private:
  explicit HttpFront(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace echelon
