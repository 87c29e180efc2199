#include "adapters/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace echelon {

struct HttpClient::Transfer {
  RequestId id = 0;
  HttpClient* client = nullptr;
  Shard* shard = nullptr;
  CURL* easy = nullptr;
  // Shared with the client's cache of header lists (one per distinct set of
  // request headers, i.e. per endpoint and mode).
  std::shared_ptr<curl_slist> header_list;
  HttpRequest request;
  HttpCallbacks callbacks;
  HttpHeaders response_headers;
  int status = 0;
  bool headers_delivered = false;
  bool in_multi = false;
  bool cancelled = false;
  // Set once a connection (new or reused) is ready and the request is about
  // to be sent: a first-byte timeout after that is the upstream's, not the
  // connect's.
  bool connected = false;
  int64_t body_bytes = 0;
  absl::Time last_data;
  EventLoop::TimerId first_byte_timer = EventLoop::kNoTimer;
  EventLoop::TimerId stall_timer = EventLoop::kNoTimer;
  EventLoop::TimerId deadline_timer = EventLoop::kNoTimer;
  char error_buffer[CURL_ERROR_SIZE] = {0};

  // The easy handle goes back to the client's pool (reset) when the
  // transfer ends.
  ~Transfer() {
    if (easy != nullptr) client->ReleaseEasy(easy);
    if (shard != nullptr) --shard->transfers;
  }
};

namespace {

CURLM* Multi(void* m) { return static_cast<CURLM*>(m); }

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

ErrorClass ClassifyCurlCode(CURLcode code, CURL* easy) {
  switch (code) {
    case CURLE_OK:
      return ErrorClass::kNone;
    case CURLE_OPERATION_TIMEDOUT: {
      curl_off_t connect_us = 0;
      curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connect_us);
      return connect_us == 0 ? ErrorClass::kTimeoutConnect
                             : ErrorClass::kTimeoutTotal;
    }
    default:
      // Refused, reset, DNS, TLS, truncated body, HTTP/2 stream errors.
      return ErrorClass::kConnectError;
  }
}

}  // namespace

// libcurl calls this when the connection (new or reused) is ready, just
// before the request is sent.
int HttpClient::PrereqCallback(void* clientp, char*, char*, int, int) {
  static_cast<Transfer*>(clientp)->connected = true;
  return CURL_PREREQFUNC_OK;
}

const std::string* HttpHeaders::Find(absl::string_view name) const {
  for (const auto& [key, value] : entries) {
    if (key == name) return &value;
  }
  return nullptr;
}

absl::StatusOr<std::unique_ptr<HttpClient>> HttpClient::Create(
    const Options& options, EpollEventLoop& loop) {
  GlobalInitOnce();
  std::unique_ptr<HttpClient> client(new HttpClient(options, loop));
  const int n = std::max(1, options.multi_handles);
  // Each handle's share of a limit, rounded up; 0 stays "unlimited".
  auto share = [n](int64_t limit) {
    return static_cast<long>(limit <= 0 ? 0 : (limit + n - 1) / n);
  };
  for (int i = 0; i < n; ++i) {
    CURLM* multi = curl_multi_init();
    if (multi == nullptr) return absl::InternalError("curl_multi_init failed");
    auto shard = std::make_unique<Shard>();
    shard->client = client.get();
    shard->multi = multi;
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION,
                      &HttpClient::SocketCallback);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, shard.get());
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION,
                      &HttpClient::TimerCallback);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, shard.get());
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      share(options.max_total_connections));
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      share(options.max_host_connections));
    // At least a few idle connections per handle.
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
                      std::max(4L, share(options.max_cached_connections)));
    client->shards_.push_back(std::move(shard));
  }
  return client;
}

HttpClient::HttpClient(const Options& options, EpollEventLoop& loop)
    : options_(options), loop_(loop), alive_(std::make_shared<bool>(true)) {}

HttpClient::~HttpClient() {
  for (auto& [id, transfer] : transfers_) {
    CancelTimers(*transfer);
    if (transfer->in_multi)
      curl_multi_remove_handle(Multi(transfer->shard->multi), transfer->easy);
  }
  transfers_.clear();
  DrainDoomed();
  for (auto& shard : shards_) {
    if (shard->curl_timer != EventLoop::kNoTimer) {
      loop_.CancelTimer(shard->curl_timer);
    }
  }
  for (void* easy : idle_easy_) curl_easy_cleanup(static_cast<CURL*>(easy));
  idle_easy_.clear();
  header_lists_.clear();
  for (auto& shard : shards_) curl_multi_cleanup(Multi(shard->multi));
  for (int fd : watched_fds_) loop_.UnwatchFd(fd);
}

HttpClient::RequestId HttpClient::Start(HttpRequest request,
                                        HttpCallbacks callbacks) {
  RequestId id = next_id_++;
  auto transfer = std::make_unique<Transfer>();
  Transfer& t = *transfer;
  t.id = id;
  t.client = this;
  t.shard = &LeastBusyShard();
  ++t.shard->transfers;
  t.request = std::move(request);
  t.callbacks = std::move(callbacks);
  t.easy = AcquireEasy();
  transfers_.emplace(id, std::move(transfer));
  if (t.easy == nullptr) {
    std::weak_ptr<bool> alive = alive_;
    loop_.Post([this, alive, id] {
      if (alive.expired()) return;
      auto it = transfers_.find(id);
      if (it == transfers_.end()) return;
      HttpResult result;
      result.error_class = ErrorClass::kConnectError;
      result.message = "curl_easy_init failed";
      Finish(*it->second, std::move(result));
    });
    return id;
  }
  CURL* e = t.easy;
  curl_easy_setopt(e, CURLOPT_URL, t.request.url.c_str());
  curl_easy_setopt(e, CURLOPT_PRIVATE, reinterpret_cast<void*>(id));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                   static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_file.empty()) {
    curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  curl_easy_setopt(e, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(
      e, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(std::max<int64_t>(
          1, absl::ToInt64Milliseconds(t.request.connect_timeout))));
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error_buffer);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &HttpClient::HeaderCallback);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpClient::WriteCallback);
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &HttpClient::PrereqCallback);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, &t);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  if (t.request.method == "GET") {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    if (t.request.method != "POST") {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t.request.method.c_str());
    }
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.request.body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(t.request.body.size()));
  }
  t.header_list = HeaderList(t.request.headers);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.header_list.get());

  // Loop timers for the application-level timeouts.
  absl::Time now = loop_.Now();
  if (t.request.first_byte_timeout != absl::InfiniteDuration()) {
    t.first_byte_timer = loop_.RunAt(now + t.request.first_byte_timeout, [this,
                                                                          id] {
      auto it = transfers_.find(id);
      if (it == transfers_.end()) return;
      it->second->first_byte_timer = EventLoop::kNoTimer;
      FailWithTimeout(id, it->second->connected ? ErrorClass::kTimeoutFirstToken
                                                : ErrorClass::kTimeoutConnect);
    });
  }
  if (t.request.deadline != absl::InfiniteFuture()) {
    t.deadline_timer = loop_.RunAt(t.request.deadline, [this, id] {
      auto it = transfers_.find(id);
      if (it == transfers_.end()) return;
      it->second->deadline_timer = EventLoop::kNoTimer;
      FailWithTimeout(id, ErrorClass::kTimeoutTotal);
    });
  }

  if (in_curl_ > 0) {
    // Inside a libcurl callback: adding a handle is not allowed here.
    std::weak_ptr<bool> alive = alive_;
    loop_.Post([this, alive, id] {
      if (!alive.expired()) AddToMulti(id);
    });
  } else {
    AddToMulti(id);
  }
  return id;
}

void* HttpClient::AcquireEasy() {
  if (idle_easy_.empty()) return curl_easy_init();
  void* easy = idle_easy_.back();
  idle_easy_.pop_back();
  return easy;
}

void HttpClient::ReleaseEasy(void* easy) {
  CURL* e = static_cast<CURL*>(easy);
  if (idle_easy_.size() >= kMaxIdleEasyHandles) {
    curl_easy_cleanup(e);
    return;
  }
  // Back to the defaults: no option (nor pointer into the finished
  // Transfer) survives into the next request.
  curl_easy_reset(e);
  idle_easy_.push_back(e);
}

std::shared_ptr<curl_slist> HttpClient::HeaderList(
    const std::vector<std::pair<std::string, std::string>>& headers) {
  // Requests to one endpoint carry the same headers: build their list once.
  header_key_.clear();
  for (const auto& [name, value] : headers) {
    absl::StrAppend(&header_key_, name, ": ", value, "\n");
  }
  auto it = header_lists_.find(header_key_);
  if (it != header_lists_.end()) return it->second;
  curl_slist* list = nullptr;
  for (const auto& [name, value] : headers) {
    std::string line = absl::StrCat(name, ": ", value);
    list = curl_slist_append(list, line.c_str());
  }
  // No "Expect: 100-continue" round trip for larger bodies.
  list = curl_slist_append(list, "Expect:");
  std::shared_ptr<curl_slist> shared(list, [](curl_slist* l) {
    if (l != nullptr) curl_slist_free_all(l);
  });
  // Bounded by the config's endpoints; a client that sees ever-new header
  // sets starts over (lists in use live on in their transfers).
  if (header_lists_.size() >= kMaxHeaderLists) header_lists_.clear();
  header_lists_.emplace(header_key_, shared);
  return shared;
}

void HttpClient::AddToMulti(RequestId id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  Transfer& t = *it->second;
  ++in_curl_;
  CURLMcode rc = curl_multi_add_handle(Multi(t.shard->multi), t.easy);
  --in_curl_;
  if (rc != CURLM_OK) {
    HttpResult result;
    result.error_class = ErrorClass::kConnectError;
    result.message =
        absl::StrCat("curl_multi_add_handle: ", curl_multi_strerror(rc));
    Finish(t, std::move(result));
    return;
  }
  t.in_multi = true;
  DrainDoomed();
}

void HttpClient::Cancel(RequestId id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  std::unique_ptr<Transfer> transfer = std::move(it->second);
  transfers_.erase(it);
  transfer->cancelled = true;
  CancelTimers(*transfer);
  doomed_.push_back(std::move(transfer));
  // Inside libcurl the handle is removed once the call returns; callbacks
  // check `cancelled` meanwhile and abort the transfer.
  if (in_curl_ == 0) DrainDoomed();
}

void HttpClient::CancelTimers(Transfer& t) {
  loop_.CancelTimer(t.first_byte_timer);
  loop_.CancelTimer(t.stall_timer);
  loop_.CancelTimer(t.deadline_timer);
  t.first_byte_timer = t.stall_timer = t.deadline_timer = EventLoop::kNoTimer;
}

void HttpClient::DrainDoomed() {
  if (in_curl_ > 0) return;
  while (!doomed_.empty()) {
    std::vector<std::unique_ptr<Transfer>> batch;
    batch.swap(doomed_);
    for (auto& t : batch) {
      if (t->in_multi) {
        ++in_curl_;
        curl_multi_remove_handle(Multi(t->shard->multi), t->easy);
        --in_curl_;
        t->in_multi = false;
      }
    }
    // Transfers (and their easy handles) are freed here.
  }
}

void HttpClient::Finish(Transfer& transfer, HttpResult result) {
  RequestId id = transfer.id;
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  std::unique_ptr<Transfer> owned = std::move(it->second);
  transfers_.erase(it);
  CancelTimers(*owned);
  result.body_bytes = owned->body_bytes;
  if (result.http_status == 0) result.http_status = owned->status;
  auto on_complete = std::move(owned->callbacks.on_complete);
  owned->cancelled = true;  // no more data callbacks
  doomed_.push_back(std::move(owned));
  DrainDoomed();
  if (on_complete) on_complete(std::move(result));
}

void HttpClient::FailWithTimeout(RequestId id, ErrorClass error_class) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  HttpResult result;
  result.error_class = error_class;
  result.message = absl::StrCat("HTTP transfer ", ErrorClassName(error_class));
  Finish(*it->second, std::move(result));
}

void HttpClient::OnStallCheck(RequestId id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  Transfer& t = *it->second;
  t.stall_timer = EventLoop::kNoTimer;
  absl::Time due = t.last_data + t.request.stall_timeout;
  if (loop_.Now() >= due) {
    FailWithTimeout(id, ErrorClass::kTimeoutStall);
    return;
  }
  t.stall_timer = loop_.RunAt(due, [this, id] { OnStallCheck(id); });
}

int HttpClient::SocketCallback(void* /*easy*/, int fd, int what, void* shardp,
                               void* /*socketp*/) {
  Shard* shard = static_cast<Shard*>(shardp);
  HttpClient* self = shard->client;
  if (what == CURL_POLL_REMOVE) {
    self->loop_.UnwatchFd(fd);
    self->watched_fds_.erase(fd);
    return 0;
  }
  uint32_t events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= EPOLLIN;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= EPOLLOUT;
  if (self->watched_fds_.count(fd) != 0) {
    self->loop_.ModifyFd(fd, events).IgnoreError();
  } else {
    absl::Status status =
        self->loop_.WatchFd(fd, events, [self, shard, fd](uint32_t ev) {
          self->OnSocketEvent(*shard, fd, ev);
        });
    if (!status.ok()) return -1;
    self->watched_fds_.insert(fd);
  }
  return 0;
}

int HttpClient::TimerCallback(void* /*multi*/, long timeout_ms, void* shardp) {
  Shard* shard = static_cast<Shard*>(shardp);
  HttpClient* self = shard->client;
  if (shard->curl_timer != EventLoop::kNoTimer) {
    self->loop_.CancelTimer(shard->curl_timer);
    shard->curl_timer = EventLoop::kNoTimer;
  }
  if (timeout_ms < 0) return 0;
  shard->curl_timer =
      self->loop_.RunAt(self->loop_.Now() + absl::Milliseconds(timeout_ms),
                        [self, shard] { self->OnCurlTimer(*shard); });
  return 0;
}

void HttpClient::OnCurlTimer(Shard& shard) {
  shard.curl_timer = EventLoop::kNoTimer;
  SocketAction(shard, CURL_SOCKET_TIMEOUT, 0);
}

std::vector<size_t> HttpClient::transfers_per_handle() const {
  std::vector<size_t> out;
  out.reserve(shards_.size());
  for (const auto& shard : shards_) out.push_back(shard->transfers);
  return out;
}

HttpClient::Shard& HttpClient::LeastBusyShard() {
  Shard* best = shards_.front().get();
  for (auto& shard : shards_) {
    if (shard->transfers < best->transfers) best = shard.get();
  }
  return *best;
}

void HttpClient::OnSocketEvent(Shard& shard, int fd, uint32_t events) {
  int bitmask = 0;
  if (events & EPOLLIN) bitmask |= CURL_CSELECT_IN;
  if (events & EPOLLOUT) bitmask |= CURL_CSELECT_OUT;
  if (events & (EPOLLERR | EPOLLHUP)) bitmask |= CURL_CSELECT_ERR;
  SocketAction(shard, fd, bitmask);
}

void HttpClient::SocketAction(Shard& shard, int fd, int bitmask) {
  int running = 0;
  ++in_curl_;
  curl_multi_socket_action(Multi(shard.multi), fd, bitmask, &running);
  --in_curl_;
  DrainDoomed();
  ProcessCompletions(shard);
}

void HttpClient::ProcessCompletions(Shard& shard) {
  int pending = 0;
  while (CURLMsg* msg = curl_multi_info_read(Multi(shard.multi), &pending)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    CURLcode code = msg->data.result;
    void* priv = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    RequestId id = reinterpret_cast<RequestId>(priv);
    auto it = transfers_.find(id);
    if (it == transfers_.end()) continue;  // cancelled meanwhile
    Transfer& t = *it->second;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (status > 0) t.status = static_cast<int>(status);
    if (!t.headers_delivered && t.status >= 200 && t.callbacks.on_headers) {
      t.headers_delivered = true;
      t.callbacks.on_headers(t.status, t.response_headers);
      if (transfers_.find(id) == transfers_.end()) continue;  // cancelled
    }
    HttpResult result;
    result.error_class = ClassifyCurlCode(code, easy);
    result.curl_code = static_cast<int>(code);
    result.http_status = t.status;
    if (code != CURLE_OK) {
      result.message = curl_easy_strerror(code);
      if (t.error_buffer[0] != '\0') {
        absl::StrAppend(&result.message, ": ", t.error_buffer);
      }
    }
    Finish(t, std::move(result));
  }
}

size_t HttpClient::HeaderCallback(char* data, size_t size, size_t n,
                                  void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t len = size * n;
  if (t->cancelled) return 0;
  absl::string_view line(data, len);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response head (after 1xx or a redirect): start over.
    t->response_headers.entries.clear();
    size_t sp = line.find(' ');
    int status = 0;
    if (sp != absl::string_view::npos &&
        absl::SimpleAtoi(line.substr(sp + 1, 3), &status)) {
      t->status = status;
    }
    return len;
  }
  if (line.empty()) {
    if (t->status >= 200 && !t->headers_delivered) {
      t->headers_delivered = true;
      if (t->callbacks.on_headers) {
        t->callbacks.on_headers(t->status, t->response_headers);
      }
      if (t->cancelled) return 0;
    }
    return len;
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return len;
  std::string name = absl::AsciiStrToLower(line.substr(0, colon));
  std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  t->response_headers.entries.emplace_back(std::move(name), std::move(value));
  return len;
}

size_t HttpClient::WriteCallback(char* data, size_t size, size_t n,
                                 void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t len = size * n;
  if (t->cancelled) return 0;
  HttpClient* self = t->client;
  if (!t->headers_delivered) {
    t->headers_delivered = true;
    if (t->callbacks.on_headers) {
      t->callbacks.on_headers(t->status, t->response_headers);
    }
    if (t->cancelled) return 0;
  }
  if (len == 0) return 0;
  absl::Time now = self->loop_.Now();
  if (t->body_bytes == 0) {
    self->loop_.CancelTimer(t->first_byte_timer);
    t->first_byte_timer = EventLoop::kNoTimer;
  }
  t->body_bytes += static_cast<int64_t>(len);
  t->last_data = now;
  if (t->stall_timer == EventLoop::kNoTimer &&
      t->request.stall_timeout != absl::InfiniteDuration()) {
    RequestId id = t->id;
    t->stall_timer = self->loop_.RunAt(now + t->request.stall_timeout,
                                       [self, id] { self->OnStallCheck(id); });
  }
  if (t->callbacks.on_data) t->callbacks.on_data(absl::string_view(data, len));
  return t->cancelled ? 0 : len;
}

absl::Duration ParseRetryAfter(const HttpHeaders& headers, absl::Time now) {
  if (const std::string* ms = headers.Find("retry-after-ms")) {
    double v = 0;
    if (absl::SimpleAtod(*ms, &v) && v >= 0) {
      return absl::Milliseconds(v);
    }
  }
  const std::string* ra = headers.Find("retry-after");
  if (ra == nullptr) return absl::ZeroDuration();
  double seconds = 0;
  if (absl::SimpleAtod(*ra, &seconds)) {
    return seconds > 0 ? absl::Seconds(seconds) : absl::ZeroDuration();
  }
  absl::Time when;
  std::string err;
  if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", *ra, &when, &err) ||
      absl::ParseTime(absl::RFC1123_full, *ra, &when, &err)) {
    absl::Duration left = when - now;
    return left > absl::ZeroDuration() ? left : absl::ZeroDuration();
  }
  return absl::ZeroDuration();
}

absl::Duration ParseResetDuration(absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return absl::ZeroDuration();
  double seconds = 0;
  // A reset lies ahead: negative, NaN or infinite values (SimpleAtod takes
  // "-5", "nan", "inf") are as unparseable as garbage.
  if (absl::SimpleAtod(value, &seconds)) {
    return std::isfinite(seconds) && seconds >= 0 ? absl::Seconds(seconds)
                                                  : absl::ZeroDuration();
  }
  // Go-style durations: "1h2m3.5s", "20ms".
  absl::Duration total = absl::ZeroDuration();
  size_t i = 0;
  while (i < value.size()) {
    size_t j = i;
    while (j < value.size() &&
           (std::isdigit(static_cast<unsigned char>(value[j])) ||
            value[j] == '.')) {
      ++j;
    }
    if (j == i) return absl::ZeroDuration();
    double number = 0;
    if (!absl::SimpleAtod(value.substr(i, j - i), &number) ||
        !std::isfinite(number)) {
      return absl::ZeroDuration();
    }
    size_t k = j;
    while (k < value.size() &&
           std::isalpha(static_cast<unsigned char>(value[k]))) {
      ++k;
    }
    absl::string_view unit = value.substr(j, k - j);
    if (unit == "h") {
      total += absl::Hours(number);
    } else if (unit == "m") {
      total += absl::Minutes(number);
    } else if (unit == "s") {
      total += absl::Seconds(number);
    } else if (unit == "ms") {
      total += absl::Milliseconds(number);
    } else if (unit == "us") {
      total += absl::Microseconds(number);
    } else {
      return absl::ZeroDuration();
    }
    i = k;
  }
  return total;
}

}  // namespace echelon
