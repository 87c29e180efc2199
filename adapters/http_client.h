// An asynchronous HTTP client on libcurl's multi-socket interface, driven by
// the EpollEventLoop: every transfer and every callback runs on the loop
// thread, with no thread per request. One multi handle shares its connection
// cache across requests (keep-alive, HTTP/2 multiplexing over TLS).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "adapters/event_loop.h"
#include "domain/errors.h"

struct curl_slist;

namespace echelon {

// Response headers, names lower-cased, in arrival order.
struct HttpHeaders {
  std::vector<std::pair<std::string, std::string>> entries;

  // The first value of `name` (lower-case), or nullptr.
  const std::string* Find(absl::string_view name) const;
};

struct HttpRequest {
  std::string method = "POST";
  std::string url;
  // Request headers as "Name: value" pairs. May carry secrets: the client
  // never logs them or puts them into errors.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  absl::Duration connect_timeout = absl::Seconds(5);
  // From Start() to the first body byte.
  absl::Duration first_byte_timeout = absl::Seconds(60);
  // Longest silence between two body chunks once the body started.
  absl::Duration stall_timeout = absl::Seconds(30);
  // Hard end of the transfer.
  absl::Time deadline = absl::InfiniteFuture();
};

struct HttpResult {
  // kNone when the transfer completed (whatever the HTTP status); otherwise
  // kConnectError (refused, reset, DNS, TLS, truncated body),
  // kTimeoutConnect, kTimeoutFirstToken (no first body byte in time),
  // kTimeoutStall or kTimeoutTotal.
  ErrorClass error_class = ErrorClass::kNone;
  int http_status = 0;     // 0 when no response head arrived
  std::string message;     // never contains request headers
  int64_t body_bytes = 0;  // body bytes delivered to on_data
  // libcurl's CURLcode for the transfer (0 = CURLE_OK); 0 as well when a
  // loop timer ended it.
  int curl_code = 0;
};

struct HttpCallbacks {
  // Once, when the final (non-1xx) response head arrived, before on_data.
  absl::AnyInvocable<void(int status, const HttpHeaders& headers)> on_headers;
  // For every piece of the body as it arrives.
  absl::AnyInvocable<void(absl::string_view bytes)> on_data;
  // Exactly once, unless the request was cancelled first.
  absl::AnyInvocable<void(HttpResult result)> on_complete;
};

class HttpClient {
 public:
  using RequestId = uint64_t;

  struct Options {
    // Upper bound on open connections across all hosts; 0 = unlimited.
    int64_t max_total_connections = 0;
    // Upper bound per host; 0 = unlimited. Excess requests queue in curl.
    int64_t max_host_connections = 0;
    // Idle connections kept in the cache.
    int64_t max_cached_connections = 4096;
    // Transfers are spread over this many curl multi handles, each with its
    // own connection cache. libcurl looks for a reusable connection by
    // walking every connection to the host, so with one multi handle the
    // cost of starting a request grows with the number in flight (with
    // 1,500 in flight, one handle served 10-20 % fewer requests per second
    // than 16; tools/bench/BEFORE_AFTER.md). A
    // new transfer goes to the handle with the fewest transfers (the first
    // one when idle, so sequential requests keep reusing one connection).
    // The connection limits above apply per handle, divided evenly.
    int multi_handles = 16;
    // CA bundle path; empty = the system default store.
    std::string ca_file;
    std::string user_agent = "echelon/1";
  };

  // Fails with kInternal when libcurl cannot be initialised.
  static absl::StatusOr<std::unique_ptr<HttpClient>> Create(
      const Options& options, EpollEventLoop& loop);

  // Aborts pending transfers without callbacks. Loop thread, or after the
  // loop stopped.
  ~HttpClient();

  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a transfer. Loop thread only. Callbacks never run inside Start();
  // errors (a malformed URL too) arrive through on_complete.
  RequestId Start(HttpRequest request, HttpCallbacks callbacks);

  // Aborts a transfer at once, freeing its connection; no callback of it
  // runs afterwards. Loop thread only; safe inside the request's own
  // callbacks; a no-op for finished or unknown ids.
  void Cancel(RequestId id);

  // Transfers started and not yet completed or cancelled. Loop thread only.
  size_t active_requests() const { return transfers_.size(); }
  // Transfers on each curl multi handle (see Options::multi_handles),
  // including ones finishing. Loop thread only; for tests.
  std::vector<size_t> transfers_per_handle() const;

  EpollEventLoop& loop() { return loop_; }

 private:
  struct Transfer;
  // One curl multi handle with its curl timer.
  struct Shard {
    HttpClient* client = nullptr;
    void* multi = nullptr;  // CURLM*
    EventLoop::TimerId curl_timer = EventLoop::kNoTimer;
    size_t transfers = 0;  // started here and not yet freed
  };

  HttpClient(const Options& options, EpollEventLoop& loop);

  static int SocketCallback(void* easy, int fd, int what, void* shardp,
                            void* socketp);
  static int TimerCallback(void* multi, long timeout_ms, void* shardp);
  static size_t HeaderCallback(char* data, size_t size, size_t n, void* userp);
  static size_t WriteCallback(char* data, size_t size, size_t n, void* userp);
  static int PrereqCallback(void* clientp, char* primary_ip, char* local_ip,
                            int primary_port, int local_port);

  void OnSocketEvent(Shard& shard, int fd, uint32_t events);
  void OnCurlTimer(Shard& shard);
  void SocketAction(Shard& shard, int fd, int bitmask);
  void ProcessCompletions(Shard& shard);
  Shard& LeastBusyShard();
  void AddToMulti(RequestId id);
  void Finish(Transfer& transfer, HttpResult result);
  void FailWithTimeout(RequestId id, ErrorClass error_class);
  void OnStallCheck(RequestId id);
  void CancelTimers(Transfer& transfer);
  void DrainDoomed();
  // Easy handles are reused (curl_easy_reset) rather than created and
  // destroyed per request.
  void* AcquireEasy();
  void ReleaseEasy(void* easy);
  // The curl header list for `headers` (plus "Expect:"), cached per
  // distinct header set.
  std::shared_ptr<curl_slist> HeaderList(
      const std::vector<std::pair<std::string, std::string>>& headers);

  static constexpr size_t kMaxIdleEasyHandles = 256;
  static constexpr size_t kMaxHeaderLists = 256;

  const Options options_;
  EpollEventLoop& loop_;
  std::vector<std::unique_ptr<Shard>> shards_;
  RequestId next_id_ = 1;
  std::unordered_map<RequestId, std::unique_ptr<Transfer>> transfers_;
  int in_curl_ = 0;  // depth of calls into libcurl (callbacks may run)
  // Easy handles removed from the multi, destroyed outside libcurl calls.
  std::vector<std::unique_ptr<Transfer>> doomed_;
  std::unordered_set<int> watched_fds_;
  std::vector<void*> idle_easy_;  // CURL*, reset
  absl::flat_hash_map<std::string, std::shared_ptr<curl_slist>> header_lists_;
  std::string header_key_;  // scratch
  // Expires with the client; guards tasks posted to the loop.
  std::shared_ptr<bool> alive_;
};

// Parses Retry-After (delta seconds or an HTTP-date, relative to `now`) and
// retry-after-ms; retry-after-ms wins when both exist. Zero when absent or
// unparseable.
absl::Duration ParseRetryAfter(const HttpHeaders& headers, absl::Time now);

// Parses a duration header such as "1s", "6m0s", "20ms", "0.5s" or plain
// seconds "30" (OpenAI's x-ratelimit-reset-*). Zero when unparseable.
absl::Duration ParseResetDuration(absl::string_view value);

}  // namespace echelon
