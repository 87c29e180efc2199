// Stream and dialect fault scenarios through the real echelond binary:
// mid-stream cuts and error events, failures before the first chunk,
// malformed events, a missing [DONE], tool-call deltas, connection resets
// and the Anthropic dialect. Each test starts its own simulator and gateway
// on testdata/fault_stream/gateway.yaml.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_fixture.h"

namespace echelon {
namespace {

using ::echelon::testing::GatewayProcesses;
using ::echelon::testing::RunStream;
using ::echelon::testing::SetDeadline;
using ::echelon::testing::StreamResult;
using ::echelon::testing::UserRequest;

constexpr char kConfig[] =
    "tests/integration/testdata/fault_stream/gateway.yaml";

// "tok1 tok2 ... tokN" as the simulator's stream chunks.
std::vector<std::string> Chunks(int n) {
  std::vector<std::string> out;
  for (int i = 1; i <= n; ++i) {
    out.push_back(i == 1 ? "tok1" : absl::StrCat(" tok", i));
  }
  return out;
}

class FaultStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GatewayProcesses::Options options;
    options.config = kConfig;
    auto p = GatewayProcesses::Start(options);
    ASSERT_TRUE(p.ok()) << p.status();
    gw_ = *std::move(p);
  }

  grpc::Status Execute(const v1::ExecuteRequest& req,
                       v1::ExecuteResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(20));
    return gw_->stub().Execute(&ctx, req, resp);
  }

  std::unique_ptr<GatewayProcesses> gw_;
};

// Scenario 10: the connection is cut after 5 chunks. The client gets exactly
// those 5 chunks, then a non-OK "partial" status; no fallback after the
// commit, so no duplicated tokens.
TEST_F(FaultStreamTest, CutAfterFiveChunksEndsPartialWithExactlyThoseChunks) {
  StreamResult r = RunStream(gw_->stub(), UserRequest("cut"));
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.status.error_message().find("partial"), std::string::npos)
      << r.status.error_code() << " " << r.status.error_message();
  EXPECT_EQ(r.content, Chunks(5));
  EXPECT_FALSE(r.saw_summary);
  EXPECT_EQ(gw_->KeyStats("s10cut").attempts, 1);
  EXPECT_EQ(gw_->KeyStats("s10backup").attempts, 0);
}

// Scenario 10 with an error event after 5 chunks: the same contract.
TEST_F(FaultStreamTest, ErrorEventAfterFiveChunksEndsPartial) {
  StreamResult r = RunStream(gw_->stub(), UserRequest("errevent"));
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.status.error_message().find("partial"), std::string::npos)
      << r.status.error_code() << " " << r.status.error_message();
  EXPECT_EQ(r.content, Chunks(5));
  EXPECT_EQ(gw_->KeyStats("s10err").attempts, 1);
  EXPECT_EQ(gw_->KeyStats("s10backup").attempts, 0);
}

// Scenario 10 before the first chunk: the stream is cut with no content; the
// healthy second instance serves one clean stream.
TEST_F(FaultStreamTest, CutBeforeFirstChunkFallsBackToOneCleanStream) {
  for (int i = 0; i < 4; ++i) {
    StreamResult r = RunStream(gw_->stub(), UserRequest("cut0-pool"));
    ASSERT_TRUE(r.status.ok()) << i << ": " << r.status.error_code() << " "
                               << r.status.error_message();
    EXPECT_EQ(r.content, Chunks(10)) << i;
    EXPECT_TRUE(r.saw_summary);
    EXPECT_EQ(r.summary.instance(), "cut0/b");
  }
  EXPECT_GE(gw_->KeyStats("s10c0a").attempts, 1);
  EXPECT_EQ(gw_->KeyStats("s10c0b").attempts, 4);
}

// Scenario 10 with an HTTP error before the stream starts (fail_first).
TEST_F(FaultStreamTest, HttpErrorBeforeStreamFallsBackToOneCleanStream) {
  for (int i = 0; i < 4; ++i) {
    StreamResult r = RunStream(gw_->stub(), UserRequest("failfirst-pool"));
    ASSERT_TRUE(r.status.ok()) << i << ": " << r.status.error_code() << " "
                               << r.status.error_message();
    EXPECT_EQ(r.content, Chunks(10)) << i;
  }
  EXPECT_GE(gw_->KeyStats("s10ffa").attempts, 1);
  EXPECT_EQ(gw_->KeyStats("s10ffb").attempts, 4);
}

// malformed_after=3: a `data: {not json` event after 3 chunks. Whatever the
// gateway decides, the client never sees a duplicated or reordered token,
// and a non-OK end after content says it is partial.
TEST_F(FaultStreamTest, MalformedEventNeverDuplicatesTokens) {
  StreamResult r = RunStream(gw_->stub(), UserRequest("malformed"));
  if (r.status.ok()) {
    EXPECT_EQ(r.content, Chunks(8));
  } else {
    EXPECT_EQ(r.content, Chunks(3));
    EXPECT_NE(r.status.error_message().find("partial"), std::string::npos)
        << r.status.error_code() << " " << r.status.error_message();
  }
  EXPECT_EQ(gw_->KeyStats("smal").attempts, 1);
}

// no_done: the stream completes (finish + usage) but never sends [DONE]; the
// gateway finalises it OK promptly when the connection closes.
TEST_F(FaultStreamTest, StreamWithoutDoneIsFinalisedOkPromptly) {
  absl::Time start = absl::Now();
  StreamResult r = RunStream(gw_->stub(), UserRequest("nodone"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  ASSERT_TRUE(r.status.ok())
      << r.status.error_code() << " " << r.status.error_message();
  EXPECT_EQ(r.content, Chunks(8));
  EXPECT_TRUE(r.saw_summary);
  EXPECT_EQ(r.summary.finish_reason(), v1::FINISH_REASON_STOP);
}

// tool_call=1: the tool-call deltas reach the gRPC client, streamed and
// unary.
TEST_F(FaultStreamTest, ToolCallDeltasReachTheClient) {
  v1::ExecuteRequest req = UserRequest("tools", "Weather in Paris?");
  v1::Tool* tool = req.add_tools();
  tool->set_name("get_weather");
  tool->set_description("Current weather for a city");
  tool->set_parameters_json(
      R"({"type":"object","properties":{"city":{"type":"string"}}})");

  StreamResult r = RunStream(gw_->stub(), req);
  ASSERT_TRUE(r.status.ok())
      << r.status.error_code() << " " << r.status.error_message();
  ASSERT_FALSE(r.tool_calls.empty());
  std::string name;
  std::string args;
  for (const v1::ToolCallDelta& d : r.tool_calls) {
    EXPECT_EQ(d.index(), 0);
    name += d.name();
    args += d.arguments_delta();
  }
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(args, R"({"city":"Paris"})");
  EXPECT_FALSE(r.tool_calls[0].id().empty());
  EXPECT_EQ(r.summary.finish_reason(), v1::FINISH_REASON_TOOL_CALLS);

  v1::ExecuteResponse resp;
  grpc::Status s = Execute(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  ASSERT_EQ(resp.message().tool_calls_size(), 1);
  EXPECT_EQ(resp.message().tool_calls(0).name(), "get_weather");
  EXPECT_EQ(resp.message().tool_calls(0).arguments(), R"({"city":"Paris"})");
  EXPECT_EQ(resp.finish_reason(), v1::FINISH_REASON_TOOL_CALLS);
}

// reset: the connection is reset before any header; the call fails over to
// the healthy instance and succeeds.
TEST_F(FaultStreamTest, ConnectionResetFailsOverToHealthyInstance) {
  for (int i = 0; i < 4; ++i) {
    v1::ExecuteResponse resp;
    grpc::Status s = Execute(UserRequest("reset-pool"), &resp);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    EXPECT_EQ(resp.instance(), "resetter/b");
  }
  StreamResult r = RunStream(gw_->stub(), UserRequest("reset-pool"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.content, Chunks(8));
  auto k = gw_->KeyStats("sreset");
  EXPECT_GE(k.attempts, 1);
  EXPECT_EQ(k.server_closed, k.attempts);
  EXPECT_EQ(gw_->KeyStats("sresetok").attempts, 5);
}

// The Anthropic dialect, unary and streamed.
TEST_F(FaultStreamTest, AnthropicDialectUnaryAndStream) {
  v1::ExecuteResponse resp;
  grpc::Status s = Execute(UserRequest("claude"), &resp);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  EXPECT_EQ(resp.message().content(), "tok1 tok2 tok3 tok4 tok5 tok6");
  EXPECT_EQ(resp.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(resp.usage().completion_tokens(), 6);
  EXPECT_GT(resp.usage().prompt_tokens(), 0);

  StreamResult r = RunStream(gw_->stub(), UserRequest("claude"));
  ASSERT_TRUE(r.status.ok())
      << r.status.error_code() << " " << r.status.error_message();
  EXPECT_EQ(r.content, Chunks(6));
  EXPECT_EQ(r.summary.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(gw_->KeyStats("santh").attempts, 2);
}

// The Anthropic dialect cut mid-stream: the same partial contract.
TEST_F(FaultStreamTest, AnthropicCutMidStreamEndsPartial) {
  StreamResult r = RunStream(gw_->stub(), UserRequest("claude-cut"));
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.status.error_message().find("partial"), std::string::npos)
      << r.status.error_code() << " " << r.status.error_message();
  EXPECT_EQ(r.content, Chunks(5));
  EXPECT_EQ(gw_->KeyStats("santhcut").attempts, 1);
}

}  // namespace
}  // namespace echelon
