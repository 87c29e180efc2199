// The composition root: builds the event loop, the HTTP client, the provider
// adapters, the router, metrics, logs and both fronts (gRPC and the
// OpenAI-compatible HTTP front) from a config, and tears them down in the
// reverse order.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/gateway_service.h"

namespace echelon {

struct ServerOptions {
  // A config directory (with _registry.yaml) or a single YAML file.
  std::string config_path = "configs/llms";
  // gRPC listen address; port 0 picks a free port (see grpc_port()).
  std::string grpc_address = "0.0.0.0:50051";
  // OpenAI-compatible HTTP front; empty disables it.
  std::string http_address = "0.0.0.0:8080";
  // Prometheus exporter (/metrics); empty disables it.
  std::string metrics_address = "0.0.0.0:9464";
  // Serve grpc.reflection.v1alpha for grpcurl and friends.
  bool enable_reflection = true;
  // Serve the ReloadConfig admin RPC.
  bool admin_rpcs = true;
  // Reload when a file under config_path changes (inotify).
  bool watch_config = true;
  // Request log: JSON lines instead of text; lowest level written
  // ("debug", "info", "warning", "error").
  bool log_json = false;
  std::string log_level = "info";
  // gRPC limits: largest message in either direction (bytes), concurrent
  // streams per HTTP/2 connection, and keepalive: the server pings an idle
  // connection every keepalive_time and drops it when no answer comes
  // within keepalive_timeout; clients may ping no more often than
  // min_client_ping_interval.
  int max_message_bytes = 16 << 20;
  int max_concurrent_streams = 1000;
  absl::Duration keepalive_time = absl::Minutes(2);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  // TLS on the gRPC listener: PEM certificate chain and key (both or
  // neither; empty = plaintext). With a client CA, clients must present a
  // certificate it signed (mutual TLS).
  std::string grpc_tls_cert;
  std::string grpc_tls_key;
  std::string grpc_tls_client_ca;
  // TLS on the OpenAI-compatible HTTP listener, the same way (separate
  // from gRPC's so that each listener can face its own clients; pass the
  // same files to both for one certificate).
  std::string http_tls_cert;
  std::string http_tls_key;
  std::string http_tls_client_ca;
  // PEM CA bundle trusted for https:// upstreams instead of the system
  // store (upstream certificates are always verified).
  std::string upstream_ca_file;
  // How often grpc.health.v1 per-target status is recomputed.
  absl::Duration health_interval = absl::Seconds(1);
  // libcurl multi handles the upstream transfers are spread over
  // (HttpClient::Options::multi_handles).
  int upstream_multi_handles = 16;
};

class Server {
 public:
  // Loads the config and starts serving. Errors: the config's problems
  // (INVALID_ARGUMENT, NOT_FOUND for a missing path) or UNAVAILABLE when an
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Create(
      const ServerOptions& options);

  virtual ~Server() = default;

  // Bound ports (0 for a disabled listener).
  virtual int grpc_port() const = 0;
  virtual int http_port() const = 0;
  virtual int metrics_port() const = 0;

  // Loads the config again and swaps in a new routing snapshot; calls in
  // flight finish on the old one. A bad config is rejected whole and the
  // old one keeps serving; the outcome is logged and counted in metrics.
  // Thread-safe; not on the event loop thread.
  virtual ReloadOutcome Reload() = 0;

  // Health goes NOT_SERVING, new calls are refused, calls in flight may
  // finish for up to `drain`, then the rest are cancelled (each still gets
  // a final status) and the event loop stops. Idempotent.
  virtual void Shutdown(absl::Duration drain) = 0;
};

}  // namespace echelon
