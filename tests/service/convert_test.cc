#include "service/convert.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

v1::ExecuteRequest ValidRequest() {
  v1::ExecuteRequest req;
  req.set_target("fast-pool");
  v1::Message* m = req.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("hi");
  return req;
}

TEST(ConvertTest, CopiesMessagesPartsToolsAndParams) {
  v1::ExecuteRequest req = ValidRequest();
  v1::Message* a = req.add_messages();
  a->set_role(v1::ROLE_ASSISTANT);
  v1::ToolCall* call = a->add_tool_calls();
  call->set_id("call_1");
  call->set_name("weather");
  call->set_arguments("{\"city\":\"Paris\"}");
  v1::Message* t = req.add_messages();
  t->set_role(v1::ROLE_TOOL);
  t->set_tool_call_id("call_1");
  t->set_content("sunny");
  v1::Message* img = req.add_messages();
  img->set_role(v1::ROLE_USER);
  img->add_parts()->set_text("what is this?");
  img->add_parts()->mutable_image_url()->set_url("https://x/cat.png");
  req.mutable_params()->set_temperature(0.5);
  req.mutable_params()->set_max_tokens(64);
  req.mutable_params()->add_stop("END");
  req.mutable_params()->mutable_response_format()->set_type(
      v1::ResponseFormat::TYPE_JSON_SCHEMA);
  req.mutable_params()->mutable_response_format()->set_json_schema("{}");
  v1::Tool* tool = req.add_tools();
  tool->set_name("weather");
  tool->set_parameters_json("{\"type\":\"object\"}");
  req.mutable_tool_choice()->set_mode(v1::ToolChoice::MODE_FUNCTION);
  req.mutable_tool_choice()->set_function_name("weather");
  (*req.mutable_metadata())["tenant"] = "acme";

  ChatRequest out;
  ASSERT_TRUE(FromProto(req, &out).ok());
  ASSERT_EQ(out.messages.size(), 4u);
  EXPECT_EQ(out.messages[1].role, Role::kAssistant);
  ASSERT_EQ(out.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(out.messages[1].tool_calls[0].arguments, "{\"city\":\"Paris\"}");
  EXPECT_EQ(out.messages[2].tool_call_id, "call_1");
  ASSERT_EQ(out.messages[3].parts.size(), 2u);
  EXPECT_EQ(out.messages[3].parts[1].type, ContentPart::Type::kImageUrl);
  EXPECT_EQ(out.messages[3].parts[1].image_url, "https://x/cat.png");
  EXPECT_EQ(out.params.temperature, 0.5);
  EXPECT_EQ(out.params.max_tokens, 64);
  EXPECT_FALSE(out.params.top_p.has_value());
  EXPECT_EQ(out.params.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(out.params.response_format.type, ResponseFormat::Type::kJsonSchema);
  ASSERT_EQ(out.tools.size(), 1u);
  EXPECT_EQ(out.tool_choice.mode, ToolChoice::Mode::kFunction);
  EXPECT_EQ(out.tool_choice.function_name, "weather");
  EXPECT_EQ(out.metadata.at("tenant"), "acme");
}

TEST(ConvertTest, RejectsBadInputNamingTheField) {
  struct Case {
    std::function<void(v1::ExecuteRequest*)> mutate;
    std::string expected;
  };
  std::vector<Case> cases = {
      {[](v1::ExecuteRequest* r) { r->clear_target(); }, "target"},
      {[](v1::ExecuteRequest* r) { r->clear_messages(); }, "messages"},
      {[](v1::ExecuteRequest* r) {
         r->mutable_messages(0)->set_role(v1::ROLE_UNSPECIFIED);
       },
       "messages[0].role"},
      {[](v1::ExecuteRequest* r) { r->mutable_params()->set_temperature(3); },
       "temperature"},
      {[](v1::ExecuteRequest* r) { r->mutable_params()->set_top_p(1.5); },
       "top_p"},
      {[](v1::ExecuteRequest* r) { r->mutable_params()->set_max_tokens(0); },
       "max_tokens"},
      {[](v1::ExecuteRequest* r) {
         for (int i = 0; i < 5; ++i) r->mutable_params()->add_stop("x");
       },
       "stop"},
      {[](v1::ExecuteRequest* r) { r->add_tools(); }, "tools[0].name"},
      {[](v1::ExecuteRequest* r) {
         v1::Message* m = r->add_messages();
         m->set_role(v1::ROLE_TOOL);
       },
       "tool_call_id"},
      {[](v1::ExecuteRequest* r) { r->mutable_messages(0)->add_parts(); },
       "parts[0]"},
  };
  for (const Case& c : cases) {
    v1::ExecuteRequest req = ValidRequest();
    c.mutate(&req);
    ChatRequest out;
    absl::Status s = FromProto(req, &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.expected;
    EXPECT_NE(s.message().find(c.expected), std::string::npos)
        << s.message() << " should name " << c.expected;
  }
}

TEST(ConvertTest, ResponseCarriesTraceUsageAndServedInstance) {
  RoutedResponse r;
  r.response.message.role = Role::kAssistant;
  r.response.message.content = "hello";
  r.response.message.tool_calls.push_back({"c1", "f", "{}"});
  r.response.finish_reason = FinishReason::kToolCalls;
  r.response.usage = {10, 5, 15, 2};
  r.model = "sim-fast";
  r.instance = "sim-fast/a";
  r.request_id = "req-1";
  AttemptRecord failed;
  failed.instance = "sim-fast/b";
  failed.outcome = ErrorClass::kServerError;
  failed.detail = "HTTP 500";
  failed.duration = absl::Milliseconds(3);
  failed.next_action = "failover";
  AttemptRecord ok;
  ok.instance = "sim-fast/a";
  ok.duration = absl::Microseconds(1500);
  r.attempts = {failed, ok};

  v1::ExecuteResponse out;
  ToProto(r, &out);
  EXPECT_EQ(out.message().content(), "hello");
  EXPECT_EQ(out.message().role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(out.message().tool_calls(0).id(), "c1");
  EXPECT_EQ(out.finish_reason(), v1::FINISH_REASON_TOOL_CALLS);
  EXPECT_EQ(out.usage().total_tokens(), 15);
  EXPECT_EQ(out.usage().cached_tokens(), 2);
  EXPECT_EQ(out.instance(), "sim-fast/a");
  ASSERT_EQ(out.attempts_size(), 2);
  EXPECT_EQ(out.attempts(0).outcome(), "server_error");
  EXPECT_EQ(out.attempts(0).duration_us(), 3000);
  EXPECT_EQ(out.attempts(0).next_action(), "failover");
  EXPECT_EQ(out.attempts(1).outcome(), "ok");
  EXPECT_EQ(out.request_id(), "req-1");
}

TEST(ConvertTest, PoolStatusNeverHasCooldownForInfinitePast) {
  PoolStatusView p;
  p.name = "pool";
  InstanceStatusView i;
  i.id = "m/a";
  i.health = InstanceHealth::kUnhealthy;
  i.breaker = BreakerPhase::kOpen;
  p.instances.push_back(i);
  i.id = "m/b";
  i.cooldown_until = absl::FromUnixSeconds(100);
  p.instances.push_back(i);
  v1::PoolStatus out;
  ToProto(p, &out);
  EXPECT_EQ(out.instances(0).cooldown_until_us(), 0);
  EXPECT_EQ(out.instances(0).state(), v1::INSTANCE_STATE_UNHEALTHY);
  EXPECT_EQ(out.instances(0).breaker(), v1::BREAKER_STATE_OPEN);
  EXPECT_EQ(out.instances(1).cooldown_until_us(), 100'000'000);
}

}  // namespace
}  // namespace echelon
