// A real redis-server on a free loopback port for adapter tests, plus a
// blocking hiredis connection to inspect and steer it from the test thread.
// Started with `--save '' --appendonly no` (nothing on disk) and the DEBUG
// command enabled; the log goes to $TEST_TMPDIR/redis-<port>.log.
#pragma once

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/integration/subprocess.h"

namespace echelon::testing {

inline int PickFreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// A reply flattened for assertions.
struct SyncReply {
  int type = 0;  // REDIS_REPLY_*
  std::string str;
  long long integer = 0;
  std::vector<SyncReply> elements;
};

class RedisServer {
 public:
  // `extra` are more redis-server arguments, e.g. {"--requirepass", "pw"}.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(
      std::vector<std::string> extra = {}, std::string password = "") {
    auto server = std::unique_ptr<RedisServer>(new RedisServer);
    server->extra_ = std::move(extra);
    server->password_ = std::move(password);
    absl::Status last = absl::UnavailableError("no port");
    for (int attempt = 0; attempt < 3; ++attempt) {
      server->port_ = PickFreeLoopbackPort();
      if (server->port_ <= 0) continue;
      last = server->Launch();
      if (last.ok()) return server;
    }
    return last;
  }

  ~RedisServer() {
    if (sync_ != nullptr) redisFree(sync_);
  }

  int port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  pid_t pid() const { return process_ ? process_->pid() : -1; }

  // SIGKILL and reap.
  void Kill() {
    if (sync_ != nullptr) redisFree(sync_);
    sync_ = nullptr;
    process_.reset();
  }
  // A new server on the same port (empty: nothing survives a restart).
  absl::Status Restart() {
    Kill();
    return Launch();
  }
  void Pause() { kill(process_->pid(), SIGSTOP); }
  void Resume() { kill(process_->pid(), SIGCONT); }

  // A blocking command on the test's own connection.
  absl::StatusOr<SyncReply> Command(const std::vector<std::string>& args) {
    if (sync_ == nullptr) {
      absl::Status s = ConnectSync();
      if (!s.ok()) return s;
    }
    return Run(sync_, args);
  }

 private:
  RedisServer() = default;

  static absl::StatusOr<SyncReply> Run(redisContext* c,
                                       const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(
        c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (r == nullptr) return absl::UnavailableError(c->errstr);
    SyncReply out = Convert(r);
    freeReplyObject(r);
    return out;
  }

  static SyncReply Convert(const redisReply* r) {
    SyncReply out;
    out.type = r->type;
    if (r->str != nullptr) out.str.assign(r->str, r->len);
    out.integer = r->integer;
    for (size_t i = 0; i < r->elements; ++i) {
      out.elements.push_back(Convert(r->element[i]));
    }
    return out;
  }

  absl::Status ConnectSync() {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    if (c == nullptr || c->err != 0) {
      std::string why = c != nullptr ? c->errstr : "out of memory";
      if (c != nullptr) redisFree(c);
      return absl::UnavailableError(why);
    }
    redisSetTimeout(c, timeval{5, 0});
    if (!password_.empty()) {
      absl::StatusOr<SyncReply> auth = Run(c, {"AUTH", password_});
      if (!auth.ok() || auth->type == REDIS_REPLY_ERROR) {
        redisFree(c);
        return absl::UnavailableError("AUTH failed");
      }
    }
    sync_ = c;
    return absl::OkStatus();
  }

  absl::Status Launch() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::vector<std::string> argv = {
        "/usr/bin/redis-server",
        "--port",
        absl::StrCat(port_),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--enable-debug-command",
        "yes",
        "--logfile",
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/redis-", port_, ".log")};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv);
    if (!p.ok()) return p.status();
    process_ = std::move(*p);
    // Bounded wait until it answers PING.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (ConnectSync().ok()) {
        absl::StatusOr<SyncReply> pong = Run(sync_, {"PING"});
        if (pong.ok() && pong->str == "PONG") return absl::OkStatus();
        redisFree(sync_);
        sync_ = nullptr;
      }
      if (process_->Wait(absl::Milliseconds(20)).ok()) {
        process_.reset();
        return absl::UnavailableError(
            absl::StrCat("redis-server exited (port ", port_, " taken?)"));
      }
    }
    process_.reset();
    return absl::DeadlineExceededError("redis-server did not start");
  }

  int port_ = 0;
  std::vector<std::string> extra_;
  std::string password_;
  std::unique_ptr<Subprocess> process_;
  redisContext* sync_ = nullptr;
};

}  // namespace echelon::testing
