#include "service/gateway_service.h"

#include <chrono>
#include <deque>
#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/convert.h"
#include "service/grpc_status.h"

namespace echelon {
namespace {

// The caller's deadline, or InfiniteFuture when it set none.
absl::Time CallerDeadline(const grpc::CallbackServerContext* context) {
  auto deadline = context->deadline();
  // gRPC reports "no deadline" as a far-future time point.
  if (deadline >=
      std::chrono::system_clock::now() + std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// Prepares a RouteRequest; on a bad request returns the status to finish
// with.
absl::Status MakeRouteRequest(const v1::ExecuteRequest& in, bool stream,
                              const grpc::CallbackServerContext* context,
                              std::string request_id, RouteRequest* out) {
  auto chat = std::make_shared<ChatRequest>();
  absl::Status s = FromProto(in, chat.get());
  if (!s.ok()) return s;
  if (chat->request_id.empty()) chat->request_id = std::move(request_id);
  out->target = in.target();
  out->request = std::move(chat);
  out->stream = stream;
  out->deadline = CallerDeadline(context);
  return absl::OkStatus();
}

class ExecuteReactor final : public grpc::ServerUnaryReactor,
                             public ResponseSink {
 public:
  ExecuteReactor(grpc::CallbackServerContext* context,
                 v1::ExecuteResponse* response)
      : context_(context), response_(response) {}

  void Begin(std::shared_ptr<Router> router, RouteRequest req) {
    router_ = std::move(router);
    auto handle = router_->Start(std::move(req), this);
    absl::MutexLock lock(&mu_);
    handle_ = std::move(handle);
  }

  void OnDelta(const StreamDelta&) override {}

  void OnComplete(absl::Status status, RoutedResponse routed) override {
    if (status.ok()) {
      ToProto(routed, response_);
      Finish(grpc::Status::OK);
      return;
    }
    Finish(ToGrpcStatus(status, routed.retry_after, context_));
  }

  void OnCancel() override {
    std::shared_ptr<RequestHandle> handle;
    {
      absl::MutexLock lock(&mu_);
      handle = handle_;
    }
    if (handle != nullptr) handle->Cancel();
  }

  void OnDone() override { delete this; }

  // OnDone (delete, dropping two shared_ptrs) and OnCancel (a Post to the
  // loop) are trivial and never block: let gRPC run them on the thread
  // that completes the call instead of handing every call's OnDone to its
  // executor thread (one more thread wake-up per request). gRPC's own
  // DefaultReactor, which the bare echo server uses, does the same.
  bool InternalInlineable() override { return true; }

 private:
  grpc::CallbackServerContext* const context_;
  v1::ExecuteResponse* const response_;
  std::shared_ptr<Router> router_;  // the snapshot this call runs on
  absl::Mutex mu_;
  std::shared_ptr<RequestHandle> handle_ ABSL_GUARDED_BY(mu_);
};

class StreamReactor final : public grpc::ServerWriteReactor<v1::StreamChunk>,
                            public ResponseSink {
 public:
  explicit StreamReactor(grpc::CallbackServerContext* context)
      : context_(context) {}

  void Begin(std::shared_ptr<Router> router, RouteRequest req) {
    router_ = std::move(router);
    auto handle = router_->Start(std::move(req), this);
    absl::MutexLock lock(&mu_);
    handle_ = std::move(handle);
  }

  // Loop thread.
  void OnDelta(const StreamDelta& delta) override {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      if (!delta.content.empty()) {
        queue_.emplace_back().set_content_delta(delta.content);
      }
      for (const ToolCallDelta& t : delta.tool_calls) {
        v1::ToolCallDelta* out =
            queue_.emplace_back().mutable_tool_call_delta();
        out->set_index(t.index);
        out->set_id(t.id);
        out->set_name(t.name);
        out->set_arguments_delta(t.arguments_delta);
      }
      if (delta.usage.has_value()) {
        ToProto(*delta.usage, queue_.emplace_back().mutable_usage());
        usage_sent_ = true;
      }
      step = NextStep();
    }
    Act(this, std::move(step));
  }

  // Loop thread; exactly once.
  void OnComplete(absl::Status status, RoutedResponse routed) override {
    // The next step is decided in the same critical section that sets
    // completed_: once mu_ is released, a write finishing on a gRPC thread
    // may Finish() the call, and gRPC may then delete this reactor (OnDone)
    // before this thread could lock mu_ again (ASan caught exactly that).
    Step step;
    {
      absl::MutexLock lock(&mu_);
      if (status.ok()) {
        if (routed.response.has_usage && !usage_sent_) {
          ToProto(routed.response.usage, queue_.emplace_back().mutable_usage());
        }
        ToSummaryProto(routed, queue_.emplace_back().mutable_summary());
        final_status_ = grpc::Status::OK;
      } else {
        final_status_ = ToGrpcStatus(status, routed.retry_after, context_);
      }
      completed_ = true;
      step = NextStep();
    }
    Act(this, std::move(step));
  }

  void OnWriteDone(bool ok) override {
    std::shared_ptr<RequestHandle> cancel;
    Step step;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      queue_.pop_front();
      if (!ok && !broken_) {
        // The client is gone: stop the upstream; OnComplete follows.
        broken_ = true;
        queue_.clear();
        cancel = handle_;
      }
      step = NextStep();
    }
    // gRPC does not call OnDone while this reaction runs, so Cancel() is
    // safe even when `step` finishes the call.
    if (cancel != nullptr) cancel->Cancel();
    Act(this, std::move(step));
  }

  void OnCancel() override {
    std::shared_ptr<RequestHandle> handle;
    {
      absl::MutexLock lock(&mu_);
      handle = handle_;
    }
    if (handle != nullptr) handle->Cancel();
  }

  void OnDone() override { delete this; }

  // As for ExecuteReactor: OnDone, OnCancel and OnWriteDone only take mu_
  // briefly, post to the loop or start the next write; none blocks.
  bool InternalInlineable() override { return true; }

 private:
  // What to do once mu_ is released: start the next write, finish the
  // call, or nothing (a write is in flight, or more is to come).
  struct Step {
    const v1::StreamChunk* write = nullptr;
    bool finish = false;
    grpc::Status status;
  };

  // Claims the next write or the finish for the caller; at most one thread
  // gets either. Finishes once everything queued was written and the route
  // completed.
  Step NextStep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Step step;
    if (writing_ || finished_) return step;
    if (!queue_.empty() && !broken_) {
      writing_ = true;
      step.write = &queue_.front();  // deque keeps it in place until popped
    } else if (completed_) {
      finished_ = true;
      step.finish = true;
      step.status = final_status_;
      queue_.clear();
    }
    return step;
  }

  // Never holds mu_ while calling into gRPC, and touches nothing after
  // Finish(): the reactor may be deleted as soon as it is called. Static,
  // and `self` is not touched for an empty step: when this thread claimed
  // nothing, another thread may already have finished the call and gRPC
  // deleted the reactor (even a no-op member call would then be a
  // use-after-free; UBSan's vptr check reads the object).
  static void Act(StreamReactor* self, Step step) {
    if (step.write != nullptr) {
      self->StartWrite(step.write);
    } else if (step.finish) {
      self->Finish(std::move(step.status));
    }
  }

  grpc::CallbackServerContext* const context_;
  std::shared_ptr<Router> router_;
  absl::Mutex mu_;
  std::shared_ptr<RequestHandle> handle_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::StreamChunk> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool completed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool usage_sent_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

// The client token of a call: `authorization: Bearer <token>`, else
// `x-api-key`.
std::string CallToken(const grpc::CallbackServerContext* context) {
  const auto& md = context->client_metadata();
  absl::string_view authorization;
  absl::string_view api_key;
  auto a = md.find("authorization");
  if (a != md.end())
    authorization = absl::string_view(a->second.data(), a->second.size());
  auto k = md.find("x-api-key");
  if (k != md.end())
    api_key = absl::string_view(k->second.data(), k->second.size());
  return ExtractToken(authorization, api_key);
}

// Entries and key+value bytes of a call's metadata.
void MetadataSize(const grpc::CallbackServerContext* context, int64_t* entries,
                  int64_t* bytes) {
  *entries = 0;
  *bytes = 0;
  for (const auto& [key, value] : context->client_metadata()) {
    ++*entries;
    *bytes += static_cast<int64_t>(key.size() + value.size());
  }
}

std::string RandomPrefix() {
  absl::BitGen gen;
  return absl::StrFormat("%08x", absl::Uniform<uint32_t>(gen));
}

}  // namespace

GatewayService::GatewayService(RouterHolder& routers, ReloadFn reload,
                               LogFn log)
    : routers_(routers),
      reload_(std::move(reload)),
      log_(std::move(log)),
      policy_(std::make_shared<const EdgePolicy>()),
      id_prefix_(RandomPrefix()) {}

void GatewayService::SetPolicy(std::shared_ptr<const EdgePolicy> policy) {
  absl::MutexLock lock(&policy_mu_);
  policy_ = std::move(policy);
}

std::shared_ptr<const EdgePolicy> GatewayService::Policy() const {
  absl::MutexLock lock(&policy_mu_);
  return policy_;
}

void GatewayService::LogDenied(const char* rpc, absl::string_view client,
                               const absl::Status& status) {
  if (!log_) return;
  log_(absl::StrCat("refused ", rpc, " client=", client.empty() ? "-" : client,
                    " code=", absl::StatusCodeToString(status.code()), ": ",
                    status.message()));
}

absl::Status GatewayService::Admit(grpc::CallbackServerContext* context,
                                   const v1::ExecuteRequest& request,
                                   bool stream, RouteRequest* out,
                                   absl::Duration* retry_after) {
  const char* rpc = stream ? "Stream" : "Execute";
  std::shared_ptr<const EdgePolicy> policy = Policy();
  int64_t entries = 0;
  int64_t bytes = 0;
  MetadataSize(context, &entries, &bytes);
  const std::string token = CallToken(context);
  Principal principal;
  absl::Status s = AdmitCall(*policy, token, entries, bytes, &principal);
  if (s.ok()) {
    s = MakeRouteRequest(request, stream, context, NextRequestId(), out);
  }
  if (s.ok()) {
    s = AdmitRequest(*policy, token, out->target, *out->request, &principal,
                     retry_after);
  }
  if (!s.ok()) LogDenied(rpc, principal.name, s);
  return s;
}

absl::Status GatewayService::AdmitControl(grpc::CallbackServerContext* context,
                                          const char* rpc, bool admin) {
  std::shared_ptr<const EdgePolicy> policy = Policy();
  if (policy->auth == nullptr) return absl::OkStatus();
  Principal principal;
  const std::string token = CallToken(context);
  absl::Status s = admin ? policy->auth->CheckAdmin(token, &principal)
                         : policy->auth->CheckStatus(token, &principal);
  if (!s.ok()) LogDenied(rpc, principal.name, s);
  return s;
}

std::string GatewayService::NextRequestId() {
  return absl::StrCat(id_prefix_, "-",
                      next_id_.fetch_add(1, std::memory_order_relaxed));
}

grpc::ServerUnaryReactor* GatewayService::Execute(
    grpc::CallbackServerContext* context, const v1::ExecuteRequest* request,
    v1::ExecuteResponse* response) {
  RouteRequest req;
  absl::Duration retry_after = absl::ZeroDuration();
  absl::Status s =
      Admit(context, *request, /*stream=*/false, &req, &retry_after);
  if (!s.ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(s, retry_after, context));
    return reactor;
  }
  auto* reactor = new ExecuteReactor(context, response);
  reactor->Begin(routers_.Get(), std::move(req));
  return reactor;
}

grpc::ServerWriteReactor<v1::StreamChunk>* GatewayService::Stream(
    grpc::CallbackServerContext* context, const v1::ExecuteRequest* request) {
  auto* reactor = new StreamReactor(context);
  RouteRequest req;
  absl::Duration retry_after = absl::ZeroDuration();
  absl::Status s =
      Admit(context, *request, /*stream=*/true, &req, &retry_after);
  if (!s.ok()) {
    RoutedResponse refused;
    refused.retry_after = retry_after;
    reactor->OnComplete(s, std::move(refused));
    return reactor;
  }
  reactor->Begin(routers_.Get(), std::move(req));
  return reactor;
}

grpc::ServerUnaryReactor* GatewayService::GetPoolStatus(
    grpc::CallbackServerContext* context,
    const v1::GetPoolStatusRequest* request,
    v1::GetPoolStatusResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status admitted = AdmitControl(context, "GetPoolStatus", false);
  if (!admitted.ok()) {
    reactor->Finish(ToGrpcStatus(admitted));
    return reactor;
  }
  auto pools = routers_.Get()->GetPoolStatus(request->pool());
  if (!pools.ok()) {
    reactor->Finish(ToGrpcStatus(pools.status()));
    return reactor;
  }
  for (const PoolStatusView& p : *pools) ToProto(p, response->add_pools());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GatewayService::GetTaskGroupStatus(
    grpc::CallbackServerContext* context,
    const v1::GetTaskGroupStatusRequest* request,
    v1::GetTaskGroupStatusResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status admitted = AdmitControl(context, "GetTaskGroupStatus", false);
  if (!admitted.ok()) {
    reactor->Finish(ToGrpcStatus(admitted));
    return reactor;
  }
  auto groups = routers_.Get()->GetTaskGroupStatus(request->task_group());
  if (!groups.ok()) {
    reactor->Finish(ToGrpcStatus(groups.status()));
    return reactor;
  }
  for (const TaskGroupStatusView& g : *groups) {
    ToProto(g, response->add_task_groups());
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GatewayService::ListTargets(
    grpc::CallbackServerContext* context, const v1::ListTargetsRequest*,
    v1::ListTargetsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status admitted = AdmitControl(context, "ListTargets", false);
  if (!admitted.ok()) {
    reactor->Finish(ToGrpcStatus(admitted));
    return reactor;
  }
  for (const TargetView& t : routers_.Get()->ListTargets()) {
    ToProto(t, response->add_targets());
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GatewayService::ReloadConfig(
    grpc::CallbackServerContext* context, const v1::ReloadConfigRequest*,
    v1::ReloadConfigResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!reload_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                 "admin RPCs are disabled (--admin_rpcs)"));
    return reactor;
  }
  absl::Status admitted = AdmitControl(context, "ReloadConfig", true);
  if (!admitted.ok()) {
    reactor->Finish(ToGrpcStatus(admitted));
    return reactor;
  }
  ReloadOutcome outcome = reload_();
  response->set_applied(outcome.applied);
  for (std::string& p : outcome.problems) response->add_problems(std::move(p));
  if (outcome.loaded_at != absl::InfinitePast()) {
    response->set_loaded_at_us(absl::ToUnixMicros(outcome.loaded_at));
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace echelon
