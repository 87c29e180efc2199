// The gRPC front: thin callback-API handlers that translate to the domain's
// Router and back. One reactor per RPC, one write in flight, Finish exactly
// once, OnCancel cancels the upstream call, OnDone frees the reactor.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "echelon/v1/gateway.grpc.pb.h"
#include "service/router_holder.h"

namespace echelon {

class GatewayService final : public v1::Gateway::CallbackService {
 public:
  // `routers` must outlive the service.
  explicit GatewayService(RouterHolder& routers);

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

 private:
  std::string NextRequestId();

  RouterHolder& routers_;
  const std::string id_prefix_;  // random per process
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace echelon
