// The composition root: builds the event loop, the HTTP client, the provider
// adapters, the router and the gRPC server from a config, and tears them
// down in the reverse order.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace echelon {

struct ServerOptions {
  // A config directory (with _registry.yaml) or a single YAML file.
  std::string config_path = "configs/llms";
  // gRPC listen address; port 0 picks a free port (see Server::grpc_port).
  std::string grpc_address = "0.0.0.0:50051";
  // Serve grpc.reflection.v1alpha for grpcurl and friends.
  bool enable_reflection = true;
};

class Server {
 public:
  // Loads the config and starts serving. Errors: the config's problems
  // (INVALID_ARGUMENT, NOT_FOUND for a missing path) or UNAVAILABLE when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Create(
      const ServerOptions& options);

  virtual ~Server() = default;

  // The bound gRPC port.
  virtual int grpc_port() const = 0;

  // Loads the config again and swaps in a new routing snapshot; calls in
  // flight finish on the old one. A bad config is rejected whole and the
  // old one keeps serving. Thread-safe; not on the event loop thread.
  virtual absl::Status Reload() = 0;

  // Stops accepting calls, lets calls in flight finish for up to `drain`,
  // then cancels the rest (each still gets a final status) and stops the
  // event loop. Idempotent.
  virtual void Shutdown(absl::Duration drain) = 0;
};

}  // namespace echelon
