#include "adapters/redis_client.h"

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace echelon {

RedisReply RedisReply::Error(std::string message) {
  RedisReply r;
  r.type = Type::kError;
  r.str = std::move(message);
  return r;
}

namespace {

RedisReply Convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) {
        out.elements.push_back(Convert(r->element[i]));
      }
      break;
    default:
      out.type = RedisReply::Type::kNil;
      break;
  }
  return out;
}

}  // namespace

// The privdata of one command: owned by hiredis until its callback runs
// (exactly once, with a reply or with NULL when the context goes away).
struct RedisClient::Pending {
  RedisClient* client;
  uint64_t generation;
  ReplyCallback done;
};

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Blocking; runs on the resolver thread. The first IPv4 address, else the
// first IPv6 one.
std::string Resolve(const std::string& host, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc != 0) {
    *error = absl::StrCat("resolve ", host, ": ", gai_strerror(rc));
    return "";
  }
  std::string ip;
  for (int family : {AF_INET, AF_INET6}) {
    for (addrinfo* a = list; a != nullptr && ip.empty(); a = a->ai_next) {
      if (a->ai_family != family) continue;
      char text[INET6_ADDRSTRLEN] = {0};
      const void* addr =
          family == AF_INET
              ? static_cast<const void*>(
                    &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
              : static_cast<const void*>(
                    &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
      if (inet_ntop(family, addr, text, sizeof(text)) != nullptr) ip = text;
    }
  }
  freeaddrinfo(list);
  if (ip.empty()) *error = absl::StrCat("resolve ", host, ": no address");
  return ip;
}

RedisClient::RedisClient(EpollEventLoop& loop, Options options)
    : loop_(loop), options_(std::move(options)) {
  backoff_ = options_.reconnect_min;
  host_is_ip_ = IsIpLiteral(options_.host);
}

RedisClient::~RedisClient() {
  destroying_ = true;
  loop_.CancelTimer(connect_timer_);
  loop_.CancelTimer(reconnect_timer_);
  loop_.CancelTimer(watchdog_timer_);
  if (ac_ != nullptr) {
    redisAsyncContext* ac = ac_;
    ac_ = nullptr;
    // Runs every pending callback with NULL (dropped: destroying_), then
    // the cleanup hook (unwatches the fd), then closes the fd.
    redisAsyncFree(ac);
  }
  if (fd_watched_) loop_.UnwatchFd(fd_);
  // A lookup in progress finishes on its own (its result is dropped).
  if (resolver_.joinable()) resolver_.join();
}

std::string RedisClient::Mask(std::string text) const {
  if (!options_.password.empty()) {
    absl::StrReplaceAll({{options_.password, "***"}}, &text);
  }
  return text;
}

void RedisClient::Start() {
  if (started_) return;
  started_ = true;
  Connect();
}

void RedisClient::Connect() {
  reconnect_timer_ = EventLoop::kNoTimer;
  if (destroying_ || ac_ != nullptr || resolving_) return;
  if (host_is_ip_) {
    ConnectTo(options_.host);
    return;
  }
  // getaddrinfo blocks: ask on a helper thread, connect on the loop.
  if (resolver_.joinable()) resolver_.join();  // finished: it posted
  resolving_ = true;
  resolver_ = std::thread(
      [this, host = options_.host, alive = std::weak_ptr<char>(alive_)] {
        std::string error;
        std::string ip = Resolve(host, &error);
        loop_.Post([this, alive, ip = std::move(ip), error = std::move(error)] {
          if (!alive.expired()) OnResolved(ip, error);
        });
      });
}

void RedisClient::OnResolved(const std::string& ip, const std::string& error) {
  resolving_ = false;
  if (destroying_ || ac_ != nullptr) return;
  if (ip.empty()) {
    last_error_ = error;
    ReportDown(last_error_);
    ScheduleReconnect();
    return;
  }
  ConnectTo(ip);
}

void RedisClient::ConnectTo(const std::string& ip) {
  redisAsyncContext* ac = redisAsyncConnect(ip.c_str(), options_.port);
  if (ac == nullptr) {
    last_error_ = "out of memory";
    ReportDown(last_error_);
    ScheduleReconnect();
    return;
  }
  if (ac->err != 0) {
    last_error_ = Mask(absl::StrCat("connect to ", options_.host, ":",
                                    options_.port, ": ", ac->errstr));
    redisAsyncFree(ac);
    ReportDown(last_error_);
    ScheduleReconnect();
    return;
  }
  ++generation_;
  ac_ = ac;
  fd_ = ac->c.fd;
  want_read_ = want_write_ = false;
  subscribed_ = 0;
  ac->data = this;
  ac->ev.data = this;
  ac->ev.addRead = &RedisClient::AddRead;
  ac->ev.delRead = &RedisClient::DelRead;
  ac->ev.addWrite = &RedisClient::AddWrite;
  ac->ev.delWrite = &RedisClient::DelWrite;
  ac->ev.cleanup = &RedisClient::Cleanup;
  connect_timer_ = loop_.RunAfter(options_.connect_timeout, [this] {
    connect_timer_ = EventLoop::kNoTimer;
    Drop(absl::StrCat("no connection within ",
                      absl::FormatDuration(options_.connect_timeout)));
  });
  StartHandshake();
}

void RedisClient::StartHandshake() {
  // Commands are buffered until the TCP connect completes, and answered in
  // order; every reply is checked, the last one completes the handshake.
  std::vector<std::pair<std::vector<std::string>, const char*>> steps;
  if (!options_.password.empty()) {
    steps.push_back({{"AUTH", options_.password}, "AUTH"});
  }
  const bool subscriber = !options_.subscribe.empty();
  if (!subscriber) {
    if (options_.database != 0) {
      steps.push_back({{"SELECT", absl::StrCat(options_.database)}, "SELECT"});
    }
    steps.push_back({{"PING"}, "PING"});
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const bool last = !subscriber && i + 1 == steps.size();
    const char* step = steps[i].second;
    const uint64_t generation = generation_;
    if (!SendRaw(steps[i].first, [this, step, last, generation](RedisReply r) {
          if (generation != generation_ || ac_ == nullptr) return;
          HandshakeStep(std::move(r), step, last);
        })) {
      Drop(absl::StrCat(step, " could not be sent"));
      return;
    }
  }
  if (subscriber) {
    std::vector<const char*> argv = {"SUBSCRIBE"};
    std::vector<size_t> lens = {9};
    for (const std::string& channel : options_.subscribe) {
      argv.push_back(channel.data());
      lens.push_back(channel.size());
    }
    if (redisAsyncCommandArgv(ac_, &RedisClient::OnSubscribeThunk, this,
                              static_cast<int>(argv.size()), argv.data(),
                              lens.data()) != REDIS_OK) {
      Drop("SUBSCRIBE could not be sent");
    }
  }
}

void RedisClient::HandshakeStep(RedisReply reply, const char* step, bool last) {
  if (reply.is_error()) {
    Drop(Mask(absl::StrCat(step, " failed: ", reply.str)));
    return;
  }
  if (last) OnReady();
}

void RedisClient::OnReady() {
  loop_.CancelTimer(connect_timer_);
  connect_timer_ = EventLoop::kNoTimer;
  ready_ = true;
  backoff_ = options_.reconnect_min;
  reported_up_ = true;
  reported_down_.clear();
  if (state_callback_) state_callback_(true, "");
}

bool RedisClient::SendRaw(const std::vector<std::string>& args,
                          ReplyCallback done) {
  if (ac_ == nullptr) return false;
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* pending = new Pending{this, generation_, std::move(done)};
  if (redisAsyncCommandArgv(ac_, &RedisClient::OnReplyThunk, pending,
                            static_cast<int>(argv.size()), argv.data(),
                            lens.data()) != REDIS_OK) {
    delete pending;
    return false;
  }
  in_flight_.push_back(loop_.Now());
  if (in_flight_.size() == 1) ArmWatchdog();
  return true;
}

void RedisClient::Command(std::vector<std::string> args, ReplyCallback done) {
  if (!ready_ || ac_ == nullptr || !options_.subscribe.empty()) {
    PostReply(
        std::move(done),
        RedisReply::Error(options_.subscribe.empty()
                              ? absl::StrCat(options_.name, ": not connected")
                              : "subscriber connections take no "
                                "commands"));
    return;
  }
  // SendRaw moves `done` into the pending record only on success paths of
  // allocation; keep a way to answer when hiredis refuses the command.
  auto holder = std::make_shared<ReplyCallback>(std::move(done));
  if (!SendRaw(args, [holder](RedisReply r) { (*holder)(std::move(r)); })) {
    PostReply([holder](RedisReply r) { (*holder)(std::move(r)); },
              RedisReply::Error(
                  absl::StrCat(options_.name, ": command could not be sent")));
  }
}

void RedisClient::PostReply(ReplyCallback done, RedisReply reply) {
  loop_.Post([alive = std::weak_ptr<char>(alive_), done = std::move(done),
              reply = std::move(reply)]() mutable {
    if (alive.expired()) return;
    done(std::move(reply));
  });
}

void RedisClient::Reset(const std::string& reason) {
  if (ac_ != nullptr) Drop(reason);
}

void RedisClient::Drop(const std::string& reason) {
  if (ac_ == nullptr) return;
  redisAsyncContext* ac = ac_;
  OnContextGone(Mask(reason));
  // Runs the pending callbacks with NULL (error replies); deferred by
  // hiredis until the current callback returns when called from one.
  redisAsyncFree(ac);
}

// The context is going away (error, or Drop()). Called once per context:
// from Drop(), or from the cleanup hook when hiredis tears it down.
void RedisClient::OnContextGone(const std::string& reason) {
  ac_ = nullptr;
  ++generation_;
  if (fd_watched_) loop_.UnwatchFd(fd_);
  fd_watched_ = false;
  fd_ = -1;
  want_read_ = want_write_ = false;
  in_flight_.clear();
  loop_.CancelTimer(connect_timer_);
  connect_timer_ = EventLoop::kNoTimer;
  loop_.CancelTimer(watchdog_timer_);
  watchdog_timer_ = EventLoop::kNoTimer;
  last_error_ = reason;
  const bool was_ready = ready_;
  ready_ = false;
  subscribed_ = 0;
  if (destroying_) return;
  if (!was_ready) {
    // A failed attempt: back off further.
    ReportDown(reason);
    ScheduleReconnect();
    return;
  }
  ReportDown(reason);
  backoff_ = options_.reconnect_min;
  ScheduleReconnect();
}

void RedisClient::ReportDown(const std::string& reason) {
  if (!reported_up_ && reported_down_ == reason) return;
  reported_up_ = false;
  reported_down_ = reason;
  if (state_callback_) state_callback_(false, reason);
}

void RedisClient::ScheduleReconnect() {
  if (destroying_ || reconnect_timer_ != EventLoop::kNoTimer) return;
  const absl::Duration delay = backoff_;
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
  reconnect_timer_ = loop_.RunAfter(delay, [this] { Connect(); });
}

void RedisClient::ArmWatchdog() {
  if (options_.reply_timeout <= absl::ZeroDuration() ||
      watchdog_timer_ != EventLoop::kNoTimer || in_flight_.empty()) {
    return;
  }
  watchdog_timer_ =
      loop_.RunAt(in_flight_.front() + options_.reply_timeout, [this] {
        watchdog_timer_ = EventLoop::kNoTimer;
        CheckWatchdog();
      });
}

void RedisClient::CheckWatchdog() {
  if (in_flight_.empty() || ac_ == nullptr) return;
  const absl::Duration waited = loop_.Now() - in_flight_.front();
  if (waited >= options_.reply_timeout) {
    Drop(absl::StrCat("no reply for ", absl::FormatDuration(waited)));
    return;
  }
  ArmWatchdog();
}

void RedisClient::UpdateWatch() {
  if (fd_ < 0) return;
  const uint32_t events =
      (want_read_ ? EPOLLIN : 0u) | (want_write_ ? EPOLLOUT : 0u);
  if (!fd_watched_) {
    if (loop_.WatchFd(fd_, events, [this](uint32_t ev) { OnFdEvents(ev); })
            .ok()) {
      fd_watched_ = true;
    }
    return;
  }
  (void)loop_.ModifyFd(fd_, events);
}

void RedisClient::OnFdEvents(uint32_t events) {
  if (ac_ == nullptr) return;
  const uint64_t generation = generation_;
  const bool error = (events & (EPOLLERR | EPOLLHUP)) != 0;
  const bool connected_socket = (ac_->c.flags & REDIS_CONNECTED) != 0;
  if ((events & EPOLLIN) || (error && connected_socket)) {
    redisAsyncHandleRead(ac_);
  }
  if (ac_ == nullptr || generation != generation_) return;
  if ((events & EPOLLOUT) || (error && !connected_socket)) {
    redisAsyncHandleWrite(ac_);
  }
}

void RedisClient::AddRead(void* data) {
  auto* self = static_cast<RedisClient*>(data);
  if (self->want_read_) return;
  self->want_read_ = true;
  self->UpdateWatch();
}

void RedisClient::DelRead(void* data) {
  auto* self = static_cast<RedisClient*>(data);
  if (!self->want_read_) return;
  self->want_read_ = false;
  self->UpdateWatch();
}

void RedisClient::AddWrite(void* data) {
  auto* self = static_cast<RedisClient*>(data);
  if (self->want_write_) return;
  self->want_write_ = true;
  self->UpdateWatch();
}

void RedisClient::DelWrite(void* data) {
  auto* self = static_cast<RedisClient*>(data);
  if (!self->want_write_) return;
  self->want_write_ = false;
  self->UpdateWatch();
}

// hiredis tears the context down (it may call this twice; the fd is closed
// right after). When it is still our live context, the teardown was caused
// by an error: the reason is in ac->errstr.
void RedisClient::Cleanup(void* data) {
  auto* self = static_cast<RedisClient*>(data);
  if (self->ac_ != nullptr) {
    redisAsyncContext* ac = self->ac_;
    std::string reason =
        ac->err != 0 && ac->errstr[0] != '\0' ? ac->errstr : "connection lost";
    self->OnContextGone(self->Mask(reason));
    return;
  }
  if (self->fd_watched_) self->loop_.UnwatchFd(self->fd_);
  self->fd_watched_ = false;
  self->fd_ = -1;
}

void RedisClient::OnReplyThunk(redisAsyncContext* ac, void* reply, void* data) {
  std::unique_ptr<Pending> pending(static_cast<Pending*>(data));
  RedisClient* self = pending->client;
  if (self->destroying_) return;
  if (reply == nullptr) {
    pending->done(RedisReply::Error(self->Mask(absl::StrCat(
        self->options_.name, ": connection lost: ", self->last_error_))));
    return;
  }
  if (ac == self->ac_ && pending->generation == self->generation_ &&
      !self->in_flight_.empty()) {
    self->in_flight_.pop_front();
  }
  RedisReply converted = Convert(static_cast<redisReply*>(reply));
  if (converted.is_error()) converted.str = self->Mask(converted.str);
  pending->done(std::move(converted));
}

void RedisClient::OnSubscribeThunk(redisAsyncContext* ac, void* reply,
                                   void* data) {
  auto* self = static_cast<RedisClient*>(data);
  if (self->destroying_ || reply == nullptr || ac != self->ac_) return;
  const auto* r = static_cast<redisReply*>(reply);
  if (r->type == REDIS_REPLY_ERROR) {
    self->Drop(absl::StrCat("SUBSCRIBE failed: ", std::string(r->str, r->len)));
    return;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
      r->element[0]->type != REDIS_REPLY_STRING) {
    return;
  }
  const std::string kind(r->element[0]->str, r->element[0]->len);
  if (kind == "subscribe") {
    if (++self->subscribed_ == self->options_.subscribe.size() &&
        !self->ready_) {
      self->OnReady();
    }
    return;
  }
  if (kind == "message" && r->element[1]->type == REDIS_REPLY_STRING &&
      r->element[2]->type == REDIS_REPLY_STRING && self->message_callback_) {
    self->message_callback_(
        std::string(r->element[1]->str, r->element[1]->len),
        std::string(r->element[2]->str, r->element[2]->len));
  }
}

}  // namespace echelon
