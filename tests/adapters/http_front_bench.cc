// A load target for the HTTP front: the real HttpFront on one EpollEventLoop
// with a router that answers at once (non-streamed: a fixed completion;
// streamed: 8 content deltas). Point wrk at it:
//
//   bazel run //tests/adapters:http_front_bench -- 8099 &
//   wrk -t4 -c64 -d10s http://127.0.0.1:8099/healthz
//   wrk -t4 -c64 -d10s -s post.lua http://127.0.0.1:8099/v1/chat/completions
//
// HTTPS: pass a PEM certificate and key after the port
// (`-- 8099 server.pem server.key`) and point wrk at https://.
//
// Prints "LISTENING http <port>" and serves until killed.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "adapters/event_loop.h"
#include "adapters/http_front.h"
#include "adapters/http_tls.h"

namespace echelon {
namespace {

class InstantRouter : public Router {
 public:
  explicit InstantRouter(EventLoop& loop) : loop_(loop) {}

  class NoopHandle : public RequestHandle {
   public:
    void Cancel() override {}
  };

  std::shared_ptr<RequestHandle> Start(RouteRequest req,
                                       ResponseSink* sink) override {
    bool stream = req.stream;
    loop_.Post([sink, stream] {
      RoutedResponse r;
      r.model = "bench";
      r.instance = "bench/a";
      if (stream) {
        for (int i = 1; i <= 8; ++i) {
          StreamDelta d;
          d.content = "tok" + std::to_string(i) + " ";
          sink->OnDelta(d);
        }
      } else {
        r.response.message.content = "tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8";
      }
      r.response.finish_reason = FinishReason::kStop;
      r.response.usage = {5, 8, 13, 0};
      r.response.has_usage = true;
      sink->OnComplete(absl::OkStatus(), std::move(r));
    });
    return std::make_shared<NoopHandle>();
  }

  absl::StatusOr<std::vector<PoolStatusView>> GetPoolStatus(
      absl::string_view) const override {
    return std::vector<PoolStatusView>{};
  }
  std::vector<TargetView> ListTargets() const override {
    TargetView t;
    t.name = "bench";
    return {t};
  }

 private:
  EventLoop& loop_;
};

}  // namespace
}  // namespace echelon

int main(int argc, char** argv) {
  using namespace echelon;
  auto loop = EpollEventLoop::Create(EpollEventLoop::Options());
  if (!loop.ok()) return 1;
  (*loop)->Start();
  auto router = std::make_shared<InstantRouter>(**loop);
  HttpFront::Options options;
  options.port = argc > 1 ? std::atoi(argv[1]) : 0;
  options.bind_address = "127.0.0.1";
  options.router = [router] { return router; };
  if (argc > 3) {
    HttpTlsFiles files;
    files.cert_file = argv[2];
    files.key_file = argv[3];
    auto tls = TlsServerContext::Create(files);
    if (!tls.ok()) {
      std::fprintf(stderr, "%s\n", std::string(tls.status().message()).c_str());
      return 1;
    }
    options.tls = *tls;
  }
  auto front = HttpFront::Create(options, **loop);
  if (!front.ok()) {
    std::fprintf(stderr, "%s\n", std::string(front.status().message()).c_str());
    return 1;
  }
  std::printf("LISTENING http %d\n", (*front)->port());
  std::fflush(stdout);
  for (;;) pause();
}
