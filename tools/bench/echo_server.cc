// echo_server: a bare echelon.v1.Gateway on the gRPC callback API that
// answers at once with fixed content, never calling an upstream. It is built
// from the same libraries as echelond and is the floor for what any gRPC
// service here can cost per request (tools/bench/run_bench.py).
//
//   echo_server --port=0 --chunks=16
//
// Execute answers with one assistant message (the same text the simulator
// produces for --chunks tokens); Stream sends --chunks content deltas, a usage
// chunk and a summary. Prints "LISTENING grpc <port>" once serving; SIGTERM
// or SIGINT stop it.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(int, port, 0, "Port to listen on (127.0.0.1); 0 picks a free one.");
ABSL_FLAG(int, chunks, 16, "Content chunks per Stream call.");
ABSL_FLAG(int, max_concurrent_streams, 1000,
          "Concurrent gRPC calls per HTTP/2 connection.");

namespace echelon::bench {
namespace {

class EchoService final : public v1::Gateway::CallbackService {
 public:
  explicit EchoService(int chunks) {
    for (int i = 1; i <= chunks; ++i) {
      pieces_.push_back(absl::StrCat(i == 1 ? "" : " ", "tok", i));
      content_ += pieces_.back();
    }
  }

  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext* context,
                                    const v1::ExecuteRequest* request,
                                    v1::ExecuteResponse* response) override {
    v1::Message* m = response->mutable_message();
    m->set_role(v1::ROLE_ASSISTANT);
    m->set_content(content_);
    response->set_finish_reason(v1::FINISH_REASON_STOP);
    v1::Usage* u = response->mutable_usage();
    u->set_prompt_tokens(8);
    u->set_completion_tokens(static_cast<int64_t>(pieces_.size()));
    u->set_total_tokens(8 + static_cast<int64_t>(pieces_.size()));
    response->set_model("echo");
    response->set_instance("echo/a");
    v1::Attempt* a = response->add_attempts();
    a->set_instance("echo/a");
    a->set_model("echo");
    a->set_outcome("ok");
    response->set_request_id(request->request_id());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<v1::StreamChunk>* Stream(
      grpc::CallbackServerContext* /*context*/,
      const v1::ExecuteRequest* request) override {
    return new Writer(this, request->request_id());
  }

 private:
  // Writes every chunk in turn, one write in flight at a time.
  class Writer : public grpc::ServerWriteReactor<v1::StreamChunk> {
   public:
    Writer(const EchoService* service, std::string request_id)
        : service_(service), request_id_(std::move(request_id)) {
      Next();
    }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
        return;
      }
      Next();
    }
    void OnDone() override { delete this; }

   private:
    void Next() {
      const size_t n = service_->pieces_.size();
      chunk_.Clear();
      if (i_ < n) {
        chunk_.set_content_delta(service_->pieces_[i_]);
      } else if (i_ == n) {
        v1::Usage* u = chunk_.mutable_usage();
        u->set_prompt_tokens(8);
        u->set_completion_tokens(static_cast<int64_t>(n));
        u->set_total_tokens(8 + static_cast<int64_t>(n));
      } else if (i_ == n + 1) {
        v1::StreamSummary* s = chunk_.mutable_summary();
        s->set_finish_reason(v1::FINISH_REASON_STOP);
        s->set_model("echo");
        s->set_instance("echo/a");
        s->set_request_id(request_id_);
      } else {
        Finish(grpc::Status::OK);
        return;
      }
      ++i_;
      StartWrite(&chunk_);
    }

    const EchoService* service_;
    std::string request_id_;
    v1::StreamChunk chunk_;
    size_t i_ = 0;
  };

  std::vector<std::string> pieces_;
  std::string content_;
};

}  // namespace
}  // namespace echelon::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Bare gRPC echo Gateway: echo_server --port=0");
  absl::ParseCommandLine(argc, argv);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  echelon::bench::EchoService service(absl::GetFlag(FLAGS_chunks));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(
      absl::StrCat("127.0.0.1:", absl::GetFlag(FLAGS_port)),
      grpc::InsecureServerCredentials(), &port);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             absl::GetFlag(FLAGS_max_concurrent_streams));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "echo_server: cannot listen\n");
    return 1;
  }
  std::printf("LISTENING grpc %d\n", port);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  server->Shutdown();
  return 0;
}
