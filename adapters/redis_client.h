// A small asynchronous Redis connection on the EpollEventLoop, built on
// hiredis's redisAsyncContext with our own event hooks (the context's fd is
// registered with WatchFd/ModifyFd/UnwatchFd; nothing blocks).
//
// Lifecycle of one connection: [a host name is resolved on a short-lived
// helper thread, so DNS never blocks the loop] -> non-blocking TCP connect ->
// AUTH (when a password is set) -> SELECT (database != 0) -> PING, or in
// subscriber mode AUTH -> SUBSCRIBE. The connection is "connected" once the
// last of these answers, within `connect_timeout`. Any failure (refused,
// timeout, AUTH error, reset, a server that stops answering for
// `reply_timeout`) drops the connection and retries after a backoff that starts
// at `reconnect_min` and doubles up to `reconnect_max` (back to min after a
// successful connect).
//
// Commands: Command() callbacks run exactly once, on the loop thread, never
// inside Command(): with the reply, or with an error reply when the client
// is not connected or the connection drops before the reply arrives.
//
// Secrets: the password is sent in AUTH only; every reason and error text
// this class produces has it masked.
//
// Threading: loop thread only (construction may happen on any thread before
// Start()). Destroy on the loop thread, or on any thread once the loop has
// stopped; never from inside one of this client's callbacks. Pending
// callbacks are destroyed without being run on destruction.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "adapters/event_loop.h"

struct redisAsyncContext;

namespace echelon {

// A reply, copied out of hiredis.
struct RedisReply {
  enum class Type { kNil, kStatus, kError, kString, kInteger, kArray };
  Type type = Type::kNil;
  std::string str;  // kStatus, kError, kString
  int64_t integer = 0;
  std::vector<RedisReply> elements;  // kArray

  bool is_error() const { return type == Type::kError; }
  static RedisReply Error(std::string message);
};

class RedisClient {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 6379;
    std::string password;  // AUTH when not empty; never logged
    int database = 0;      // SELECT when not 0 (not in subscriber mode)
    absl::Duration connect_timeout = absl::Milliseconds(500);
    // A command unanswered for this long means the server hung: drop and
    // reconnect. Zero disables the check.
    absl::Duration reply_timeout = absl::Milliseconds(500);
    absl::Duration reconnect_min = absl::Milliseconds(100);
    absl::Duration reconnect_max = absl::Seconds(5);
    // Non-empty: subscriber mode; the client subscribes to these channels
    // on every connect and accepts no commands.
    std::vector<std::string> subscribe;
    // Names the connection in reasons ("redis", "redis-sub").
    std::string name = "redis";
  };

  // connected == true: the handshake finished. false: a connected client
  // lost its connection, or an attempt failed (repeated identical failures
  // are reported once). `reason` never contains the password.
  using StateCallback =
      absl::AnyInvocable<void(bool connected, const std::string& reason)>;
  using ReplyCallback = absl::AnyInvocable<void(RedisReply reply)>;
  using MessageCallback = absl::AnyInvocable<void(const std::string& channel,
                                                  const std::string& message)>;

  RedisClient(EpollEventLoop& loop, Options options);
  ~RedisClient();

  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  void SetStateCallback(StateCallback callback) {
    state_callback_ = std::move(callback);
  }
  // Subscriber mode: published messages.
  void SetMessageCallback(MessageCallback callback) {
    message_callback_ = std::move(callback);
  }

  // First connect attempt. Loop thread; call once.
  void Start();

  bool connected() const { return ready_; }

  // Sends `args` (binary-safe). See the header comment for `done`.
  void Command(std::vector<std::string> args, ReplyCallback done);

  // Drops the connection as if it broke (pending callbacks get an error) and
  // reconnects after the backoff. Loop thread.
  void Reset(const std::string& reason);

  // Commands sent and not answered yet.
  size_t in_flight() const { return in_flight_.size(); }

 private:
  struct Pending;

  void Connect();
  void ConnectTo(const std::string& ip);
  void OnResolved(const std::string& ip, const std::string& error);
  void ScheduleReconnect();
  void StartHandshake();
  void HandshakeStep(RedisReply reply, const char* step, bool last);
  void OnReady();
  void Drop(const std::string& reason);
  void OnContextGone(const std::string& reason);
  void ReportDown(const std::string& reason);
  bool SendRaw(const std::vector<std::string>& args, ReplyCallback done);
  void PostReply(ReplyCallback done, RedisReply reply);
  void UpdateWatch();
  void OnFdEvents(uint32_t events);
  void ArmWatchdog();
  void CheckWatchdog();
  std::string Mask(std::string text) const;

  // hiredis hooks.
  static void AddRead(void* data);
  static void DelRead(void* data);
  static void AddWrite(void* data);
  static void DelWrite(void* data);
  static void Cleanup(void* data);
  static void OnReplyThunk(redisAsyncContext* ac, void* reply, void* data);
  static void OnSubscribeThunk(redisAsyncContext* ac, void* reply, void* data);

  EpollEventLoop& loop_;
  const Options options_;
  StateCallback state_callback_;
  MessageCallback message_callback_;

  redisAsyncContext* ac_ = nullptr;  // the live context, or null
  uint64_t generation_ = 0;          // bumped per context
  int fd_ = -1;                      // the context's fd while watched
  bool fd_watched_ = false;
  bool want_read_ = false;
  bool want_write_ = false;
  bool ready_ = false;  // handshake done
  size_t subscribed_ = 0;
  bool destroying_ = false;
  bool started_ = false;
  bool host_is_ip_ = false;
  bool resolving_ = false;
  std::thread resolver_;    // joined before the next lookup and on destruction
  std::string last_error_;  // why the last context went away
  std::string reported_down_;  // last reason given to the state callback
  bool reported_up_ = false;

  absl::Duration backoff_;
  EventLoop::TimerId connect_timer_ = EventLoop::kNoTimer;
  EventLoop::TimerId reconnect_timer_ = EventLoop::kNoTimer;
  EventLoop::TimerId watchdog_timer_ = EventLoop::kNoTimer;
  std::deque<absl::Time> in_flight_;  // send times, FIFO like the replies

  // Posted tasks check it: they do nothing once the client is gone.
  std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

}  // namespace echelon
