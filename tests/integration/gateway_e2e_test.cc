// End to end: the upstream simulator and the echelond binary run as real
// processes on free ports; the test calls the gateway through the generated
// C++ stub, exactly as a service would.
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "grpc_health/v1/health.grpc.pb.h"
#include "grpc_reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/subprocess.h"

namespace echelon {
namespace {

using ::echelon::testing::RunfilePath;
using ::echelon::testing::Subprocess;

class GatewayE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Every completion is 6 tokens, 40 ms apart: slow enough to see the
    // stream arrive piece by piece.
    auto sim =
        Subprocess::Start({RunfilePath("tools/upstream_sim/upstream_sim"),
                           "--port=0", "--scenario=tokens=6;itl_ms=40"});
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = sim->release();
    auto port = sim_->WaitForLine("LISTENING ", absl::Seconds(20));
    ASSERT_TRUE(port.ok()) << port.status();
    sim_port_ = *port;

    auto gw = Subprocess::Start(
        {RunfilePath("service/echelond"),
         absl::StrCat("--config=", RunfilePath("configs/llms")),
         "--grpc_address=127.0.0.1:0", "--http_address=127.0.0.1:0",
         "--metrics_address=127.0.0.1:0", "--watch_config=false"},
        {{"ECHELON_SIM_URL",
          absl::StrCat("http://127.0.0.1:", sim_port_, "/v1")}});
    ASSERT_TRUE(gw.ok()) << gw.status();
    gateway_ = gw->release();
    auto grpc_port =
        gateway_->WaitForLine("LISTENING grpc ", absl::Seconds(30));
    ASSERT_TRUE(grpc_port.ok()) << grpc_port.status();
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", *grpc_port),
                                   grpc::InsecureChannelCredentials());
  }

  static void TearDownTestSuite() {
    channel_.reset();
    delete gateway_;
    delete sim_;
  }

  void SetUp() override {
    ASSERT_NE(channel_, nullptr) << "processes failed to start";
    stub_ = v1::Gateway::NewStub(channel_);
  }

  static v1::ExecuteRequest Hello(const std::string& target) {
    v1::ExecuteRequest req;
    req.set_target(target);
    v1::Message* m = req.add_messages();
    m->set_role(v1::ROLE_USER);
    m->set_content("Say hello to the gateway");
    return req;
  }

  static void SetDeadline(grpc::ClientContext* ctx, absl::Duration d) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(d));
  }

  static Subprocess* sim_;
  static Subprocess* gateway_;
  static std::string sim_port_;
  static std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

Subprocess* GatewayE2eTest::sim_ = nullptr;
Subprocess* GatewayE2eTest::gateway_ = nullptr;
std::string GatewayE2eTest::sim_port_;
std::shared_ptr<grpc::Channel> GatewayE2eTest::channel_;

TEST_F(GatewayE2eTest, ExecuteReturnsUpstreamContentUsageAndTrace) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(20));
  v1::ExecuteResponse resp;
  grpc::Status s = stub_->Execute(&ctx, Hello("fast-pool"), &resp);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  EXPECT_EQ(resp.message().content(), "tok1 tok2 tok3 tok4 tok5 tok6");
  EXPECT_EQ(resp.message().role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(resp.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(resp.usage().completion_tokens(), 6);
  EXPECT_GT(resp.usage().prompt_tokens(), 0);
  EXPECT_EQ(resp.usage().total_tokens(),
            resp.usage().prompt_tokens() + resp.usage().completion_tokens());
  EXPECT_EQ(resp.model(), "sim-fast");
  EXPECT_FALSE(resp.instance().empty());
  ASSERT_GE(resp.attempts_size(), 1);
  const v1::Attempt& last = resp.attempts(resp.attempts_size() - 1);
  EXPECT_EQ(last.outcome(), "ok");
  EXPECT_EQ(last.instance(), resp.instance());
  EXPECT_GT(last.duration_us(), 0);
  EXPECT_FALSE(resp.request_id().empty());
}

TEST_F(GatewayE2eTest, StreamDeliversTokensOneByOneThenSummary) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(20));
  auto reader = stub_->Stream(&ctx, Hello("fast-pool"));
  v1::StreamChunk chunk;
  std::string content;
  std::vector<absl::Time> arrivals;
  bool saw_usage = false;
  bool saw_summary = false;
  while (reader->Read(&chunk)) {
    switch (chunk.chunk_case()) {
      case v1::StreamChunk::kContentDelta:
        EXPECT_FALSE(saw_summary) << "content after the summary";
        content += chunk.content_delta();
        arrivals.push_back(absl::Now());
        break;
      case v1::StreamChunk::kUsage:
        saw_usage = true;
        EXPECT_EQ(chunk.usage().completion_tokens(), 6);
        break;
      case v1::StreamChunk::kSummary:
        saw_summary = true;
        EXPECT_EQ(chunk.summary().finish_reason(), v1::FINISH_REASON_STOP);
        EXPECT_EQ(chunk.summary().model(), "sim-fast");
        EXPECT_FALSE(chunk.summary().instance().empty());
        ASSERT_GE(chunk.summary().attempts_size(), 1);
        break;
      default:
        break;
    }
  }
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  EXPECT_EQ(content, "tok1 tok2 tok3 tok4 tok5 tok6");
  EXPECT_TRUE(saw_usage);
  EXPECT_TRUE(saw_summary);
  // Six chunks, one per token, 40 ms apart upstream: if the gateway buffered
  // the stream they would all arrive together at the end.
  ASSERT_EQ(arrivals.size(), 6u);
  EXPECT_GE(arrivals.back() - arrivals.front(), absl::Milliseconds(120));
}

TEST_F(GatewayE2eTest, UnknownTargetIsNotFoundAndNamesIt) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  v1::ExecuteResponse resp;
  grpc::Status s = stub_->Execute(&ctx, Hello("no-such-pool"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("no-such-pool"), std::string::npos)
      << s.error_message();
}

TEST_F(GatewayE2eTest, EmptyMessagesIsInvalidArgument) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  v1::ExecuteRequest req;
  req.set_target("fast-pool");
  v1::ExecuteResponse resp;
  grpc::Status s = stub_->Execute(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("messages"), std::string::npos);
}

TEST_F(GatewayE2eTest, StreamOfUnknownTargetEndsNotFound) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  auto reader = stub_->Stream(&ctx, Hello("nope"));
  v1::StreamChunk chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GatewayE2eTest, PoolStatusListsInstancesAndCountsRequests) {
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(20));
    v1::ExecuteResponse resp;
    ASSERT_TRUE(stub_->Execute(&ctx, Hello("fast-pool"), &resp).ok());
  }
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  v1::GetPoolStatusRequest req;
  req.set_pool("fast-pool");
  v1::GetPoolStatusResponse resp;
  grpc::Status s = stub_->GetPoolStatus(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.pools_size(), 1);
  const v1::PoolStatus& pool = resp.pools(0);
  EXPECT_EQ(pool.name(), "fast-pool");
  EXPECT_FALSE(pool.strategy().empty());
  ASSERT_GE(pool.instances_size(), 1);
  int64_t requests = 0;
  for (const v1::InstanceStatus& i : pool.instances()) {
    EXPECT_FALSE(i.id().empty());
    requests += i.requests();
  }
  EXPECT_GE(requests, 1);

  grpc::ClientContext ctx2;
  SetDeadline(&ctx2, absl::Seconds(10));
  req.set_pool("missing-pool");
  EXPECT_EQ(stub_->GetPoolStatus(&ctx2, req, &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(GatewayE2eTest, ListTargetsNamesPoolsGroupsEchelonsAndModels) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  v1::ListTargetsResponse resp;
  ASSERT_TRUE(stub_->ListTargets(&ctx, v1::ListTargetsRequest(), &resp).ok());
  std::map<std::string, v1::Target::Kind> kinds;
  for (const v1::Target& t : resp.targets()) kinds[t.name()] = t.kind();
  EXPECT_EQ(kinds["fast-pool"], v1::Target::KIND_POOL);
  EXPECT_EQ(kinds["fast"], v1::Target::KIND_TASK_GROUP);
  EXPECT_EQ(kinds["fast.primary"], v1::Target::KIND_ECHELON);
  EXPECT_EQ(kinds["sim-fast"], v1::Target::KIND_MODEL);
}

TEST_F(GatewayE2eTest, TaskGroupStatusShowsEchelonsInPriorityOrder) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  v1::GetTaskGroupStatusRequest req;
  req.set_task_group("fast");
  v1::GetTaskGroupStatusResponse resp;
  grpc::Status s = stub_->GetTaskGroupStatus(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.task_groups_size(), 1);
  const v1::TaskGroupStatus& g = resp.task_groups(0);
  ASSERT_GE(g.echelons_size(), 2);
  EXPECT_EQ(g.echelons(0).name(), "primary");
  EXPECT_LE(g.echelons(0).priority(), g.echelons(1).priority());
  EXPECT_EQ(g.echelons(0).breaker(), v1::BREAKER_STATE_CLOSED);
}

TEST_F(GatewayE2eTest, ReloadConfigAppliesTheUnchangedConfig) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(20));
  v1::ReloadConfigResponse resp;
  grpc::Status s = stub_->ReloadConfig(&ctx, v1::ReloadConfigRequest(), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(resp.applied());
  EXPECT_EQ(resp.problems_size(), 0);
  EXPECT_GT(resp.loaded_at_us(), 0);
  // Still serving after the swap.
  grpc::ClientContext ctx2;
  SetDeadline(&ctx2, absl::Seconds(20));
  v1::ExecuteResponse out;
  EXPECT_TRUE(stub_->Execute(&ctx2, Hello("fast"), &out).ok());
}

TEST_F(GatewayE2eTest, HealthServiceReportsOverallAndPerTarget) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const char* service : {"", "fast-pool", "fast.primary", "sim-fast"}) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(10));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = health->Check(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << service << ": " << s.error_message();
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING)
        << service;
  }
}

TEST_F(GatewayE2eTest, ReflectionListsTheGatewayAndHealthServices) {
  namespace refl = grpc::reflection::v1alpha;
  auto stub = refl::ServerReflection::NewStub(channel_);
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  auto stream = stub->ServerReflectionInfo(&ctx);
  refl::ServerReflectionRequest req;
  req.set_list_services("*");
  ASSERT_TRUE(stream->Write(req));
  refl::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  std::set<std::string> services;
  for (const auto& s : resp.list_services_response().service()) {
    services.insert(s.name());
  }
  EXPECT_EQ(services.count("echelon.v1.Gateway"), 1u);
  EXPECT_EQ(services.count("grpc.health.v1.Health"), 1u);
  // The contract itself can be fetched, so grpcurl needs no proto files.
  req.set_file_containing_symbol("echelon.v1.Gateway");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_GE(resp.file_descriptor_response().file_descriptor_proto_size(), 1);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace echelon
