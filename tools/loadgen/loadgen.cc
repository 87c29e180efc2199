// loadgen: the load generator of the benchmark harness.
//
// Modes (--mode):
//   grpc_unary   echelon.v1.Gateway/Execute through the gRPC callback API
//   grpc_stream  echelon.v1.Gateway/Stream (ClientReadReactor per call)
//   http_unary   POST an OpenAI chat completion (libcurl multi, one thread)
//   http_stream  the same with "stream": true (SSE)
//   grpc_hold    open --streams long streams, hold them --hold_s seconds while
//                sampling --sample_pid's RSS and thread count, then cancel
//
// Load shape: --rate=0 is a closed loop with --concurrency calls in flight;
// --rate=R is an open loop that schedules call k at start + k/R and measures
// every latency from that *intended* send time, so a stalled server is
// charged for the requests that queued behind it (no coordinated omission).
// Only calls scheduled inside [warmup, warmup + duration) are recorded;
// totals over the whole run (for CPU-per-request) are reported too.
//
// No thread per call: gRPC calls run on gRPC's callback threads, HTTP calls on
// one epoll loop with a timerfd for precise send times.
//
// Prints one JSON object on stdout; latencies are in microseconds.
#include <curl/curl.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "echelon/v1/gateway.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tools/loadgen/histogram.h"

ABSL_FLAG(std::string, mode, "grpc_unary",
          "grpc_unary | grpc_stream | http_unary | http_stream | grpc_hold");
ABSL_FLAG(std::string, address, "127.0.0.1:50051", "gRPC server address.");
ABSL_FLAG(std::string, url, "", "HTTP modes: the URL to POST to.");
ABSL_FLAG(std::string, target, "fast-pool",
          "gRPC target, or the \"model\" of HTTP requests.");
ABSL_FLAG(std::string, headers, "",
          "HTTP modes: extra request headers, separated by '|'.");
ABSL_FLAG(std::string, prompt, "Hello there, how are you today?",
          "User message of every request.");
ABSL_FLAG(int, concurrency, 32, "Closed loop (--rate=0): calls in flight.");
ABSL_FLAG(double, rate, 0, "Open loop: calls started per second.");
ABSL_FLAG(double, duration_s, 5, "Measured seconds (after the warmup).");
ABSL_FLAG(double, warmup_s, 1, "Unrecorded seconds before measuring.");
ABSL_FLAG(int, channels, 2, "gRPC channels (separate HTTP/2 connections).");
ABSL_FLAG(int, max_outstanding, 4000,
          "Open loop: a send due while this many calls are in flight is "
          "skipped and counted as dropped.");
ABSL_FLAG(int, http_connections, 128,
          "HTTP open loop: most calls (= connections) in flight; calls due "
          "beyond wait in the load generator's own FIFO, still timed from "
          "their intended send time.");
ABSL_FLAG(int, streams, 10000, "grpc_hold: streams to open.");
ABSL_FLAG(double, open_rate, 2000, "grpc_hold: streams opened per second.");
ABSL_FLAG(double, hold_s, 10, "grpc_hold: seconds to hold them all open.");
ABSL_FLAG(double, settle_s, 60,
          "grpc_hold: after opening, wait up to this long for every stream's "
          "first chunk before the hold starts.");
ABSL_FLAG(int, sample_pid, 0,
          "grpc_hold: sample VmRSS/Threads of this process while holding.");
ABSL_FLAG(double, drain_s, 30,
          "Seconds to wait for calls in flight after the run.");

namespace echelon::loadgen {
namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void SleepUntil(int64_t t_ns) {
  timespec ts;
  ts.tv_sec = t_ns / 1000000000;
  ts.tv_nsec = t_ns % 1000000000;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) ==
         EINTR) {
  }
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string HistJson(const Histogram& h) {
  auto us = [](int64_t ns) { return static_cast<double>(ns) / 1000.0; };
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "{\"count\":%lld,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
                "\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
                static_cast<long long>(h.Count()), us(h.Percentile(0.5)),
                us(h.Percentile(0.9)), us(h.Percentile(0.99)),
                us(h.Percentile(0.999)), us(h.Max()), h.Mean() / 1000.0);
  return buf;
}

// What every mode records.
struct Results {
  Histogram latency;    // whole call (unary) or whole stream
  Histogram ttft;       // streams: first message
  Histogram chunk_gap;  // streams: between consecutive messages
  std::atomic<int64_t> ok{0}, errors{0}, dropped{0}, chunks{0};
  std::atomic<int64_t> total_ok{0}, total_errors{0}, total_chunks{0};
  std::atomic<int64_t> outstanding{0};
  std::atomic<int64_t> by_code[17] = {};  // streams: final gRPC status codes
  std::mutex mu;
  std::string first_error;

  void Error(const std::string& what, bool in_window) {
    total_errors.fetch_add(1, std::memory_order_relaxed);
    if (in_window) errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = what;
  }
};

struct Window {
  int64_t start = 0;    // run start (warmup begins)
  int64_t measure = 0;  // warmup ends
  int64_t end = 0;      // no new call is scheduled at or after this
  bool Contains(int64_t t) const { return t >= measure && t < end; }
};

void PrintResults(Results& r, const Window& w, double rate, int concurrency,
                  int64_t send_done_ns) {
  const double secs = static_cast<double>(w.end - w.measure) / 1e9;
  const std::string& mode = absl::GetFlag(FLAGS_mode);
  std::printf(
      "{\"mode\":\"%s\",\"target\":\"%s\",\"rate\":%.1f,\"concurrency\":%d,"
      "\"duration_s\":%.3f,\"ok\":%lld,\"errors\":%lld,\"dropped\":%lld,"
      "\"total_ok\":%lld,\"total_errors\":%lld,\"total_chunks\":%lld,"
      "\"chunks\":%lld,\"throughput_rps\":%.1f,\"chunks_per_s\":%.1f,"
      "\"send_lag_ms\":%.3f,"
      "\"lat_us\":%s,\"ttft_us\":%s,\"chunk_gap_us\":%s,"
      "\"first_error\":\"%s\"}\n",
      mode.c_str(), JsonEscape(absl::GetFlag(FLAGS_target)).c_str(), rate,
      concurrency, secs, static_cast<long long>(r.ok.load()),
      static_cast<long long>(r.errors.load()),
      static_cast<long long>(r.dropped.load()),
      static_cast<long long>(r.total_ok.load()),
      static_cast<long long>(r.total_errors.load()),
      static_cast<long long>(r.total_chunks.load()),
      static_cast<long long>(r.chunks.load()),
      static_cast<double>(r.ok.load()) / secs,
      static_cast<double>(r.chunks.load()) / secs,
      static_cast<double>(send_done_ns - w.end) / 1e6,
      HistJson(r.latency).c_str(), HistJson(r.ttft).c_str(),
      HistJson(r.chunk_gap).c_str(), JsonEscape(r.first_error).c_str());
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------
// gRPC

class GrpcDriver;

class StreamCall : public grpc::ClientReadReactor<v1::StreamChunk> {
 public:
  StreamCall(GrpcDriver* driver, int64_t intended, bool owned)
      : driver_(driver), intended_(intended), owned_(owned) {}

  void Go(v1::Gateway::Stub* stub, const v1::ExecuteRequest* request) {
    stub->async()->Stream(&context_, request, this);
    StartRead(&chunk_);
    StartCall();
  }
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;
  void Cancel() {
    cancelled_.store(true);
    context_.TryCancel();
  }
  bool done() const { return done_.load(std::memory_order_acquire); }
  int64_t intended() const { return intended_; }

 private:
  GrpcDriver* driver_;
  grpc::ClientContext context_;
  v1::StreamChunk chunk_;
  int64_t intended_;
  int64_t first_ = 0;
  int64_t last_ = 0;
  int64_t n_ = 0;
  bool owned_;  // hold mode: the driver deletes it after OnDone
  std::atomic<bool> done_{false};
  std::atomic<bool> cancelled_{false};
  friend class GrpcDriver;
};

struct UnaryCall {
  grpc::ClientContext context;
  v1::ExecuteResponse response;
  int64_t intended = 0;
};

class GrpcDriver {
 public:
  GrpcDriver(Results& results, const Window& window)
      : results_(results), window_(window) {
    const int n = std::max(1, absl::GetFlag(FLAGS_channels));
    for (int i = 0; i < n; ++i) {
      grpc::ChannelArguments args;
      // A distinct argument per channel gives each its own connection.
      args.SetInt("echelon.loadgen.channel", i);
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetMaxReceiveMessageSize(64 << 20);
      stubs_.push_back(v1::Gateway::NewStub(
          grpc::CreateCustomChannel(absl::GetFlag(FLAGS_address),
                                    grpc::InsecureChannelCredentials(), args)));
    }
    request_.set_target(absl::GetFlag(FLAGS_target));
    v1::Message* m = request_.add_messages();
    m->set_role(v1::ROLE_USER);
    m->set_content(absl::GetFlag(FLAGS_prompt));
  }

  bool WaitConnected(int64_t timeout_ns) {
    // A cheap RPC per channel connects them all before the clock starts.
    for (auto& stub : stubs_) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::nanoseconds(timeout_ns));
      ctx.set_wait_for_ready(true);
      v1::ListTargetsRequest req;
      v1::ListTargetsResponse resp;
      grpc::Status s = stub->ListTargets(&ctx, req, &resp);
      if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
          s.error_code() == grpc::StatusCode::UNAVAILABLE) {
        std::fprintf(stderr, "loadgen: cannot reach %s: %s\n",
                     absl::GetFlag(FLAGS_address).c_str(),
                     s.error_message().c_str());
        return false;
      }
    }
    return true;
  }

  void set_closed(bool closed) { closed_ = closed; }

  v1::Gateway::Stub* NextStub() {
    return stubs_[next_.fetch_add(1, std::memory_order_relaxed) % stubs_.size()]
        .get();
  }

  void StartUnary(int64_t intended) {
    results_.outstanding.fetch_add(1, std::memory_order_relaxed);
    auto* call = new UnaryCall;
    call->intended = intended;
    NextStub()->async()->Execute(
        &call->context, &request_, &call->response,
        [this, call](grpc::Status status) { OnUnaryDone(call, status); });
  }

  StreamCall* StartStream(int64_t intended, bool owned) {
    results_.outstanding.fetch_add(1, std::memory_order_relaxed);
    auto* call = new StreamCall(this, intended, owned);
    call->Go(NextStub(), &request_);
    return call;
  }

  void OnUnaryDone(UnaryCall* call, const grpc::Status& status) {
    const int64_t now = NowNs();
    const bool in = window_.Contains(call->intended);
    if (status.ok()) {
      results_.total_ok.fetch_add(1, std::memory_order_relaxed);
      if (in) {
        results_.ok.fetch_add(1, std::memory_order_relaxed);
        results_.latency.Record(now - call->intended);
      }
    } else {
      results_.Error(absl::StrCat("grpc ", status.error_code(), ": ",
                                  status.error_message()),
                     in);
    }
    delete call;
    if (closed_ && now < window_.end) StartUnary(now);
    results_.outstanding.fetch_sub(1, std::memory_order_release);
  }

  void OnStreamChunk(StreamCall* call, int64_t now) {
    results_.total_chunks.fetch_add(1, std::memory_order_relaxed);
    const bool in = window_.Contains(call->intended_);
    if (in) results_.chunks.fetch_add(1, std::memory_order_relaxed);
    if (call->n_ == 0) {
      call->first_ = now;
      if (in) results_.ttft.Record(now - call->intended_);
    } else if (in) {
      results_.chunk_gap.Record(now - call->last_);
    }
    call->last_ = now;
    ++call->n_;
  }

  void OnStreamDone(StreamCall* call, const grpc::Status& status) {
    const int64_t now = NowNs();
    const bool in = window_.Contains(call->intended_);
    const int code = static_cast<int>(status.error_code());
    if (code >= 0 && code < 17) results_.by_code[code].fetch_add(1);
    if (call->owned_ && !status.ok() && !call->cancelled_.load()) {
      std::lock_guard<std::mutex> lock(results_.mu);
      if (results_.first_error.empty()) {
        results_.first_error =
            absl::StrCat("grpc ", code, ": ", status.error_message());
      }
    }
    if (status.ok()) {
      results_.total_ok.fetch_add(1, std::memory_order_relaxed);
      if (in) {
        results_.ok.fetch_add(1, std::memory_order_relaxed);
        results_.latency.Record(now - call->intended_);
      }
    } else if (!(call->owned_ &&
                 status.error_code() == grpc::StatusCode::CANCELLED)) {
      results_.Error(absl::StrCat("grpc ", status.error_code(), ": ",
                                  status.error_message()),
                     in);
    }
    const bool owned = call->owned_;
    if (owned) {
      call->done_.store(true, std::memory_order_release);
    } else {
      delete call;
      if (closed_ && now < window_.end) StartStream(now, false);
    }
    results_.outstanding.fetch_sub(1, std::memory_order_release);
  }

 private:
  Results& results_;
  const Window& window_;
  std::vector<std::unique_ptr<v1::Gateway::Stub>> stubs_;
  std::atomic<uint64_t> next_{0};
  v1::ExecuteRequest request_;
  bool closed_ = false;
};

void StreamCall::OnReadDone(bool ok) {
  if (!ok) return;
  driver_->OnStreamChunk(this, NowNs());
  StartRead(&chunk_);
}

void StreamCall::OnDone(const grpc::Status& status) {
  driver_->OnStreamDone(this, status);
}

bool WaitDrained(Results& r, double seconds) {
  const int64_t limit = NowNs() + static_cast<int64_t>(seconds * 1e9);
  while (r.outstanding.load(std::memory_order_acquire) > 0) {
    if (NowNs() > limit) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

int RunGrpc(bool stream) {
  Results results;
  Window window;
  GrpcDriver driver(results, window);
  if (!driver.WaitConnected(10'000'000'000)) return 2;
  const double rate = absl::GetFlag(FLAGS_rate);
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  window.start = NowNs();
  window.measure =
      window.start + static_cast<int64_t>(absl::GetFlag(FLAGS_warmup_s) * 1e9);
  window.end = window.measure +
               static_cast<int64_t>(absl::GetFlag(FLAGS_duration_s) * 1e9);
  const int max_out = absl::GetFlag(FLAGS_max_outstanding);
  if (rate <= 0) {
    driver.set_closed(true);
    for (int i = 0; i < concurrency; ++i) {
      if (stream) {
        driver.StartStream(window.start, false);
      } else {
        driver.StartUnary(window.start);
      }
    }
    SleepUntil(window.end);
  } else {
    const double interval = 1e9 / rate;
    for (int64_t k = 0;; ++k) {
      const int64_t t = window.start + static_cast<int64_t>(k * interval);
      if (t >= window.end) break;
      if (NowNs() < t) SleepUntil(t);
      if (results.outstanding.load(std::memory_order_relaxed) >= max_out) {
        if (window.Contains(t)) results.dropped.fetch_add(1);
        continue;
      }
      if (stream) {
        driver.StartStream(t, false);
      } else {
        driver.StartUnary(t);
      }
    }
  }
  const int64_t send_done = NowNs();
  if (!WaitDrained(results, absl::GetFlag(FLAGS_drain_s))) {
    std::fprintf(stderr, "loadgen: %lld calls still in flight; exiting\n",
                 static_cast<long long>(results.outstanding.load()));
    PrintResults(results, window, rate, rate > 0 ? 0 : concurrency, send_done);
    std::fflush(stdout);
    _exit(0);
  }
  PrintResults(results, window, rate, rate > 0 ? 0 : concurrency, send_done);
  return 0;
}

// Reads "VmRSS" and "Threads" from /proc/<pid>/status.
bool SampleProc(int pid, int64_t* rss_kib, int64_t* threads) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      *rss_kib = std::atoll(line.c_str() + 6);
    } else if (line.rfind("Threads:", 0) == 0) {
      *threads = std::atoll(line.c_str() + 8);
    }
  }
  return true;
}

int RunHold() {
  Results results;
  Window window;
  GrpcDriver driver(results, window);
  if (!driver.WaitConnected(10'000'000'000)) return 2;
  const int n = absl::GetFlag(FLAGS_streams);
  const double open_rate = std::max(1.0, absl::GetFlag(FLAGS_open_rate));
  const int pid = absl::GetFlag(FLAGS_sample_pid);
  window.start = NowNs();
  window.measure = window.start;
  window.end = INT64_MAX;
  std::vector<StreamCall*> calls;
  calls.reserve(n);
  for (int i = 0; i < n; ++i) {
    const int64_t t =
        window.start + static_cast<int64_t>(i * (1e9 / open_rate));
    if (NowNs() < t) SleepUntil(t);
    calls.push_back(driver.StartStream(t, true));
  }
  const int64_t opened_at = NowNs();
  // Hold only once every stream is flowing end to end (its first chunk
  // arrived), or the settle time ran out.
  const int64_t settle_limit =
      opened_at + static_cast<int64_t>(absl::GetFlag(FLAGS_settle_s) * 1e9);
  while (results.ttft.Count() + results.total_errors.load() < n &&
         NowNs() < settle_limit) {
    SleepUntil(NowNs() + 50'000'000);
  }
  const int64_t settled_at = NowNs();
  const int64_t flowing_at_hold = results.ttft.Count();
  std::printf("HOLDING %lld\n", static_cast<long long>(flowing_at_hold));
  std::fflush(stdout);
  const int64_t chunks_before = results.total_chunks.load();
  const int64_t hold_start = NowNs();
  const int64_t hold_end =
      hold_start + static_cast<int64_t>(absl::GetFlag(FLAGS_hold_s) * 1e9);
  int64_t rss_max = 0, threads_max = 0, rss_last = 0, threads_last = 0;
  while (NowNs() < hold_end) {
    int64_t rss = 0, threads = 0;
    if (pid > 0 && SampleProc(pid, &rss, &threads)) {
      rss_max = std::max(rss_max, rss);
      threads_max = std::max(threads_max, threads);
      rss_last = rss;
      threads_last = threads;
    }
    SleepUntil(std::min(hold_end, NowNs() + 500'000'000));
  }
  const int64_t chunks_during = results.total_chunks.load() - chunks_before;
  const double hold_secs = static_cast<double>(NowNs() - hold_start) / 1e9;
  int64_t open_at_end = 0;
  for (StreamCall* c : calls) {
    if (!c->done()) ++open_at_end;
  }
  std::string ended_early;  // status codes of streams that ended by themselves
  for (int code = 0; code < 17; ++code) {
    const int64_t n = results.by_code[code].load();
    if (n > 0)
      absl::StrAppend(&ended_early, ended_early.empty() ? "" : ",", "\"", code,
                      "\":", n);
  }
  for (StreamCall* c : calls) c->Cancel();
  const bool drained = WaitDrained(results, absl::GetFlag(FLAGS_drain_s));
  std::printf(
      "{\"mode\":\"grpc_hold\",\"target\":\"%s\",\"requested\":%d,"
      "\"open_s\":%.2f,\"settle_s\":%.2f,\"flowing_at_hold\":%lld,"
      "\"open_at_end\":%lld,\"errors\":%lld,\"hold_s\":%.1f,"
      "\"chunks_during_hold\":%lld,\"chunks_per_s\":%.1f,"
      "\"rss_kib_max\":%lld,\"threads_max\":%lld,\"rss_kib_last\":%lld,"
      "\"threads_last\":%lld,\"ttft_us\":%s,\"drained\":%s,"
      "\"ended_before_cancel\":{%s},\"first_error\":\"%s\"}\n",
      JsonEscape(absl::GetFlag(FLAGS_target)).c_str(), n,
      static_cast<double>(opened_at - window.start) / 1e9,
      static_cast<double>(settled_at - window.start) / 1e9,
      static_cast<long long>(flowing_at_hold),
      static_cast<long long>(open_at_end),
      static_cast<long long>(results.total_errors.load()), hold_secs,
      static_cast<long long>(chunks_during),
      static_cast<double>(chunks_during) / hold_secs,
      static_cast<long long>(rss_max), static_cast<long long>(threads_max),
      static_cast<long long>(rss_last), static_cast<long long>(threads_last),
      HistJson(results.ttft).c_str(), drained ? "true" : "false",
      ended_early.c_str(), JsonEscape(results.first_error).c_str());
  std::fflush(stdout);
  if (!drained) _exit(0);
  for (StreamCall* c : calls) delete c;
  return 0;
}

// ---------------------------------------------------------------------------
// HTTP (libcurl multi socket API on one epoll loop)

class HttpDriver {
 public:
  struct Call {
    HttpDriver* driver = nullptr;
    CURL* easy = nullptr;
    int64_t intended = 0;
    int64_t last = 0;
    int64_t n = 0;
    int match = 0;  // progress through "data:" at a line start; -1 = mid-line
  };

  HttpDriver(Results& results, const Window& window, bool stream)
      : results_(results), window_(window), stream_(stream) {
    curl_global_init(CURL_GLOBAL_ALL);
    multi_ = curl_multi_init();
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    tfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = tfd_;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, tfd_, &ev);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &HttpDriver::SocketCb);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &HttpDriver::TimerCb);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 20000L);
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, "Expect:");
    for (absl::string_view h : absl::StrSplit(absl::GetFlag(FLAGS_headers), '|',
                                              absl::SkipWhitespace())) {
      headers_ = curl_slist_append(headers_, std::string(h).c_str());
    }
    url_ = absl::GetFlag(FLAGS_url);
    std::string prompt = JsonEscape(absl::GetFlag(FLAGS_prompt));
    body_ = absl::StrCat(
        "{\"model\":\"", JsonEscape(absl::GetFlag(FLAGS_target)),
        "\",\"messages\":[{\"role\":\"user\",\"content\":\"", prompt, "\"}]",
        stream ? ",\"stream\":true,\"stream_options\":"
                 "{\"include_usage\":true}"
               : "",
        "}");
  }

  ~HttpDriver() {
    for (Call* c : all_) {
      curl_multi_remove_handle(multi_, c->easy);
      curl_easy_cleanup(c->easy);
      delete c;
    }
    curl_multi_cleanup(multi_);
    curl_slist_free_all(headers_);
    close(tfd_);
    close(epfd_);
  }

  int Run(double rate, int concurrency, int max_out) {
    const bool closed = rate <= 0;
    const double interval = closed ? 0 : 1e9 / rate;
    int64_t k = 0;
    int64_t next_send = window_.start;
    if (closed) {
      for (int i = 0; i < concurrency; ++i) Launch(window_.start);
    }
    const int64_t hard_stop =
        window_.end + static_cast<int64_t>(absl::GetFlag(FLAGS_drain_s) * 1e9);
    epoll_event events[256];
    while (true) {
      int64_t now = NowNs();
      if (!closed) {
        while (next_send <= now && next_send < window_.end) {
          if (in_flight_ + static_cast<int>(queue_.size()) >= max_out) {
            if (window_.Contains(next_send)) results_.dropped.fetch_add(1);
          } else if (in_flight_ >= max_conns_) {
            // HTTP/1.1 carries one call per connection; queue here rather
            // than open a connection per late call (or use libcurl's
            // pending list, which is rescanned on every completion).
            queue_.push_back(next_send);
          } else {
            Launch(next_send);
          }
          ++k;
          next_send = window_.start + static_cast<int64_t>(k * interval);
        }
        if (next_send >= window_.end && send_done_ == 0) send_done_ = now;
      } else if (now >= window_.end && send_done_ == 0) {
        send_done_ = now;
      }
      if (curl_deadline_ >= 0 && now >= curl_deadline_) {
        curl_deadline_ = -1;
        int running = 0;
        curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
      }
      Reap(closed);
      if (send_done_ != 0 && in_flight_ == 0 && queue_.empty()) break;
      if (now > hard_stop) {
        std::fprintf(stderr, "loadgen: %d HTTP calls still in flight\n",
                     in_flight_);
        break;
      }
      int64_t wake = now + 100'000'000;
      if (!closed && next_send < window_.end) wake = std::min(wake, next_send);
      if (closed && now < window_.end) wake = std::min(wake, window_.end);
      if (curl_deadline_ >= 0) wake = std::min(wake, curl_deadline_);
      if (wake <= now) continue;
      itimerspec its{};
      its.it_value.tv_sec = wake / 1000000000;
      its.it_value.tv_nsec = wake % 1000000000;
      timerfd_settime(tfd_, TFD_TIMER_ABSTIME, &its, nullptr);
      const int n = epoll_wait(epfd_, events, 256, 1000);
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == tfd_) {
          uint64_t ticks;
          (void)!read(tfd_, &ticks, sizeof(ticks));
          continue;
        }
        int flags = 0;
        if (events[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
        if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
        int running = 0;
        curl_multi_socket_action(multi_, fd, flags, &running);
      }
      Reap(closed);
    }
    if (send_done_ == 0) send_done_ = NowNs();
    return 0;
  }

  int64_t send_done() const { return send_done_; }

 private:
  static int SocketCb(CURL*, curl_socket_t s, int what, void* userp,
                      void* socketp) {
    auto* self = static_cast<HttpDriver*>(userp);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(self->epfd_, EPOLL_CTL_DEL, s, nullptr);
      return 0;
    }
    epoll_event ev{};
    if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
    ev.data.fd = s;
    if (socketp == nullptr) {
      if (epoll_ctl(self->epfd_, EPOLL_CTL_ADD, s, &ev) != 0 &&
          errno == EEXIST) {
        epoll_ctl(self->epfd_, EPOLL_CTL_MOD, s, &ev);
      }
      curl_multi_assign(self->multi_, s, self);
    } else {
      if (epoll_ctl(self->epfd_, EPOLL_CTL_MOD, s, &ev) != 0 &&
          errno == ENOENT) {
        epoll_ctl(self->epfd_, EPOLL_CTL_ADD, s, &ev);
      }
    }
    return 0;
  }

  static int TimerCb(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<HttpDriver*>(userp);
    self->curl_deadline_ =
        timeout_ms < 0 ? -1 : NowNs() + int64_t{timeout_ms} * 1000000;
    return 0;
  }

  static size_t WriteCb(char* data, size_t size, size_t nmemb, void* userp) {
    auto* call = static_cast<Call*>(userp);
    const size_t len = size * nmemb;
    call->driver->OnBody(call, data, len);
    return len;
  }

  void OnBody(Call* call, const char* data, size_t len) {
    if (!stream_) return;
    static constexpr char kData[] = "data:";
    const int64_t now = NowNs();
    int events = 0;
    for (size_t i = 0; i < len; ++i) {
      const char c = data[i];
      if (c == '\n') {
        call->match = 0;
        continue;
      }
      if (call->match < 0) continue;
      if (c == kData[call->match]) {
        if (++call->match == 5) {
          ++events;
          call->match = -1;
        }
      } else {
        call->match = -1;
      }
    }
    const bool in = window_.Contains(call->intended);
    for (int e = 0; e < events; ++e) {
      results_.total_chunks.fetch_add(1, std::memory_order_relaxed);
      if (in) results_.chunks.fetch_add(1, std::memory_order_relaxed);
      if (call->n == 0) {
        if (in) results_.ttft.Record(now - call->intended);
      } else if (in && e == 0) {
        results_.chunk_gap.Record(now - call->last);
      }
      ++call->n;
    }
    if (events > 0) call->last = now;
  }

  void Launch(int64_t intended) {
    Call* call;
    if (!idle_.empty()) {
      call = idle_.back();
      idle_.pop_back();
    } else {
      call = new Call;
      call->driver = this;
      call->easy = curl_easy_init();
      CURL* e = call->easy;
      curl_easy_setopt(e, CURLOPT_URL, url_.c_str());
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, body_.c_str());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE,
                       static_cast<long>(body_.size()));
      curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_);
      curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpDriver::WriteCb);
      curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
      curl_easy_setopt(e, CURLOPT_PRIVATE, call);
      curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
      curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 120000L);
      all_.push_back(call);
    }
    call->intended = intended;
    call->n = 0;
    call->last = 0;
    call->match = 0;
    ++in_flight_;
    curl_multi_add_handle(multi_, call->easy);
  }

  void Reap(bool closed) {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* e = msg->easy_handle;
      const CURLcode rc = msg->data.result;
      Call* call = nullptr;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, reinterpret_cast<char**>(&call));
      long code = 0;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
      curl_multi_remove_handle(multi_, e);
      --in_flight_;
      const int64_t now = NowNs();
      const bool in = window_.Contains(call->intended);
      if (rc == CURLE_OK && code == 200) {
        results_.total_ok.fetch_add(1, std::memory_order_relaxed);
        if (in) {
          results_.ok.fetch_add(1, std::memory_order_relaxed);
          results_.latency.Record(now - call->intended);
        }
      } else if (rc != CURLE_OK) {
        results_.Error(absl::StrCat("curl: ", curl_easy_strerror(rc)), in);
      } else {
        results_.Error(absl::StrCat("HTTP ", code), in);
      }
      idle_.push_back(call);
      if (closed && now < window_.end) {
        Launch(now);
      } else if (!queue_.empty()) {
        const int64_t intended = queue_.front();
        queue_.pop_front();
        Launch(intended);
      }
    }
  }

  Results& results_;
  const Window& window_;
  bool stream_;
  CURLM* multi_ = nullptr;
  int epfd_ = -1;
  int tfd_ = -1;
  int64_t curl_deadline_ = -1;
  int64_t send_done_ = 0;
  int in_flight_ = 0;
  curl_slist* headers_ = nullptr;
  std::string url_;
  std::string body_;
  std::vector<Call*> idle_;
  std::vector<Call*> all_;
  std::deque<int64_t> queue_;  // open loop: intended times waiting to go
  int max_conns_ = std::max(1, absl::GetFlag(FLAGS_http_connections));
};

int RunHttp(bool stream) {
  if (absl::GetFlag(FLAGS_url).empty()) {
    std::fprintf(stderr, "loadgen: --url is required in HTTP modes\n");
    return 2;
  }
  Results results;
  Window window;
  HttpDriver driver(results, window, stream);
  const double rate = absl::GetFlag(FLAGS_rate);
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  window.start = NowNs();
  window.measure =
      window.start + static_cast<int64_t>(absl::GetFlag(FLAGS_warmup_s) * 1e9);
  window.end = window.measure +
               static_cast<int64_t>(absl::GetFlag(FLAGS_duration_s) * 1e9);
  driver.Run(rate, concurrency, absl::GetFlag(FLAGS_max_outstanding));
  PrintResults(results, window, rate, rate > 0 ? 0 : concurrency,
               driver.send_done());
  return 0;
}

}  // namespace
}  // namespace echelon::loadgen

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load generator for Echelon benchmarks; see tools/loadgen/loadgen.cc.");
  absl::ParseCommandLine(argc, argv);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  using namespace echelon::loadgen;  // NOLINT
  if (mode == "grpc_unary") return RunGrpc(false);
  if (mode == "grpc_stream") return RunGrpc(true);
  if (mode == "grpc_hold") return RunHold();
  if (mode == "http_unary") return RunHttp(false);
  if (mode == "http_stream") return RunHttp(true);
  std::fprintf(stderr, "loadgen: unknown --mode=%s\n", mode.c_str());
  return 2;
}
