// The gRPC front: thin callback-API handlers that translate to the domain's
// Router and back. One reactor per RPC, one write in flight, Finish exactly
// once, OnCancel cancels the upstream call, OnDone frees the reactor.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "service/router_holder.h"

namespace echelon {

// The outcome of a config reload, for the ReloadConfig RPC.
struct ReloadOutcome {
  bool applied = false;
  std::vector<std::string> problems;            // "file:line:col: key: message"
  absl::Time loaded_at = absl::InfinitePast();  // of the config now serving
};

class GatewayService final : public v1::Gateway::CallbackService {
 public:
  // Reloads the config; called on a gRPC thread (may block briefly). Null
  // disables the ReloadConfig RPC (FAILED_PRECONDITION).
  using ReloadFn = std::function<ReloadOutcome()>;

  // `routers` must outlive the service.
  explicit GatewayService(RouterHolder& routers, ReloadFn reload = nullptr);

  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext* context,
                                    const v1::ExecuteRequest* request,
                                    v1::ExecuteResponse* response) override;

  grpc::ServerWriteReactor<v1::StreamChunk>* Stream(
      grpc::CallbackServerContext* context,
      const v1::ExecuteRequest* request) override;

  grpc::ServerUnaryReactor* GetPoolStatus(
      grpc::CallbackServerContext* context,
      const v1::GetPoolStatusRequest* request,
      v1::GetPoolStatusResponse* response) override;

  grpc::ServerUnaryReactor* GetTaskGroupStatus(
      grpc::CallbackServerContext* context,
      const v1::GetTaskGroupStatusRequest* request,
      v1::GetTaskGroupStatusResponse* response) override;

  grpc::ServerUnaryReactor* ListTargets(
      grpc::CallbackServerContext* context,
      const v1::ListTargetsRequest* request,
      v1::ListTargetsResponse* response) override;

  grpc::ServerUnaryReactor* ReloadConfig(
      grpc::CallbackServerContext* context,
      const v1::ReloadConfigRequest* request,
      v1::ReloadConfigResponse* response) override;

 private:
  std::string NextRequestId();

  RouterHolder& routers_;
  ReloadFn reload_;
  const std::string id_prefix_;  // random per process
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace echelon
