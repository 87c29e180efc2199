// The Redis adapter of the SharedState port (domain/shared_state.h): replicas
// of the gateway share RPM/TPM limits and observations (cooldowns,
// disablements, ejections, breakers) through one Redis.
//
// Two connections (adapters/redis_client.h) on the event loop: one for
// commands, one subscribed to `<prefix>:events`.
//
// Limits. Acquire() runs one Lua script per decision (EVALSHA; the script is
// loaded with SCRIPT LOAD on connect, EVAL is the fallback on NOSCRIPT) that
// takes one request AND the tokens from `<prefix>:rl:<limit.key>`, or
// nothing, using the Redis server's clock (TIME), so replicas need no
// synchronised clocks. token_bucket keeps each level and the last refill
// time in the hash; sliding_window keeps per-second buckets ("r:<sec>",
// "t:<sec>") and sums the 60 buckets of the last minute, so a bucket leaves
// the window up to one second early compared with the in-process limiter.
// Keys get a PEXPIRE: an idle limit (bucket full again, window empty)
// disappears. A limit with no requests_per_minute and no tokens_per_minute
// is allowed without a round trip.
//
// Budget. Without a reply within `decision_timeout` the answer is kLocal;
// when the late reply says "allowed", the reservation is given back with an
// Adjust. While the command connection is down every answer is kLocal,
// posted at once; the connection is re-made with backoff and sharing
// resumes by itself.
//
// Events. Publish() stores the event in the hash `<prefix>:state` (one field
// per subject: kind (open and closed breakers share one), breaker kind,
// scope, name) and PUBLISHes it on `<prefix>:events`, in one script. The
// listener gets other replicas' events; after every (re)connect the hash is
// read (HGETALL) and its entries whose `until` is still ahead are delivered
// too (on the first catch-up after construction also this replica id's own,
// so a restarted replica with a fixed replica_id recovers its state).
// Events published while disconnected are kept (latest per subject) and
// published on reconnect if still current.
//
// Threading: everything on the loop thread, except construction (any thread)
// and Start() (any thread; it posts). Destroy on the loop thread or after the
// loop stopped; pending `done` callbacks are then destroyed without running.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "adapters/event_loop.h"
#include "adapters/host_port.h"
#include "adapters/redis_client.h"
#include "domain/config.h"
#include "domain/shared_state.h"

namespace echelon {

// Hooks for metrics and logs; loop thread. Every method has a no-op default.
class SharedStateObserver {
 public:
  enum class Direction { kPublished, kReceived };

  virtual ~SharedStateObserver() = default;
  // The command connection is up (handshake done) / went down or could not
  // be made. `reason` never contains the password.
  virtual void OnConnected() {}
  virtual void OnDisconnected(const std::string& reason) { (void)reason; }
  // One answer of Acquire() that needed the store: kAllowed / kRefused
  // (reason "") or kLocal with reason "timeout", "disconnected" or "error".
  virtual void OnDecision(SharedDecision::Kind kind, absl::string_view reason) {
    (void)kind;
    (void)reason;
  }
  // An event published by this replica, or received from another one
  // (including catch-up).
  virtual void OnEvent(Direction direction, SharedEventKind kind) {
    (void)direction;
    (void)kind;
  }
};

const char* SharedDecisionKindName(SharedDecision::Kind kind);
const char* SharedEventDirectionName(SharedStateObserver::Direction d);

// The wire format of events (exposed for tests):
//   1|<until unix
//   ms>|<n>:<replica>|<n>:<kind>|<n>:<breaker_kind>|<n>:<scope>|<n>:<name>
// where <n> is the byte length of what follows, so values may hold any byte.
// absl::InfinitePast/InfiniteFuture map to INT64_MIN/INT64_MAX.
std::string EncodeSharedEvent(const SharedEvent& event,
                              const std::string& replica_id);
bool DecodeSharedEvent(absl::string_view text, SharedEvent* event,
                       std::string* replica_id);
// The `<prefix>:state` field of an event's subject.
std::string SharedEventField(const SharedEvent& event);

class RedisSharedState final : public SharedState {
 public:
  using Listener = absl::AnyInvocable<void(const SharedEvent&)>;
  using LogFn = std::function<void(absl::string_view line)>;

  // `config.address` must be host:port (the config loader checks it; a bad
  // one leaves the adapter disconnected, answering kLocal). `observer` (may
  // be null) and `loop` must outlive this object. `log` (default: stderr)
  // gets connect/disconnect lines; it never sees the password.
  RedisSharedState(const ClusterConfig& config, EpollEventLoop& loop,
                   SharedStateObserver* observer = nullptr,
                   LogFn log = nullptr);
  ~RedisSharedState() override;

  RedisSharedState(const RedisSharedState&) = delete;
  RedisSharedState& operator=(const RedisSharedState&) = delete;

  // Starts connecting. Any thread (posts to the loop); call once.
  void Start();

  // Events of other replicas, on the loop thread. Loop thread (or before
  // Start()).
  void SetListener(Listener listener) { listener_ = std::move(listener); }

  // SharedState.
  void Acquire(const SharedLimit& limit, int64_t tokens,
               absl::AnyInvocable<void(SharedDecision)> done) override;
  void Adjust(const SharedLimit& limit, int64_t requests,
              int64_t tokens) override;
  void Publish(const SharedEvent& event) override;
  bool connected() const override;

  const std::string& replica_id() const { return replica_id_; }
  // Whether the subscriber connection is up (events are being received).
  bool subscribed() const;

  // The Redis key of a limit.
  std::string LimitKey(const SharedLimit& limit) const;

 private:
  struct Script {
    std::string text;
    std::string sha;  // empty until SCRIPT LOAD answered
    bool loading = false;
  };
  struct PendingDecision;

  void StartOnLoop();
  void OnCommandState(bool up, const std::string& reason);
  void OnSubscriberState(bool up, const std::string& reason);
  void OnMessage(const std::string& channel, const std::string& message);
  void LoadScript(Script* script);
  void RunScript(Script* script, std::vector<std::string> keys_and_args,
                 RedisClient::ReplyCallback done);
  void OnAcquireReply(const std::shared_ptr<PendingDecision>& op,
                      RedisReply reply);
  void Answer(PendingDecision& op, SharedDecision decision,
              absl::string_view reason);
  void PostDecision(absl::AnyInvocable<void(SharedDecision)> done,
                    SharedDecision decision);
  std::vector<std::string> LimitArgs(const SharedLimit& limit, const char* mode,
                                     int64_t requests, int64_t tokens) const;
  void SendEvent(const SharedEvent& event);
  void CatchUp();
  void Deliver(const SharedEvent& event);
  void Log(const std::string& line);

  const ClusterConfig config_;
  EpollEventLoop& loop_;
  SharedStateObserver* const observer_;
  LogFn log_;
  std::string replica_id_;
  std::string state_key_;
  std::string channel_;
  bool address_ok_ = false;
  bool started_ = false;
  bool caught_up_once_ = false;
  Listener listener_;
  Script limit_script_;
  Script publish_script_;
  // Latest unpublished event per subject (published on reconnect).
  std::map<std::string, SharedEvent> unpublished_;
  std::unique_ptr<RedisClient> commands_;
  std::unique_ptr<RedisClient> subscriber_;
  std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

}  // namespace echelon
