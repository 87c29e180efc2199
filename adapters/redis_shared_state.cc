#include "adapters/redis_shared_state.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace echelon {
namespace {

// Takes one request and `tokens` from a limit (mode "acquire"), or adds
// (possibly negative) amounts (mode "adjust"). Server clock only.
//   KEYS[1] the limit's key
//   ARGV: mode, algorithm ("tb" | "sw"), requests_per_minute,
//         tokens_per_minute, burst, requests, tokens
//   returns {1, 0} when taken (adjust: always), {0, retry_after_ms}.
constexpr char kLimitScript[] = R"lua(
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local acquire = ARGV[1] == 'acquire'
local limits = {tonumber(ARGV[3]) or 0, tonumber(ARGV[4]) or 0}
local burst = tonumber(ARGV[5]) or 1
if burst <= 0 then burst = 1 end
local amounts = {tonumber(ARGV[6]) or 0, tonumber(ARGV[7]) or 0}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
if ARGV[2] == 'sw' then
  local sec = math.floor(now / 1000)
  local prefixes = {'r:', 't:'}
  local sums = {0, 0}
  local buckets = {{}, {}}
  local stale = {}
  local all = redis.call('HGETALL', key)
  for j = 1, #all, 2 do
    local f = all[j]
    local p = string.sub(f, 1, 2)
    local s = tonumber(string.sub(f, 3))
    local i = nil
    if p == 'r:' then i = 1 elseif p == 't:' then i = 2 end
    if i == nil or s == nil or s <= sec - 60 then
      stale[#stale + 1] = f
    else
      local v = tonumber(all[j + 1]) or 0
      sums[i] = sums[i] + v
      buckets[i][#buckets[i] + 1] = {s, v}
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  if acquire then
    local wait = 0
    for i = 1, 2 do
      if limits[i] > 0 then
        local need = math.min(amounts[i], limits[i])
        if sums[i] + need > limits[i] then
          local w = 60000
          local excess = sums[i] + need - limits[i]
          table.sort(buckets[i], function(a, b) return a[1] < b[1] end)
          for _, b in ipairs(buckets[i]) do
            excess = excess - b[2]
            if excess <= 0 then
              w = (b[1] + 60) * 1000 - now
              break
            end
          end
          wait = math.max(wait, w, 1)
        end
      end
    end
    if wait > 0 then return {0, math.ceil(wait)} end
  end
  for i = 1, 2 do
    if limits[i] > 0 and amounts[i] ~= 0 then
      redis.call('HINCRBY', key, prefixes[i] .. sec, amounts[i])
    end
  end
  redis.call('PEXPIRE', key, 61000)
  return {1, 0}
end
local fields = {'r', 't'}
local h = redis.call('HMGET', key, 'r', 't', 'ts')
local last = tonumber(h[3]) or now
local elapsed = math.max(0, now - last)
local caps, rates, levels = {}, {}, {}
local wait = 0
for i = 1, 2 do
  if limits[i] > 0 then
    caps[i] = math.max(1, limits[i] * burst)
    rates[i] = limits[i] / 60000
    local level = tonumber(h[i])
    if level == nil then
      level = caps[i]
    else
      level = math.min(caps[i], level + elapsed * rates[i])
    end
    levels[i] = level
    if acquire then
      local need = math.min(amounts[i], caps[i])
      if level < need then
        wait = math.max(wait, (need - level) / rates[i], 1)
      end
    end
  end
end
if wait > 0 then return {0, math.ceil(wait)} end
local ttl = 1000
for i = 1, 2 do
  if limits[i] > 0 then
    levels[i] = math.min(caps[i], levels[i] - amounts[i])
    redis.call('HSET', key, fields[i], string.format('%.17g', levels[i]))
    ttl = math.max(ttl, math.ceil((caps[i] - levels[i]) / rates[i]) + 1000)
  end
end
redis.call('HSET', key, 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', key, ttl)
return {1, 0}
)lua";

// Stores an event and publishes it, atomically; prunes entries that ended
// more than a minute ago (server clock).
//   KEYS[1] the state hash; ARGV: channel, field, encoded event
constexpr char kPublishScript[] = R"lua(
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000
local all = redis.call('HGETALL', KEYS[1])
local stale = {}
for j = 1, #all, 2 do
  local u = tonumber(string.match(all[j + 1], '^1|(%-?%d+)|'))
  if u == nil or u < now - 60000 then stale[#stale + 1] = all[j] end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
redis.call('PUBLISH', ARGV[1], ARGV[3])
return 1
)lua";

int64_t ToWireMillis(absl::Time t) {
  if (t == absl::InfinitePast()) return std::numeric_limits<int64_t>::min();
  if (t == absl::InfiniteFuture()) return std::numeric_limits<int64_t>::max();
  return absl::ToUnixMillis(t);
}

absl::Time FromWireMillis(int64_t ms) {
  if (ms == std::numeric_limits<int64_t>::min()) return absl::InfinitePast();
  if (ms == std::numeric_limits<int64_t>::max()) return absl::InfiniteFuture();
  return absl::FromUnixMillis(ms);
}

void AppendField(std::string* out, absl::string_view value) {
  absl::StrAppend(out, "|", value.size(), ":", value);
}

// Reads "|<n>:<bytes>" at *pos.
bool ReadField(absl::string_view text, size_t* pos, std::string* out) {
  if (*pos >= text.size() || text[*pos] != '|') return false;
  const size_t colon = text.find(':', *pos + 1);
  if (colon == absl::string_view::npos) return false;
  size_t n = 0;
  if (!absl::SimpleAtoi(text.substr(*pos + 1, colon - *pos - 1), &n)) {
    return false;
  }
  if (n > text.size() - colon - 1) return false;
  *out = std::string(text.substr(colon + 1, n));
  *pos = colon + 1 + n;
  return true;
}

bool ParseKind(const std::string& name, SharedEventKind* kind) {
  for (SharedEventKind k :
       {SharedEventKind::kCooldown, SharedEventKind::kDisable,
        SharedEventKind::kEject, SharedEventKind::kBreakerOpen,
        SharedEventKind::kBreakerClosed}) {
    if (name == SharedEventKindName(k)) {
      *kind = k;
      return true;
    }
  }
  return false;
}

std::string DefaultReplicaId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(host[0] != '\0' ? host : "localhost", ":", getpid());
}

}  // namespace

const char* SharedDecisionKindName(SharedDecision::Kind kind) {
  switch (kind) {
    case SharedDecision::Kind::kAllowed:
      return "allowed";
    case SharedDecision::Kind::kRefused:
      return "refused";
    case SharedDecision::Kind::kLocal:
      return "local";
  }
  return "unknown";
}

const char* SharedEventDirectionName(SharedStateObserver::Direction d) {
  return d == SharedStateObserver::Direction::kPublished ? "published"
                                                         : "received";
}

std::string EncodeSharedEvent(const SharedEvent& event,
                              const std::string& replica_id) {
  std::string out = absl::StrCat("1|", ToWireMillis(event.until));
  AppendField(&out, replica_id);
  AppendField(&out, SharedEventKindName(event.kind));
  AppendField(&out, event.breaker_kind);
  AppendField(&out, event.scope);
  AppendField(&out, event.name);
  return out;
}

bool DecodeSharedEvent(absl::string_view text, SharedEvent* event,
                       std::string* replica_id) {
  if (!absl::StartsWith(text, "1|")) return false;
  const size_t bar = text.find('|', 2);
  if (bar == absl::string_view::npos) return false;
  int64_t until = 0;
  if (!absl::SimpleAtoi(text.substr(2, bar - 2), &until)) return false;
  size_t pos = bar;
  std::string replica, kind;
  SharedEvent e;
  if (!ReadField(text, &pos, &replica) || !ReadField(text, &pos, &kind) ||
      !ReadField(text, &pos, &e.breaker_kind) ||
      !ReadField(text, &pos, &e.scope) || !ReadField(text, &pos, &e.name) ||
      pos != text.size() || !ParseKind(kind, &e.kind)) {
    return false;
  }
  e.until = FromWireMillis(until);
  *event = std::move(e);
  *replica_id = std::move(replica);
  return true;
}

std::string SharedEventField(const SharedEvent& event) {
  // An open and a closed breaker are the same subject: the latest wins.
  const bool breaker = event.kind == SharedEventKind::kBreakerOpen ||
                       event.kind == SharedEventKind::kBreakerClosed;
  std::string out =
      absl::StrCat(breaker ? "breaker" : SharedEventKindName(event.kind));
  AppendField(&out, event.breaker_kind);
  AppendField(&out, event.scope);
  AppendField(&out, event.name);
  return out;
}

struct RedisSharedState::PendingDecision {
  SharedLimit limit;
  int64_t tokens = 0;
  absl::AnyInvocable<void(SharedDecision)> done;
  EventLoop::TimerId timer = EventLoop::kNoTimer;
  bool answered = false;
};

RedisSharedState::RedisSharedState(const ClusterConfig& config,
                                   EpollEventLoop& loop,
                                   SharedStateObserver* observer, LogFn log)
    : config_(config),
      loop_(loop),
      observer_(observer),
      log_(std::move(log)),
      replica_id_(config.replica_id.empty() ? DefaultReplicaId()
                                            : config.replica_id),
      state_key_(absl::StrCat(config.key_prefix, ":state")),
      channel_(absl::StrCat(config.key_prefix, ":events")) {
  limit_script_.text = kLimitScript;
  publish_script_.text = kPublishScript;
  RedisClient::Options options;
  address_ok_ = ParseHostPort(config.address, &options.host, &options.port);
  options.password = config.password;
  options.database = config.database;
  options.connect_timeout = config.connect_timeout;
  options.reply_timeout = config.connect_timeout;
  options.reconnect_min = config.reconnect_min;
  options.reconnect_max = std::max(config.reconnect_max, config.reconnect_min);
  options.name = "redis";
  commands_ = std::make_unique<RedisClient>(loop_, options);
  options.subscribe = {channel_};
  options.name = "redis-sub";
  subscriber_ = std::make_unique<RedisClient>(loop_, options);
  commands_->SetStateCallback([this](bool up, const std::string& reason) {
    OnCommandState(up, reason);
  });
  subscriber_->SetStateCallback([this](bool up, const std::string& reason) {
    OnSubscriberState(up, reason);
  });
  subscriber_->SetMessageCallback(
      [this](const std::string& channel, const std::string& message) {
        OnMessage(channel, message);
      });
}

RedisSharedState::~RedisSharedState() {
  // The clients drop their pending callbacks (which capture `this`) without
  // running them.
  subscriber_.reset();
  commands_.reset();
}

void RedisSharedState::Log(const std::string& line) {
  if (log_) {
    log_(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

void RedisSharedState::Start() {
  if (loop_.InLoopThread()) {
    StartOnLoop();
    return;
  }
  loop_.Post([alive = std::weak_ptr<char>(alive_), this] {
    if (!alive.expired()) StartOnLoop();
  });
}

void RedisSharedState::StartOnLoop() {
  if (started_) return;
  started_ = true;
  if (!address_ok_) {
    Log(absl::StrCat("cluster: invalid redis address '", config_.address,
                     "' (expected host:port); deciding locally"));
    return;
  }
  Log(absl::StrCat("cluster: replica ", replica_id_, " connecting to redis at ",
                   config_.address));
  commands_->Start();
  subscriber_->Start();
}

bool RedisSharedState::connected() const { return commands_->connected(); }

bool RedisSharedState::subscribed() const { return subscriber_->connected(); }

std::string RedisSharedState::LimitKey(const SharedLimit& limit) const {
  return absl::StrCat(config_.key_prefix, ":rl:", limit.key);
}

void RedisSharedState::OnCommandState(bool up, const std::string& reason) {
  if (up) {
    Log(absl::StrCat("cluster: connected to redis at ", config_.address,
                     " (replica ", replica_id_, ")"));
    if (observer_ != nullptr) observer_->OnConnected();
    limit_script_.sha.clear();
    publish_script_.sha.clear();
    limit_script_.loading = publish_script_.loading = false;
    LoadScript(&limit_script_);
    LoadScript(&publish_script_);
    // Events observed while disconnected, if still current.
    std::map<std::string, SharedEvent> unpublished;
    unpublished.swap(unpublished_);
    const absl::Time now = loop_.Now();
    for (auto& [field, event] : unpublished) {
      if (event.until > now) SendEvent(event);
    }
    if (subscriber_->connected()) CatchUp();
    return;
  }
  Log(absl::StrCat("cluster: redis at ", config_.address, " unavailable: ",
                   reason, "; deciding locally until it is back"));
  if (observer_ != nullptr) observer_->OnDisconnected(reason);
}

void RedisSharedState::OnSubscriberState(bool up, const std::string& reason) {
  if (up) {
    Log(absl::StrCat("cluster: subscribed to ", channel_));
    if (commands_->connected()) CatchUp();
    return;
  }
  Log(absl::StrCat("cluster: event subscription to ", config_.address,
                   " lost: ", reason));
}

void RedisSharedState::LoadScript(Script* script) {
  if (script->loading || !script->sha.empty()) return;
  script->loading = true;
  commands_->Command({"SCRIPT", "LOAD", script->text},
                     [script](RedisReply reply) {
                       script->loading = false;
                       if (reply.type == RedisReply::Type::kString) {
                         script->sha = reply.str;
                       }
                     });
}

void RedisSharedState::RunScript(Script* script,
                                 std::vector<std::string> keys_and_args,
                                 RedisClient::ReplyCallback done) {
  std::vector<std::string> argv;
  argv.reserve(keys_and_args.size() + 3);
  if (script->sha.empty()) {
    argv = {"EVAL", script->text, "1"};
    argv.insert(argv.end(), keys_and_args.begin(), keys_and_args.end());
    commands_->Command(std::move(argv), std::move(done));
    return;
  }
  argv = {"EVALSHA", script->sha, "1"};
  argv.insert(argv.end(), keys_and_args.begin(), keys_and_args.end());
  commands_->Command(
      std::move(argv), [this, script, keys_and_args = std::move(keys_and_args),
                        done = std::move(done)](RedisReply reply) mutable {
        if (reply.is_error() && absl::StartsWith(reply.str, "NOSCRIPT")) {
          // The server lost its script cache (restart, SCRIPT FLUSH).
          script->sha.clear();
          LoadScript(script);
          std::vector<std::string> eval = {"EVAL", script->text, "1"};
          eval.insert(eval.end(), keys_and_args.begin(), keys_and_args.end());
          commands_->Command(std::move(eval), std::move(done));
          return;
        }
        done(std::move(reply));
      });
}

std::vector<std::string> RedisSharedState::LimitArgs(const SharedLimit& limit,
                                                     const char* mode,
                                                     int64_t requests,
                                                     int64_t tokens) const {
  const RateLimitConfig& l = limit.limits;
  return {LimitKey(limit),
          mode,
          l.algorithm == RateLimitAlgorithm::kSlidingWindow ? "sw" : "tb",
          absl::StrCat(l.requests_per_minute),
          absl::StrCat(l.tokens_per_minute),
          absl::StrCat(l.burst),
          absl::StrCat(requests),
          absl::StrCat(tokens)};
}

void RedisSharedState::PostDecision(
    absl::AnyInvocable<void(SharedDecision)> done, SharedDecision decision) {
  loop_.Post([alive = std::weak_ptr<char>(alive_), done = std::move(done),
              decision]() mutable {
    if (!alive.expired()) done(decision);
  });
}

void RedisSharedState::Acquire(const SharedLimit& limit, int64_t tokens,
                               absl::AnyInvocable<void(SharedDecision)> done) {
  if (limit.limits.requests_per_minute <= 0 &&
      limit.limits.tokens_per_minute <= 0) {
    SharedDecision allowed;
    allowed.kind = SharedDecision::Kind::kAllowed;
    PostDecision(std::move(done), allowed);
    return;
  }
  if (!commands_->connected()) {
    if (observer_ != nullptr) {
      observer_->OnDecision(SharedDecision::Kind::kLocal, "disconnected");
    }
    PostDecision(std::move(done), SharedDecision{});
    return;
  }
  auto op = std::make_shared<PendingDecision>();
  op->limit = limit;
  op->tokens = tokens;
  op->done = std::move(done);
  op->timer = loop_.RunAfter(config_.decision_timeout,
                             [alive = std::weak_ptr<char>(alive_), this, op] {
                               op->timer = EventLoop::kNoTimer;
                               if (alive.expired()) return;
                               Answer(*op, SharedDecision{}, "timeout");
                             });
  RunScript(
      &limit_script_, LimitArgs(limit, "acquire", 1, tokens),
      [this, op](RedisReply reply) { OnAcquireReply(op, std::move(reply)); });
}

void RedisSharedState::OnAcquireReply(
    const std::shared_ptr<PendingDecision>& op, RedisReply reply) {
  const bool well_formed =
      reply.type == RedisReply::Type::kArray && reply.elements.size() == 2 &&
      reply.elements[0].type == RedisReply::Type::kInteger &&
      reply.elements[1].type == RedisReply::Type::kInteger;
  const bool allowed = well_formed && reply.elements[0].integer == 1;
  if (op->answered) {
    // Too late: the caller decided locally. Give the shared reservation back
    // so that Redis does not count a request that was not made through it.
    if (allowed) Adjust(op->limit, -1, -op->tokens);
    return;
  }
  loop_.CancelTimer(op->timer);
  op->timer = EventLoop::kNoTimer;
  if (!well_formed) {
    Answer(*op, SharedDecision{},
           commands_->connected() ? "error" : "disconnected");
    return;
  }
  SharedDecision decision;
  if (allowed) {
    decision.kind = SharedDecision::Kind::kAllowed;
  } else {
    decision.kind = SharedDecision::Kind::kRefused;
    decision.retry_after = absl::Milliseconds(reply.elements[1].integer);
  }
  Answer(*op, decision, "");
}

void RedisSharedState::Answer(PendingDecision& op, SharedDecision decision,
                              absl::string_view reason) {
  if (op.answered) return;
  op.answered = true;
  if (observer_ != nullptr) observer_->OnDecision(decision.kind, reason);
  // Always on the loop thread and never inside Acquire(): a timer or a
  // reply callback.
  auto done = std::move(op.done);
  done(decision);
}

void RedisSharedState::Adjust(const SharedLimit& limit, int64_t requests,
                              int64_t tokens) {
  if (limit.limits.requests_per_minute <= 0 &&
      limit.limits.tokens_per_minute <= 0) {
    return;
  }
  if (requests == 0 && tokens == 0) return;
  if (!commands_->connected()) return;
  RunScript(&limit_script_, LimitArgs(limit, "adjust", requests, tokens),
            [](RedisReply) {});
}

void RedisSharedState::Publish(const SharedEvent& event) {
  if (observer_ != nullptr) {
    observer_->OnEvent(SharedStateObserver::Direction::kPublished, event.kind);
  }
  if (!commands_->connected()) {
    unpublished_[SharedEventField(event)] = event;
    return;
  }
  SendEvent(event);
}

void RedisSharedState::SendEvent(const SharedEvent& event) {
  std::string field = SharedEventField(event);
  RunScript(
      &publish_script_,
      {state_key_, channel_, field, EncodeSharedEvent(event, replica_id_)},
      [this, field, event](RedisReply reply) {
        if (!reply.is_error()) return;
        // Lost with the connection: publish on reconnect unless a
        // newer observation of the same subject is already waiting.
        if (!commands_->connected()) unpublished_.emplace(field, event);
      });
}

void RedisSharedState::OnMessage(const std::string& channel,
                                 const std::string& message) {
  if (channel != channel_) return;
  SharedEvent event;
  std::string from;
  if (!DecodeSharedEvent(message, &event, &from)) return;
  if (from == replica_id_) return;
  Deliver(event);
}

void RedisSharedState::CatchUp() {
  const bool first = !caught_up_once_;
  caught_up_once_ = true;
  commands_->Command(
      {"HGETALL", state_key_},
      [alive = std::weak_ptr<char>(alive_), this, first](RedisReply reply) {
        if (alive.expired() || reply.type != RedisReply::Type::kArray) return;
        const absl::Time now = loop_.Now();
        for (size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
          SharedEvent event;
          std::string from;
          if (!DecodeSharedEvent(reply.elements[i + 1].str, &event, &from)) {
            continue;
          }
          if (event.until <= now) continue;
          if (from == replica_id_ && !first) continue;
          Deliver(event);
        }
      });
}

void RedisSharedState::Deliver(const SharedEvent& event) {
  if (observer_ != nullptr) {
    observer_->OnEvent(SharedStateObserver::Direction::kReceived, event.kind);
  }
  if (listener_) listener_(event);
}

}  // namespace echelon
