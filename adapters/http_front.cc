#include "adapters/http_front.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "adapters/http1_parser.h"
#include "adapters/http1_writer.h"
#include "adapters/openai_front_json.h"

namespace echelon {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
// Bytes read per readiness callback, so one busy client cannot starve the
// others on the loop.
constexpr size_t kReadBudget = 256 * 1024;
constexpr absl::string_view kJson = "application/json";
constexpr absl::string_view kModelsPrefix = "/v1/models/";

std::string ErrnoText(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

std::string RandomHex(absl::BitGen& gen, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) {
    absl::StrAppendFormat(&s, "%02x", absl::Uniform<unsigned>(gen, 0, 256));
  }
  return s;
}

}  // namespace

class Exchange;

// One client connection. Owned by HttpFront::Impl::conns_; moved to dead_
// on close and freed at the start of the next loop callback, so code on the
// stack that closed it can still touch it.
struct Conn {
  uint64_t id = 0;
  int fd = -1;
  Http1RequestParser parser;
  std::string out;
  size_t out_off = 0;
  std::shared_ptr<Exchange> active;
  bool closed = false;
  bool close_after_flush = false;  // response said "Connection: close"
  bool stop_reading = false;       // after a parse error
  bool peer_half_closed = false;   // EPOLLRDHUP seen while not reading
  uint32_t interest = 0;
  EventLoop::TimerId idle_timer = EventLoop::kNoTimer;
  absl::Time last_progress;
  // When the first byte of a still incomplete request arrived; InfiniteFuture
  // when no partial request is buffered.
  absl::Time request_started = absl::InfiniteFuture();
  absl::Time timer_due = absl::InfiniteFuture();  // of idle_timer
  std::string scratch;  // reused for JSON before framing
  // TLS only (null on plaintext connections).
  std::unique_ptr<TlsSession> tls;
  absl::Time handshake_due = absl::InfiniteFuture();
  bool sniffed = false;               // first bytes checked for plain HTTP
  bool tls_read_wants_write = false;  // SSL_read waits for EPOLLOUT
  bool tls_write_wants_read = false;  // SSL_write waits for EPOLLIN
  // Reads plaintext that OpenSSL decrypted and buffered (epoll cannot see
  // it) on the next loop turn.
  EventLoop::TimerId tls_read_timer = EventLoop::kNoTimer;

  explicit Conn(const Http1RequestParser::Limits& limits) : parser(limits) {}
  size_t pending() const { return out.size() - out_off; }
};

class HttpFront::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(const Options& options, EpollEventLoop& loop, int listen_fd, int port)
      : options_(options), loop_(loop), listen_fd_(listen_fd), port_(port) {}

  ~Impl() {
    if (listen_fd_ >= 0) close(listen_fd_);
  }

  absl::Status StartAccepting();
  void CloseAll();
  void BeginShutdown(absl::Duration drain);
  void WaitDrained(absl::Duration limit) {
    drained_.WaitForNotificationWithTimeout(limit);
  }

  int port() const { return port_; }
  size_t connections() const { return conns_.size(); }

  // Exchange hooks.
  void WriteResponse(Conn* c, int status, absl::string_view content_type,
                     absl::string_view body, HttpHeaders extra);
  void WriteError(Conn* c, const OpenAiError& error,
                  const std::string& request_id);
  void FinishExchange(Conn* c);
  void Flush(Conn* c);
  void Close(Conn* c);
  const Options& options() const { return options_; }
  EpollEventLoop& loop() { return loop_; }
  bool keep_alive_allowed() const { return !shutting_down_.load(); }
  // Returns false when already shutting down.
  bool MarkShuttingDown() { return !shutting_down_.exchange(true); }

 private:
  void Reap() { dead_.clear(); }
  void OnAcceptable();
  void OnConnEvent(Conn* c, uint32_t events);
  void OnReadable(Conn* c);
  // TLS: the handshake step, the reader and writer that replace
  // recv/send, and the answer to plain HTTP on the TLS port.
  void OnHandshakeEvent(Conn* c, uint32_t events);
  void OnReadableTls(Conn* c);
  bool WriteTls(Conn* c);  // false when the connection closed
  void RefusePlainHttp(Conn* c);
  void ScheduleTlsRead(Conn* c);
  void SetInterest(Conn* c, uint32_t want);
  void ProcessInput(Conn* c);
  void HandleRequest(Conn* c, Http1Request& req);
  void HandleChat(Conn* c, Http1Request& req, bool keep_alive);
  void HandleModels(Conn* c, const Http1Request& req);
  void UpdateInterest(Conn* c);
  void ArmIdle(Conn* c, absl::Time when);
  void OnIdle(Conn* c);
  void StopAccepting();
  void CheckDrained();

  const Options options_;
  EpollEventLoop& loop_;
  int listen_fd_;
  const int port_;
  std::atomic<bool> shutting_down_{false};
  bool accepting_ = false;
  EventLoop::TimerId accept_retry_timer_ = EventLoop::kNoTimer;
  EventLoop::TimerId drain_timer_ = EventLoop::kNoTimer;
  absl::Notification drained_;
  uint64_t next_conn_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Conn>> dead_;
  absl::BitGen gen_;
};

// One chat completion in flight: the router's sink. Keeps itself alive
// (self_) until the router's OnComplete, even if the connection went away.
class Exchange : public ResponseSink {
 public:
  Exchange(HttpFront::Impl* front, Conn* conn, OpenAiCompletionMeta meta,
           std::string request_id, bool stream, bool include_usage,
           bool keep_alive, bool chunked)
      : front_(front),
        conn_(conn),
        meta_(std::move(meta)),
        request_id_(std::move(request_id)),
        stream_(stream),
        include_usage_(include_usage),
        keep_alive_(keep_alive),
        chunked_(chunked) {}

  void Begin(std::shared_ptr<Exchange> self, std::shared_ptr<Router> router,
             RouteRequest req) {
    self_ = std::move(self);
    router_ = std::move(router);
    handle_ = router_->Start(std::move(req), this);
  }

  // The connection is gone: stop writing and cancel the route.
  void Detach() {
    conn_ = nullptr;
    if (!done_ && handle_ != nullptr) handle_->Cancel();
  }

  bool keep_alive() const { return keep_alive_; }
  bool done() const { return done_; }

  void OnDelta(const StreamDelta& delta) override {
    if (conn_ == nullptr || done_ || !stream_) return;
    if (delta.usage) last_usage_ = *delta.usage;
    if (delta.finish_reason != FinishReason::kUnspecified) {
      finish_reason_ = delta.finish_reason;
    }
    if (!delta.tool_calls.empty()) saw_tool_calls_ = true;
    // Invisible deltas (usage, finish) before the first visible one do not
    // commit the HTTP response: a failure may still become a plain error.
    if (!delta.IsVisible()) return;
    if (!headers_sent_) StartStream();
    std::string& s = conn_->scratch;
    s.assign("data: ");
    AppendOpenAiDeltaChunk(meta_, delta, &s);
    s.append("\n\n");
    AppendBody(s);
    front_->Flush(conn_);
    if (conn_ != nullptr &&
        conn_->pending() > front_->options().max_output_buffer) {
      // The client does not keep up: stop buffering, free the upstream.
      front_->Close(conn_);  // detaches and cancels
    }
  }

  void OnComplete(absl::Status status, RoutedResponse response) override {
    std::shared_ptr<Exchange> keep = std::move(self_);
    done_ = true;
    if (conn_ == nullptr) return;
    if (!stream_) {
      if (status.ok()) {
        std::string& body = conn_->scratch;
        body.clear();
        if (!response.model.empty()) meta_.model = response.model;
        AppendOpenAiCompletionJson(meta_, response.response, &body);
        HttpHeaders extra = {{"x-request-id", request_id_}};
        if (!response.model.empty()) {
          extra.emplace_back("x-echelon-model", response.model);
        }
        if (!response.instance.empty()) {
          extra.emplace_back("x-echelon-instance", response.instance);
        }
        front_->WriteResponse(conn_, 200, kJson, body, std::move(extra));
      } else {
        front_->WriteError(conn_,
                           OpenAiErrorFromStatus(status, response.retry_after),
                           request_id_);
      }
    } else if (status.ok()) {
      if (!headers_sent_) StartStream();
      FinishReason reason = response.response.finish_reason;
      if (reason == FinishReason::kUnspecified) reason = finish_reason_;
      if (reason == FinishReason::kUnspecified) {
        reason =
            saw_tool_calls_ ? FinishReason::kToolCalls : FinishReason::kStop;
      }
      std::string& s = conn_->scratch;
      s.assign("data: ");
      AppendOpenAiFinishChunk(meta_, reason, &s);
      s.append("\n\n");
      if (include_usage_) {
        Usage usage = response.response.usage;
        if (!response.response.has_usage && last_usage_) usage = *last_usage_;
        s.append("data: ");
        AppendOpenAiUsageChunk(meta_, usage, &s);
        s.append("\n\n");
      }
      s.append("data: [DONE]\n\n");
      AppendBody(s);
      EndBody();
    } else if (!headers_sent_) {
      front_->WriteError(conn_,
                         OpenAiErrorFromStatus(status, response.retry_after),
                         request_id_);
    } else {
      // Committed stream that broke: an error event and no [DONE], so a
      // client never mistakes the partial answer for a complete one.
      std::string& s = conn_->scratch;
      s.assign("data: ");
      AppendOpenAiErrorJson(OpenAiErrorFromStatus(status, response.retry_after),
                            &s);
      s.append("\n\n");
      AppendBody(s);
      EndBody();
    }
    Conn* c = conn_;
    conn_ = nullptr;
    front_->FinishExchange(c);
  }

 private:
  void StartStream() {
    headers_sent_ = true;
    bool keep = keep_alive_ && chunked_ && front_->keep_alive_allowed();
    if (!keep) conn_->close_after_flush = true;
    AppendHttpHead(
        &conn_->out, 200, "text/event-stream",
        chunked_ ? kHttpChunked : kHttpCloseDelimited,
        {{"Cache-Control", "no-cache"}, {"x-request-id", request_id_}}, keep);
    std::string& s = conn_->scratch;
    s.assign("data: ");
    AppendOpenAiRoleChunk(meta_, &s);
    s.append("\n\n");
    AppendBody(s);
  }

  // HTTP/1.1: one chunk per piece. HTTP/1.0 has no chunked coding: the
  // stream is close-delimited.
  void AppendBody(absl::string_view piece) {
    if (chunked_) {
      AppendHttpChunk(&conn_->out, piece);
    } else {
      conn_->out.append(piece.data(), piece.size());
    }
  }
  void EndBody() {
    if (chunked_) AppendHttpLastChunk(&conn_->out);
  }

  HttpFront::Impl* front_;
  Conn* conn_;
  OpenAiCompletionMeta meta_;
  const std::string request_id_;
  const bool stream_;
  const bool include_usage_;
  const bool keep_alive_;
  const bool chunked_;
  std::shared_ptr<Exchange> self_;
  std::shared_ptr<Router> router_;  // the snapshot this request runs on
  std::shared_ptr<RequestHandle> handle_;
  bool headers_sent_ = false;
  bool done_ = false;
  bool saw_tool_calls_ = false;
  FinishReason finish_reason_ = FinishReason::kUnspecified;
  std::optional<Usage> last_usage_;
};

absl::Status HttpFront::Impl::StartAccepting() {
  absl::Status s =
      loop_.WatchFd(listen_fd_, EPOLLIN, [this](uint32_t) { OnAcceptable(); });
  if (s.ok()) accepting_ = true;
  return s;
}

void HttpFront::Impl::StopAccepting() {
  if (accept_retry_timer_ != EventLoop::kNoTimer) {
    loop_.CancelTimer(accept_retry_timer_);
    accept_retry_timer_ = EventLoop::kNoTimer;
  }
  if (listen_fd_ >= 0) {
    loop_.UnwatchFd(listen_fd_);
    close(listen_fd_);
    listen_fd_ = -1;
  }
  accepting_ = false;
}

void HttpFront::Impl::OnAcceptable() {
  Reap();
  while (listen_fd_ >= 0) {
    int fd =
        accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        // Out of descriptors: level-triggered accept would spin. Pause
        // accepting briefly; pending clients wait in the backlog.
        loop_.UnwatchFd(listen_fd_);
        accepting_ = false;
        accept_retry_timer_ = loop_.RunAfter(absl::Milliseconds(100), [this] {
          accept_retry_timer_ = EventLoop::kNoTimer;
          if (listen_fd_ >= 0 && !shutting_down_.load()) {
            StartAccepting().IgnoreError();
          }
        });
      }
      return;  // EAGAIN and anything else: wait for the next readiness
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    Http1RequestParser::Limits limits;
    limits.max_header_bytes = options_.max_header_bytes;
    limits.max_body_bytes = options_.max_request_bytes;
    auto conn = std::make_unique<Conn>(limits);
    Conn* c = conn.get();
    c->id = next_conn_id_++;
    c->fd = fd;
    c->last_progress = loop_.Now();
    c->interest = EPOLLIN | EPOLLRDHUP;
    if (options_.tls != nullptr) {
      c->tls = TlsSession::Accept(options_.tls, fd);
      if (c->tls == nullptr) {
        close(fd);
        continue;
      }
      // The client speaks first (ClientHello). No RDHUP while
      // handshaking: a half-closed peer shows up as a read error.
      c->interest = EPOLLIN;
      c->handshake_due =
          c->last_progress +
          std::min(options_.request_read_timeout, options_.idle_timeout);
    }
    absl::Status s = loop_.WatchFd(fd, c->interest, [this, c](uint32_t events) {
      OnConnEvent(c, events);
    });
    if (!s.ok()) {
      close(fd);
      continue;
    }
    conns_.emplace(c->id, std::move(conn));
    ArmIdle(c, c->tls != nullptr ? c->handshake_due
                                 : c->last_progress + options_.idle_timeout);
  }
}

void HttpFront::Impl::ArmIdle(Conn* c, absl::Time when) {
  if (c->idle_timer != EventLoop::kNoTimer) loop_.CancelTimer(c->idle_timer);
  c->idle_timer = EventLoop::kNoTimer;
  c->timer_due = when;
  if (when == absl::InfiniteFuture()) return;
  c->idle_timer = loop_.RunAt(when, [this, c] {
    c->idle_timer = EventLoop::kNoTimer;
    c->timer_due = absl::InfiniteFuture();
    OnIdle(c);
  });
}

void HttpFront::Impl::OnIdle(Conn* c) {
  Reap();
  if (c->closed) return;
  absl::Time now = loop_.Now();
  if (c->tls != nullptr && !c->tls->handshake_done()) {
    // A stalled or trickling handshake holds a socket and an SSL object.
    if (c->handshake_due <= now) {
      Close(c);
    } else {
      ArmIdle(c, c->handshake_due);
    }
    return;
  }
  if (c->active != nullptr && c->pending() == 0) {
    // Waiting for the upstream; the route's own deadline governs that.
    c->last_progress = now;
  }
  if (c->active == nullptr && c->request_started != absl::InfiniteFuture() &&
      c->request_started + options_.request_read_timeout <= now) {
    // Slow-loris guard: the request did not arrive whole in time.
    c->stop_reading = true;
    c->close_after_flush = true;
    OpenAiError e;
    e.http_status = 408;
    e.type = "invalid_request_error";
    e.message = "request not received in time";
    c->scratch.clear();
    AppendOpenAiErrorJson(e, &c->scratch);
    AppendHttpResponse(&c->out, 408, kJson, c->scratch, {},
                       /*keep_alive=*/false);
    c->request_started = absl::InfiniteFuture();
    Flush(c);
    if (c->closed) return;
  }
  absl::Time due = c->last_progress + options_.idle_timeout;
  if (due <= now) {
    Close(c);
    return;
  }
  if (c->active == nullptr && c->request_started != absl::InfiniteFuture()) {
    due = std::min(due, c->request_started + options_.request_read_timeout);
  }
  ArmIdle(c, due);
}

void HttpFront::Impl::OnConnEvent(Conn* c, uint32_t events) {
  Reap();
  if (c->closed) return;
  if (events & EPOLLERR) {
    Close(c);
    return;
  }
  if (c->tls != nullptr) {
    if (!c->tls->handshake_done()) {
      OnHandshakeEvent(c, events);
      return;
    }
    // The rare cross-waits: SSL_read needing to write (e.g. answering a
    // TLS 1.3 key update) or SSL_write needing to read.
    if ((events & EPOLLOUT) && c->tls_read_wants_write) {
      OnReadable(c);
      if (c->closed) return;
    }
    if ((events & EPOLLIN) && c->tls_write_wants_read) {
      Flush(c);
      if (c->closed) return;
    }
  }
  if (events & EPOLLOUT) {
    Flush(c);
    if (c->closed) return;
    if (c->active == nullptr) ProcessInput(c);
    if (c->closed) return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) {
    if (c->interest & EPOLLIN) {
      OnReadable(c);
    } else if ((events & EPOLLHUP) || c->active != nullptr ||
               c->pending() == 0) {
      // Not reading (backpressure) and the peer went away.
      Close(c);
    } else {
      // The peer stopped sending but may still read the answer queued for
      // it (e.g. an error for a malformed request): stop watching RDHUP,
      // which is level-triggered, and finish writing.
      c->peer_half_closed = true;
      UpdateInterest(c);
    }
  }
}

void HttpFront::Impl::OnReadable(Conn* c) {
  if (c->tls != nullptr) return OnReadableTls(c);
  char buf[kReadChunk];
  size_t budget = kReadBudget;
  while (budget > 0 && !c->closed) {
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n > 0) {
      c->parser.Feed(absl::string_view(buf, static_cast<size_t>(n)));
      c->last_progress = loop_.Now();
      budget -= std::min(budget, static_cast<size_t>(n));
      ProcessInput(c);
      continue;
    }
    if (n == 0) {
      // Peer closed (or half-closed): a route in flight is cancelled.
      Close(c);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    Close(c);
    return;
  }
  if (!c->closed) UpdateInterest(c);
}

void HttpFront::Impl::OnHandshakeEvent(Conn* c, uint32_t events) {
  if (!c->sniffed && (events & EPOLLIN)) {
    // A TLS connection starts with a handshake record (0x16); an ASCII
    // letter is a plain HTTP request sent to the HTTPS port.
    char first = 0;
    ssize_t n = recv(c->fd, &first, 1, MSG_PEEK);
    c->sniffed = n >= 0;  // a spurious wakeup (EAGAIN) looks again later
    if (n == 1 && first >= 'A' && first <= 'Z') {
      RefusePlainHttp(c);
      return;
    }
  }
  switch (c->tls->Handshake()) {
    case TlsSession::Io::kOk:
      c->last_progress = loop_.Now();
      c->handshake_due = absl::InfiniteFuture();
      ArmIdle(c, c->last_progress + options_.idle_timeout);
      // The request may already be waiting (in the socket or in OpenSSL).
      c->interest = 0;
      OnReadable(c);
      return;
    case TlsSession::Io::kWantRead:
      SetInterest(c, EPOLLIN);
      return;
    case TlsSession::Io::kWantWrite:
      SetInterest(c, EPOLLOUT);
      return;
    case TlsSession::Io::kClosed:
    case TlsSession::Io::kError:
      // Wrong or missing client certificate, no common version or cipher,
      // garbage: nothing to answer in HTTP.
      Close(c);
      return;
  }
}

void HttpFront::Impl::RefusePlainHttp(Conn* c) {
  // Drain what the client sent so that close() sends FIN, not RST (which
  // could destroy the answer before the client reads it).
  char buf[4096];
  for (int i = 0; i < 16; ++i) {
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
  }
  OpenAiError e;
  e.http_status = 400;
  e.type = "invalid_request_error";
  e.message = "this port serves HTTPS: plain HTTP was sent to it";
  std::string body;
  AppendOpenAiErrorJson(e, &body);
  std::string answer;
  AppendHttpResponse(&answer, 400, kJson, body, {}, /*keep_alive=*/false);
  // One small write into an empty socket buffer; best effort.
  ssize_t sent = send(c->fd, answer.data(), answer.size(), MSG_NOSIGNAL);
  (void)sent;
  shutdown(c->fd, SHUT_WR);
  Close(c);
}

void HttpFront::Impl::OnReadableTls(Conn* c) {
  char buf[kReadChunk];
  size_t budget = kReadBudget;
  c->tls_read_wants_write = false;
  while (budget > 0 && !c->closed) {
    size_t n = 0;
    switch (c->tls->Read(buf, sizeof(buf), &n)) {
      case TlsSession::Io::kOk:
        c->parser.Feed(absl::string_view(buf, n));
        c->last_progress = loop_.Now();
        budget -= std::min(budget, n);
        ProcessInput(c);
        continue;
      case TlsSession::Io::kWantRead:
        break;
      case TlsSession::Io::kWantWrite:
        c->tls_read_wants_write = true;
        break;
      case TlsSession::Io::kClosed:  // close_notify or EOF
      case TlsSession::Io::kError:
        Close(c);
        return;
    }
    break;
  }
  // Budget spent with decrypted bytes left inside OpenSSL: UpdateInterest
  // schedules another read, since epoll will not report them.
  if (!c->closed) UpdateInterest(c);
}

void HttpFront::Impl::ScheduleTlsRead(Conn* c) {
  if (c->tls_read_timer != EventLoop::kNoTimer) return;
  c->tls_read_timer = loop_.RunAfter(absl::ZeroDuration(), [this, c] {
    c->tls_read_timer = EventLoop::kNoTimer;
    Reap();
    if (c->closed || !(c->interest & EPOLLIN)) return;
    OnReadable(c);
  });
}

bool HttpFront::Impl::WriteTls(Conn* c) {
  c->tls_write_wants_read = false;
  while (c->pending() > 0) {
    size_t n = 0;
    switch (c->tls->Write(c->out.data() + c->out_off, c->pending(), &n)) {
      case TlsSession::Io::kOk:
        c->out_off += n;
        c->last_progress = loop_.Now();
        continue;
      case TlsSession::Io::kWantWrite:
        return true;
      case TlsSession::Io::kWantRead:
        c->tls_write_wants_read = true;
        return true;
      case TlsSession::Io::kClosed:
      case TlsSession::Io::kError:
        Close(c);
        return false;
    }
  }
  return true;
}

void HttpFront::Impl::ProcessInput(Conn* c) {
  while (!c->closed && c->active == nullptr && !c->close_after_flush &&
         !c->stop_reading && c->pending() <= options_.max_output_buffer) {
    Http1Request req;
    Http1RequestParser::Result r = c->parser.Next(&req);
    if (r == Http1RequestParser::Result::kNeedMore) {
      if (c->parser.TakeContinueRequest()) {
        c->out.append("HTTP/1.1 100 Continue\r\n\r\n");
      }
      if (c->parser.buffered() == 0) {
        c->request_started = absl::InfiniteFuture();
      } else if (c->request_started == absl::InfiniteFuture()) {
        c->request_started = loop_.Now();
        absl::Time read_due =
            c->request_started + options_.request_read_timeout;
        if (read_due < c->timer_due) ArmIdle(c, read_due);
      }
      break;
    }
    if (r == Http1RequestParser::Result::kError) {
      c->stop_reading = true;
      OpenAiError e;
      e.http_status = c->parser.error_status();
      e.type = "invalid_request_error";
      e.message = c->parser.error_message();
      c->scratch.clear();
      AppendOpenAiErrorJson(e, &c->scratch);
      c->close_after_flush = true;
      AppendHttpResponse(&c->out, e.http_status, kJson, c->scratch, {},
                         /*keep_alive=*/false);
      break;
    }
    c->request_started = absl::InfiniteFuture();
    HandleRequest(c, req);
  }
  if (!c->closed) {
    Flush(c);
  }
}

void HttpFront::Impl::HandleRequest(Conn* c, Http1Request& req) {
  bool keep_alive = req.keep_alive && !shutting_down_.load();
  auto respond = [&](int status, absl::string_view type, absl::string_view body,
                     HttpHeaders extra) {
    if (!keep_alive) c->close_after_flush = true;
    AppendHttpResponse(&c->out, status, type, body, extra, keep_alive);
  };
  auto error = [&](int status, absl::string_view type, absl::string_view code,
                   std::string message, HttpHeaders extra) {
    OpenAiError e;
    e.http_status = status;
    e.type = std::string(type);
    e.code = std::string(code);
    e.message = std::move(message);
    c->scratch.clear();
    AppendOpenAiErrorJson(e, &c->scratch);
    respond(status, kJson, c->scratch, std::move(extra));
  };
  const std::string& path = req.path;
  bool get = req.method == "GET";
  if (path == "/healthz") {
    if (!get)
      return error(405, "invalid_request_error", "", "use GET",
                   {{"Allow", "GET"}});
    return respond(200, "text/plain", "ok\n", {});
  }
  if (path == "/readyz") {
    if (!get)
      return error(405, "invalid_request_error", "", "use GET",
                   {{"Allow", "GET"}});
    bool ready = !shutting_down_.load() && options_.router() != nullptr;
    return respond(ready ? 200 : 503, "text/plain",
                   ready ? "ready\n" : "not ready\n", {});
  }
  if (path == "/v1/chat/completions") {
    if (req.method != "POST") {
      return error(405, "invalid_request_error", "",
                   "use POST for /v1/chat/completions", {{"Allow", "POST"}});
    }
    return HandleChat(c, req, keep_alive);
  }
  if (path == "/v1/models" || absl::StartsWith(path, kModelsPrefix)) {
    if (!get)
      return error(405, "invalid_request_error", "", "use GET",
                   {{"Allow", "GET"}});
    if (!keep_alive) c->close_after_flush = true;
    HandleModels(c, req);
    return;
  }
  error(404, "invalid_request_error", "unknown_url",
        absl::StrCat("Unknown request URL: ", req.method, " ", path), {});
}

void HttpFront::Impl::HandleModels(Conn* c, const Http1Request& req) {
  bool keep_alive = !c->close_after_flush;
  std::shared_ptr<const EdgePolicy> policy =
      options_.policy ? options_.policy() : nullptr;
  if (policy != nullptr && policy->auth != nullptr &&
      policy->auth->protect_status()) {
    std::string token;
    absl::Status s = AdmitHttpHeaders(*policy, req.headers, &token, nullptr);
    if (!s.ok()) {
      return WriteError(c, OpenAiErrorFromStatus(s, absl::ZeroDuration()), "");
    }
  }
  std::shared_ptr<Router> router = options_.router();
  if (router == nullptr) {
    return WriteError(c,
                      OpenAiErrorFromStatus(
                          absl::UnavailableError("no routing configuration"),
                          absl::ZeroDuration()),
                      "");
  }
  std::vector<TargetView> targets = router->ListTargets();
  c->scratch.clear();
  if (req.path == "/v1/models") {
    AppendOpenAiModelListJson(targets, &c->scratch);
  } else {
    absl::string_view id =
        absl::string_view(req.path).substr(kModelsPrefix.size());
    const TargetView* found = nullptr;
    for (const TargetView& t : targets) {
      if (t.name == id) found = &t;
    }
    if (found == nullptr) {
      return WriteError(
          c,
          OpenAiErrorFromStatus(absl::NotFoundError(absl::StrCat(
                                    "The model '", id, "' does not exist")),
                                absl::ZeroDuration()),
          "");
    }
    AppendOpenAiModelJson(*found, &c->scratch);
  }
  AppendHttpResponse(&c->out, 200, kJson, c->scratch, {}, keep_alive);
}

void HttpFront::Impl::HandleChat(Conn* c, Http1Request& req, bool keep_alive) {
  if (!keep_alive) c->close_after_flush = true;
  std::string request_id;
  if (const std::string* rid = req.Header("x-request-id");
      rid != nullptr && !rid->empty() && rid->size() <= 128) {
    request_id = *rid;
  } else {
    request_id = RandomHex(gen_, 12);
  }
  // The same admission as the gRPC front: headers and token first, before
  // the body is decoded; target, caps and the token's limits after.
  std::shared_ptr<const EdgePolicy> policy =
      options_.policy ? options_.policy() : nullptr;
  std::string token;
  if (policy != nullptr) {
    absl::Status s = AdmitHttpHeaders(*policy, req.headers, &token, nullptr);
    if (!s.ok()) {
      return WriteError(c, OpenAiErrorFromStatus(s, absl::ZeroDuration()),
                        request_id);
    }
  }
  std::string param;
  absl::StatusOr<OpenAiChatCall> call =
      ParseOpenAiChatRequest(req.body, &param);
  if (!call.ok()) {
    OpenAiError e = OpenAiErrorFromStatus(call.status(), absl::ZeroDuration());
    e.param = param;
    return WriteError(c, e, request_id);
  }
  if (policy != nullptr) {
    absl::Duration retry = absl::ZeroDuration();
    absl::Status s = AdmitRequest(*policy, token, call->model, *call->request,
                                  nullptr, &retry);
    if (!s.ok()) {
      return WriteError(c, OpenAiErrorFromStatus(s, retry), request_id);
    }
  }
  RouteRequest route;
  if (const std::string* t = req.Header("x-echelon-timeout-ms"); t != nullptr) {
    int64_t ms = 0;
    if (!absl::SimpleAtoi(*t, &ms) || ms <= 0) {
      OpenAiError e = OpenAiErrorFromStatus(
          absl::InvalidArgumentError(
              "x-echelon-timeout-ms must be a positive integer"),
          absl::ZeroDuration());
      e.param = "x-echelon-timeout-ms";
      return WriteError(c, e, request_id);
    }
    route.deadline = loop_.Now() + absl::Milliseconds(ms);
  }
  std::shared_ptr<Router> router = options_.router();
  if (router == nullptr) {
    return WriteError(c,
                      OpenAiErrorFromStatus(
                          absl::UnavailableError("no routing configuration"),
                          absl::ZeroDuration()),
                      request_id);
  }
  call->request->request_id = request_id;
  route.target = call->model;
  route.stream = call->stream;
  route.request = std::move(call->request);

  OpenAiCompletionMeta meta;
  meta.id = absl::StrCat("chatcmpl-", request_id);
  meta.created = absl::ToUnixSeconds(loop_.Now());
  meta.model = call->model;
  auto ex =
      std::make_shared<Exchange>(this, c, std::move(meta), request_id,
                                 call->stream, call->include_usage, keep_alive,
                                 /*chunked=*/req.version_minor >= 1);
  c->active = ex;
  ex->Begin(ex, std::move(router), std::move(route));
}

void HttpFront::Impl::WriteResponse(Conn* c, int status,
                                    absl::string_view content_type,
                                    absl::string_view body, HttpHeaders extra) {
  bool keep = !c->close_after_flush && keep_alive_allowed() &&
              (c->active == nullptr || c->active->keep_alive());
  if (!keep) c->close_after_flush = true;
  AppendHttpResponse(&c->out, status, content_type, body, extra, keep);
}

void HttpFront::Impl::WriteError(Conn* c, const OpenAiError& error,
                                 const std::string& request_id) {
  std::string body;
  AppendOpenAiErrorJson(error, &body);
  HttpHeaders extra;
  if (!request_id.empty()) extra.emplace_back("x-request-id", request_id);
  if (error.retry_after_seconds > 0) {
    extra.emplace_back("Retry-After", absl::StrCat(error.retry_after_seconds));
  }
  WriteResponse(c, error.http_status, kJson, body, std::move(extra));
}

void HttpFront::Impl::FinishExchange(Conn* c) {
  c->active = nullptr;
  if (c->closed) return;
  Flush(c);
  if (!c->closed) ProcessInput(c);
  if (shutting_down_.load() && !c->closed && c->active == nullptr &&
      c->pending() == 0) {
    Close(c);
  }
}

void HttpFront::Impl::Flush(Conn* c) {
  if (c->tls != nullptr) {
    if (!WriteTls(c)) return;
  } else {
    while (c->pending() > 0) {
      ssize_t n =
          send(c->fd, c->out.data() + c->out_off, c->pending(), MSG_NOSIGNAL);
      if (n > 0) {
        c->out_off += static_cast<size_t>(n);
        c->last_progress = loop_.Now();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      Close(c);  // EPIPE, ECONNRESET: the client is gone
      return;
    }
  }
  if (c->pending() == 0) {
    c->out.clear();
    c->out_off = 0;
    if (c->close_after_flush && c->active == nullptr) {
      Close(c);
      return;
    }
  } else if (c->out_off > 64 * 1024 && c->out_off > c->out.size() / 2) {
    c->out.erase(0, c->out_off);
    c->out_off = 0;
  }
  UpdateInterest(c);
}

void HttpFront::Impl::UpdateInterest(Conn* c) {
  uint32_t want = c->peer_half_closed ? 0u : uint32_t{EPOLLRDHUP};
  // Read while a request may come (or to notice a disconnect while serving
  // one), but not while a backlog of pipelined input is waiting.
  bool read =
      !c->stop_reading && c->parser.buffered() < options_.max_header_bytes +
                                                     options_.max_request_bytes;
  if (read) want |= EPOLLIN;
  if (c->pending() > 0) want |= EPOLLOUT;
  if (c->tls != nullptr) {
    if (c->tls_read_wants_write) want |= EPOLLOUT;
    if (c->tls_write_wants_read) want |= EPOLLIN;
    if (read && c->tls->HasBuffered()) ScheduleTlsRead(c);
  }
  SetInterest(c, want);
}

void HttpFront::Impl::SetInterest(Conn* c, uint32_t want) {
  if (want != c->interest) {
    c->interest = want;
    if (!loop_.ModifyFd(c->fd, want).ok()) Close(c);
  }
}

void HttpFront::Impl::Close(Conn* c) {
  if (c->closed) return;
  c->closed = true;
  if (c->tls != nullptr) {
    c->tls->Shutdown();  // close_notify, when the session is still sound
    if (c->tls_read_timer != EventLoop::kNoTimer) {
      loop_.CancelTimer(c->tls_read_timer);
      c->tls_read_timer = EventLoop::kNoTimer;
    }
  }
  loop_.UnwatchFd(c->fd);
  close(c->fd);
  c->fd = -1;
  ArmIdle(c, absl::InfiniteFuture());  // cancels the timer
  if (c->active != nullptr) {
    std::shared_ptr<Exchange> ex = std::move(c->active);
    ex->Detach();
  }
  std::string().swap(c->out);
  c->out_off = 0;
  auto it = conns_.find(c->id);
  if (it != conns_.end()) {
    dead_.push_back(std::move(it->second));
    conns_.erase(it);
  }
  CheckDrained();
}

void HttpFront::Impl::CheckDrained() {
  if (shutting_down_.load() && conns_.empty() && !drained_.HasBeenNotified()) {
    if (drain_timer_ != EventLoop::kNoTimer) {
      loop_.CancelTimer(drain_timer_);
      drain_timer_ = EventLoop::kNoTimer;
    }
    drained_.Notify();
  }
}

void HttpFront::Impl::BeginShutdown(absl::Duration drain) {
  StopAccepting();
  std::vector<Conn*> idle;
  for (auto& [id, conn] : conns_) {
    if (conn->active == nullptr && conn->pending() == 0) {
      idle.push_back(conn.get());
    } else {
      conn->close_after_flush = true;
    }
  }
  for (Conn* c : idle) Close(c);
  CheckDrained();
  if (!conns_.empty() && drain_timer_ == EventLoop::kNoTimer) {
    drain_timer_ = loop_.RunAfter(drain, [this] {
      drain_timer_ = EventLoop::kNoTimer;
      CloseAll();
    });
  }
}

void HttpFront::Impl::CloseAll() {
  StopAccepting();
  if (drain_timer_ != EventLoop::kNoTimer) {
    loop_.CancelTimer(drain_timer_);
    drain_timer_ = EventLoop::kNoTimer;
  }
  std::vector<Conn*> all;
  for (auto& [id, conn] : conns_) all.push_back(conn.get());
  for (Conn* c : all) Close(c);
  Reap();
  if (shutting_down_.load() && !drained_.HasBeenNotified()) drained_.Notify();
}

absl::Status HttpFront::ParseAddress(absl::string_view address,
                                     Options* options) {
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP address '", address, "' is not host:port"));
  }
  absl::string_view host = address.substr(0, colon);
  absl::string_view port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int p = 0;
  if (!absl::SimpleAtoi(port, &p) || p < 0 || p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP address '", address, "' has a bad port"));
  }
  options->bind_address = host.empty() ? "0.0.0.0" : std::string(host);
  options->port = p;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HttpFront>> HttpFront::Create(
    const Options& options, EpollEventLoop& loop) {
  if (!options.router) {
    return absl::InvalidArgumentError("HttpFront needs a router getter");
  }
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError("HTTP port out of range");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port_text = absl::StrCat(options.port);
  int rc = getaddrinfo(options.bind_address.c_str(), port_text.c_str(), &hints,
                       &res);
  if (rc != 0 || res == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve HTTP bind address '", options.bind_address,
                     "': ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string last_error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
      last_error = ErrnoText("socket");
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        listen(fd, options.listen_backlog) == 0) {
      break;
    }
    last_error = ErrnoText("bind/listen");
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ",
                                               options.bind_address, ":",
                                               options.port, ": ", last_error));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  int port = bound.ss_family == AF_INET6
                 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                 : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  auto impl = std::make_shared<Impl>(options, loop, fd, port);
  absl::Status started;
  if (loop.InLoopThread()) {
    started = impl->StartAccepting();
  } else {
    absl::Notification done;
    loop.Post([&] {
      started = impl->StartAccepting();
      done.Notify();
    });
    done.WaitForNotification();
  }
  if (!started.ok()) return started;
  return std::unique_ptr<HttpFront>(new HttpFront(std::move(impl)));
}

HttpFront::HttpFront(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpFront::~HttpFront() { impl_->CloseAll(); }

int HttpFront::port() const { return impl_->port(); }

size_t HttpFront::connections() const { return impl_->connections(); }

void HttpFront::Shutdown(absl::Duration drain) {
  std::shared_ptr<Impl> impl = impl_;
  if (!impl->MarkShuttingDown()) return;
  if (impl->loop().InLoopThread()) {
    impl->BeginShutdown(drain);
    return;
  }
  impl->loop().Post([impl, drain] { impl->BeginShutdown(drain); });
  // If the loop is no longer running the task never runs; do not hang.
  impl->WaitDrained(drain + absl::Seconds(1));
}

}  // namespace echelon
