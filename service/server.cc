#include "service/server.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "adapters/auth_policy.h"
#include "adapters/cluster_metrics.h"
#include "adapters/config_loader.h"
#include "adapters/config_watcher.h"
#include "adapters/event_loop.h"
#include "adapters/http_client.h"
#include "adapters/http_front.h"
#include "adapters/http_tls.h"
#include "adapters/metrics.h"
#include "adapters/provider_factory.h"
#include "adapters/redis_shared_state.h"
#include "adapters/request_log.h"
#include "adapters/tls.h"
#include "domain/clock.h"
#include "domain/observer.h"
#include "domain/router.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "service/gateway_service.h"
#include "service/health_reporter.h"
#include "service/router_holder.h"

namespace echelon {
namespace {

// Hands every router event to each observer in turn.
class ObserverFanout final : public RouterObserver {
 public:
  void Add(RouterObserver* o) { observers_.push_back(o); }
  void OnAttempt(const AttemptEvent& e) override {
    for (RouterObserver* o : observers_) o->OnAttempt(e);
  }
  void OnRequestDone(const RequestDoneEvent& e) override {
    for (RouterObserver* o : observers_) o->OnRequestDone(e);
  }
  void OnFallback(const FallbackEvent& e) override {
    for (RouterObserver* o : observers_) o->OnFallback(e);
  }
  void OnBreakerTransition(const BreakerEvent& e) override {
    for (RouterObserver* o : observers_) o->OnBreakerTransition(e);
  }

 private:
  std::vector<RouterObserver*> observers_;
};

class ServerImpl final : public Server {
 public:
  ~ServerImpl() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Init(const ServerOptions& options) {
    options_ = options;
    absl::StatusOr<LogLevel> level = ParseLogLevel(options.log_level);
    if (!level.ok()) return level.status();
    RequestLog::Options log_options;
    log_options.json = options.log_json;
    log_options.level = *level;
    log_ = std::make_unique<RequestLog>(log_options);
    fanout_.Add(log_.get());

    absl::StatusOr<GatewayConfig> config = LoadConfig(options.config_path);
    if (!config.ok()) return config.status();

    auto loop = EpollEventLoop::Create(EpollEventLoop::Options());
    if (!loop.ok()) return loop.status();
    loop_ = std::move(*loop);
    loop_->Start();

    HttpClient::Options http_options;
    http_options.ca_file = options.upstream_ca_file;
    http_options.multi_handles = options.upstream_multi_handles;
    auto http = HttpClient::Create(http_options, *loop_);
    if (!http.ok()) return http.status();
    http_ = std::move(*http);

    GatewayMetrics::Options metrics_options;
    metrics_options.listen_address = options.metrics_address;
    metrics_options.pool_status = [this]() -> std::vector<PoolStatusView> {
      std::shared_ptr<Router> router =
          routers_ != nullptr ? routers_->Get() : nullptr;
      if (router == nullptr) return {};
      auto pools = router->GetPoolStatus("");
      return pools.ok() ? *std::move(pools) : std::vector<PoolStatusView>{};
    };
    auto metrics = GatewayMetrics::Create(metrics_options);
    if (!metrics.ok()) return metrics.status();
    metrics_ = std::move(*metrics);
    fanout_.Add(metrics_.get());

    if (config->cluster.enabled) {
      cluster_config_ = config->cluster;
      cluster_observer_ =
          std::make_unique<ClusterMetricsObserver>(metrics_.get());
      shared_ = std::make_unique<RedisSharedState>(
          config->cluster, *loop_, cluster_observer_.get(),
          [this](absl::string_view line) {
            log_->Log(LogLevel::kWarning, line);
          });
    }

    auto router = BuildRouter(*config, /*previous=*/nullptr);
    if (!router.ok()) return router.status();
    routers_ = std::make_unique<RouterHolder>(std::move(*router));
    if (shared_ != nullptr) {
      // Other replicas' observations go to whichever snapshot serves now.
      RunOnLoop([this] {
        shared_->SetListener([this](const SharedEvent& e) {
          std::shared_ptr<Router> r = routers_->Get();
          if (r != nullptr) r->ApplySharedEvent(e);
        });
      });
      shared_->Start();
    }
    {
      absl::MutexLock lock(&reload_mu_);
      loaded_at_ = absl::Now();
      metrics_->OnConfigReload(true, loaded_at_);
    }

    auto policy = BuildPolicy(*config, /*previous=*/nullptr);
    if (!policy.ok()) return policy.status();
    GatewayService::ReloadFn reload;
    if (options.admin_rpcs) reload = [this] { return Reload(); };
    service_ = std::make_unique<GatewayService>(
        *routers_, std::move(reload), [this](absl::string_view line) {
          log_->Log(LogLevel::kWarning, line);
        });
    {
      absl::MutexLock lock(&reload_mu_);
      policy_ = *std::move(policy);
      service_->SetPolicy(policy_);
    }

    // Bad HTTP TLS files stop the start before any listener opens.
    std::shared_ptr<TlsServerContext> http_tls;
    if (!options.http_address.empty()) {
      HttpTlsFiles files;
      files.cert_file = options.http_tls_cert;
      files.key_file = options.http_tls_key;
      files.client_ca_file = options.http_tls_client_ca;
      auto tls = TlsServerContext::Create(files);
      if (!tls.ok()) return tls.status();
      http_tls = *std::move(tls);
    }

    absl::Status s = StartGrpc();
    if (!s.ok()) return s;
    std::function<bool()> cluster_connected;
    if (cluster_observer_ != nullptr) {
      cluster_connected = [o = cluster_observer_.get()] {
        return o->connected();
      };
    }
    health_ = std::make_unique<HealthReporter>(
        grpc_server_->GetHealthCheckService(), *routers_,
        options.health_interval, std::move(cluster_connected));

    if (!options.http_address.empty()) {
      HttpFront::Options front_options;
      s = HttpFront::ParseAddress(options.http_address, &front_options);
      if (!s.ok()) return s;
      front_options.router = [this] { return routers_->Get(); };
      front_options.policy = [this] { return service_->Policy(); };
      front_options.tls = http_tls;
      absl::StatusOr<std::unique_ptr<HttpFront>> front;
      RunOnLoop([&] { front = HttpFront::Create(front_options, *loop_); });
      if (!front.ok()) return front.status();
      front_ = std::move(*front);
    }

    if (options.watch_config) {
      auto watcher = ConfigWatcher::Create(options.config_path, [this] {
        ReloadOutcome r = Reload();
        (void)r;  // logged and counted by Reload()
      });
      if (!watcher.ok()) return watcher.status();
      watcher_ = std::move(*watcher);
    }
    log_->Log(
        LogLevel::kInfo,
        absl::StrCat("echelond serving: grpc port ", grpc_port_, ", http port ",
                     http_port(),
                     front_ != nullptr && http_tls != nullptr
                         ? (http_tls->mutual() ? " (https, mtls)" : " (https)")
                         : "",
                     ", metrics port ", metrics_->port(), ", config ",
                     options.config_path));
    return absl::OkStatus();
  }

  int grpc_port() const override { return grpc_port_; }
  int http_port() const override {
    return front_ != nullptr ? front_->port() : 0;
  }
  int metrics_port() const override {
    return metrics_ != nullptr ? metrics_->port() : 0;
  }

  ReloadOutcome Reload() override {
    absl::MutexLock lock(&reload_mu_);
    ReloadOutcome outcome;
    ConfigLoadResult loaded = LoadConfigWithProblems(options_.config_path);
    absl::Status status = absl::OkStatus();
    if (loaded.problems.empty()) {
      if (ClusterChanged(loaded.config.cluster)) {
        log_->Log(LogLevel::kWarning,
                  "config reload: the cluster section changed; its store "
                  "connection is kept until a restart (local_share applies "
                  "now)");
      }
      std::shared_ptr<Router> previous = routers_->Get();
      absl::StatusOr<std::shared_ptr<const EdgePolicy>> policy =
          BuildPolicy(loaded.config, policy_.get());
      auto router = policy.ok() ? BuildRouter(loaded.config, previous.get())
                                : policy.status();
      if (router.ok()) {
        routers_->Swap(std::move(*router));
        policy_ = *std::move(policy);
        service_->SetPolicy(policy_);
        loaded_at_ = absl::Now();
        outcome.applied = true;
      } else {
        status = router.status();
        outcome.problems.push_back(std::string(status.message()));
      }
    } else {
      for (const ConfigProblem& p : loaded.problems) {
        outcome.problems.push_back(p.ToString());
      }
      status = absl::InvalidArgumentError(
          absl::StrCat(loaded.problems.size(),
                       " problem(s), first: ", outcome.problems.front()));
    }
    outcome.loaded_at = loaded_at_;
    metrics_->OnConfigReload(outcome.applied, absl::Now());
    if (outcome.applied) {
      log_->Log(LogLevel::kInfo, "config reloaded");
    } else {
      log_->Log(LogLevel::kError,
                absl::StrCat("config reload rejected, the previous config "
                             "keeps serving: ",
                             status.message()));
    }
    return outcome;
  }

  void Shutdown(absl::Duration drain) override {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
    watcher_.reset();  // no reload during shutdown
    if (health_ != nullptr) health_->SetShuttingDown();
    absl::Time deadline = absl::Now() + drain;
    // Both fronts drain concurrently: the HTTP front on its own (blocking)
    // call, gRPC here.
    std::thread http_drain;
    if (front_ != nullptr) {
      http_drain = std::thread([this, drain] { front_->Shutdown(drain); });
    }
    if (grpc_server_ != nullptr) {
      // Refuses new calls, waits for calls in flight until the deadline,
      // then cancels them; cancelled calls still get their final status
      // from the router (OnCancel -> route cancelled -> Finish).
      grpc_server_->Shutdown(absl::ToChronoTime(deadline));
      grpc_server_->Wait();
    }
    if (http_drain.joinable()) http_drain.join();
    health_.reset();
    if (front_ != nullptr) {
      RunOnLoop([this] { front_.reset(); });
    }
    if (loop_ != nullptr) {
      // Releasing the last router posts its shutdown (probe timers stop) to
      // the loop; the transport goes after it, on the loop thread, then the
      // loop itself. Observers (metrics, log) outlive every router event.
      if (routers_ != nullptr) routers_->Swap(nullptr);
      RunOnLoop([this] {
        http_.reset();
        shared_.reset();
      });
      loop_->Stop();
    }
    metrics_.reset();
    routers_.reset();
    service_.reset();
  }

 private:
  // Runs `fn` on the loop thread and waits for it.
  template <typename Fn>
  void RunOnLoop(Fn fn) {
    absl::Notification done;
    loop_->Post([&] {
      fn();
      done.Notify();
    });
    done.WaitForNotification();
  }

  absl::Status StartGrpc() {
    grpc::EnableDefaultHealthCheckService(true);
    if (options_.enable_reflection) {
      grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    }
    GrpcTlsFiles tls;
    tls.cert_file = options_.grpc_tls_cert;
    tls.key_file = options_.grpc_tls_key;
    tls.client_ca_file = options_.grpc_tls_client_ca;
    auto credentials = MakeGrpcServerCredentials(tls);
    if (!credentials.ok()) return credentials.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort(options_.grpc_address, *credentials, &grpc_port_);
    builder.RegisterService(service_.get());
    builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
    builder.SetMaxSendMessageSize(options_.max_message_bytes);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                               options_.max_concurrent_streams);
    builder.AddChannelArgument(
        GRPC_ARG_KEEPALIVE_TIME_MS,
        static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_time)));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(
                                   options_.keepalive_timeout)));
    builder.AddChannelArgument(
        GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
        static_cast<int>(
            absl::ToInt64Milliseconds(options_.min_client_ping_interval)));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    grpc_server_ = builder.BuildAndStart();
    if (grpc_server_ == nullptr || grpc_port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.grpc_address));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::shared_ptr<const EdgePolicy>> BuildPolicy(
      const GatewayConfig& config, const EdgePolicy* previous) {
    return EdgePolicy::Create(config, RealClock(), previous);
  }

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
    RouterOptions router_options;
    router_options.observer = &fanout_;
    if (shared_ != nullptr) {
      router_options.shared = shared_.get();
      router_options.local_share =
          config.cluster.enabled ? config.cluster.local_share : 1.0;
    }
    absl::StatusOr<std::unique_ptr<Router>> router;
    RunOnLoop([&] {
      router = Router::Create(config, *loop_, std::move(providers), previous,
                              router_options);
    });
    if (!router.ok()) return router.status();
    return std::shared_ptr<Router>(std::move(*router));
  }

  // Whether a reloaded cluster section differs from the one the store
  // connection was made with.
  bool ClusterChanged(const ClusterConfig& c) const {
    const ClusterConfig& o = cluster_config_;
    return c.enabled != o.enabled || c.address != o.address ||
           c.password != o.password || c.database != o.database ||
           c.key_prefix != o.key_prefix || c.replica_id != o.replica_id ||
           c.decision_timeout != o.decision_timeout;
  }

  ServerOptions options_;
  ClusterConfig cluster_config_;
  std::unique_ptr<ClusterMetricsObserver> cluster_observer_;
  std::unique_ptr<RedisSharedState> shared_;
  std::unique_ptr<RequestLog> log_;
  std::unique_ptr<GatewayMetrics> metrics_;
  ObserverFanout fanout_;
  std::unique_ptr<EpollEventLoop> loop_;
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<RouterHolder> routers_;
  std::unique_ptr<GatewayService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<HealthReporter> health_;
  std::unique_ptr<HttpFront> front_;
  std::unique_ptr<ConfigWatcher> watcher_;
  int grpc_port_ = 0;
  absl::Mutex reload_mu_;
  absl::Time loaded_at_ ABSL_GUARDED_BY(reload_mu_) = absl::InfinitePast();
  std::shared_ptr<const EdgePolicy> policy_ ABSL_GUARDED_BY(reload_mu_);
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
