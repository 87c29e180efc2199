// echelon_cli: a small command-line client for the echelon.v1 contract, for
// trying the gateway by hand (tools/echelon call) and for scripts.
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/time.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "Gateway gRPC address.");
ABSL_FLAG(std::string, target, "fast-pool",
          "Pool, task group, group.echelon, or model.");
ABSL_FLAG(std::string, prompt, "Hello", "The user message.");
ABSL_FLAG(bool, stream, true, "Use Stream (else Execute).");
ABSL_FLAG(bool, status, false, "Print GetPoolStatus instead of calling.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30), "Call deadline.");

namespace v1 = echelon::v1;

namespace {

void PrintAttempts(
    const google::protobuf::RepeatedPtrField<v1::Attempt>& attempts) {
  for (const v1::Attempt& a : attempts) {
    std::cerr << "  attempt " << a.instance() << " [" << a.echelon() << "] -> "
              << a.outcome() << " in " << a.duration_us() << " us"
              << (a.next_action().empty() ? "" : ", then " + a.next_action())
              << (a.detail().empty() ? "" : " (" + a.detail() + ")") << "\n";
  }
}

int Fail(const grpc::Status& s) {
  std::cerr << "error: " << s.error_code() << " " << s.error_message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_address),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Gateway::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(
      std::chrono::system_clock::now() +
      absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_timeout)));

  if (absl::GetFlag(FLAGS_status)) {
    v1::GetPoolStatusResponse response;
    grpc::Status s =
        stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &response);
    if (!s.ok()) return Fail(s);
    std::cout << response.DebugString();
    return 0;
  }

  v1::ExecuteRequest request;
  request.set_target(absl::GetFlag(FLAGS_target));
  v1::Message* m = request.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content(absl::GetFlag(FLAGS_prompt));

  if (!absl::GetFlag(FLAGS_stream)) {
    v1::ExecuteResponse response;
    grpc::Status s = stub->Execute(&context, request, &response);
    if (!s.ok()) return Fail(s);
    std::cout << response.message().content() << "\n";
    std::cerr << "served by " << response.instance() << ", "
              << response.usage().total_tokens() << " tokens\n";
    PrintAttempts(response.attempts());
    return 0;
  }

  auto reader = stub->Stream(&context, request);
  v1::StreamChunk chunk;
  while (reader->Read(&chunk)) {
    switch (chunk.chunk_case()) {
      case v1::StreamChunk::kContentDelta:
        std::cout << chunk.content_delta() << std::flush;
        break;
      case v1::StreamChunk::kToolCallDelta:
        std::cout << "[tool " << chunk.tool_call_delta().name()
                  << chunk.tool_call_delta().arguments_delta() << "]"
                  << std::flush;
        break;
      case v1::StreamChunk::kUsage:
        std::cerr << "\nusage: " << chunk.usage().total_tokens() << " tokens\n";
        break;
      case v1::StreamChunk::kSummary:
        std::cerr << "served by " << chunk.summary().instance() << "\n";
        PrintAttempts(chunk.summary().attempts());
        break;
      default:
        break;
    }
  }
  std::cout << "\n";
  grpc::Status s = reader->Finish();
  if (!s.ok()) return Fail(s);
  return 0;
}
