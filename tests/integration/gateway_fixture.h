// Starts the upstream simulator and the echelond binary as real processes
// for one configuration, and gives tests what they need to check both sides
// of a request: a gRPC stub, the simulator's per-key /_stats, its control
// endpoints (/_reset, /_scenario) and a scrape of the gateway's /metrics.
//
// The gateway gets these environment variables, for use in test configs:
//   ECHELON_SIM_URL     http://127.0.0.1:<sim>/v1
//   ECHELON_SIM_ROOT    http://127.0.0.1:<sim>  (for /s/<scenario>/v1 URLs)
//   ECHELON_CLOSED_URL  http://127.0.0.1:<port>/v1 where <port> is bound but
//                       not listening for as long as the fixture lives, so
//                       connecting to it is refused.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/integration/subprocess.h"

namespace echelon::testing {

// One key of the simulator's GET /_stats. Times are the simulator's
// monotonic milliseconds; -1 means never.
struct SimKeyStats {
  int64_t attempts = 0;
  int64_t active = 0;
  int64_t max_active = 0;
  int64_t completed = 0;
  int64_t client_closed = 0;
  int64_t server_closed = 0;
  int64_t last_start_ms = -1;
  int64_t last_close_ms = -1;
};

struct SimStats {
  std::map<std::string, SimKeyStats> keys;
  int64_t total_attempts = 0;
  int64_t now_ms = 0;
  // The key's stats, or all zeros when the simulator never saw it.
  SimKeyStats Key(const std::string& key) const;
};

// A plain HTTP answer from libcurl.
struct HttpAnswer {
  long status = 0;
  std::string body;
};

// GET or POST (when `post_body` is set) `url`, with a bounded wait.
absl::StatusOr<HttpAnswer> HttpFetch(
    const std::string& url, const std::optional<std::string>& post_body,
    absl::Duration timeout = absl::Seconds(10));

// The value of the Prometheus sample `name{labels}` in a text exposition,
// where every `label="value"` pair of `labels` must be present (in any
// order; other labels are allowed). Sums matching samples; 0 when none.
double MetricValue(const std::string& exposition, const std::string& name,
                   const std::map<std::string, std::string>& labels);

// GET <sim_url>/_stats of a running simulator (sim_url: http://host:port).
absl::StatusOr<SimStats> FetchSimStats(const std::string& sim_url);

class GatewayProcesses {
 public:
  struct Options {
    // Workspace-relative config path (directory or single file), resolved
    // as a runfile.
    std::string config;
    // The simulator's --scenario (default for every request).
    std::string sim_scenario;
  };

  static absl::StatusOr<std::unique_ptr<GatewayProcesses>> Start(
      const Options& options);
  ~GatewayProcesses();

  v1::Gateway::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  int sim_port() const { return sim_port_; }
  std::string sim_url() const;  // http://127.0.0.1:<sim>

  absl::StatusOr<SimStats> Stats();
  // Stats().Key(key), or all zeros (with a test failure) on error.
  SimKeyStats KeyStats(const std::string& key);
  absl::Status ResetSim();
  // Runtime override for `key`; an empty scenario removes it.
  absl::Status SetScenario(const std::string& key, const std::string& scenario);
  absl::StatusOr<std::string> ScrapeMetrics();
  absl::StatusOr<v1::PoolStatus> PoolStatus(const std::string& pool);
  absl::StatusOr<v1::TaskGroupStatus> TaskGroupStatus(const std::string& group);

 private:
  GatewayProcesses() = default;

  std::unique_ptr<Subprocess> sim_;
  std::unique_ptr<Subprocess> gateway_;
  int sim_port_ = 0;
  int metrics_port_ = 0;
  int http_port_ = 0;
  int closed_fd_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

// A user request for `target` with one message.
v1::ExecuteRequest UserRequest(const std::string& target,
                               const std::string& text = "Say hello");

inline void SetDeadline(grpc::ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(d));
}

// The value of the trailing metadata `key`, or "" when absent.
std::string Trailer(const grpc::ClientContext& ctx, const std::string& key);

// A finished server stream as the client saw it.
struct StreamResult {
  std::vector<std::string> content;  // content deltas in order
  std::vector<v1::ToolCallDelta> tool_calls;
  bool saw_summary = false;
  v1::StreamSummary summary;
  grpc::Status status;
  std::string Joined() const;
};

// Reads the whole stream of `req` with a deadline of `deadline`.
StreamResult RunStream(v1::Gateway::Stub& stub, const v1::ExecuteRequest& req,
                       absl::Duration deadline = absl::Seconds(20));

}  // namespace echelon::testing
