#include "service/server.h"

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "adapters/config_loader.h"
#include "adapters/event_loop.h"
#include "adapters/http_client.h"
#include "adapters/provider_factory.h"
#include "domain/router.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "service/gateway_service.h"
#include "service/router_holder.h"

namespace echelon {
namespace {

class ServerImpl final : public Server {
 public:
  ~ServerImpl() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Init(const ServerOptions& options) {
    options_ = options;
    absl::StatusOr<GatewayConfig> config = LoadConfig(options.config_path);
    if (!config.ok()) return config.status();

    auto loop = EpollEventLoop::Create(EpollEventLoop::Options());
    if (!loop.ok()) return loop.status();
    loop_ = std::move(*loop);
    loop_->Start();

    auto http = HttpClient::Create(HttpClient::Options(), *loop_);
    if (!http.ok()) return http.status();
    http_ = std::move(*http);

    auto router = BuildRouter(*config, /*previous=*/nullptr);
    if (!router.ok()) return router.status();
    routers_ = std::make_unique<RouterHolder>(std::move(*router));
    service_ = std::make_unique<GatewayService>(*routers_);

    grpc::EnableDefaultHealthCheckService(true);
    if (options.enable_reflection) {
      grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    }
    grpc::ServerBuilder builder;
    builder.AddListeningPort(options.grpc_address,
                             grpc::InsecureServerCredentials(), &grpc_port_);
    builder.RegisterService(service_.get());
    grpc_server_ = builder.BuildAndStart();
    if (grpc_server_ == nullptr || grpc_port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options.grpc_address));
    }
    return absl::OkStatus();
  }

  int grpc_port() const override { return grpc_port_; }

  absl::Status Reload() override {
    absl::MutexLock lock(&reload_mu_);
    absl::StatusOr<GatewayConfig> config = LoadConfig(options_.config_path);
    if (!config.ok()) return config.status();
    std::shared_ptr<Router> previous = routers_->Get();
    auto router = BuildRouter(*config, previous.get());
    if (!router.ok()) return router.status();
    routers_->Swap(std::move(*router));
    return absl::OkStatus();
  }

  void Shutdown(absl::Duration drain) override {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
    if (grpc_server_ != nullptr) {
      if (auto* health = grpc_server_->GetHealthCheckService()) {
        health->SetServingStatus(false);
      }
      // Waits for calls in flight until the deadline, then cancels them;
      // cancelled calls still get their final status from the router.
      grpc_server_->Shutdown(std::chrono::system_clock::now() +
                             absl::ToChronoMilliseconds(drain));
      grpc_server_->Wait();
    }
    if (loop_ != nullptr) loop_->Stop();
    // Routers (and their timers) go before the transport they use.
    routers_.reset();
    service_.reset();
    http_.reset();
  }

 private:
  // Builds the providers and a router for `config` on the loop thread, where
  // the previous router's state may be read safely.
  absl::StatusOr<std::shared_ptr<Router>> BuildRouter(
      const GatewayConfig& config, const Router* previous) {
    std::map<std::string, std::shared_ptr<Provider>> providers;
    for (const ProviderConfig& p : config.providers) {
      auto provider = MakeProvider(p, *http_);
      if (!provider.ok()) return provider.status();
      providers[p.name] = std::move(*provider);
    }
    absl::StatusOr<std::unique_ptr<Router>> router;
    absl::Notification done;
    loop_->Post([&] {
      router = Router::Create(config, *loop_, std::move(providers), previous);
      done.Notify();
    });
    done.WaitForNotification();
    if (!router.ok()) return router.status();
    return std::shared_ptr<Router>(std::move(*router));
  }

  ServerOptions options_;
  std::unique_ptr<EpollEventLoop> loop_;
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<RouterHolder> routers_;
  std::unique_ptr<GatewayService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int grpc_port_ = 0;
  absl::Mutex reload_mu_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Create(
    const ServerOptions& options) {
  auto server = std::make_unique<ServerImpl>();
  absl::Status s = server->Init(options);
  if (!s.ok()) return s;
  return server;
}

}  // namespace echelon
