// A tiny blocking HTTP/1.1 server for HTTP client tests: listens on
// 127.0.0.1 port 0 and hands every request to a scripted handler on a
// thread per connection. Handlers write raw bytes, so tests can cut, stall
// or reset connections at will.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace echelon {

class TestHttpServer {
 public:
  // What a handler may do with the connection.
  class Conn {
   public:
    explicit Conn(int fd, TestHttpServer* server) : fd_(fd), server_(server) {}
    bool Write(const std::string& bytes) {
      size_t off = 0;
      while (off < bytes.size()) {
        ssize_t n =
            send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
      }
      return true;
    }
    // Blocks until the peer closes (returns true) or the server shuts down.
    bool WaitPeerClosed(absl::Duration timeout) {
      absl::Time end = absl::Now() + timeout;
      char buf[256];
      while (absl::Now() < end && !server_->stopping_.load()) {
        timeval tv{0, 20000};
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ssize_t n = recv(fd_, buf, sizeof(buf), 0);
        if (n == 0) return true;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return true;
      }
      return false;
    }
    // Waits until the server stops (for "hang" scripts).
    void Hang() { server_->stop_.WaitForNotification(); }
    // Sends a TCP RST instead of a FIN on close.
    void Reset() {
      linger lg{1, 0};
      setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      server_->Forget(fd_);
      close(fd_);
      fd_ = -1;
    }
    int fd() const { return fd_; }

   private:
    int fd_;
    TestHttpServer* server_;
  };

  // Called per request with the raw request (head + body). Return true to
  // keep the connection open for another request.
  using Handler = std::function<bool(const std::string& request, Conn& conn)>;

  explicit TestHttpServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listen_fd_, 64);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~TestHttpServer() {
    stopping_.store(true);
    stop_.Notify();
    shutdown(listen_fd_, SHUT_RDWR);
    close(listen_fd_);
    acceptor_.join();
    std::vector<std::thread> workers;
    {
      absl::MutexLock lock(&mu_);
      // Unblock workers waiting for another request on a kept-alive
      // connection.
      for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
      workers.swap(workers_);
    }
    for (auto& t : workers) t.join();
  }

  int port() const { return port_; }
  std::string url(absl::string_view path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }
  int accepted() const { return accepted_.load(); }

 private:
  void AcceptLoop() {
    for (;;) {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      ++accepted_;
      absl::MutexLock lock(&mu_);
      workers_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    {
      absl::MutexLock lock(&mu_);
      open_fds_.push_back(fd);
    }
    if (ServeConn(fd)) {
      Forget(fd);
      close(fd);
    }
  }

  void Forget(int fd) {
    absl::MutexLock lock(&mu_);
    auto it = std::find(open_fds_.begin(), open_fds_.end(), fd);
    if (it != open_fds_.end()) open_fds_.erase(it);
  }

  // Returns whether the fd is still open (not reset by the handler).

  bool ServeConn(int fd) {
    Conn conn(fd, this);
    std::string buf;
    char chunk[4096];
    for (;;) {
      // Read one request: head, then Content-Length bytes of body.
      size_t head_end;
      while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) return true;
        buf.append(chunk, n);
      }
      size_t body_len = 0;
      size_t cl = buf.find("Content-Length: ");
      if (cl != std::string::npos && cl < head_end) {
        size_t eol = buf.find("\r\n", cl);
        absl::SimpleAtoi(buf.substr(cl + 16, eol - cl - 16), &body_len);
      }
      while (buf.size() < head_end + 4 + body_len) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) return true;
        buf.append(chunk, n);
      }
      std::string request = buf.substr(0, head_end + 4 + body_len);
      buf.erase(0, request.size());
      bool keep = handler_(request, conn);
      if (!keep || conn.fd() < 0) break;
    }
    return conn.fd() >= 0;
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::atomic<bool> stopping_{false};
  absl::Notification stop_;
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<int> open_fds_ ABSL_GUARDED_BY(mu_);
};

}  // namespace echelon
