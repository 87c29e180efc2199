// The gateway's configuration as the domain sees it: plain, validated values.
// adapters/config_loader.h builds it from YAML (with environment injection,
// inheritance and validation) and every field here has a YAML key of the same
// name (see configs/README.md). Durations are absl::Duration; "per minute"
// limits are counts per 60 s; 0 for a limit means "no limit".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "domain/chat.h"
#include "domain/provider.h"

namespace echelon {

// ---------------------------------------------------------------------------
// Providers and the model catalogue

enum class ProviderKind { kOpenAI, kAnthropic };

struct ProviderConfig {
  std::string name;  // e.g. "openai", "local-sim"
  ProviderKind kind = ProviderKind::kOpenAI;
  std::string base_url;  // default for the provider's instances
  std::string api_key;   // secret, already resolved from env/file
  std::map<std::string, std::string> headers;
  UpstreamTimeouts timeouts;
};

struct InstanceConfig {
  std::string id;           // unique within the model; status shows model/id
  std::string base_url;     // empty: the provider's
  std::string api_key;      // empty: the provider's (secret)
  int weight = 1;           // for `weighted` rotation; >= 1
  int max_concurrency = 0;  // in-flight cap for this instance
  int64_t requests_per_minute = 0;  // this instance's own RPM cap
  int64_t tokens_per_minute = 0;    // this instance's own TPM cap
};

struct ModelConfig {
  std::string name;                  // catalogue name, e.g. "openai-gpt-4o"
  std::string provider;              // ProviderConfig::name
  std::string upstream_model;        // provider's id, e.g. "gpt-4o"
  int64_t context_window = 8192;     // tokens
  int64_t max_output_tokens = 4096;  // tokens
  bool supports_tools = true;
  bool supports_prefill = false;  // may end with an assistant message
  // At least one. When the YAML lists none, one instance "default" with the
  // provider's base URL and key is implied.
  std::vector<InstanceConfig> instances;
};

// ---------------------------------------------------------------------------
// Resilience policies

struct CircuitBreakerConfig {
  bool enabled = true;
  // Opens after this many consecutive health failures.
  int failure_threshold = 5;
  // ... or when the failure rate over `window` exceeds this (0 to 1), once at
  // least `min_requests` were seen in the window. 0 disables the rate rule.
  double failure_rate_threshold = 0.5;
  int min_requests = 20;
  absl::Duration window = absl::Seconds(60);
  // Time open before the first half-open probe.
  absl::Duration recovery_time = absl::Seconds(30);
  // Each reopen multiplies the open time by this, up to max_recovery_time.
  double recovery_multiplier = 2.0;
  absl::Duration max_recovery_time = absl::Minutes(5);
  // Probes allowed at once while half-open.
  int half_open_requests = 1;
  // Successful probes needed to close.
  int success_threshold = 1;
};

enum class RateLimitAlgorithm { kTokenBucket, kSlidingWindow };

struct RateLimitConfig {
  RateLimitAlgorithm algorithm = RateLimitAlgorithm::kTokenBucket;
  int64_t requests_per_minute = 0;
  int64_t tokens_per_minute = 0;
  // Token bucket capacity as a share of the per-minute rate (1.0 = a full
  // minute's worth may be spent at once). Ignored by sliding_window.
  double burst = 1.0;
};

enum class OverflowPolicy {
  kReject,  // RESOURCE_EXHAUSTED with a retry hint
  kSpill,   // try the next echelon
};

struct ConcurrencyConfig {
  int max_concurrency = 0;  // in-flight requests; 0 = unlimited
  OverflowPolicy on_overflow = OverflowPolicy::kReject;
  int queue_size = 0;  // waiting requests allowed beyond the limit
  absl::Duration queue_timeout = absl::Seconds(1);
};

struct RetryConfig {
  int max_retries = 2;  // further attempts after the first, per echelon
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double backoff_multiplier = 2.0;
  // Longest upstream Retry-After we are willing to wait for in-request;
  // longer ones make us go elsewhere instead. Also caps 429 cooldowns.
  absl::Duration max_retry_after = absl::Seconds(60);
  // Retry budget: concurrent retries <= budget_ratio * active requests,
  // but always at least budget_min_retries.
  double budget_ratio = 0.2;
  int budget_min_retries = 3;
};

struct PassiveHealthConfig {
  bool enabled = true;
  int consecutive_failures = 5;  // ejects the instance
  absl::Duration base_ejection_time = absl::Seconds(30);
  absl::Duration max_ejection_time = absl::Minutes(5);
  double jitter = 0.1;               // +-share applied to ejection times
  double max_ejection_percent = 50;  // never eject more of a pool than this
  // Success rate (0-1) over the window below which an instance is DEGRADED.
  double degraded_success_rate = 0.9;
};

struct ActiveHealthConfig {
  bool enabled = false;
  absl::Duration interval = absl::Seconds(30);
  double jitter = 0.1;  // +-share of interval
  absl::Duration timeout = absl::Seconds(10);
  int healthy_threshold = 2;    // successes to mark healthy again
  int unhealthy_threshold = 3;  // failures to mark unhealthy
};

struct HealthConfig {
  PassiveHealthConfig passive;
  ActiveHealthConfig active;
  // Cooldown cap for a 429 without (or beyond) Retry-After.
  absl::Duration rate_limit_cooldown = absl::Seconds(5);
  // How long auth_error / quota_exhausted keep an instance out of rotation.
  absl::Duration disable_time = absl::Hours(1);
};

// ---------------------------------------------------------------------------
// Task groups

struct EchelonConfig {
  std::string name;                 // unique in the group, e.g. "primary"
  int priority = 0;                 // lower runs first; ties keep file order
  std::vector<std::string> models;  // catalogue names, in preference order
  ConcurrencyConfig concurrency;
  RateLimitConfig rate_limit;
  // Whole-echelon budget (all attempts in it); 0 = only the request deadline.
  absl::Duration timeout = absl::ZeroDuration();
  // Overrides the provider's first-token timeout when set.
  std::optional<absl::Duration> first_token_timeout;
  RetryConfig retry;
  CircuitBreakerConfig breaker;  // the echelon's own breaker
  GenerationParams defaults;     // applied where the request leaves unset
  // Expected latency; the echelon is skipped when less than this remains of
  // the request deadline. 0 = never skipped for that reason.
  absl::Duration expected_latency = absl::ZeroDuration();
};

enum class FallbackStrategy {
  kEchelonDown,       // next echelon of the group
  kModelRotate,       // next model of the same echelon
  kProviderFailover,  // prefer an instance of another provider
  kTaskGroupSwitch,   // FallbackConfig::fallback_groups, in order
  kPoolSwitch,        // FallbackConfig::fallback_pools, in order
};

enum class AllOpenPolicy {
  kFailFast,    // UNAVAILABLE with a retry hint (earliest half-open time)
  kLastResort,  // route to `last_resort_echelon` regardless of breakers
};

struct FallbackConfig {
  // Tried in this order when an attempt fails. Default: model_rotate, then
  // echelon_down.
  std::vector<FallbackStrategy> strategies = {FallbackStrategy::kModelRotate,
                                              FallbackStrategy::kEchelonDown};
  std::vector<std::string> fallback_groups;
  std::vector<std::string> fallback_pools;
  int max_attempts = 6;  // every attempt of the request, all fallbacks
  absl::Duration retry_delay = absl::ZeroDuration();  // before a fallback
  AllOpenPolicy when_all_open = AllOpenPolicy::kFailFast;
  std::string last_resort_echelon;  // for kLastResort
};

struct TaskGroupConfig {
  std::string name;  // e.g. "fast"
  std::string description;
  std::vector<EchelonConfig> echelons;  // at least one
  FallbackConfig fallback;
  // Per-instance breaker used for instances reached through this group.
  CircuitBreakerConfig instance_breaker;
  HealthConfig health;
  // Default total deadline of a request when the caller sets none.
  absl::Duration request_timeout = absl::Seconds(120);
};

// ---------------------------------------------------------------------------
// Pools

struct PoolConfig {
  std::string name;
  std::string description;
  // "group" (every echelon) or "group.echelon" (one echelon).
  std::vector<std::string> task_groups;
  // round_robin, random, weighted, least_connections, least_recently_used,
  // p2c_ewma.
  std::string strategy = "round_robin";
  int max_instance_attempts = 3;  // instance failovers within the pool
  HealthConfig health;
  CircuitBreakerConfig instance_breaker;
  RetryConfig retry;  // backoff and the pool's retry budget
  std::vector<std::string> fallback_pools;
  absl::Duration request_timeout = absl::Seconds(120);
};

// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Client authentication and request limits (both fronts)

struct ClientTokenConfig {
  std::string name;  // shown in logs and errors instead of the token
  // Lower-case hex of the SHA-256 of the token (64 characters); the token
  // itself is never in the config.
  std::string sha256;
  // Targets (pools, task groups, "group.echelon") this token may call:
  // exact names or "prefix*" globs; "*" allows every target. Empty allows
  // none (an admin-only token).
  std::vector<std::string> allowed_targets;
  // May call the admin RPCs (ReloadConfig).
  bool admin = false;
  // This token's own limits across all targets; 0 = none. Tokens per
  // minute count the estimated prompt plus max_tokens of each request.
  int64_t requests_per_minute = 0;
  int64_t tokens_per_minute = 0;
};

struct AuthConfig {
  // Off: every caller is anonymous and may call everything.
  bool enabled = false;
  std::vector<ClientTokenConfig> tokens;
  // Whether the status RPCs (GetPoolStatus, GetTaskGroupStatus,
  // ListTargets) need a valid token too (any token; no target check).
  bool protect_status = true;
};

// Caps on one request, checked at both fronts before any routing; a
// violation is INVALID_ARGUMENT without an upstream call. 0 = no cap.
struct LimitsConfig {
  int64_t max_messages = 1024;
  int64_t max_content_bytes = 1 << 20;  // all message text, parts, tools
  int64_t max_metadata_entries = 64;    // request metadata + call headers
  int64_t max_metadata_bytes = 16 << 10;
  // Largest max_tokens a request may ask for; 0 = the largest
  // max_output_tokens in the model catalogue.
  int64_t max_tokens = 0;
};

// `cluster:` — state shared by several replicas through a store (Redis).
// Absent (enabled=false): every limit, cooldown and breaker is in process.
struct ClusterConfig {
  bool enabled = false;
  std::string address = "127.0.0.1:6379";  // host:port of the store
  std::string password;                    // secret; never logged
  int database = 0;
  // Every key this gateway writes starts with it; replicas that should
  // share state use the same prefix.
  std::string key_prefix = "echelon";
  // How long a shared limit decision may take before the replica decides
  // with its local share of the limit instead.
  absl::Duration decision_timeout = absl::Milliseconds(2);
  absl::Duration connect_timeout = absl::Milliseconds(500);
  // Reconnect backoff: starts at min, doubles up to max.
  absl::Duration reconnect_min = absl::Milliseconds(100);
  absl::Duration reconnect_max = absl::Seconds(5);
  // Share of every global RPM/TPM limit a replica enforces on its own while
  // the store is unreachable (e.g. 0.34 for three replicas).
  double local_share = 1.0;
  // Name of this replica in logs and published events; empty: host:pid.
  std::string replica_id;
};

struct GatewayConfig {
  std::vector<ProviderConfig> providers;
  std::vector<ModelConfig> models;
  std::vector<TaskGroupConfig> task_groups;
  std::vector<PoolConfig> pools;
  AuthConfig auth;
  LimitsConfig limits;
  ClusterConfig cluster;
};

}  // namespace echelon
