#include "service/convert.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace echelon {
namespace {

absl::Status RoleFromProto(v1::Role role, Role* out) {
  switch (role) {
    case v1::ROLE_SYSTEM:
      *out = Role::kSystem;
      return absl::OkStatus();
    case v1::ROLE_USER:
      *out = Role::kUser;
      return absl::OkStatus();
    case v1::ROLE_ASSISTANT:
      *out = Role::kAssistant;
      return absl::OkStatus();
    case v1::ROLE_TOOL:
      *out = Role::kTool;
      return absl::OkStatus();
    case v1::ROLE_DEVELOPER:
      *out = Role::kDeveloper;
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("role is required");
  }
}

v1::Role RoleToProto(Role role) {
  switch (role) {
    case Role::kSystem:
      return v1::ROLE_SYSTEM;
    case Role::kUser:
      return v1::ROLE_USER;
    case Role::kAssistant:
      return v1::ROLE_ASSISTANT;
    case Role::kTool:
      return v1::ROLE_TOOL;
    case Role::kDeveloper:
      return v1::ROLE_DEVELOPER;
  }
  return v1::ROLE_UNSPECIFIED;
}

int64_t Micros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

v1::InstanceState HealthToProto(InstanceHealth h) {
  switch (h) {
    case InstanceHealth::kHealthy:
      return v1::INSTANCE_STATE_HEALTHY;
    case InstanceHealth::kDegraded:
      return v1::INSTANCE_STATE_DEGRADED;
    case InstanceHealth::kUnhealthy:
      return v1::INSTANCE_STATE_UNHEALTHY;
    case InstanceHealth::kRecovering:
      return v1::INSTANCE_STATE_RECOVERING;
  }
  return v1::INSTANCE_STATE_UNSPECIFIED;
}

v1::BreakerState BreakerToProto(BreakerPhase b) {
  switch (b) {
    case BreakerPhase::kClosed:
      return v1::BREAKER_STATE_CLOSED;
    case BreakerPhase::kOpen:
      return v1::BREAKER_STATE_OPEN;
    case BreakerPhase::kHalfOpen:
      return v1::BREAKER_STATE_HALF_OPEN;
  }
  return v1::BREAKER_STATE_UNSPECIFIED;
}

}  // namespace

absl::Status FromProto(const v1::ExecuteRequest& in, ChatRequest* out) {
  if (in.target().empty()) {
    return absl::InvalidArgumentError("target is required");
  }
  if (in.messages().empty()) {
    return absl::InvalidArgumentError("messages must not be empty");
  }
  out->messages.reserve(in.messages_size());
  for (int i = 0; i < in.messages_size(); ++i) {
    const v1::Message& m = in.messages(i);
    ChatMessage msg;
    absl::Status s = RoleFromProto(m.role(), &msg.role);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].", s.message()));
    }
    msg.content = m.content();
    for (int p = 0; p < m.parts_size(); ++p) {
      const v1::ContentPart& part = m.parts(p);
      ContentPart cp;
      switch (part.part_case()) {
        case v1::ContentPart::kText:
          cp.type = ContentPart::Type::kText;
          cp.text = part.text();
          break;
        case v1::ContentPart::kImageUrl:
          if (part.image_url().url().empty()) {
            return absl::InvalidArgumentError(absl::StrCat(
                "messages[", i, "].parts[", p, "].image_url.url is required"));
          }
          cp.type = ContentPart::Type::kImageUrl;
          cp.image_url = part.image_url().url();
          cp.detail = part.image_url().detail();
          break;
        default:
          return absl::InvalidArgumentError(
              absl::StrCat("messages[", i, "].parts[", p, "] is empty"));
      }
      msg.parts.push_back(std::move(cp));
    }
    msg.name = m.name();
    for (const v1::ToolCall& c : m.tool_calls()) {
      msg.tool_calls.push_back({c.id(), c.name(), c.arguments()});
    }
    msg.tool_call_id = m.tool_call_id();
    if (msg.role == Role::kTool && msg.tool_call_id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "messages[", i, "].tool_call_id is required for a tool message"));
    }
    out->messages.push_back(std::move(msg));
  }

  const v1::GenerationParams& p = in.params();
  GenerationParams& g = out->params;
  if (p.has_temperature()) {
    if (p.temperature() < 0 || p.temperature() > 2) {
      return absl::InvalidArgumentError(
          "params.temperature must be between 0 and 2");
    }
    g.temperature = p.temperature();
  }
  if (p.has_top_p()) {
    if (p.top_p() < 0 || p.top_p() > 1) {
      return absl::InvalidArgumentError("params.top_p must be between 0 and 1");
    }
    g.top_p = p.top_p();
  }
  if (p.has_max_tokens()) {
    if (p.max_tokens() <= 0) {
      return absl::InvalidArgumentError("params.max_tokens must be positive");
    }
    g.max_tokens = p.max_tokens();
  }
  if (p.stop_size() > 4) {
    return absl::InvalidArgumentError("params.stop takes at most 4 sequences");
  }
  g.stop.assign(p.stop().begin(), p.stop().end());
  if (p.has_seed()) g.seed = p.seed();
  if (p.has_presence_penalty()) g.presence_penalty = p.presence_penalty();
  if (p.has_frequency_penalty()) g.frequency_penalty = p.frequency_penalty();
  switch (p.response_format().type()) {
    case v1::ResponseFormat::TYPE_TEXT:
      g.response_format.type = ResponseFormat::Type::kText;
      break;
    case v1::ResponseFormat::TYPE_JSON_OBJECT:
      g.response_format.type = ResponseFormat::Type::kJsonObject;
      break;
    case v1::ResponseFormat::TYPE_JSON_SCHEMA:
      if (p.response_format().json_schema().empty()) {
        return absl::InvalidArgumentError(
            "params.response_format.json_schema is required for "
            "TYPE_JSON_SCHEMA");
      }
      g.response_format.type = ResponseFormat::Type::kJsonSchema;
      break;
    default:
      break;
  }
  g.response_format.schema_name = p.response_format().schema_name();
  g.response_format.json_schema = p.response_format().json_schema();
  g.response_format.strict = p.response_format().strict();

  for (int t = 0; t < in.tools_size(); ++t) {
    const v1::Tool& tool = in.tools(t);
    if (tool.name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tools[", t, "].name is required"));
    }
    out->tools.push_back(
        {tool.name(), tool.description(), tool.parameters_json()});
  }
  switch (in.tool_choice().mode()) {
    case v1::ToolChoice::MODE_AUTO:
      out->tool_choice.mode = ToolChoice::Mode::kAuto;
      break;
    case v1::ToolChoice::MODE_NONE:
      out->tool_choice.mode = ToolChoice::Mode::kNone;
      break;
    case v1::ToolChoice::MODE_REQUIRED:
      out->tool_choice.mode = ToolChoice::Mode::kRequired;
      break;
    case v1::ToolChoice::MODE_FUNCTION:
      if (in.tool_choice().function_name().empty()) {
        return absl::InvalidArgumentError(
            "tool_choice.function_name is required for MODE_FUNCTION");
      }
      out->tool_choice.mode = ToolChoice::Mode::kFunction;
      out->tool_choice.function_name = in.tool_choice().function_name();
      break;
    default:
      break;
  }
  out->metadata.insert(in.metadata().begin(), in.metadata().end());
  out->request_id = in.request_id();
  return absl::OkStatus();
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kToolCalls:
      return v1::FINISH_REASON_TOOL_CALLS;
    case FinishReason::kContentFilter:
      return v1::FINISH_REASON_CONTENT_FILTER;
    case FinishReason::kUnspecified:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const Usage& in, v1::Usage* out) {
  out->set_prompt_tokens(in.prompt_tokens);
  out->set_completion_tokens(in.completion_tokens);
  out->set_total_tokens(in.total_tokens);
  out->set_cached_tokens(in.cached_tokens);
}

void ToProto(const AttemptRecord& in, v1::Attempt* out) {
  out->set_instance(in.instance);
  out->set_model(in.model);
  out->set_echelon(in.echelon);
  out->set_outcome(std::string(ErrorClassName(in.outcome)));
  out->set_detail(in.detail);
  out->set_duration_us(Micros(in.duration));
  out->set_next_action(in.next_action);
}

void ToProto(const RoutedResponse& in, v1::ExecuteResponse* out) {
  const ChatMessage& m = in.response.message;
  v1::Message* msg = out->mutable_message();
  msg->set_role(RoleToProto(Role::kAssistant));
  msg->set_content(m.content);
  for (const ToolCall& c : m.tool_calls) {
    v1::ToolCall* tc = msg->add_tool_calls();
    tc->set_id(c.id);
    tc->set_name(c.name);
    tc->set_arguments(c.arguments);
  }
  out->set_finish_reason(ToProto(in.response.finish_reason));
  ToProto(in.response.usage, out->mutable_usage());
  out->set_model(in.model);
  out->set_instance(in.instance);
  for (const AttemptRecord& a : in.attempts) ToProto(a, out->add_attempts());
  out->set_request_id(in.request_id);
}

void ToSummaryProto(const RoutedResponse& in, v1::StreamSummary* out) {
  out->set_finish_reason(ToProto(in.response.finish_reason));
  out->set_model(in.model);
  out->set_instance(in.instance);
  for (const AttemptRecord& a : in.attempts) ToProto(a, out->add_attempts());
  out->set_request_id(in.request_id);
}

void ToProto(const InstanceStatusView& i, v1::InstanceStatus* s) {
  s->set_id(i.id);
  s->set_model(i.model);
  s->set_provider(i.provider);
  s->set_state(HealthToProto(i.health));
  s->set_breaker(BreakerToProto(i.breaker));
  s->set_cooldown_until_us(i.cooldown_until == absl::InfinitePast()
                               ? 0
                               : absl::ToUnixMicros(i.cooldown_until));
  s->set_in_flight(i.in_flight);
  s->set_ewma_latency_us(Micros(i.ewma_latency));
  s->set_ewma_ttft_us(Micros(i.ewma_ttft));
  s->set_success_rate(i.success_rate);
  s->set_requests(i.requests);
  s->set_successes(i.successes);
  s->set_failures(i.failures);
  s->set_weight(i.weight);
  s->set_last_error(i.last_error);
  s->set_requests_per_minute(i.requests_per_minute);
  s->set_requests_used(i.requests_used);
  s->set_tokens_per_minute(i.tokens_per_minute);
  s->set_tokens_used(i.tokens_used);
  s->set_upstream_remaining_requests(i.upstream_remaining_requests);
  s->set_upstream_remaining_tokens(i.upstream_remaining_tokens);
  s->set_upstream_limits_at_us(i.upstream_limits_at == absl::InfinitePast()
                                   ? 0
                                   : absl::ToUnixMicros(i.upstream_limits_at));
  s->set_last_used_us(i.last_used == absl::InfinitePast()
                          ? 0
                          : absl::ToUnixMicros(i.last_used));
}

void ToProto(const PoolStatusView& in, v1::PoolStatus* out) {
  out->set_name(in.name);
  out->set_strategy(in.strategy);
  out->set_requests(in.requests);
  out->set_successes(in.successes);
  out->set_failures(in.failures);
  out->set_in_flight(in.in_flight);
  for (const InstanceStatusView& i : in.instances) {
    ToProto(i, out->add_instances());
  }
}

void ToProto(const TaskGroupStatusView& in, v1::TaskGroupStatus* out) {
  out->set_name(in.name);
  out->set_description(in.description);
  out->set_requests(in.requests);
  out->set_successes(in.successes);
  out->set_failures(in.failures);
  out->set_fallbacks(in.fallbacks);
  for (const EchelonStatusView& e : in.echelons) {
    v1::EchelonStatus* s = out->add_echelons();
    s->set_name(e.name);
    s->set_priority(e.priority);
    for (const std::string& m : e.models) s->add_models(m);
    s->set_breaker(BreakerToProto(e.breaker));
    s->set_breaker_half_open_at_us(
        e.breaker_half_open_at == absl::InfinitePast()
            ? 0
            : absl::ToUnixMicros(e.breaker_half_open_at));
    s->set_max_concurrency(e.max_concurrency);
    s->set_in_flight(e.in_flight);
    s->set_queued(e.queued);
    s->set_requests_per_minute(e.requests_per_minute);
    s->set_requests_used(e.requests_used);
    s->set_tokens_per_minute(e.tokens_per_minute);
    s->set_tokens_used(e.tokens_used);
    s->set_active_retries(e.active_retries);
    s->set_retry_budget(e.retry_budget);
    s->set_requests(e.requests);
    s->set_successes(e.successes);
    s->set_failures(e.failures);
    s->set_fallbacks_out(e.fallbacks_out);
    s->set_rejected(e.rejected);
    s->set_retries(e.retries);
    s->set_tokens_in(e.tokens_in);
    s->set_tokens_out(e.tokens_out);
    s->set_ewma_latency_us(Micros(e.ewma_latency));
    s->set_ewma_ttft_us(Micros(e.ewma_ttft));
    for (const InstanceStatusView& i : e.instances) {
      ToProto(i, s->add_instances());
    }
  }
}

void ToProto(const TargetView& in, v1::Target* out) {
  out->set_name(in.name);
  out->set_description(in.description);
  switch (in.kind) {
    case TargetView::Kind::kPool:
      out->set_kind(v1::Target::KIND_POOL);
      break;
    case TargetView::Kind::kTaskGroup:
      out->set_kind(v1::Target::KIND_TASK_GROUP);
      break;
    case TargetView::Kind::kEchelon:
      out->set_kind(v1::Target::KIND_ECHELON);
      break;
    case TargetView::Kind::kModel:
      out->set_kind(v1::Target::KIND_MODEL);
      break;
  }
}

}  // namespace echelon
