// The gRPC front: thin callback-API handlers that translate to the domain's
// Router and back. One reactor per RPC, one write in flight, Finish exactly
// once, OnCancel cancels the upstream call, OnDone frees the reactor.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "adapters/auth_policy.h"
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

  // Writes a line about a refused call (auth, limits); any thread. The
  // line names the client by its token's name, never the token.
  using LogFn = std::function<void(absl::string_view line)>;

  // `routers` must outlive the service. Until SetPolicy(), calls are
  // checked against the default limits and not authenticated.
  explicit GatewayService(RouterHolder& routers, ReloadFn reload = nullptr,
                          LogFn log = nullptr);

  // Installs the checks of a (re)loaded config. Thread-safe.
  void SetPolicy(std::shared_ptr<const EdgePolicy> policy)
      ABSL_LOCKS_EXCLUDED(policy_mu_);
  // The policy in force (never null). Thread-safe and cheap (a short lock),
  // so the HTTP front may call it on the loop thread for every request.
  std::shared_ptr<const EdgePolicy> Policy() const
      ABSL_LOCKS_EXCLUDED(policy_mu_);

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
  // Metadata caps and authentication of a routed call, then decoding, the
  // request caps, the target check and the client's limits. On success
  // fills `*out`; else returns the status to finish with (and the retry
  // hint in `*retry_after`).
  absl::Status Admit(grpc::CallbackServerContext* context,
                     const v1::ExecuteRequest& request, bool stream,
                     RouteRequest* out, absl::Duration* retry_after);
  // Authentication of a status (`admin` false) or admin RPC.
  absl::Status AdmitControl(grpc::CallbackServerContext* context,
                            const char* rpc, bool admin);
  void LogDenied(const char* rpc, absl::string_view client,
                 const absl::Status& status);

  RouterHolder& routers_;
  ReloadFn reload_;
  LogFn log_;
  mutable absl::Mutex policy_mu_;
  std::shared_ptr<const EdgePolicy> policy_ ABSL_GUARDED_BY(policy_mu_);
  const std::string id_prefix_;  // random per process
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace echelon
