// The upstream LLM simulator: an HTTP/1.1 server that speaks the OpenAI chat
// completions and Anthropic Messages dialects with deterministic content and
// scripted faults (see README.md), plus a small control/stats API.
//
// One thread runs everything: a hand-written epoll loop over non-blocking
// sockets, with a timer heap driving epoll_wait's timeout (latency, time to
// first token, inter-token delays). No thread per connection.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace echelon {
namespace sim {

class SimServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";  // numeric address or resolvable name
    int port = 8700;                 // 0 picks an ephemeral port
    std::string scenario;            // default scenario for every request
  };

  // Binds and listens. Returns kInvalidArgument for a bad scenario string
  // and kUnavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<SimServer>> Create(
      const Options& options);

  ~SimServer();

  // The bound port (useful with port 0).
  int port() const;

  // Serves until Stop(); returns kInternal if epoll fails.
  absl::Status Run();

  // Makes Run() return. Async-signal-safe; callable from any thread.
  void Stop();

  class Impl;  // the event loop and all request handling; sim_server.cc

 private:
  explicit SimServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sim
}  // namespace echelon
