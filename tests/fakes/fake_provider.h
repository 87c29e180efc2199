// A scriptable Provider for unit tests. Instances are told apart by their
// Endpoint::base_url. Each call is answered either by a scripted Outcome (a
// per-URL queue, then a per-URL default) played on the event loop's timers,
// or, with neither, left open for the test to answer with Deliver()/
// Finish(). Callbacks never run inside Start() or Cancel().
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "domain/event_loop.h"
#include "domain/provider.h"

namespace echelon {

class FakeProvider : public Provider {
 public:
  struct Outcome {
    absl::Duration latency = absl::Milliseconds(100);  // until OnFinish
    UpstreamError error;                               // kNone: success
    std::string content = "ok";  // unary: the message; stream: see chunks
    // Stream: visible chunks, sent evenly spread before OnFinish (also
    // before an error: a stream that breaks after content).
    std::vector<std::string> chunks;
    Usage usage{10, 5, 15, 0};
    bool has_usage = true;
    bool hang = false;               // never answers (until cancelled)
    UpstreamRateLimits rate_limits;  // as if from the upstream's headers
  };

  static Outcome Ok(absl::Duration latency = absl::Milliseconds(100)) {
    Outcome o;
    o.latency = latency;
    return o;
  }
  static Outcome Fail(ErrorClass c,
                      absl::Duration latency = absl::Milliseconds(100),
                      absl::Duration retry_after = absl::ZeroDuration(),
                      std::string message = "") {
    Outcome o;
    o.latency = latency;
    o.error.error_class = c;
    o.error.retry_after = retry_after;
    o.error.message = message.empty() ? "scripted failure" : message;
    return o;
  }
  static Outcome Hang() {
    Outcome o;
    o.hang = true;
    return o;
  }

  struct CallRecord {
    int index = 0;
    UpstreamCall call;
    UpstreamObserver* observer = nullptr;
    absl::Time started;
    bool cancelled = false;
    bool finished = false;
    std::vector<EventLoop::TimerId> timers;
    const std::string& base_url() const { return call.endpoint->base_url; }
  };

  explicit FakeProvider(EventLoop& loop) : loop_(loop) {}

  // Queues outcomes for the next calls to `base_url`.
  void Script(const std::string& base_url, Outcome o) {
    scripts_[base_url].push_back(std::move(o));
  }
  // Used for calls to `base_url` once its queue is empty.
  void SetDefault(const std::string& base_url, Outcome o) {
    defaults_[base_url] = std::move(o);
  }
  void ClearDefault(const std::string& base_url) { defaults_.erase(base_url); }
  // Consulted first for every call (e.g. faults that depend on the time);
  // nullopt falls through to scripts and defaults.
  void SetResponder(
      std::function<std::optional<Outcome>(const CallRecord&)> responder) {
    responder_ = std::move(responder);
  }
  // Used for every URL without its own script or default.
  void SetFallbackDefault(Outcome o) { any_default_ = std::move(o); }

  std::unique_ptr<UpstreamHandle> Start(UpstreamCall call,
                                        UpstreamObserver* observer) override {
    auto rec = std::make_shared<CallRecord>();
    rec->index = static_cast<int>(calls_.size());
    rec->call = std::move(call);
    rec->observer = observer;
    rec->started = loop_.Now();
    calls_.push_back(rec);
    const std::string& url = rec->base_url();
    Outcome o;
    bool scripted = true;
    std::optional<Outcome> chosen;
    if (responder_) chosen = responder_(*rec);
    if (chosen.has_value()) {
      o = *std::move(chosen);
    } else if (auto it = scripts_.find(url);
               it != scripts_.end() && !it->second.empty()) {
      o = std::move(it->second.front());
      it->second.pop_front();
    } else if (auto d = defaults_.find(url); d != defaults_.end()) {
      o = d->second;
    } else if (any_default_) {
      o = *any_default_;
    } else {
      scripted = false;
    }
    if (scripted && !o.hang) Play(rec, o);
    return std::make_unique<Handle>(this, rec);
  }

  // Manual answers for unscripted calls (run on the loop thread, i.e. the
  // test's thread with FakeEventLoop).
  void Deliver(int index, StreamDelta d) {
    auto& rec = calls_.at(static_cast<size_t>(index));
    if (!rec->cancelled && !rec->finished) rec->observer->OnDelta(std::move(d));
  }
  void Finish(int index, UpstreamResult r) {
    auto& rec = calls_.at(static_cast<size_t>(index));
    if (rec->cancelled || rec->finished) return;
    rec->finished = true;
    rec->observer->OnFinish(std::move(r));
  }
  void Succeed(int index, std::string content = "ok") {
    UpstreamResult r;
    r.response.message.role = Role::kAssistant;
    r.response.message.content = std::move(content);
    r.response.finish_reason = FinishReason::kStop;
    Finish(index, std::move(r));
  }
  void Fail(int index, ErrorClass c,
            absl::Duration retry_after = absl::ZeroDuration()) {
    UpstreamResult r;
    r.error.error_class = c;
    r.error.retry_after = retry_after;
    r.error.message = "manual failure";
    Finish(index, std::move(r));
  }

  const std::vector<std::shared_ptr<CallRecord>>& calls() const {
    return calls_;
  }
  size_t call_count() const { return calls_.size(); }
  // Calls neither finished nor cancelled.
  int open_calls() const {
    int n = 0;
    for (const auto& c : calls_) n += !c->finished && !c->cancelled;
    return n;
  }
  int CallsTo(const std::string& base_url) const {
    int n = 0;
    for (const auto& c : calls_) n += c->base_url() == base_url;
    return n;
  }

 private:
  class Handle : public UpstreamHandle {
   public:
    Handle(FakeProvider* p, std::shared_ptr<CallRecord> rec)
        : p_(p), rec_(std::move(rec)) {}
    ~Handle() override { Cancel(); }
    void Cancel() override {
      if (rec_->finished || rec_->cancelled) return;
      rec_->cancelled = true;
      for (auto t : rec_->timers) p_->loop_.CancelTimer(t);
    }

   private:
    FakeProvider* p_;
    std::shared_ptr<CallRecord> rec_;
  };

  void Play(const std::shared_ptr<CallRecord>& rec, const Outcome& o) {
    absl::Time start = loop_.Now();
    bool stream = rec->call.stream;
    std::vector<std::string> chunks = o.chunks;
    if (stream && chunks.empty() && o.error.ok()) chunks = {o.content};
    size_t n = stream ? chunks.size() : 0;
    for (size_t i = 0; i < n; ++i) {
      absl::Time at = start + o.latency * (static_cast<double>(i + 1) /
                                           static_cast<double>(n + 1));
      std::string text = chunks[i];
      rec->timers.push_back(loop_.RunAt(at, [rec, text] {
        if (rec->cancelled || rec->finished) return;
        StreamDelta d;
        d.content = text;
        rec->observer->OnDelta(std::move(d));
      }));
    }
    UpstreamResult r;
    r.error = o.error;
    r.rate_limits = o.rate_limits;
    if (o.error.ok()) {
      r.response.message.role = Role::kAssistant;
      r.response.message.content = stream ? "" : o.content;
      r.response.finish_reason = FinishReason::kStop;
      r.response.usage = o.usage;
      r.response.has_usage = o.has_usage;
      r.time_to_first_token =
          n > 0 ? o.latency / static_cast<double>(n + 1) : o.latency;
    }
    rec->timers.push_back(loop_.RunAt(start + o.latency, [rec, r] {
      if (rec->cancelled || rec->finished) return;
      rec->finished = true;
      rec->observer->OnFinish(r);
    }));
  }

  EventLoop& loop_;
  std::map<std::string, std::deque<Outcome>> scripts_;
  std::map<std::string, Outcome> defaults_;
  std::optional<Outcome> any_default_;
  std::function<std::optional<Outcome>(const CallRecord&)> responder_;
  std::vector<std::shared_ptr<CallRecord>> calls_;
};

}  // namespace echelon
