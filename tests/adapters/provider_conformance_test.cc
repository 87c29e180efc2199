// One conformance suite for every provider adapter, run against the real
// upstream simulator (//tools/upstream_sim) over real HTTP on a real
// EpollEventLoop thread. Each case asks the simulator for a behaviour via
// the model name suffix ("m@fault=...").
#include <curl/curl.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "adapters/event_loop.h"
#include "adapters/http_client.h"
#include "adapters/provider_factory.h"
#include "domain/config.h"
#include "domain/provider.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"
#include "tests/tools/sim_process.h"

namespace echelon {
namespace {

// Generous: waits end as soon as the event arrives.
constexpr absl::Duration kWait = absl::Seconds(20);

// Records what one call reported. Callbacks run on the loop thread; the
// test thread reads after a Notification (or a loop round trip).
class Recorder : public UpstreamObserver {
 public:
  void OnDelta(StreamDelta delta) override {
    if (finishes > 0 || cancelled) ++late_callbacks;
    deltas.push_back(std::move(delta));
    if (cancel_after > 0 && static_cast<int>(deltas.size()) == cancel_after) {
      handle->Cancel();
      cancelled = true;
      cancel_done.Notify();
    }
  }
  void OnFinish(UpstreamResult r) override {
    if (finishes > 0 || cancelled) ++late_callbacks;
    ++finishes;
    result = std::move(r);
    finished.Notify();
  }

  std::string Content() const {
    std::string s;
    for (const auto& d : deltas) s += d.content;
    return s;
  }

  // Tool call `index` assembled from its deltas.
  ToolCall AssembledTool(int index) const {
    ToolCall call;
    for (const auto& d : deltas) {
      for (const auto& t : d.tool_calls) {
        if (t.index != index) continue;
        if (!t.id.empty()) call.id = t.id;
        if (!t.name.empty()) call.name = t.name;
        call.arguments += t.arguments_delta;
      }
    }
    return call;
  }

  std::unique_ptr<UpstreamHandle> handle;
  std::vector<StreamDelta> deltas;
  UpstreamResult result;
  int finishes = 0;
  int late_callbacks = 0;
  int cancel_after = -1;
  bool cancelled = false;
  absl::Notification finished;
  absl::Notification cancel_done;
};

struct CallSpec {
  std::string scenario;  // after "m@"
  bool stream = false;
  bool with_tool = false;
  UpstreamTimeouts timeouts;
  absl::Duration deadline = absl::InfiniteDuration();
  std::string base_url;  // empty: the simulator
  int cancel_after = -1;
};

CallSpec Spec(std::string scenario, bool stream = false) {
  CallSpec spec;
  spec.scenario = std::move(scenario);
  spec.stream = stream;
  return spec;
}

std::string KindName(ProviderKind kind) {
  return kind == ProviderKind::kOpenAI ? "openai" : "anthropic";
}

class ProviderConformanceTest : public ::testing::TestWithParam<ProviderKind> {
 protected:
  static void SetUpTestSuite() {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    auto sim = sim::SimProcess::Start({});
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = sim->release();
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(sim_, nullptr);
    auto loop = EpollEventLoop::Create({});
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    auto http = HttpClient::Create({}, *loop_);
    ASSERT_TRUE(http.ok());
    http_ = std::move(*http);
    ProviderConfig config;
    config.name = KindName(GetParam());
    config.kind = GetParam();
    auto provider = MakeProvider(config, *http_);
    ASSERT_TRUE(provider.ok()) << provider.status();
    provider_ = *provider;
    loop_->Start();
  }

  void TearDown() override {
    loop_->Stop();
    recorders_.clear();  // handles cancel on the (stopped) loop's state
    provider_.reset();
    http_.reset();
    loop_.reset();
  }

  std::string Key(absl::string_view test) const {
    return absl::StrCat("conf_", KindName(GetParam()), "_", test);
  }

  // Starts a call on the loop; returns its recorder.
  Recorder* StartCall(const CallSpec& spec) {
    auto rec = std::make_unique<Recorder>();
    Recorder* r = rec.get();
    r->cancel_after = spec.cancel_after;
    recorders_.push_back(std::move(rec));

    auto endpoint = std::make_shared<Endpoint>();
    endpoint->base_url = spec.base_url.empty()
                             ? absl::StrCat(sim_->base_url(), "/v1")
                             : spec.base_url;
    endpoint->api_key = "sk-conformance-secret";
    endpoint->upstream_model = absl::StrCat("m@", spec.scenario);
    auto request = std::make_shared<ChatRequest>();
    ChatMessage system;
    system.role = Role::kSystem;
    system.content = "You are terse.";
    ChatMessage user;
    user.role = Role::kUser;
    user.content = "Say something, please.";
    request->messages = {system, user};
    if (spec.with_tool) {
      request->tools = {{"get_weather", "Weather for a city",
                         R"({"type":"object","properties":{"city":)"
                         R"({"type":"string"}}})"}};
    }
    UpstreamCall call;
    call.endpoint = endpoint;
    call.request = request;
    call.stream = spec.stream;
    call.timeouts = spec.timeouts;
    absl::Duration deadline = spec.deadline;
    loop_->Post([this, r, call = std::move(call), deadline]() mutable {
      if (deadline != absl::InfiniteDuration()) {
        call.deadline = loop_->Now() + deadline;
      }
      r->handle = provider_->Start(std::move(call), r);
    });
    return r;
  }

  // Runs a call to its OnFinish.
  Recorder* Run(const CallSpec& spec) {
    Recorder* r = StartCall(spec);
    EXPECT_TRUE(r->finished.WaitForNotificationWithTimeout(kWait))
        << "no OnFinish for " << spec.scenario;
    Sync();
    return r;
  }

  // Waits for one loop round trip, so recorder fields are safe to read.
  void Sync() {
    absl::Notification n;
    loop_->Post([&] { n.Notify(); });
    ASSERT_TRUE(n.WaitForNotificationWithTimeout(kWait));
  }

  // Reads the simulator's counter `field` for `key` (-1 when absent).
  int64_t SimStat(const std::string& key, const char* field) {
    CURL* curl = curl_easy_init();
    std::string body;
    std::string url = absl::StrCat(sim_->base_url(), "/_stats");
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION,
        +[](char* d, size_t s, size_t n, void* u) -> size_t {
          static_cast<std::string*>(u)->append(d, s * n);
          return s * n;
        });
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    rapidjson::Document doc;
    doc.Parse(body.c_str());
    if (doc.HasParseError() || !doc.HasMember("keys")) return -1;
    const auto& keys = doc["keys"];
    if (!keys.HasMember(key.c_str())) return -1;
    const auto& k = keys[key.c_str()];
    if (!k.HasMember(field)) return -1;
    return k[field].GetInt64();
  }

  static sim::SimProcess* sim_;
  std::unique_ptr<EpollEventLoop> loop_;
  std::unique_ptr<HttpClient> http_;
  std::shared_ptr<Provider> provider_;
  std::vector<std::unique_ptr<Recorder>> recorders_;
};

sim::SimProcess* ProviderConformanceTest::sim_ = nullptr;

constexpr char kFiveTokens[] = "tok1 tok2 tok3 tok4 tok5";

TEST_P(ProviderConformanceTest, UnaryReturnsContentFinishAndUsage) {
  Recorder* r = Run(Spec("tokens=5"));
  ASSERT_TRUE(r->result.ok()) << r->result.error.message;
  EXPECT_EQ(r->result.response.message.role, Role::kAssistant);
  EXPECT_EQ(r->result.response.message.content, kFiveTokens);
  EXPECT_EQ(r->result.response.finish_reason, FinishReason::kStop);
  EXPECT_TRUE(r->result.response.has_usage);
  EXPECT_GT(r->result.response.usage.prompt_tokens, 0);
  EXPECT_EQ(r->result.response.usage.completion_tokens, 5);
  EXPECT_EQ(r->result.response.usage.total_tokens,
            r->result.response.usage.prompt_tokens + 5);
  EXPECT_TRUE(r->deltas.empty());
  EXPECT_GT(r->result.time_to_first_token, absl::ZeroDuration());
}

TEST_P(ProviderConformanceTest, StreamDeltasArriveInOrderAndMatchUnary) {
  Recorder* unary = Run(Spec("tokens=5"));
  Recorder* r = Run(Spec("tokens=5;itl_ms=5", /*stream=*/true));
  ASSERT_TRUE(r->result.ok()) << r->result.error.message;
  EXPECT_EQ(r->Content(), unary->result.response.message.content);
  // Pieces in order: "tok1", " tok2", ...
  std::vector<std::string> pieces;
  for (const auto& d : r->deltas) {
    if (!d.content.empty()) pieces.push_back(d.content);
  }
  ASSERT_EQ(pieces.size(), 5u);
  EXPECT_EQ(pieces[0], "tok1");
  EXPECT_EQ(pieces[4], " tok5");
  EXPECT_EQ(r->result.response.finish_reason, FinishReason::kStop);
  EXPECT_TRUE(r->result.response.has_usage);
  EXPECT_EQ(r->result.response.usage.completion_tokens, 5);
  EXPECT_GT(r->result.time_to_first_token, absl::ZeroDuration());
  EXPECT_EQ(r->finishes, 1);
  EXPECT_EQ(r->late_callbacks, 0);
}

TEST_P(ProviderConformanceTest, UnaryUsageReportsCachedPromptTokens) {
  Recorder* r = Run(Spec("tokens=2;cached_tokens=3"));
  ASSERT_TRUE(r->result.ok()) << r->result.error.message;
  EXPECT_EQ(r->result.response.usage.cached_tokens, 3);
  EXPECT_GE(r->result.response.usage.prompt_tokens, 3);
}

TEST_P(ProviderConformanceTest, StreamReportsUsageInADelta) {
  Recorder* r = Run(Spec("tokens=3", /*stream=*/true));
  ASSERT_TRUE(r->result.ok()) << r->result.error.message;
  bool usage_seen = false;
  for (const auto& d : r->deltas) {
    if (d.usage.has_value() && d.usage->completion_tokens == 3) {
      usage_seen = true;
    }
  }
  EXPECT_TRUE(usage_seen);
}

TEST_P(ProviderConformanceTest, UnaryToolCallHasNameAndArguments) {
  CallSpec spec = Spec("tool_call=1");
  spec.with_tool = true;
  Recorder* r = Run(spec);
  ASSERT_TRUE(r->result.ok()) << r->result.error.message;
  const auto& calls = r->result.response.message.tool_calls;
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_FALSE(calls[0].id.empty());
  EXPECT_EQ(calls[0].name, "get_weather");
  rapidjson::Document args;
  args.Parse(calls[0].arguments.c_str());
  ASSERT_FALSE(args.HasParseError()) << calls[0].arguments;
  EXPECT_STREQ(args["city"].GetString(), "Paris");
  EXPECT_EQ(r->result.response.finish_reason, FinishReason::kToolCalls);
}

TEST_P(ProviderConformanceTest, StreamedToolCallDeltasAssemble) {
  CallSpec spec = Spec("tool_call=1", /*stream=*/true);
  spec.with_tool = true;
  Recorder* r = Run(spec);
  ASSERT_TRUE(r->result.ok()) << r->result.error.message;
  ToolCall call = r->AssembledTool(0);
  EXPECT_FALSE(call.id.empty());
  EXPECT_EQ(call.name, "get_weather");
  EXPECT_EQ(call.arguments, R"({"city":"Paris"})");
  EXPECT_EQ(r->result.response.finish_reason, FinishReason::kToolCalls);
}

struct ErrorCase {
  std::string scenario;
  ErrorClass expected;
  absl::Duration retry_after = absl::ZeroDuration();
};

TEST_P(ProviderConformanceTest, ClassifiesUpstreamErrors) {
  const std::vector<ErrorCase> cases = {
      {"fault=rate_limit;retry_after=2", ErrorClass::kRateLimited,
       absl::Seconds(2)},
      {"fault=rate_limit;retry_after_ms=1500", ErrorClass::kRateLimited,
       absl::Milliseconds(1500)},
      {"fault=insufficient_quota", ErrorClass::kQuotaExhausted},
      {"fault=context_length", ErrorClass::kContextLengthExceeded},
      {"fault=content_filter", ErrorClass::kContentFiltered},
      {"fault=auth", ErrorClass::kAuthError},
      {"fault=http_503", ErrorClass::kOverloaded},
      {"fault=overloaded", ErrorClass::kOverloaded},
      {"fault=http_529", ErrorClass::kOverloaded},
      {absl::StrCat("fault=fail_first;fail_first=1;status=500;key=",
                    Key("e500")),
       ErrorClass::kServerError},
      {absl::StrCat("fault=fail_first;fail_first=1;status=400;key=",
                    Key("e400")),
       ErrorClass::kBadRequest},
      {"fault=reset", ErrorClass::kConnectError},
  };
  for (bool stream : {false, true}) {
    for (const ErrorCase& c : cases) {
      CallSpec spec = Spec(c.scenario, stream);
      // fail_first counts per key: give the stream variant its own key
      // (key= is the last field, so a suffix extends it).
      if (stream && c.scenario.find("key=") != std::string::npos) {
        absl::StrAppend(&spec.scenario, "_stream");
      }
      Recorder* r = Run(spec);
      SCOPED_TRACE(absl::StrCat(c.scenario, stream ? " (stream)" : ""));
      EXPECT_EQ(r->result.error.error_class, c.expected)
          << ErrorClassName(r->result.error.error_class) << ": "
          << r->result.error.message;
      if (c.retry_after > absl::ZeroDuration()) {
        EXPECT_EQ(r->result.error.retry_after, c.retry_after);
      }
      EXPECT_EQ(r->finishes, 1);
      EXPECT_TRUE(r->deltas.empty());
      EXPECT_EQ(r->result.error.message.find("sk-conformance-secret"),
                std::string::npos);
    }
  }
}

TEST_P(ProviderConformanceTest, ContentFilterKeepsProviderMessage) {
  Recorder* r = Run(Spec("fault=content_filter;reason=violent imagery"));
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kContentFiltered);
  EXPECT_NE(r->result.error.message.find("violent imagery"), std::string::npos)
      << r->result.error.message;
}

TEST_P(ProviderConformanceTest, HangIsFirstTokenTimeout) {
  for (bool stream : {false, true}) {
    CallSpec spec = Spec("fault=hang", stream);
    spec.timeouts.first_token = absl::Milliseconds(300);
    Recorder* r = Run(spec);
    EXPECT_EQ(r->result.error.error_class, ErrorClass::kTimeoutFirstToken)
        << r->result.error.message;
  }
}

TEST_P(ProviderConformanceTest, SlowFirstTokenIsFirstTokenTimeout) {
  // Anthropic's stream starts with message_start and ping right away; the
  // timeout is about the first token, not the first byte.
  CallSpec spec = Spec("tokens=3;ttft_ms=5000", /*stream=*/true);
  spec.timeouts.first_token = absl::Milliseconds(300);
  Recorder* r = Run(spec);
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kTimeoutFirstToken)
      << r->result.error.message;
  EXPECT_TRUE(r->deltas.empty());
}

TEST_P(ProviderConformanceTest, StallTimeoutStartsAfterTheFirstToken) {
  CallSpec spec = Spec("tokens=3;ttft_ms=500", /*stream=*/true);
  spec.timeouts.first_token = absl::Seconds(15);
  spec.timeouts.stall = absl::Milliseconds(100);
  Recorder* r = Run(spec);
  ASSERT_TRUE(r->result.ok()) << r->result.error.message;
  EXPECT_EQ(r->Content(), "tok1 tok2 tok3");
}

TEST_P(ProviderConformanceTest, SilenceMidStreamIsStallTimeout) {
  CallSpec spec = Spec("tokens=5;stall_after=2", /*stream=*/true);
  spec.timeouts.stall = absl::Milliseconds(300);
  Recorder* r = Run(spec);
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kTimeoutStall)
      << r->result.error.message;
  EXPECT_EQ(r->Content(), "tok1 tok2");
}

TEST_P(ProviderConformanceTest, DeadlineIsTotalTimeout) {
  CallSpec spec = Spec("tokens=100;itl_ms=20", /*stream=*/true);
  spec.deadline = absl::Milliseconds(300);
  Recorder* r = Run(spec);
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kTimeoutTotal)
      << r->result.error.message;

  CallSpec unary = Spec("tokens=5;latency_ms=3000");
  unary.deadline = absl::Milliseconds(300);
  r = Run(unary);
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kTimeoutTotal)
      << r->result.error.message;
}

TEST_P(ProviderConformanceTest, ClosedPortIsConnectError) {
  // Bind and release a port: nothing listens there afterwards.
  int port = 0;
  {
    auto probe = sim::SimProcess::Start({});
    ASSERT_TRUE(probe.ok());
    port = (*probe)->port();
  }
  CallSpec spec = Spec("tokens=1");
  spec.base_url = absl::StrCat("http://127.0.0.1:", port, "/v1");
  Recorder* r = Run(spec);
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kConnectError)
      << r->result.error.message;
  EXPECT_EQ(r->result.error.http_status, 0);
}

TEST_P(ProviderConformanceTest, CancelStopsCallbacksAndClosesConnection) {
  std::string key = Key("cancel");
  CallSpec spec = Spec(absl::StrCat("tokens=100;itl_ms=20;key=", key), true);
  spec.cancel_after = 2;
  Recorder* r = StartCall(spec);
  ASSERT_TRUE(r->cancel_done.WaitForNotificationWithTimeout(kWait));
  // The simulator notices the closed connection.
  absl::Time end = absl::Now() + kWait;
  while (SimStat(key, "client_closed") < 1 && absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(SimStat(key, "client_closed"), 1);
  EXPECT_EQ(SimStat(key, "active"), 0);
  // Several inter-token intervals later, still nothing arrived.
  absl::SleepFor(absl::Milliseconds(200));
  Sync();
  EXPECT_EQ(r->deltas.size(), 2u);
  EXPECT_EQ(r->finishes, 0);
  EXPECT_EQ(r->late_callbacks, 0);
}

TEST_P(ProviderConformanceTest, EarlyCloseWithoutFinishIsStreamCut) {
  Recorder* r = Run(Spec("tokens=5;cut_after=2", /*stream=*/true));
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kStreamCut)
      << r->result.error.message;
  EXPECT_EQ(r->Content(), "tok1 tok2");
}

TEST_P(ProviderConformanceTest, MissingEndMarkerAfterFinishIsOk) {
  CallSpec spec = Spec("tokens=3;fault=no_done", /*stream=*/true);
  // A stall timeout far beyond kWait: the call must end on the close.
  spec.timeouts.stall = absl::Minutes(5);
  Recorder* r = Run(spec);
  ASSERT_TRUE(r->result.ok()) << r->result.error.message;
  EXPECT_EQ(r->Content(), "tok1 tok2 tok3");
  EXPECT_EQ(r->result.response.finish_reason, FinishReason::kStop);
}

TEST_P(ProviderConformanceTest, MalformedChunkIsProtocolError) {
  Recorder* r = Run(Spec("tokens=5;malformed_after=2", /*stream=*/true));
  EXPECT_EQ(r->result.error.error_class, ErrorClass::kProtocolError)
      << r->result.error.message;
  EXPECT_EQ(r->Content(), "tok1 tok2");
}

TEST_P(ProviderConformanceTest, ErrorEventInsideStreamIsClassified) {
  Recorder* r = Run(Spec("tokens=5;error_event_after=2", /*stream=*/true));
  // The simulator sends OpenAI's server_error and Anthropic's
  // overloaded_error.
  EXPECT_EQ(r->result.error.error_class, GetParam() == ProviderKind::kOpenAI
                                             ? ErrorClass::kServerError
                                             : ErrorClass::kOverloaded)
      << r->result.error.message;
  EXPECT_EQ(r->Content(), "tok1 tok2");
}

INSTANTIATE_TEST_SUITE_P(
    Providers, ProviderConformanceTest,
    ::testing::Values(ProviderKind::kOpenAI, ProviderKind::kAnthropic),
    [](const ::testing::TestParamInfo<ProviderKind>& info) {
      return KindName(info.param);
    });

}  // namespace
}  // namespace echelon
