#include "adapters/config_validate.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "adapters/config_node.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A small valid configuration, one section per constant so that tests can
// replace one. Line numbers in expectations count from the start of the
// concatenation: providers 1-4, models 5-9, task_groups 10-16, pools 17-19.
constexpr char kProviders[] =
    "providers:\n"
    "  - name: sim\n"
    "    kind: openai\n"
    "    base_url: http://127.0.0.1:8700/v1\n";
constexpr char kModels[] =
    "models:\n"
    "  - name: m1\n"
    "    provider: sim\n"
    "  - name: m2\n"
    "    provider: sim\n";
constexpr char kGroups[] =
    "task_groups:\n"
    "  - name: fast\n"
    "    echelons:\n"
    "      - name: primary\n"
    "        models: [m1]\n"
    "      - name: backup\n"
    "        models: [m2]\n";
constexpr char kPools[] =
    "pools:\n"
    "  - name: fast-pool\n"
    "    task_groups: [fast]\n";

struct Decoded {
  GatewayConfig config;
  std::vector<std::string> problems;
};

Decoded Decode(const std::string& yaml) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root = ParseYamlString(yaml, "t.yaml", &problems);
  Decoded out;
  if (root.has_value()) out.config = DecodeGatewayConfig(*root, &problems);
  // In file order, as the loader reports them.
  std::stable_sort(problems.begin(), problems.end(),
                   [](const ConfigProblem& a, const ConfigProblem& b) {
                     return std::make_pair(a.location.line, a.location.column) <
                            std::make_pair(b.location.line, b.location.column);
                   });
  for (const ConfigProblem& p : problems) out.problems.push_back(p.ToString());
  return out;
}

std::string With(const std::string& providers, const std::string& models,
                 const std::string& groups, const std::string& pools) {
  return providers + models + groups + pools;
}

TEST(ConfigValidateTest, MinimalConfigDecodesWithDocumentedDefaults) {
  Decoded d = Decode(With(kProviders, kModels, kGroups, kPools));
  ASSERT_THAT(d.problems, IsEmpty());
  const GatewayConfig& c = d.config;
  ASSERT_EQ(c.providers.size(), 1u);
  EXPECT_EQ(c.providers[0].timeouts.connect, absl::Seconds(5));
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models[0].upstream_model, "m1");  // defaults to the name
  ASSERT_EQ(c.models[0].instances.size(), 1u);
  EXPECT_EQ(c.models[0].instances[0].id, "default");
  EXPECT_EQ(c.models[0].instances[0].weight, 1);
  ASSERT_EQ(c.task_groups.size(), 1u);
  const TaskGroupConfig& g = c.task_groups[0];
  EXPECT_EQ(g.request_timeout, absl::Seconds(120));
  EXPECT_THAT(g.fallback.strategies,
              ElementsAre(FallbackStrategy::kModelRotate,
                          FallbackStrategy::kEchelonDown));
  EXPECT_EQ(g.echelons[0].retry.max_retries, 2);
  EXPECT_FALSE(g.echelons[0].first_token_timeout.has_value());
  ASSERT_EQ(c.pools.size(), 1u);
  EXPECT_EQ(c.pools[0].strategy, "round_robin");
  EXPECT_EQ(c.pools[0].max_instance_attempts, 3);
}

// Every field of GatewayConfig, set to a non-default value.
constexpr char kEverything[] = R"(
providers:
  - name: openai
    kind: anthropic
    base_url: https://api.example.com/v1
    api_key: sk-1
    headers: {x-org: acme}
    timeouts: {connect: 1s, first_token: 20s, stall: 7s}
models:
  - name: big
    provider: openai
    upstream_model: gpt-x
    context_window: 1000
    max_output_tokens: 500
    supports_tools: false
    supports_prefill: true
    instances:
      - id: east
        base_url: https://east.example.com/v1
        api_key: sk-east
        weight: 3
        max_concurrency: 8
        requests_per_minute: 60
        tokens_per_minute: 9000
task_groups:
  - name: g
    description: group
    request_timeout: 90s
    echelons:
      - name: e1
        priority: 4
        models: [big]
        concurrency: {max_concurrency: 4, on_overflow: spill, queue_size: 2,
                      queue_timeout: 250ms}
        rate_limit: {algorithm: sliding_window, requests_per_minute: 10,
                     tokens_per_minute: 100, burst: 0.5}
        timeout: 30s
        first_token_timeout: 5s
        retry: {max_retries: 4, initial_backoff: 50ms, max_backoff: 1s,
                backoff_multiplier: 1.5, max_retry_after: 10s,
                budget_ratio: 0.3, budget_min_retries: 1}
        breaker: {enabled: false, failure_threshold: 2,
                  failure_rate_threshold: 0.25, min_requests: 7, window: 10s,
                  recovery_time: 3s, recovery_multiplier: 3,
                  max_recovery_time: 1m, half_open_requests: 2,
                  success_threshold: 3}
        defaults:
          temperature: 0.2
          top_p: 0.9
          max_tokens: 64
          stop: [END]
          seed: 7
          presence_penalty: 0.1
          frequency_penalty: -0.1
          response_format: {type: json_schema, schema_name: s,
                            json_schema: '{"type":"object"}', strict: true}
        expected_latency: 2s
    fallback:
      strategies: [pool_switch, task_group_switch, provider_failover,
                   echelon_down, model_rotate]
      fallback_groups: [h]
      fallback_pools: [q]
      max_attempts: 9
      retry_delay: 20ms
      when_all_open: last_resort
      last_resort_echelon: e1
    instance_breaker: {failure_threshold: 9}
    health:
      passive: {enabled: false, consecutive_failures: 2,
                base_ejection_time: 1s, max_ejection_time: 2s, jitter: 0.2,
                max_ejection_percent: 30, degraded_success_rate: 0.8}
      active: {enabled: true, interval: 5s, jitter: 0.3, timeout: 1s,
               healthy_threshold: 4, unhealthy_threshold: 6}
      rate_limit_cooldown: 2s
      disable_time: 10m
  - name: h
    echelons: [{name: only, models: [big]}]
pools:
  - name: p
    description: pool
    task_groups: [g, h.only]
    strategy: p2c_ewma
    max_instance_attempts: 5
    health: {disable_time: 1h}
    instance_breaker: {success_threshold: 2}
    retry: {max_retries: 0}
    fallback_pools: [q]
    request_timeout: 45s
  - name: q
    task_groups: [h]
)";

TEST(ConfigValidateTest, EveryFieldIsSettableFromYaml) {
  Decoded d = Decode(kEverything);
  ASSERT_THAT(d.problems, IsEmpty());
  const GatewayConfig& c = d.config;
  const ProviderConfig& p = c.providers.at(0);
  EXPECT_EQ(p.kind, ProviderKind::kAnthropic);
  EXPECT_EQ(p.base_url, "https://api.example.com/v1");
  EXPECT_EQ(p.api_key, "sk-1");
  EXPECT_EQ(p.headers.at("x-org"), "acme");
  EXPECT_EQ(p.timeouts.connect, absl::Seconds(1));
  EXPECT_EQ(p.timeouts.first_token, absl::Seconds(20));
  EXPECT_EQ(p.timeouts.stall, absl::Seconds(7));

  const ModelConfig& m = c.models.at(0);
  EXPECT_EQ(m.upstream_model, "gpt-x");
  EXPECT_EQ(m.context_window, 1000);
  EXPECT_EQ(m.max_output_tokens, 500);
  EXPECT_FALSE(m.supports_tools);
  EXPECT_TRUE(m.supports_prefill);
  const InstanceConfig& i = m.instances.at(0);
  EXPECT_EQ(i.id, "east");
  EXPECT_EQ(i.base_url, "https://east.example.com/v1");
  EXPECT_EQ(i.api_key, "sk-east");
  EXPECT_EQ(i.weight, 3);
  EXPECT_EQ(i.max_concurrency, 8);
  EXPECT_EQ(i.requests_per_minute, 60);
  EXPECT_EQ(i.tokens_per_minute, 9000);

  const TaskGroupConfig& g = c.task_groups.at(0);
  EXPECT_EQ(g.description, "group");
  EXPECT_EQ(g.request_timeout, absl::Seconds(90));
  const EchelonConfig& e = g.echelons.at(0);
  EXPECT_EQ(e.priority, 4);
  EXPECT_EQ(e.concurrency.max_concurrency, 4);
  EXPECT_EQ(e.concurrency.on_overflow, OverflowPolicy::kSpill);
  EXPECT_EQ(e.concurrency.queue_size, 2);
  EXPECT_EQ(e.concurrency.queue_timeout, absl::Milliseconds(250));
  EXPECT_EQ(e.rate_limit.algorithm, RateLimitAlgorithm::kSlidingWindow);
  EXPECT_EQ(e.rate_limit.requests_per_minute, 10);
  EXPECT_EQ(e.rate_limit.tokens_per_minute, 100);
  EXPECT_DOUBLE_EQ(e.rate_limit.burst, 0.5);
  EXPECT_EQ(e.timeout, absl::Seconds(30));
  EXPECT_EQ(e.first_token_timeout, absl::Seconds(5));
  EXPECT_EQ(e.retry.max_retries, 4);
  EXPECT_EQ(e.retry.initial_backoff, absl::Milliseconds(50));
  EXPECT_EQ(e.retry.max_backoff, absl::Seconds(1));
  EXPECT_DOUBLE_EQ(e.retry.backoff_multiplier, 1.5);
  EXPECT_EQ(e.retry.max_retry_after, absl::Seconds(10));
  EXPECT_DOUBLE_EQ(e.retry.budget_ratio, 0.3);
  EXPECT_EQ(e.retry.budget_min_retries, 1);
  EXPECT_FALSE(e.breaker.enabled);
  EXPECT_EQ(e.breaker.failure_threshold, 2);
  EXPECT_DOUBLE_EQ(e.breaker.failure_rate_threshold, 0.25);
  EXPECT_EQ(e.breaker.min_requests, 7);
  EXPECT_EQ(e.breaker.window, absl::Seconds(10));
  EXPECT_EQ(e.breaker.recovery_time, absl::Seconds(3));
  EXPECT_DOUBLE_EQ(e.breaker.recovery_multiplier, 3);
  EXPECT_EQ(e.breaker.max_recovery_time, absl::Minutes(1));
  EXPECT_EQ(e.breaker.half_open_requests, 2);
  EXPECT_EQ(e.breaker.success_threshold, 3);
  EXPECT_EQ(e.defaults.temperature, 0.2);
  EXPECT_EQ(e.defaults.top_p, 0.9);
  EXPECT_EQ(e.defaults.max_tokens, 64);
  EXPECT_THAT(e.defaults.stop, ElementsAre("END"));
  EXPECT_EQ(e.defaults.seed, 7);
  EXPECT_EQ(e.defaults.presence_penalty, 0.1);
  EXPECT_EQ(e.defaults.frequency_penalty, -0.1);
  EXPECT_EQ(e.defaults.response_format.type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(e.defaults.response_format.schema_name, "s");
  EXPECT_EQ(e.defaults.response_format.json_schema, "{\"type\":\"object\"}");
  EXPECT_TRUE(e.defaults.response_format.strict);
  EXPECT_EQ(e.expected_latency, absl::Seconds(2));

  const FallbackConfig& f = g.fallback;
  EXPECT_THAT(f.strategies, ElementsAre(FallbackStrategy::kPoolSwitch,
                                        FallbackStrategy::kTaskGroupSwitch,
                                        FallbackStrategy::kProviderFailover,
                                        FallbackStrategy::kEchelonDown,
                                        FallbackStrategy::kModelRotate));
  EXPECT_THAT(f.fallback_groups, ElementsAre("h"));
  EXPECT_THAT(f.fallback_pools, ElementsAre("q"));
  EXPECT_EQ(f.max_attempts, 9);
  EXPECT_EQ(f.retry_delay, absl::Milliseconds(20));
  EXPECT_EQ(f.when_all_open, AllOpenPolicy::kLastResort);
  EXPECT_EQ(f.last_resort_echelon, "e1");
  EXPECT_EQ(g.instance_breaker.failure_threshold, 9);
  EXPECT_FALSE(g.health.passive.enabled);
  EXPECT_EQ(g.health.passive.consecutive_failures, 2);
  EXPECT_EQ(g.health.passive.base_ejection_time, absl::Seconds(1));
  EXPECT_EQ(g.health.passive.max_ejection_time, absl::Seconds(2));
  EXPECT_DOUBLE_EQ(g.health.passive.jitter, 0.2);
  EXPECT_DOUBLE_EQ(g.health.passive.max_ejection_percent, 30);
  EXPECT_DOUBLE_EQ(g.health.passive.degraded_success_rate, 0.8);
  EXPECT_TRUE(g.health.active.enabled);
  EXPECT_EQ(g.health.active.interval, absl::Seconds(5));
  EXPECT_DOUBLE_EQ(g.health.active.jitter, 0.3);
  EXPECT_EQ(g.health.active.timeout, absl::Seconds(1));
  EXPECT_EQ(g.health.active.healthy_threshold, 4);
  EXPECT_EQ(g.health.active.unhealthy_threshold, 6);
  EXPECT_EQ(g.health.rate_limit_cooldown, absl::Seconds(2));
  EXPECT_EQ(g.health.disable_time, absl::Minutes(10));

  const PoolConfig& pool = c.pools.at(0);
  EXPECT_EQ(pool.description, "pool");
  EXPECT_THAT(pool.task_groups, ElementsAre("g", "h.only"));
  EXPECT_EQ(pool.strategy, "p2c_ewma");
  EXPECT_EQ(pool.max_instance_attempts, 5);
  EXPECT_EQ(pool.health.disable_time, absl::Hours(1));
  EXPECT_EQ(pool.instance_breaker.success_threshold, 2);
  EXPECT_EQ(pool.retry.max_retries, 0);
  EXPECT_THAT(pool.fallback_pools, ElementsAre("q"));
  EXPECT_EQ(pool.request_timeout, absl::Seconds(45));
}

void CollectKeys(const ConfigNode& node, std::set<std::string>* keys) {
  for (const ConfigMapEntry& entry : node.entries) {
    keys->insert(entry.key);
    CollectKeys(entry.value, keys);
  }
  for (const ConfigNode& item : node.items) CollectKeys(item, keys);
}

TEST(ConfigValidateTest, ReferenceDocumentsEveryKey) {
  std::ifstream in(std::string(std::getenv("TEST_SRCDIR")) + "/" +
                   std::getenv("TEST_WORKSPACE") + "/configs/README.md");
  ASSERT_TRUE(in.good());
  std::stringstream readme;
  readme << in.rdbuf();
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      ParseYamlString(kEverything, "t.yaml", &problems);
  ASSERT_TRUE(root.has_value());
  std::set<std::string> keys;
  CollectKeys(*root, &keys);
  for (const std::string& key : keys) {
    if (key == "x-org") continue;  // a header name, not a key
    EXPECT_THAT(readme.str(), HasSubstr(key + ":"))
        << "configs/README.md does not document '" << key << "'";
  }
}

TEST(ConfigValidateTest, UnknownKeySuggestsTheClosestKnownKey) {
  Decoded d = Decode(With(kProviders, kModels, kGroups,
                          "pools:\n"
                          "  - name: fast-pool\n"
                          "    task_groups: [fast]\n"
                          "    stratgy: random\n"));
  EXPECT_THAT(d.problems,
              ElementsAre("t.yaml:20:5: pools.fast-pool.stratgy: unknown key "
                          "'stratgy'; did you mean 'strategy'?"));
}

TEST(ConfigValidateTest, UnknownKeyFarFromAnyKnownKeyHasNoSuggestion) {
  Decoded d = Decode(With(kProviders, kModels, kGroups,
                          "pools:\n"
                          "  - name: fast-pool\n"
                          "    task_groups: [fast]\n"
                          "    colour: blue\n"));
  EXPECT_THAT(d.problems, ElementsAre("t.yaml:20:5: pools.fast-pool.colour: "
                                      "unknown key 'colour'"));
}

TEST(ConfigValidateTest, UnknownKeysAreFoundInNestedMapsAndEchelons) {
  Decoded d = Decode(With(kProviders, kModels,
                          "task_groups:\n"
                          "  - name: fast\n"
                          "    echelons:\n"
                          "      - name: primary\n"
                          "        models: [m1]\n"
                          "        retry: {max_retrys: 1}\n",
                          kPools));
  EXPECT_THAT(d.problems,
              ElementsAre("t.yaml:15:17: "
                          "task_groups.fast.echelons.primary.retry.max_retrys: "
                          "unknown key 'max_retrys'; did you mean "
                          "'max_retries'?"));
}

TEST(ConfigValidateTest, UnknownTopLevelSection) {
  Decoded d = Decode(With(kProviders, kModels, kGroups, kPools) +
                     "pool:\n  - name: x\n");
  EXPECT_THAT(d.problems, ElementsAre("t.yaml:20:1: pool: unknown key "
                                      "'pool'; did you mean 'pools'?"));
}

TEST(ConfigValidateTest, WrongTypesAreReportedAtTheValue) {
  Decoded d = Decode(With(kProviders, kModels, kGroups,
                          "pools:\n"
                          "  - name: fast-pool\n"
                          "    task_groups: [fast]\n"
                          "    max_instance_attempts: many\n"
                          "    request_timeout: 30\n"
                          "    health: {passive: {enabled: maybe}}\n"
                          "    instance_breaker: {failure_rate_threshold: "
                          "half}\n"
                          "    retry: [1]\n"));
  EXPECT_THAT(
      d.problems,
      ElementsAre(
          "t.yaml:20:28: pools.fast-pool.max_instance_attempts: expected an "
          "integer, got 'many'",
          "t.yaml:21:22: pools.fast-pool.request_timeout: expected a duration "
          "like '250ms', '30s', '5m' or '1h', got '30'",
          "t.yaml:22:33: pools.fast-pool.health.passive.enabled: expected "
          "true or false, got 'maybe'",
          "t.yaml:23:48: "
          "pools.fast-pool.instance_breaker.failure_rate_threshold: expected "
          "a number, got 'half'",
          "t.yaml:24:12: pools.fast-pool.retry: expected a map, got a list"));
}

TEST(ConfigValidateTest, OutOfRangeValuesAreReported) {
  Decoded d = Decode(With(kProviders, kModels, kGroups,
                          "pools:\n"
                          "  - name: fast-pool\n"
                          "    task_groups: [fast]\n"
                          "    max_instance_attempts: 0\n"
                          "    request_timeout: -5s\n"
                          "    instance_breaker: {failure_rate_threshold: "
                          "1.5}\n"
                          "    retry: {max_retries: 101}\n"));
  EXPECT_THAT(
      d.problems,
      ElementsAre(
          "t.yaml:20:28: pools.fast-pool.max_instance_attempts: must be >= 1, "
          "got 0",
          "t.yaml:21:22: pools.fast-pool.request_timeout: must be > 0, got "
          "'-5s'",
          "t.yaml:22:48: "
          "pools.fast-pool.instance_breaker.failure_rate_threshold: must be "
          "between 0 and 1, got 1.5",
          "t.yaml:23:26: pools.fast-pool.retry.max_retries: must be between 0 "
          "and 100, got 101"));
}

TEST(ConfigValidateTest, UnknownEnumValueListsChoicesAndSuggests) {
  Decoded d = Decode(With(kProviders, kModels,
                          "task_groups:\n"
                          "  - name: fast\n"
                          "    echelons:\n"
                          "      - name: primary\n"
                          "        models: [m1]\n"
                          "        rate_limit: {algorithm: tokenbucket}\n"
                          "    fallback:\n"
                          "      strategies: [echelon_dwn]\n"
                          "      when_all_open: fail\n",
                          "pools:\n"
                          "  - name: fast-pool\n"
                          "    task_groups: [fast]\n"
                          "    strategy: round_robn\n"));
  EXPECT_THAT(
      d.problems,
      ElementsAre(
          "t.yaml:15:33: task_groups.fast.echelons.primary.rate_limit."
          "algorithm: unknown value 'tokenbucket'; expected one of "
          "token_bucket, sliding_window; did you mean 'token_bucket'?",
          "t.yaml:17:20: task_groups.fast.fallback.strategies[0]: unknown "
          "value 'echelon_dwn'; expected one of echelon_down, model_rotate, "
          "provider_failover, task_group_switch, pool_switch; did you mean "
          "'echelon_down'?",
          "t.yaml:18:22: task_groups.fast.fallback.when_all_open: unknown "
          "value 'fail'; expected one of fail_fast, last_resort",
          "t.yaml:22:15: pools.fast-pool.strategy: unknown value "
          "'round_robn'; expected one of round_robin, random, weighted, "
          "least_connections, least_recently_used, p2c_ewma; did you mean "
          "'round_robin'?"));
}

TEST(ConfigValidateTest, ProviderKindMustBeKnown) {
  Decoded d =
      Decode(With("providers:\n  - name: sim\n    kind: openia\n    base_url: "
                  "http://x/v1\n",
                  kModels, kGroups, kPools));
  EXPECT_THAT(d.problems,
              ElementsAre("t.yaml:3:11: providers.sim.kind: unknown value "
                          "'openia'; expected one of openai, anthropic; did "
                          "you mean 'openai'?"));
}

TEST(ConfigValidateTest, BrokenReferencesAreReportedWithSuggestions) {
  Decoded d = Decode(With(kProviders,
                          "models:\n"
                          "  - name: m1\n"
                          "    provider: sym\n"
                          "  - name: m2\n"
                          "    provider: sim\n",
                          "task_groups:\n"
                          "  - name: fast\n"
                          "    echelons:\n"
                          "      - name: primary\n"
                          "        models: [m1, m3]\n"
                          "      - name: backup\n"
                          "        models: [m2]\n",
                          "pools:\n"
                          "  - name: fast-pool\n"
                          "    task_groups: [fsat, fast.primry, fast.backup]\n"
                          "    fallback_pools: [slow-pool]\n"));
  EXPECT_THAT(
      d.problems,
      ElementsAre(
          "t.yaml:7:15: models.m1.provider: unknown provider 'sym'; did you "
          "mean 'sim'?",
          "t.yaml:14:22: task_groups.fast.echelons.primary.models[1]: unknown "
          "model 'm3'; did you mean 'm1'?",
          "t.yaml:19:19: pools.fast-pool.task_groups[0]: unknown task group "
          "'fsat'; did you mean 'fast'?",
          "t.yaml:19:25: pools.fast-pool.task_groups[1]: unknown echelon "
          "'primry' in task group 'fast'; did you mean 'primary'?",
          "t.yaml:20:22: pools.fast-pool.fallback_pools[0]: unknown pool "
          "'slow-pool'"));
}

TEST(ConfigValidateTest, FallbackReferencesAreChecked) {
  Decoded d = Decode(With(kProviders, kModels,
                          "task_groups:\n"
                          "  - name: fast\n"
                          "    echelons:\n"
                          "      - name: primary\n"
                          "        models: [m1]\n"
                          "    fallback:\n"
                          "      fallback_groups: [fast, slow]\n"
                          "      fallback_pools: [fast-pool]\n"
                          "      when_all_open: last_resort\n"
                          "      last_resort_echelon: backup\n",
                          "pools:\n"
                          "  - name: fast-pool\n"
                          "    task_groups: [fast]\n"
                          "    fallback_pools: [fast-pool]\n"));
  EXPECT_THAT(
      d.problems,
      ElementsAre(
          "t.yaml:16:25: task_groups.fast.fallback.fallback_groups[0]: a "
          "task group cannot fall back to itself",
          "t.yaml:16:31: task_groups.fast.fallback.fallback_groups[1]: "
          "unknown task group 'slow'",
          "t.yaml:19:28: task_groups.fast.fallback.last_resort_echelon: "
          "unknown echelon 'backup'",
          "t.yaml:23:22: pools.fast-pool.fallback_pools[0]: a pool cannot "
          "fall back to itself"));
}

TEST(ConfigValidateTest, LastResortNeedsAnEchelon) {
  Decoded d = Decode(With(kProviders, kModels,
                          "task_groups:\n"
                          "  - name: fast\n"
                          "    echelons:\n"
                          "      - name: primary\n"
                          "        models: [m1]\n"
                          "    fallback:\n"
                          "      when_all_open: last_resort\n",
                          kPools));
  EXPECT_THAT(d.problems,
              ElementsAre("t.yaml:16:7: task_groups.fast.fallback: missing "
                          "required key 'last_resort_echelon' (required when "
                          "when_all_open is last_resort)"));
}

TEST(ConfigValidateTest, DuplicateNamesPointAtTheFirstDefinition) {
  Decoded d = Decode(With(kProviders,
                          "models:\n"
                          "  - name: m1\n"
                          "    provider: sim\n"
                          "  - name: m2\n"
                          "    provider: sim\n"
                          "  - name: m1\n"
                          "    provider: sim\n",
                          "task_groups:\n"
                          "  - name: fast\n"
                          "    echelons:\n"
                          "      - name: primary\n"
                          "        models: [m1, m1]\n"
                          "      - name: primary\n"
                          "        models: [m2]\n",
                          kPools));
  EXPECT_THAT(
      d.problems,
      ElementsAre(
          "t.yaml:10:11: models.m1.name: duplicate model 'm1' (first "
          "defined at t.yaml:6:11)",
          "t.yaml:16:22: task_groups.fast.echelons.primary.models[1]: model "
          "'m1' is listed twice",
          "t.yaml:17:15: task_groups.fast.echelons.primary.name: duplicate "
          "echelon 'primary' (first defined at t.yaml:15:15)"));
}

TEST(ConfigValidateTest, DuplicateInstanceIds) {
  Decoded d = Decode(With(kProviders,
                          "models:\n"
                          "  - name: m1\n"
                          "    provider: sim\n"
                          "    instances: [{id: a}, {id: a}]\n"
                          "  - name: m2\n"
                          "    provider: sim\n",
                          kGroups, kPools));
  EXPECT_THAT(d.problems,
              ElementsAre("t.yaml:8:31: models.m1.instances.a.id: duplicate "
                          "instance 'a' (first defined at t.yaml:8:22)"));
}

TEST(ConfigValidateTest, InconsistentTimeoutsAreReported) {
  Decoded d = Decode(
      "providers:\n"
      "  - name: sim\n"
      "    kind: openai\n"
      "    base_url: http://127.0.0.1:8700/v1\n"
      "    timeouts: {connect: 10s, first_token: 5s}\n" +
      std::string(kModels) +
      "task_groups:\n"
      "  - name: fast\n"
      "    request_timeout: 20s\n"
      "    echelons:\n"
      "      - name: primary\n"
      "        models: [m1]\n"
      "        timeout: 30s\n"
      "        first_token_timeout: 40s\n"
      "        retry: {initial_backoff: 2s, max_backoff: 1s}\n"
      "        breaker: {recovery_time: 10m, max_recovery_time: 5m}\n"
      "    health:\n"
      "      passive: {base_ejection_time: 10m}\n"
      "      active: {interval: 5s, timeout: 10s}\n" +
      kPools);
  EXPECT_THAT(
      d.problems,
      ElementsAre(
          "t.yaml:5:25: providers.sim.timeouts.connect: connect (10s) must "
          "not exceed first_token (5s)",
          "t.yaml:17:18: task_groups.fast.echelons.primary.timeout: timeout "
          "(30s) must not exceed the task group's request_timeout (20s)",
          "t.yaml:18:30: "
          "task_groups.fast.echelons.primary.first_token_timeout: "
          "first_token_timeout (40s) must not exceed timeout (30s)",
          "t.yaml:19:34: "
          "task_groups.fast.echelons.primary.retry.initial_backoff: "
          "initial_backoff (2s) must not exceed max_backoff (1s)",
          "t.yaml:20:34: "
          "task_groups.fast.echelons.primary.breaker.recovery_time: "
          "recovery_time (10m) must not exceed max_recovery_time (5m)",
          "t.yaml:22:37: task_groups.fast.health.passive.base_ejection_time: "
          "base_ejection_time (10m) must not exceed max_ejection_time (5m)",
          "t.yaml:23:39: task_groups.fast.health.active.timeout: timeout "
          "(10s) must not exceed interval (5s)"));
}

TEST(ConfigValidateTest, EchelonTimeoutMustCoverTheProvidersConnectTimeout) {
  Decoded d = Decode(With(kProviders, kModels,
                          "task_groups:\n"
                          "  - name: fast\n"
                          "    echelons:\n"
                          "      - name: primary\n"
                          "        models: [m1]\n"
                          "        timeout: 2s\n",
                          kPools));
  EXPECT_THAT(d.problems,
              ElementsAre("t.yaml:15:18: task_groups.fast.echelons.primary."
                          "timeout: timeout (2s) must not be shorter than the "
                          "connect timeout (5s) of provider 'sim' (model "
                          "'m1')"));
}

TEST(ConfigValidateTest, MissingRequiredKeysAreReportedAtTheirMap) {
  Decoded d = Decode(
      "providers:\n"
      "  - name: sim\n"
      "    base_url: http://x/v1\n"
      "models:\n"
      "  - name: m1\n"
      "task_groups:\n"
      "  - name: fast\n"
      "pools:\n"
      "  - name: fast-pool\n"
      "  - task_groups: [fast]\n");
  EXPECT_THAT(
      d.problems,
      ElementsAre(
          "t.yaml:2:5: providers.sim: missing required key 'kind' (openai or "
          "anthropic)",
          "t.yaml:5:5: models.m1: missing required key 'provider' (a "
          "provider's name)",
          "t.yaml:7:5: task_groups.fast: missing required key 'echelons' (at "
          "least one echelon)",
          "t.yaml:9:5: pools.fast-pool: missing required key 'task_groups' "
          "(task groups or group.echelon names)",
          "t.yaml:10:5: pools[1]: missing required key 'name' (the pool's "
          "name)"));
}

TEST(ConfigValidateTest, NamesAndUrlsAreChecked) {
  Decoded d =
      Decode(With("providers:\n"
                  "  - name: sim\n"
                  "    kind: openai\n"
                  "    base_url: ftp://x\n",
                  "models:\n"
                  "  - name: m1\n"
                  "    provider: sim\n"
                  "  - name: m.2\n"
                  "    provider: sim\n",
                  kGroups, kPools));
  EXPECT_THAT(
      d.problems,
      ElementsAre("t.yaml:4:15: providers.sim.base_url: expected an http:// "
                  "or https:// URL, got 'ftp://x'",
                  "t.yaml:8:11: models[1].name: invalid name 'm.2': use "
                  "letters, digits, '-' and '_'",
                  "t.yaml:16:18: task_groups.fast.echelons.backup.models[0]: "
                  "unknown model 'm2'; did you mean 'm.2'?"));
}

TEST(ConfigValidateTest, EmptyHeadersAreDroppedAndUrlsLoseTrailingSlashes) {
  Decoded d =
      Decode(With("providers:\n"
                  "  - name: sim\n"
                  "    kind: openai\n"
                  "    base_url: http://127.0.0.1:8700/v1/\n"
                  "    headers: {X-Org: '', X-Team: blue}\n",
                  kModels, kGroups, kPools));
  ASSERT_THAT(d.problems, IsEmpty());
  EXPECT_EQ(d.config.providers[0].base_url, "http://127.0.0.1:8700/v1");
  EXPECT_EQ(d.config.providers[0].headers.size(), 1u);
  EXPECT_EQ(d.config.providers[0].headers.at("X-Team"), "blue");
}

TEST(ConfigValidateTest, ModelOutputMustFitTheContextWindow) {
  Decoded d = Decode(With(kProviders,
                          "models:\n"
                          "  - name: m1\n"
                          "    provider: sim\n"
                          "    context_window: 1000\n"
                          "  - name: m2\n"
                          "    provider: sim\n",
                          kGroups, kPools));
  EXPECT_THAT(d.problems,
              ElementsAre("t.yaml:6:5: models.m1.max_output_tokens: "
                          "max_output_tokens (4096) must not exceed "
                          "context_window (1000)"));
}

TEST(ConfigValidateTest, InstancesNeedABaseUrlWhenTheProviderHasNone) {
  Decoded d =
      Decode(With("providers:\n"
                  "  - name: sim\n"
                  "    kind: openai\n",
                  "models:\n"
                  "  - name: m1\n"
                  "    provider: sim\n"
                  "    instances:\n"
                  "      - id: a\n"
                  "      - id: b\n"
                  "        base_url: http://b/v1\n"
                  "  - name: m2\n"
                  "    provider: sim\n",
                  kGroups, kPools));
  EXPECT_THAT(
      d.problems,
      ElementsAre("t.yaml:8:9: models.m1.instances.a: missing required key "
                  "'base_url' (the provider has none)",
                  "t.yaml:11:5: models.m2.instances: provider 'sim' has no "
                  "base_url and the model lists no instances with one"));
}

TEST(ConfigValidateTest, EveryProblemIsReportedAtOnce) {
  Decoded d = Decode(With(kProviders,
                          "models:\n"
                          "  - name: m1\n"
                          "    provider: sim\n"
                          "    context_windw: 10\n"
                          "  - name: m2\n"
                          "    provider: sim\n",
                          kGroups,
                          "pools:\n"
                          "  - name: fast-pool\n"
                          "    task_groups: [fast]\n"
                          "    strategy: fastest\n"
                          "    max_instance_attempts: 0\n"));
  EXPECT_EQ(d.problems.size(), 3u);
}

TEST(ConfigValidateTest, EnvironmentValuesAreNotEchoedInErrors) {
  std::vector<ConfigProblem> problems;
  std::optional<ConfigNode> root =
      ParseYamlString(With(kProviders, kModels, kGroups,
                           "pools:\n"
                           "  - name: fast-pool\n"
                           "    task_groups: [fast]\n"
                           "    max_instance_attempts: xyz-secret\n"),
                      "t.yaml", &problems);
  ASSERT_TRUE(root.has_value());
  ConfigNode* attempts =
      root->Find("pools")->items[0].Find("max_instance_attempts");
  attempts->substituted = true;
  DecodeGatewayConfig(*root, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].message,
            "expected an integer, got a value from the environment");
}

TEST(ConfigValidateTest, DefaultsSectionAppliesUnderEveryEntity) {
  Decoded d = Decode(With(kProviders, kModels, kGroups, kPools) +
                     "defaults:\n"
                     "  provider: {timeouts: {connect: 1s}}\n"
                     "  echelon: {retry: {max_retries: 0}}\n"
                     "  pool: {strategy: random, max_instance_attempts: 7}\n");
  ASSERT_THAT(d.problems, IsEmpty());
  EXPECT_EQ(d.config.providers[0].timeouts.connect, absl::Seconds(1));
  EXPECT_EQ(d.config.task_groups[0].echelons[1].retry.max_retries, 0);
  EXPECT_EQ(d.config.pools[0].strategy, "random");
  EXPECT_EQ(d.config.pools[0].max_instance_attempts, 7);
}

TEST(ConfigValidateTest, EntitySettingsWinOverDefaults) {
  Decoded d = Decode(With(kProviders, kModels, kGroups,
                          "pools:\n"
                          "  - name: fast-pool\n"
                          "    task_groups: [fast]\n"
                          "    strategy: weighted\n") +
                     "defaults:\n"
                     "  pool: {strategy: random}\n");
  ASSERT_THAT(d.problems, IsEmpty());
  EXPECT_EQ(d.config.pools[0].strategy, "weighted");
}

TEST(ConfigValidateTest, UnknownKeyInDefaultsIsReportedWhereItWasWritten) {
  Decoded d = Decode(With(kProviders, kModels, kGroups, kPools) +
                     "defaults:\n"
                     "  pool: {stratgy: random}\n"
                     "  pools: {}\n");
  EXPECT_THAT(d.problems,
              ElementsAre("t.yaml:21:10: pools.fast-pool.stratgy: unknown key "
                          "'stratgy'; did you mean 'strategy'?",
                          "t.yaml:22:3: defaults.pools: unknown key 'pools'; "
                          "did you mean 'pool'?"));
}

TEST(ConfigValidateTest, SectionItemsMustBeMaps) {
  Decoded d = Decode(With(kProviders, kModels, kGroups,
                          "pools:\n"
                          "  - fast-pool\n"));
  EXPECT_THAT(d.problems,
              ElementsAre("t.yaml:18:5: pools[0]: expected a map describing "
                          "one pool, got 'fast-pool'"));
}

TEST(ConfigValidateTest, ConfigWithoutPoolsIsAProblem) {
  Decoded d = Decode(With(kProviders, kModels, kGroups, ""));
  EXPECT_THAT(d.problems, ElementsAre("t.yaml:1:1: pools: the configuration "
                                      "defines no pools"));
}

TEST(ConfigValidateTest, SuggestsOnlyCloseWords) {
  EXPECT_EQ(EditDistance("stratgy", "strategy"), 1);
  EXPECT_EQ(SuggestClosest("stratgy", {"strategy", "description"}), "strategy");
  EXPECT_EQ(SuggestClosest("colour", {"strategy", "name"}), "");
}

}  // namespace
}  // namespace echelon
