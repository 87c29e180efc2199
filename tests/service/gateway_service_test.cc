// The gRPC front against a scripted Router, over a real in-process gRPC
// server: checks translation, stream ordering, partial failures, retry hints,
// deadline and cancellation propagation.
#include "service/gateway_service.h"

#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "service/grpc_status.h"
#include "tests/fakes/scripted_router.h"

namespace echelon {
namespace {

class GatewayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto router = std::make_shared<ScriptedRouter>();
    PoolStatusView pool;
    pool.name = "p";
    pool.strategy = "round_robin";
    pool.instances.emplace_back().id = "m/a";
    router->set_pools({pool});
    router_ = router.get();
    holder_ = std::make_unique<RouterHolder>(router);
    service_ = std::make_unique<GatewayService>(*holder_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    stub_ = v1::Gateway::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                            grpc::InsecureChannelCredentials()));
  }

  void TearDown() override { server_->Shutdown(); }

  static v1::ExecuteRequest Req() {
    v1::ExecuteRequest r;
    r.set_target("p");
    v1::Message* m = r.add_messages();
    m->set_role(v1::ROLE_USER);
    m->set_content("hi");
    return r;
  }

  static StreamDelta Text(const std::string& s) {
    StreamDelta d;
    d.content = s;
    return d;
  }

  ScriptedRouter* router_;
  std::unique_ptr<RouterHolder> holder_;
  std::unique_ptr<GatewayService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

TEST_F(GatewayServiceTest, ExecuteTranslatesRequestAndResponse) {
  v1::ExecuteResponse resp;
  grpc::Status status;
  std::thread client([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    status = stub_->Execute(&ctx, Req(), &resp);
  });
  ScriptedRouter::Call call = router_->NextCall();
  ASSERT_NE(call.sink, nullptr);
  EXPECT_EQ(call.req.target, "p");
  EXPECT_FALSE(call.req.stream);
  ASSERT_EQ(call.req.request->messages.size(), 1u);
  EXPECT_FALSE(call.req.request->request_id.empty());
  // The caller's 5 s deadline reaches the domain.
  EXPECT_LT(call.req.deadline, absl::Now() + absl::Seconds(6));
  EXPECT_GT(call.req.deadline, absl::Now() + absl::Seconds(3));
  RoutedResponse r;
  r.response.message.content = "hello";
  r.response.finish_reason = FinishReason::kStop;
  r.instance = "m/a";
  call.sink->OnComplete(absl::OkStatus(), r);
  client.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.message().content(), "hello");
  EXPECT_EQ(resp.instance(), "m/a");
}

TEST_F(GatewayServiceTest, NoCallerDeadlineMeansInfiniteFuture) {
  std::thread client([&] {
    grpc::ClientContext ctx;
    v1::ExecuteResponse resp;
    stub_->Execute(&ctx, Req(), &resp);
  });
  ScriptedRouter::Call call = router_->NextCall();
  EXPECT_EQ(call.req.deadline, absl::InfiniteFuture());
  call.sink->OnComplete(absl::UnavailableError("x"), RoutedResponse());
  client.join();
}

TEST_F(GatewayServiceTest, LimitErrorCarriesRetryHintTrailer) {
  grpc::Status status;
  std::multimap<grpc::string_ref, grpc::string_ref> trailers;
  std::string retry;
  std::thread client([&] {
    grpc::ClientContext ctx;
    v1::ExecuteResponse resp;
    status = stub_->Execute(&ctx, Req(), &resp);
    auto it = ctx.GetServerTrailingMetadata().find(kRetryAfterTrailer);
    if (it != ctx.GetServerTrailingMetadata().end()) {
      retry.assign(it->second.data(), it->second.size());
    }
  });
  ScriptedRouter::Call call = router_->NextCall();
  RoutedResponse r;
  r.retry_after = absl::Seconds(2);
  call.sink->OnComplete(absl::ResourceExhaustedError("rpm limit of echelon"),
                        r);
  client.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("rpm limit"), std::string::npos);
  EXPECT_EQ(retry, "2000");
}

TEST_F(GatewayServiceTest, StreamWritesDeltasInOrderThenSummary) {
  std::vector<v1::StreamChunk> chunks;
  grpc::Status status;
  std::thread client([&] {
    grpc::ClientContext ctx;
    auto reader = stub_->Stream(&ctx, Req());
    v1::StreamChunk c;
    while (reader->Read(&c)) chunks.push_back(c);
    status = reader->Finish();
  });
  ScriptedRouter::Call call = router_->NextCall();
  EXPECT_TRUE(call.req.stream);
  for (int i = 1; i <= 50; ++i) {
    call.sink->OnDelta(Text("t" + std::to_string(i) + " "));
  }
  StreamDelta tool;
  tool.tool_calls.push_back({0, "c1", "f", "{\"a\":"});
  call.sink->OnDelta(tool);
  StreamDelta usage;
  usage.usage = Usage{3, 50, 53, 0};
  call.sink->OnDelta(usage);
  RoutedResponse r;
  r.response.finish_reason = FinishReason::kStop;
  r.response.has_usage = true;
  r.instance = "m/a";
  call.sink->OnComplete(absl::OkStatus(), r);
  client.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(chunks.size(), 53u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(chunks[i].content_delta(), "t" + std::to_string(i + 1) + " ");
  }
  EXPECT_EQ(chunks[50].tool_call_delta().name(), "f");
  EXPECT_EQ(chunks[51].usage().total_tokens(), 53);  // sent once, not twice
  EXPECT_EQ(chunks[52].summary().instance(), "m/a");
}

TEST_F(GatewayServiceTest, CutStreamDeliversSentChunksThenNonOk) {
  std::vector<std::string> content;
  bool saw_summary = false;
  grpc::Status status;
  std::thread client([&] {
    grpc::ClientContext ctx;
    auto reader = stub_->Stream(&ctx, Req());
    v1::StreamChunk c;
    while (reader->Read(&c)) {
      if (c.has_summary()) saw_summary = true;
      if (!c.content_delta().empty()) content.push_back(c.content_delta());
    }
    status = reader->Finish();
  });
  ScriptedRouter::Call call = router_->NextCall();
  call.sink->OnDelta(Text("a"));
  call.sink->OnDelta(Text("b"));
  call.sink->OnComplete(
      absl::AbortedError("partial: stream_cut after 2 chunks"),
      RoutedResponse());
  client.join();
  EXPECT_EQ(content, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(saw_summary);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_NE(status.error_message().find("partial"), std::string::npos);
}

TEST_F(GatewayServiceTest, ClientCancellationCancelsTheRoute) {
  grpc::ClientContext ctx;
  grpc::Status status;
  std::thread client([&] {
    auto reader = stub_->Stream(&ctx, Req());
    v1::StreamChunk c;
    while (reader->Read(&c)) {
    }
    status = reader->Finish();
  });
  ScriptedRouter::Call call = router_->NextCall();
  call.sink->OnDelta(Text("a"));
  ctx.TryCancel();
  EXPECT_TRUE(router_->WaitCancelled(call));
  // The router answers a cancel with CANCELLED; the reactor finishes once.
  call.sink->OnComplete(absl::CancelledError("cancelled"), RoutedResponse());
  client.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(GatewayServiceTest, BadRequestNeverReachesTheRouter) {
  v1::ExecuteRequest req = Req();
  req.mutable_messages(0)->set_role(v1::ROLE_UNSPECIFIED);
  grpc::ClientContext ctx;
  v1::ExecuteResponse resp;
  grpc::Status s = stub_->Execute(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext ctx2;
  auto reader = stub_->Stream(&ctx2, req);
  v1::StreamChunk c;
  EXPECT_FALSE(reader->Read(&c));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(GatewayServiceTest, PoolStatusTranslatesAndUnknownPoolIsNotFound) {
  grpc::ClientContext ctx;
  v1::GetPoolStatusResponse resp;
  ASSERT_TRUE(
      stub_->GetPoolStatus(&ctx, v1::GetPoolStatusRequest(), &resp).ok());
  ASSERT_EQ(resp.pools_size(), 1);
  EXPECT_EQ(resp.pools(0).instances(0).id(), "m/a");
  grpc::ClientContext ctx2;
  v1::GetPoolStatusRequest req;
  req.set_pool("zzz");
  EXPECT_EQ(stub_->GetPoolStatus(&ctx2, req, &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace echelon
