#include "tools/upstream_sim/sim_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "tools/upstream_sim/http_request_parser.h"
#include "tools/upstream_sim/scenario.h"

namespace echelon {
namespace sim {
namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// The tool call every simulated tool-using answer makes, and the fragments
// its arguments are streamed in.
constexpr std::string_view kToolArguments = R"({"city":"Paris"})";
constexpr std::string_view kToolArgumentPieces[] = {R"({"city")", R"(:"Par)",
                                                    R"(is"})"};
constexpr int64_t kToolPieces = 3;
constexpr int64_t kContextWindow = 8192;
// A stream pauses when this much output is waiting for the client.
constexpr size_t kMaxBufferedOutput = 256 * 1024;

enum class Dialect { kOpenAi, kAnthropic };

const char* Reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 529:
      return "Overloaded";
    default:
      return "Status";
  }
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

std::string_view View(const rapidjson::StringBuffer& b) {
  return std::string_view(b.GetString(), b.GetSize());
}

// Total text bytes of a message "content": a string or an array of blocks
// with "text" fields. Sets *call_tool when the text contains CALL_TOOL.
size_t ContentBytes(const rapidjson::Value& content, bool* call_tool) {
  size_t bytes = 0;
  auto text = [&](const rapidjson::Value& v) {
    std::string_view s(v.GetString(), v.GetStringLength());
    bytes += s.size();
    if (call_tool != nullptr && s.find("CALL_TOOL") != std::string_view::npos) {
      *call_tool = true;
    }
  };
  if (content.IsString()) {
    text(content);
  } else if (content.IsArray()) {
    for (const auto& block : content.GetArray()) {
      if (block.IsString()) {
        text(block);
      } else if (block.IsObject()) {
        auto it = block.FindMember("text");
        if (it != block.MemberEnd() && it->value.IsString()) text(it->value);
        auto c = block.FindMember("content");  // tool_result blocks
        if (c != block.MemberEnd()) bytes += ContentBytes(c->value, nullptr);
      }
    }
  }
  return bytes;
}

struct KeyState {
  int64_t attempts = 0;
  int64_t active = 0;
  int64_t max_active = 0;
  int64_t completed = 0;
  int64_t client_closed = 0;
  int64_t server_closed = 0;
  int64_t auth_header_seen = 0;
  int64_t last_start_ms = -1;
  int64_t last_close_ms = -1;
  uint64_t latest_request = 0;  // id of the newest request of this key
  int64_t fault_attempts = 0;   // since the last reset/override (fail_first)
  int64_t flap_start_ms = -1;   // first request since reset/override
};

// The request in progress on a connection. Reused across requests so that
// its strings keep their capacity.
struct Exchange {
  uint64_t id = 0;
  bool active = false;      // counted in KeyState::active
  KeyState* key = nullptr;  // valid while active (reset keeps active keys)
  std::string key_name;
  Dialect dialect = Dialect::kOpenAi;
  bool stream = false;
  bool include_usage = false;
  bool tool = false;
  std::string model;
  std::string tool_name;
  Behaviour b;
  int64_t tokens = 0;
  bool truncated = false;
  int64_t prompt_tokens = 1;
  int error_status = 0;    // nonzero: answer with this error
  std::string error_kind;  // fault name selecting the error body
  int64_t pieces = 0;      // stream chunks carrying content
  int64_t pos = 0;         // chunks sent so far
  bool malformed_sent = false;
};

enum class Phase {
  kIdle,       // waiting for a request
  kWaiting,    // timer pending before the answer (latency_ms)
  kStreaming,  // timer pending before the next chunk
  kSilent,     // hang / stall: nothing more will be sent
  kFinishing,  // last bytes queued; completes when the buffer drains
  kBlocked,    // stream paused until the client drains the output buffer
};

struct Conn {
  int fd = -1;
  uint32_t serial = 0;
  bool dead = false;
  bool want_write = false;  // EPOLLOUT registered
  bool continue_sent = false;
  bool keep_alive = true;
  bool close_after_flush = false;
  bool chunked = true;  // stream framing; HTTP/1.0 streams are close-delimited
  Phase phase = Phase::kIdle;
  HttpRequestParser parser;
  std::string out;
  size_t out_off = 0;
  Exchange ex;
};

struct Timer {
  int64_t when_us;
  uint64_t seq;
  int fd;
  uint32_t serial;
  uint64_t request_id;
  bool operator>(const Timer& o) const {
    return when_us != o.when_us ? when_us > o.when_us : seq > o.seq;
  }
};

enum class End { kCompleted, kClientClosed, kServerClosed };

}  // namespace

class SimServer::Impl {
 public:
  Impl(Scenario default_scenario, int listen_fd, int port)
      : default_scenario_(std::move(default_scenario)),
        listen_fd_(listen_fd),
        port_(port),
        start_(std::chrono::steady_clock::now()) {}

  ~Impl() {
    for (auto& c : conns_) {
      if (c != nullptr) close(c->fd);
    }
    if (epoll_fd_ >= 0) close(epoll_fd_);
    if (wake_fd_ >= 0) close(wake_fd_);
    close(listen_fd_);
  }

  absl::Status Init() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0) {
      return absl::InternalError(
          absl::StrCat("epoll/eventfd: ", std::strerror(errno)));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<uint32_t>(listen_fd_);
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    ev.data.u64 = static_cast<uint32_t>(wake_fd_);
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    return absl::OkStatus();
  }

  int port() const { return port_; }

  void Stop() {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof(one));
    (void)n;
  }

  absl::Status Run() {
    epoll_event events[256];
    while (!stopping_) {
      int n = epoll_wait(epoll_fd_, events, 256, NextTimeoutMs());
      if (n < 0) {
        if (errno == EINTR) continue;
        return absl::InternalError(
            absl::StrCat("epoll_wait: ", std::strerror(errno)));
      }
      for (int i = 0; i < n; ++i) {
        uint64_t data = events[i].data.u64;
        int fd = static_cast<int>(data & 0xffffffffu);
        uint32_t serial = static_cast<uint32_t>(data >> 32);
        if (serial == 0 && fd == listen_fd_) {
          Accept();
        } else if (serial == 0 && fd == wake_fd_) {
          stopping_ = true;
        } else {
          Conn* c = Lookup(fd, serial);
          if (c != nullptr) OnEvent(c, events[i].events);
        }
      }
      RunTimers();
      graveyard_.clear();
    }
    return absl::OkStatus();
  }

 private:
  // ---- time and timers -------------------------------------------------

  int64_t NowUs() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now() - start_)
        .count();
  }
  int64_t NowMs() const { return NowUs() / 1000; }

  int NextTimeoutMs() {
    if (timers_.empty()) return -1;
    int64_t wait_us = timers_.top().when_us - NowUs();
    if (wait_us <= 0) return 0;
    return static_cast<int>((wait_us + 999) / 1000);
  }

  void Schedule(Conn* c, int64_t delay_ms) {
    timers_.push(Timer{NowUs() + delay_ms * 1000, ++timer_seq_, c->fd,
                       c->serial, c->ex.id});
  }

  void RunTimers() {
    int64_t now = NowUs();
    while (!timers_.empty() && timers_.top().when_us <= now) {
      Timer t = timers_.top();
      timers_.pop();
      Conn* c = Lookup(t.fd, t.serial);
      if (c == nullptr || c->ex.id != t.request_id) continue;
      if (c->phase == Phase::kWaiting) {
        Answer(c);
      } else if (c->phase == Phase::kStreaming) {
        StreamAdvance(c);
      }
      if (!c->dead) Pump(c);
    }
  }

  // ---- connections -------------------------------------------------------

  Conn* Lookup(int fd, uint32_t serial) {
    if (fd < 0 || static_cast<size_t>(fd) >= conns_.size()) return nullptr;
    Conn* c = conns_[fd].get();
    if (c == nullptr || c->serial != serial || c->dead) return nullptr;
    return c;
  }

  void Accept() {
    for (;;) {
      int fd =
          accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or out of fds: retry on the next event
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      if (static_cast<size_t>(fd) >= conns_.size()) conns_.resize(fd + 64);
      auto conn = std::make_unique<Conn>();
      conn->fd = fd;
      if (++serial_ == 0) ++serial_;
      conn->serial = serial_;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = (static_cast<uint64_t>(conn->serial) << 32) |
                    static_cast<uint32_t>(fd);
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
      conns_[fd] = std::move(conn);
    }
  }

  void SetWantWrite(Conn* c, bool want) {
    if (c->want_write == want) return;
    c->want_write = want;
    epoll_event ev{};
    ev.events =
        EPOLLIN | EPOLLRDHUP | (want ? static_cast<uint32_t>(EPOLLOUT) : 0u);
    ev.data.u64 =
        (static_cast<uint64_t>(c->serial) << 32) | static_cast<uint32_t>(c->fd);
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
  }

  void OnEvent(Conn* c, uint32_t events) {
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      char buf[16384];
      for (;;) {
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n > 0) {
          c->parser.Feed(std::string_view(buf, static_cast<size_t>(n)));
          if (static_cast<size_t>(n) < sizeof(buf)) break;
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == EINTR) continue;
        Close(c, End::kClientClosed);  // EOF or error
        return;
      }
    }
    if (events & EPOLLOUT) {
      Flush(c);
      if (c->dead) return;
      if (c->phase == Phase::kBlocked && !c->want_write) {
        c->phase = Phase::kStreaming;
        StreamAdvance(c);
        if (c->dead) return;
      }
    }
    Pump(c);
  }

  // Handles every complete request buffered on an idle connection.
  void Pump(Conn* c) {
    while (!c->dead && c->phase == Phase::kIdle) {
      switch (c->parser.Feed(std::string_view())) {
        case HttpRequestParser::Result::kNeedMore:
          if (c->parser.headers_done() && c->parser.expects_continue() &&
              !c->continue_sent) {
            c->continue_sent = true;
            c->out.append("HTTP/1.1 100 Continue\r\n\r\n");
            Flush(c);
          }
          return;
        case HttpRequestParser::Result::kError:
          c->keep_alive = false;
          SendPlain(c, c->parser.error_status(), c->parser.error_message());
          return;
        case HttpRequestParser::Result::kComplete:
          HandleRequest(c);
          break;
      }
    }
  }

  // Ends the exchange's accounting once.
  void EndExchange(Conn* c, End how) {
    Exchange& ex = c->ex;
    if (!ex.active) return;
    ex.active = false;
    KeyState* k = ex.key;
    --k->active;
    switch (how) {
      case End::kCompleted:
        ++k->completed;
        break;
      case End::kClientClosed:
        ++k->client_closed;
        break;
      case End::kServerClosed:
        ++k->server_closed;
        break;
    }
  }

  void Close(Conn* c, End how, bool rst = false) {
    if (c->dead) return;
    EndExchange(c, how);
    if (!c->ex.key_name.empty()) {
      auto it = keys_.find(c->ex.key_name);
      if (it != keys_.end() && it->second.latest_request == c->ex.id) {
        it->second.last_close_ms = NowMs();
      }
    }
    if (rst) {
      linger l{1, 0};
      setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
    close(c->fd);
    c->dead = true;
    graveyard_.push_back(std::move(conns_[c->fd]));
  }

  void Flush(Conn* c) {
    while (c->out_off < c->out.size()) {
      ssize_t n = send(c->fd, c->out.data() + c->out_off,
                       c->out.size() - c->out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c->out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        SetWantWrite(c, true);
        return;
      }
      Close(c, End::kClientClosed);
      return;
    }
    c->out.clear();
    c->out_off = 0;
    SetWantWrite(c, false);
    if (c->close_after_flush) {
      EndExchange(c, End::kCompleted);
      Close(c, End::kCompleted);
      return;
    }
    if (c->phase == Phase::kFinishing) {
      EndExchange(c, End::kCompleted);
      c->phase = Phase::kIdle;
      c->parser.Next();
      c->continue_sent = false;
    }
  }

  // Queues the last bytes of an answer; the exchange completes on drain.
  void Finish(Conn* c, bool close_after) {
    c->phase = Phase::kFinishing;
    if (close_after || !c->keep_alive) c->close_after_flush = true;
    Flush(c);
  }

  // ---- HTTP output -------------------------------------------------------

  void AppendHead(Conn* c, int status, std::string_view content_type,
                  int64_t content_length, bool keep_alive,
                  std::string_view extra_headers = {}) {
    std::string& o = c->out;
    absl::StrAppend(&o, "HTTP/1.1 ", status, " ", Reason(status),
                    "\r\nContent-Type: ", std::string(content_type), "\r\n");
    if (content_length >= 0) {
      absl::StrAppend(&o, "Content-Length: ", content_length, "\r\n");
    } else {
      if (c->chunked) o.append("Transfer-Encoding: chunked\r\n");
      o.append("Cache-Control: no-cache\r\n");
    }
    o.append(keep_alive ? "Connection: keep-alive\r\n"
                        : "Connection: close\r\n");
    o.append(extra_headers.data(), extra_headers.size());
    o.append("\r\n");
  }

  void SendBody(Conn* c, int status, std::string_view content_type,
                std::string_view body, std::string_view extra_headers = {}) {
    AppendHead(c, status, content_type, static_cast<int64_t>(body.size()),
               c->keep_alive, extra_headers);
    c->out.append(body.data(), body.size());
    Finish(c, false);
  }

  void SendPlain(Conn* c, int status, std::string_view message) {
    json_.Clear();
    JsonWriter w(json_);
    w.StartObject();
    w.Key("error");
    w.StartObject();
    w.Key("message");
    w.String(message.data(), static_cast<rapidjson::SizeType>(message.size()));
    w.Key("type");
    w.String(status >= 500 ? "server_error" : "invalid_request_error");
    w.EndObject();
    w.EndObject();
    SendBody(c, status, "application/json", View(json_));
  }

  // One SSE event as one HTTP chunk.
  void AppendSse(Conn* c, std::string_view event, std::string_view data) {
    size_t size = 6 + data.size() + 2;
    if (!event.empty()) size += 7 + event.size() + 1;
    std::string& o = c->out;
    if (c->chunked) {
      char hex[20];
      int n = snprintf(hex, sizeof(hex), "%zx\r\n", size);
      o.append(hex, static_cast<size_t>(n));
    }
    if (!event.empty()) {
      o.append("event: ");
      o.append(event.data(), event.size());
      o.append("\n");
    }
    o.append("data: ");
    o.append(data.data(), data.size());
    o.append(c->chunked ? "\n\n\r\n" : "\n\n");
  }

  void AppendLastChunk(Conn* c) {
    if (c->chunked) c->out.append("0\r\n\r\n");
  }

  // ---- requests ----------------------------------------------------------

  void HandleRequest(Conn* c) {
    const HttpRequest& req = c->parser.request();
    c->keep_alive = req.KeepAlive();
    c->close_after_flush = false;
    c->ex.error_status = 0;
    std::string_view path = req.Path();
    if (path.size() >= 2 && path[0] == '/' && path[1] == '_') {
      HandleControl(c, req, path);
      return;
    }
    if (path == "/healthz" || path == "/health") {
      SendBody(c, 200, "text/plain", "ok\n");
      return;
    }
    std::string_view path_scenario;
    if (path.substr(0, 3) == "/s/") {
      std::string_view rest = path.substr(3);
      size_t slash = rest.find('/');
      path_scenario = rest.substr(0, slash);
      path = slash == std::string_view::npos ? std::string_view()
                                             : rest.substr(slash);
    }
    Dialect dialect;
    if (EndsWith(path, "/chat/completions")) {
      dialect = Dialect::kOpenAi;
    } else if (EndsWith(path, "/messages")) {
      dialect = Dialect::kAnthropic;
    } else if (EndsWith(path, "/models") && req.method == "GET") {
      SendBody(c, 200, "application/json",
               R"({"object":"list","data":[{"id":"gpt-sim","object":"model",)"
               R"("owned_by":"upstream_sim"}]})");
      return;
    } else {
      SendPlain(c, 404, absl::StrCat("no route for ", std::string(path)));
      return;
    }
    if (req.method != "POST") {
      SendPlain(c, 405, "use POST");
      return;
    }
    HandleCompletion(c, req, dialect, path_scenario);
  }

  // Reads what the answer depends on from the JSON body. *max_tokens is -1
  // when the request sets no limit.
  absl::Status ParseBody(const HttpRequest& req, Exchange& ex, bool* call_tool,
                         int64_t* max_tokens) {
    rapidjson::MemoryPoolAllocator<> alloc(parse_buffer_,
                                           sizeof(parse_buffer_));
    rapidjson::GenericDocument<rapidjson::UTF8<>,
                               rapidjson::MemoryPoolAllocator<>>
        doc(&alloc);
    doc.Parse(req.body.data(), req.body.size());
    if (doc.HasParseError() || !doc.IsObject()) {
      return absl::InvalidArgumentError("request body is not a JSON object");
    }
    auto str = [&doc](const char* name) -> std::string_view {
      auto it = doc.FindMember(name);
      if (it == doc.MemberEnd() || !it->value.IsString()) return {};
      return std::string_view(it->value.GetString(),
                              it->value.GetStringLength());
    };
    std::string_view model = str("model");
    ex.model.assign(model.data(), model.size());
    if (ex.model.empty()) ex.model = "default";
    ex.stream = false;
    auto stream = doc.FindMember("stream");
    if (stream != doc.MemberEnd() && stream->value.IsBool()) {
      ex.stream = stream->value.GetBool();
    }
    ex.include_usage = false;
    auto options = doc.FindMember("stream_options");
    if (options != doc.MemberEnd() && options->value.IsObject()) {
      auto usage = options->value.FindMember("include_usage");
      if (usage != options->value.MemberEnd() && usage->value.IsBool()) {
        ex.include_usage = usage->value.GetBool();
      }
    }
    *max_tokens = -1;
    for (const char* name : {"max_tokens", "max_completion_tokens"}) {
      auto it = doc.FindMember(name);
      if (it != doc.MemberEnd() && it->value.IsInt64() &&
          it->value.GetInt64() >= 0) {
        *max_tokens = it->value.GetInt64();
      }
    }
    size_t bytes = 0;
    auto system = doc.FindMember("system");
    if (system != doc.MemberEnd())
      bytes += ContentBytes(system->value, nullptr);
    auto messages = doc.FindMember("messages");
    if (messages != doc.MemberEnd()) {
      if (!messages->value.IsArray()) {
        return absl::InvalidArgumentError("messages must be an array");
      }
      for (const auto& m : messages->value.GetArray()) {
        if (!m.IsObject()) continue;
        auto content = m.FindMember("content");
        if (content == m.MemberEnd()) continue;
        auto role = m.FindMember("role");
        bool user = role != m.MemberEnd() && role->value.IsString() &&
                    std::string_view(role->value.GetString()) == "user";
        bool mentions = false;
        bytes += ContentBytes(content->value, &mentions);
        if (user) *call_tool = mentions;  // the last user message decides
      }
    }
    ex.prompt_tokens = static_cast<int64_t>((bytes + 3) / 4);
    if (ex.prompt_tokens < 1) ex.prompt_tokens = 1;
    ex.tool_name.clear();
    auto tools = doc.FindMember("tools");
    if (tools != doc.MemberEnd() && tools->value.IsArray() &&
        !tools->value.Empty() && tools->value[0].IsObject()) {
      const rapidjson::Value& t = tools->value[0];
      const rapidjson::Value* holder = &t;
      auto fn = t.FindMember("function");
      if (fn != t.MemberEnd() && fn->value.IsObject()) holder = &fn->value;
      auto name = holder->FindMember("name");
      if (name != holder->MemberEnd() && name->value.IsString()) {
        ex.tool_name.assign(name->value.GetString(),
                            name->value.GetStringLength());
      } else {
        ex.tool_name = "tool";
      }
    }
    return absl::OkStatus();
  }

  void HandleCompletion(Conn* c, const HttpRequest& req, Dialect dialect,
                        std::string_view path_scenario) {
    Exchange& ex = c->ex;
    ex.dialect = dialect;
    ex.b = Behaviour();
    ex.prompt_tokens = 1;
    bool call_tool = false;
    int64_t max_tokens = -1;
    {
      absl::Status s = ParseBody(req, ex, &call_tool, &max_tokens);
      if (!s.ok()) {
        SendError(c, 400, "invalid_request", std::string(s.message()));
        return;
      }
    }

    // Scenario sources other than the runtime override, in order.
    Scenario merged = default_scenario_;
    Scenario late;  // path, model suffix, header: they beat the override
    if (!path_scenario.empty()) {
      absl::StatusOr<std::string> decoded = UrlDecode(path_scenario);
      if (!decoded.ok()) {
        SendError(c, 400, "invalid_request",
                  absl::StrCat("path scenario: ", decoded.status().message()));
        return;
      }
      if (!MergeSource(c, *decoded, "path scenario", &late)) return;
    }
    size_t at = ex.model.find('@');
    if (at != std::string::npos) {
      if (!MergeSource(c, std::string_view(ex.model).substr(at + 1),
                       "model scenario", &late)) {
        return;
      }
    }
    if (const std::string* h = req.FindHeader("x-sim-scenario")) {
      if (!MergeSource(c, *h, "X-Sim-Scenario", &late)) return;
    }
    {
      Scenario probe = merged;
      probe.MergeFrom(late);
      ex.key_name = probe.key.value_or(ex.model);
      if (ex.key_name.empty()) ex.key_name = ex.model;  // never empty
    }
    auto override_it = overrides_.find(ex.key_name);
    if (override_it != overrides_.end()) {
      Scenario o = override_it->second;
      o.key.reset();  // an override cannot move itself to another key
      merged.MergeFrom(o);
    }
    merged.MergeFrom(late);
    ex.b = Resolve(merged);

    // Accounting.
    ex.id = ++request_seq_;
    ++total_attempts_;
    KeyState& k = keys_[ex.key_name];
    ex.key = &k;
    ex.active = true;
    ++k.attempts;
    ++k.fault_attempts;
    ++k.active;
    if (k.active > k.max_active) k.max_active = k.active;
    int64_t now_ms = NowMs();
    k.last_start_ms = now_ms;
    k.latest_request = ex.id;
    if (req.FindHeader("authorization") != nullptr ||
        req.FindHeader("x-api-key") != nullptr) {
      ++k.auth_header_seen;
    }

    // Content plan.
    ex.tokens = ex.b.tokens;
    ex.truncated = false;
    if (max_tokens >= 0 && max_tokens < ex.tokens) {
      ex.tokens = max_tokens;
      ex.truncated = true;
    }
    ex.tool = !ex.tool_name.empty() && (ex.b.tool_call || call_tool);
    if (ex.tool) {
      ex.truncated = false;
      ex.pieces = kToolPieces + (dialect == Dialect::kOpenAi ? 1 : 0);
    } else {
      ex.pieces = ex.tokens;
    }
    ex.pos = 0;
    ex.malformed_sent = false;

    // Faults decided up front.
    const Behaviour& b = ex.b;
    if (b.flap_ms > 0) {
      if (k.flap_start_ms < 0) k.flap_start_ms = now_ms;
      if (now_ms - k.flap_start_ms < b.flap_ms) {
        if (b.flap_reset) {
          Close(c, End::kServerClosed, /*rst=*/true);
          return;
        }
        ex.error_status = 503;
        ex.error_kind = "flap";
      }
    }
    if (ex.error_status == 0 && k.fault_attempts <= b.fail_first) {
      ex.error_status = b.fail_status;
      ex.error_kind = "fail_first";
    }
    if (ex.error_status == 0 && b.fault == Behaviour::Fault::kStatus) {
      ex.error_status = b.status;
      ex.error_kind = b.fault_name;
    }
    if (ex.error_status == 0 && b.fault == Behaviour::Fault::kReset) {
      Close(c, End::kServerClosed, /*rst=*/true);
      return;
    }
    if (ex.error_status == 0 && (b.fault == Behaviour::Fault::kHang ||
                                 (!ex.stream && b.stall_after >= 0))) {
      c->phase = Phase::kSilent;
      return;
    }
    if (ex.error_status == 0 && ex.stream) {
      StreamStart(c);
      return;
    }
    if (b.latency_ms > 0) {
      c->phase = Phase::kWaiting;
      Schedule(c, b.latency_ms);
      return;
    }
    Answer(c);
  }

  // Parses one scenario source into *into; answers 400 and returns false if
  // it is malformed.
  bool MergeSource(Conn* c, std::string_view text, std::string_view what,
                   Scenario* into) {
    absl::StatusOr<Scenario> s = ParseScenario(text);
    if (!s.ok()) {
      SendError(c, 400, "invalid_request",
                absl::StrCat(std::string(what), ": ", s.status().message()));
      return false;
    }
    into->MergeFrom(*s);
    return true;
  }

  // The unary answer (or an error answer), after latency_ms.
  void Answer(Conn* c) {
    Exchange& ex = c->ex;
    if (ex.error_status != 0) {
      SendError(c, ex.error_status, ex.error_kind, "");
      return;
    }
    json_.Clear();
    if (ex.dialect == Dialect::kOpenAi) {
      WriteOpenAiCompletion(ex);
    } else {
      WriteAnthropicMessage(ex);
    }
    if (ex.b.cut_after >= 0) {
      // A unary body cut in half: the full Content-Length, half the bytes.
      std::string_view body = View(json_);
      AppendHead(c, 200, "application/json", static_cast<int64_t>(body.size()),
                 true);
      c->out.append(body.data(), body.size() / 2);
      EndExchange(c, End::kServerClosed);
      c->close_after_flush = true;
      Flush(c);
      return;
    }
    SendBody(c, 200, "application/json", View(json_));
  }

  // ---- errors --------------------------------------------------------------

  // Sends an error in the dialect's shape. `kind` is a fault name (or
  // "invalid_request"); `message` overrides the default text when set.
  void SendError(Conn* c, int status, std::string_view kind,
                 std::string message) {
    Exchange& ex = c->ex;
    const char* type = status >= 500 ? "server_error" : "invalid_request_error";
    const char* code = nullptr;
    if (message.empty()) message = absl::StrCat("simulated HTTP ", status);
    if (kind == "rate_limit") {
      type = "requests";
      code = "rate_limit_exceeded";
      message = "Rate limit reached for requests (simulated)";
    } else if (kind == "insufficient_quota") {
      type = "insufficient_quota";
      code = "insufficient_quota";
      message = "You exceeded your current quota (simulated)";
    } else if (kind == "overloaded") {
      code = "server_is_overloaded";
      message = "The server is overloaded (simulated)";
      if (ex.dialect == Dialect::kAnthropic) status = 529;
    } else if (kind == "context_length") {
      code = "context_length_exceeded";
      message = absl::StrCat(
          "This model's maximum context length is ", kContextWindow,
          " tokens. However, your messages resulted in ",
          kContextWindow + ex.prompt_tokens,
          " tokens. Please reduce the length of the messages.");
    } else if (kind == "content_filter") {
      code = "content_policy_violation";
      message = absl::StrCat(
          "Your request was rejected as a result of our safety system: ",
          ex.b.reason);
    } else if (kind == "auth") {
      code = "invalid_api_key";
      message = "Incorrect API key provided (simulated)";
    }

    json_.Clear();
    JsonWriter w(json_);
    w.StartObject();
    if (ex.dialect == Dialect::kOpenAi) {
      w.Key("error");
      w.StartObject();
      w.Key("message");
      w.String(message.data(),
               static_cast<rapidjson::SizeType>(message.size()));
      w.Key("type");
      w.String(type);
      w.Key("param");
      w.Null();
      w.Key("code");
      if (code != nullptr) {
        w.String(code);
      } else {
        w.Null();
      }
      w.EndObject();
    } else {
      w.Key("type");
      w.String("error");
      w.Key("error");
      w.StartObject();
      w.Key("type");
      w.String(AnthropicErrorType(status));
      w.Key("message");
      w.String(message.data(),
               static_cast<rapidjson::SizeType>(message.size()));
      w.EndObject();
    }
    w.EndObject();

    std::string headers;
    if (ex.b.retry_after >= 0 && status != 400) {
      absl::StrAppend(&headers, "Retry-After: ", ex.b.retry_after, "\r\n");
    }
    if (ex.b.retry_after_ms >= 0 && status != 400) {
      absl::StrAppend(&headers, "retry-after-ms: ", ex.b.retry_after_ms,
                      "\r\n");
    }
    if (ex.dialect == Dialect::kOpenAi && code != nullptr) {
      absl::StrAppend(&headers, "x-sim-error-code: ", code, "\r\n");
    }
    SendBody(c, status, "application/json", View(json_), headers);
  }

  static const char* AnthropicErrorType(int status) {
    switch (status) {
      case 400:
        return "invalid_request_error";
      case 401:
        return "authentication_error";
      case 403:
        return "permission_error";
      case 404:
        return "not_found_error";
      case 413:
        return "request_too_large";
      case 429:
        return "rate_limit_error";
      case 529:
        return "overloaded_error";
      default:
        return "api_error";
    }
  }

  // ---- bodies --------------------------------------------------------------

  const std::string& Content(const Exchange& ex) {
    content_.clear();
    for (int64_t i = 1; i <= ex.tokens; ++i) {
      if (i > 1) content_.push_back(' ');
      absl::StrAppend(&content_, "tok", i);
    }
    return content_;
  }

  void WriteUsage(JsonWriter& w, const Exchange& ex) {
    int64_t completion = ex.tool ? kToolPieces : ex.tokens;
    w.Key("usage");
    w.StartObject();
    w.Key("prompt_tokens");
    w.Int64(ex.prompt_tokens);
    w.Key("completion_tokens");
    w.Int64(completion);
    w.Key("total_tokens");
    w.Int64(ex.prompt_tokens + completion);
    w.Key("prompt_tokens_details");
    w.StartObject();
    w.Key("cached_tokens");
    w.Int64(ex.b.cached_tokens);
    w.EndObject();
    w.EndObject();
  }

  const char* OpenAiFinish(const Exchange& ex) {
    if (ex.tool) return "tool_calls";
    return ex.truncated ? "length" : "stop";
  }

  const char* AnthropicStop(const Exchange& ex) {
    if (ex.tool) return "tool_use";
    return ex.truncated ? "max_tokens" : "end_turn";
  }

  void WriteModel(JsonWriter& w, const Exchange& ex) {
    w.Key("model");
    w.String(ex.model.data(),
             static_cast<rapidjson::SizeType>(ex.model.size()));
  }

  void WriteOpenAiPrefix(JsonWriter& w, const Exchange& ex,
                         const char* object) {
    char id[40];
    snprintf(id, sizeof(id), "chatcmpl-sim-%llu",
             static_cast<unsigned long long>(ex.id));
    w.Key("id");
    w.String(id);
    w.Key("object");
    w.String(object);
    w.Key("created");
    w.Int64(static_cast<int64_t>(time(nullptr)));
    WriteModel(w, ex);
  }

  void WriteToolCall(JsonWriter& w, const Exchange& ex, bool with_index,
                     std::string_view arguments, bool with_id) {
    w.StartObject();
    if (with_index) {
      w.Key("index");
      w.Int(0);
    }
    if (with_id) {
      char id[40];
      snprintf(id, sizeof(id), "call_sim_%llu",
               static_cast<unsigned long long>(ex.id));
      w.Key("id");
      w.String(id);
      w.Key("type");
      w.String("function");
    }
    w.Key("function");
    w.StartObject();
    if (with_id) {
      w.Key("name");
      w.String(ex.tool_name.data(),
               static_cast<rapidjson::SizeType>(ex.tool_name.size()));
    }
    w.Key("arguments");
    w.String(arguments.data(),
             static_cast<rapidjson::SizeType>(arguments.size()));
    w.EndObject();
    w.EndObject();
  }

  void WriteOpenAiCompletion(const Exchange& ex) {
    JsonWriter w(json_);
    w.StartObject();
    WriteOpenAiPrefix(w, ex, "chat.completion");
    w.Key("choices");
    w.StartArray();
    w.StartObject();
    w.Key("index");
    w.Int(0);
    w.Key("message");
    w.StartObject();
    w.Key("role");
    w.String("assistant");
    w.Key("content");
    if (ex.tool) {
      w.Null();
      w.Key("tool_calls");
      w.StartArray();
      WriteToolCall(w, ex, false, kToolArguments, true);
      w.EndArray();
    } else {
      const std::string& content = Content(ex);
      w.String(content.data(),
               static_cast<rapidjson::SizeType>(content.size()));
    }
    w.EndObject();
    w.Key("logprobs");
    w.Null();
    w.Key("finish_reason");
    w.String(OpenAiFinish(ex));
    w.EndObject();
    w.EndArray();
    WriteUsage(w, ex);
    w.EndObject();
  }

  void WriteAnthropicId(JsonWriter& w, const Exchange& ex) {
    char id[40];
    snprintf(id, sizeof(id), "msg_sim_%llu",
             static_cast<unsigned long long>(ex.id));
    w.Key("id");
    w.String(id);
  }

  void WriteToolUseBlock(JsonWriter& w, const Exchange& ex, bool with_input) {
    char id[40];
    snprintf(id, sizeof(id), "toolu_sim_%llu",
             static_cast<unsigned long long>(ex.id));
    w.StartObject();
    w.Key("type");
    w.String("tool_use");
    w.Key("id");
    w.String(id);
    w.Key("name");
    w.String(ex.tool_name.data(),
             static_cast<rapidjson::SizeType>(ex.tool_name.size()));
    w.Key("input");
    w.StartObject();
    if (with_input) {
      w.Key("city");
      w.String("Paris");
    }
    w.EndObject();
    w.EndObject();
  }

  void WriteAnthropicMessage(const Exchange& ex) {
    JsonWriter w(json_);
    w.StartObject();
    WriteAnthropicId(w, ex);
    w.Key("type");
    w.String("message");
    w.Key("role");
    w.String("assistant");
    WriteModel(w, ex);
    w.Key("content");
    w.StartArray();
    if (ex.tool) {
      WriteToolUseBlock(w, ex, true);
    } else {
      const std::string& content = Content(ex);
      w.StartObject();
      w.Key("type");
      w.String("text");
      w.Key("text");
      w.String(content.data(),
               static_cast<rapidjson::SizeType>(content.size()));
      w.EndObject();
    }
    w.EndArray();
    w.Key("stop_reason");
    w.String(AnthropicStop(ex));
    w.Key("stop_sequence");
    w.Null();
    w.Key("usage");
    w.StartObject();
    w.Key("input_tokens");
    w.Int64(ex.prompt_tokens);
    w.Key("output_tokens");
    w.Int64(ex.tool ? kToolPieces : ex.tokens);
    w.Key("cache_read_input_tokens");
    w.Int64(ex.b.cached_tokens);
    w.EndObject();
    w.EndObject();
  }

  // ---- streaming -----------------------------------------------------------

  void StreamStart(Conn* c) {
    Exchange& ex = c->ex;
    bool no_done = ex.b.fault == Behaviour::Fault::kNoDone;
    c->chunked = c->parser.request().minor_version >= 1;
    if (!c->chunked) c->keep_alive = false;  // the close ends the body
    AppendHead(c, 200, "text/event-stream", -1, c->keep_alive && !no_done);
    if (ex.dialect == Dialect::kAnthropic) {
      json_.Clear();
      {
        JsonWriter w(json_);
        w.StartObject();
        w.Key("type");
        w.String("message_start");
        w.Key("message");
        w.StartObject();
        WriteAnthropicId(w, ex);
        w.Key("type");
        w.String("message");
        w.Key("role");
        w.String("assistant");
        WriteModel(w, ex);
        w.Key("content");
        w.StartArray();
        w.EndArray();
        w.Key("stop_reason");
        w.Null();
        w.Key("stop_sequence");
        w.Null();
        w.Key("usage");
        w.StartObject();
        w.Key("input_tokens");
        w.Int64(ex.prompt_tokens);
        w.Key("output_tokens");
        w.Int(1);
        w.EndObject();
        w.EndObject();
        w.EndObject();
      }
      AppendSse(c, "message_start", View(json_));
      json_.Clear();
      {
        JsonWriter w(json_);
        w.StartObject();
        w.Key("type");
        w.String("content_block_start");
        w.Key("index");
        w.Int(0);
        w.Key("content_block");
        if (ex.tool) {
          WriteToolUseBlock(w, ex, false);
        } else {
          w.StartObject();
          w.Key("type");
          w.String("text");
          w.Key("text");
          w.String("");
          w.EndObject();
        }
        w.EndObject();
      }
      AppendSse(c, "content_block_start", View(json_));
      AppendSse(c, "ping", R"({"type":"ping"})");
    }
    if (ex.pieces > 0 && ex.b.ttft_ms > 0) {
      Flush(c);
      if (c->dead) return;
      c->phase = Phase::kStreaming;
      Schedule(c, ex.b.ttft_ms);
      return;
    }
    StreamAdvance(c);
  }

  // Sends chunks until a delay, a fault or the end of the stream.
  void StreamAdvance(Conn* c) {
    Exchange& ex = c->ex;
    const Behaviour& b = ex.b;
    for (;;) {
      if (ex.pos == b.stall_after) {
        c->phase = Phase::kSilent;
        Flush(c);
        return;
      }
      if (ex.pos == b.cut_after) {
        EndExchange(c, End::kServerClosed);
        c->close_after_flush = true;
        Flush(c);
        return;
      }
      if (ex.pos == b.error_event_after) {
        AppendErrorEvent(c);
        AppendLastChunk(c);
        Finish(c, false);
        return;
      }
      if (ex.pos == b.malformed_after && !ex.malformed_sent) {
        ex.malformed_sent = true;
        AppendSse(
            c, ex.dialect == Dialect::kAnthropic ? "content_block_delta" : "",
            "{not json");
      }
      if (ex.pos >= ex.pieces) {
        StreamTail(c);
        return;
      }
      ++ex.pos;
      AppendPiece(c, ex.pos);
      if (c->out.size() - c->out_off > kMaxBufferedOutput) {
        // Backpressure: a long stream to a slow reader must neither grow
        // the buffer without bound nor hold the loop.
        Flush(c);
        if (c->dead) return;
        if (c->want_write) {
          c->phase = Phase::kBlocked;
          return;
        }
      }
      if (ex.pos < ex.pieces && b.itl_ms > 0) {
        Flush(c);
        if (c->dead) return;
        c->phase = Phase::kStreaming;
        Schedule(c, b.itl_ms);
        return;
      }
    }
  }

  void AppendPiece(Conn* c, int64_t i) {
    Exchange& ex = c->ex;
    char token[32];
    std::string_view text;
    if (!ex.tool) {
      int n = snprintf(token, sizeof(token), i == 1 ? "tok%lld" : " tok%lld",
                       static_cast<long long>(i));
      text = std::string_view(token, static_cast<size_t>(n));
    }
    json_.Clear();
    JsonWriter w(json_);
    if (ex.dialect == Dialect::kOpenAi) {
      w.StartObject();
      WriteOpenAiPrefix(w, ex, "chat.completion.chunk");
      w.Key("choices");
      w.StartArray();
      w.StartObject();
      w.Key("index");
      w.Int(0);
      w.Key("delta");
      w.StartObject();
      if (i == 1) {
        w.Key("role");
        w.String("assistant");
      }
      if (ex.tool) {
        if (i == 1) {
          w.Key("content");
          w.Null();
        }
        w.Key("tool_calls");
        w.StartArray();
        WriteToolCall(w, ex, true, i == 1 ? "" : kToolArgumentPieces[i - 2],
                      i == 1);
        w.EndArray();
      } else {
        w.Key("content");
        w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
      }
      w.EndObject();
      w.Key("logprobs");
      w.Null();
      w.Key("finish_reason");
      w.Null();
      w.EndObject();
      w.EndArray();
      w.EndObject();
      AppendSse(c, "", View(json_));
      return;
    }
    w.StartObject();
    w.Key("type");
    w.String("content_block_delta");
    w.Key("index");
    w.Int(0);
    w.Key("delta");
    w.StartObject();
    w.Key("type");
    if (ex.tool) {
      w.String("input_json_delta");
      w.Key("partial_json");
      std::string_view piece = kToolArgumentPieces[i - 1];
      w.String(piece.data(), static_cast<rapidjson::SizeType>(piece.size()));
    } else {
      w.String("text_delta");
      w.Key("text");
      w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
    }
    w.EndObject();
    w.EndObject();
    AppendSse(c, "content_block_delta", View(json_));
  }

  void AppendErrorEvent(Conn* c) {
    if (c->ex.dialect == Dialect::kOpenAi) {
      AppendSse(
          c, "",
          R"({"error":{"message":"upstream exploded","type":"server_error"}})");
    } else {
      AppendSse(c, "error",
                R"({"type":"error","error":{"type":"overloaded_error",)"
                R"("message":"Overloaded"}})");
    }
  }

  void StreamTail(Conn* c) {
    Exchange& ex = c->ex;
    bool no_done = ex.b.fault == Behaviour::Fault::kNoDone;
    if (ex.dialect == Dialect::kOpenAi) {
      json_.Clear();
      {
        JsonWriter w(json_);
        w.StartObject();
        WriteOpenAiPrefix(w, ex, "chat.completion.chunk");
        w.Key("choices");
        w.StartArray();
        w.StartObject();
        w.Key("index");
        w.Int(0);
        w.Key("delta");
        w.StartObject();
        w.EndObject();
        w.Key("logprobs");
        w.Null();
        w.Key("finish_reason");
        w.String(OpenAiFinish(ex));
        w.EndObject();
        w.EndArray();
        w.EndObject();
      }
      AppendSse(c, "", View(json_));
      if (ex.include_usage) {
        json_.Clear();
        {
          JsonWriter w(json_);
          w.StartObject();
          WriteOpenAiPrefix(w, ex, "chat.completion.chunk");
          w.Key("choices");
          w.StartArray();
          w.EndArray();
          WriteUsage(w, ex);
          w.EndObject();
        }
        AppendSse(c, "", View(json_));
      }
      if (!no_done) AppendSse(c, "", "[DONE]");
    } else {
      AppendSse(c, "content_block_stop",
                R"({"type":"content_block_stop","index":0})");
      json_.Clear();
      {
        JsonWriter w(json_);
        w.StartObject();
        w.Key("type");
        w.String("message_delta");
        w.Key("delta");
        w.StartObject();
        w.Key("stop_reason");
        w.String(AnthropicStop(ex));
        w.Key("stop_sequence");
        w.Null();
        w.EndObject();
        w.Key("usage");
        w.StartObject();
        w.Key("output_tokens");
        w.Int64(ex.tool ? kToolPieces : ex.tokens);
        w.EndObject();
        w.EndObject();
      }
      AppendSse(c, "message_delta", View(json_));
      if (!no_done) AppendSse(c, "message_stop", R"({"type":"message_stop"})");
    }
    AppendLastChunk(c);
    Finish(c, no_done);
  }

  // ---- control API
  // -----------------------------------------------------------

  void HandleControl(Conn* c, const HttpRequest& req, std::string_view path) {
    c->ex.dialect = Dialect::kOpenAi;
    if (path == "/_stats") {
      if (req.method != "GET") return SendPlain(c, 405, "use GET");
      WriteStats();
      SendBody(c, 200, "application/json", View(json_));
      return;
    }
    if (path == "/_reset") {
      if (req.method != "POST") return SendPlain(c, 405, "use POST");
      for (auto it = keys_.begin(); it != keys_.end();) {
        if (it->second.active == 0) {
          it = keys_.erase(it);
          continue;
        }
        // In-flight requests keep their entry so their end is accounted.
        int64_t active = it->second.active;
        it->second = KeyState();
        it->second.active = active;
        it->second.max_active = active;
        ++it;
      }
      overrides_.clear();
      total_attempts_ = 0;
      SendBody(c, 200, "application/json", R"({"ok":true})");
      return;
    }
    if (path == "/_scenario") {
      if (req.method != "POST") return SendPlain(c, 405, "use POST");
      std::string key;
      bool have_key = false;
      std::string_view query = req.Query();
      while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view param = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view()
                                              : query.substr(amp + 1);
        if (param.substr(0, 4) == "key=") {
          absl::StatusOr<std::string> k = UrlDecode(param.substr(4));
          if (!k.ok()) return SendPlain(c, 400, "bad key encoding");
          key = *std::move(k);
          have_key = true;
        }
      }
      if (!have_key) return SendPlain(c, 400, "missing ?key=");
      std::string_view body = req.body;
      while (!body.empty() &&
             std::isspace(static_cast<unsigned char>(body.back()))) {
        body.remove_suffix(1);
      }
      while (!body.empty() &&
             std::isspace(static_cast<unsigned char>(body.front()))) {
        body.remove_prefix(1);
      }
      if (body.empty()) {
        overrides_.erase(key);
      } else {
        absl::StatusOr<Scenario> s = ParseScenario(body);
        if (!s.ok()) {
          return SendPlain(c, 400, std::string(s.status().message()));
        }
        overrides_[key] = *std::move(s);
      }
      auto it = keys_.find(key);
      if (it != keys_.end()) {
        it->second.fault_attempts = 0;
        it->second.flap_start_ms = -1;
      }
      SendBody(c, 200, "application/json", R"({"ok":true})");
      return;
    }
    SendPlain(c, 404, "unknown control path");
  }

  void WriteStats() {
    json_.Clear();
    JsonWriter w(json_);
    w.StartObject();
    w.Key("keys");
    w.StartObject();
    for (const auto& [name, k] : keys_) {
      w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
      w.StartObject();
      w.Key("attempts");
      w.Int64(k.attempts);
      w.Key("active");
      w.Int64(k.active);
      w.Key("max_active");
      w.Int64(k.max_active);
      w.Key("completed");
      w.Int64(k.completed);
      w.Key("client_closed");
      w.Int64(k.client_closed);
      w.Key("server_closed");
      w.Int64(k.server_closed);
      w.Key("auth_header_seen");
      w.Int64(k.auth_header_seen);
      w.Key("last_start_ms");
      w.Int64(k.last_start_ms);
      w.Key("last_close_ms");
      w.Int64(k.last_close_ms);
      w.EndObject();
    }
    w.EndObject();
    w.Key("total_attempts");
    w.Int64(total_attempts_);
    w.Key("now_ms");
    w.Int64(NowMs());
    w.EndObject();
  }

  const Scenario default_scenario_;
  const int listen_fd_;
  const int port_;
  const std::chrono::steady_clock::time_point start_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  bool stopping_ = false;
  uint32_t serial_ = 0;
  uint64_t request_seq_ = 0;
  uint64_t timer_seq_ = 0;
  int64_t total_attempts_ = 0;
  std::vector<std::unique_ptr<Conn>> conns_;      // indexed by fd
  std::vector<std::unique_ptr<Conn>> graveyard_;  // freed after each round
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  std::unordered_map<std::string, KeyState> keys_;
  std::unordered_map<std::string, Scenario> overrides_;
  rapidjson::StringBuffer json_;
  std::string content_;
  char parse_buffer_[64 * 1024];
};

SimServer::SimServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SimServer::~SimServer() = default;
int SimServer::port() const { return impl_->port(); }
absl::Status SimServer::Run() { return impl_->Run(); }
void SimServer::Stop() { impl_->Stop(); }

absl::StatusOr<std::unique_ptr<SimServer>> SimServer::Create(
    const Options& options) {
  absl::StatusOr<Scenario> scenario = ParseScenario(options.scenario);
  if (!scenario.ok()) return scenario.status();

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  std::string port = std::to_string(options.port);
  int rc = getaddrinfo(options.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", options.host, ": ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        listen(fd, SOMAXCONN) == 0) {
      break;
    }
    error = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.host, ":", options.port, ": ", error));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int bound = addr.ss_family == AF_INET6
                  ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                  : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  auto impl = std::make_unique<Impl>(*std::move(scenario), fd, bound);
  absl::Status s = impl->Init();
  if (!s.ok()) return s;
  return std::unique_ptr<SimServer>(new SimServer(std::move(impl)));
}

}  // namespace sim
}  // namespace echelon
