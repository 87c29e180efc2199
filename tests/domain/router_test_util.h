// Helpers for router tests: compact config builders and a recording sink.
// Instance base URLs are "http://<model>/<id>" so that FakeProvider scripts
// can address each instance.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "domain/config.h"
#include "domain/router.h"
#include "gtest/gtest.h"

namespace echelon {
namespace testing {

inline std::string Url(const std::string& model, const std::string& id) {
  return absl::StrCat("http://", model, "/", id);
}

inline ProviderConfig MakeProvider(const std::string& name) {
  ProviderConfig p;
  p.name = name;
  p.base_url = absl::StrCat("http://", name);
  p.api_key = "sk-secret";
  return p;
}

inline ModelConfig MakeModel(const std::string& name,
                             const std::string& provider,
                             const std::vector<std::string>& ids,
                             std::vector<int> weights = {}) {
  ModelConfig m;
  m.name = name;
  m.provider = provider;
  m.upstream_model = absl::StrCat(name, "-upstream");
  for (size_t i = 0; i < ids.size(); ++i) {
    InstanceConfig ic;
    ic.id = ids[i];
    ic.base_url = Url(name, ids[i]);
    if (i < weights.size()) ic.weight = weights[i];
    m.instances.push_back(ic);
  }
  return m;
}

inline EchelonConfig MakeEchelon(const std::string& name, int priority,
                                 std::vector<std::string> models) {
  EchelonConfig e;
  e.name = name;
  e.priority = priority;
  e.models = std::move(models);
  e.retry.initial_backoff = absl::Milliseconds(10);
  e.retry.max_backoff = absl::Milliseconds(100);
  return e;
}

inline ChatRequest MakeChat(const std::string& text = "hello") {
  ChatRequest r;
  ChatMessage m;
  m.role = Role::kUser;
  m.content = text;
  r.messages.push_back(m);
  r.request_id = "req-1";
  return r;
}

inline RouteRequest MakeRoute(const std::string& target, bool stream = false,
                              absl::Time deadline = absl::InfiniteFuture()) {
  RouteRequest r;
  r.target = target;
  r.request = std::make_shared<ChatRequest>(MakeChat());
  r.stream = stream;
  r.deadline = deadline;
  return r;
}

class RecordingSink : public ResponseSink {
 public:
  void OnDelta(const StreamDelta& d) override {
    ASSERT_FALSE(done) << "delta after completion";
    deltas.push_back(d);
    text += d.content;
  }
  void OnComplete(absl::Status s, RoutedResponse r) override {
    ASSERT_FALSE(done) << "completed twice";
    done = true;
    status = std::move(s);
    response = std::move(r);
  }
  bool done = false;
  absl::Status status;
  RoutedResponse response;
  std::vector<StreamDelta> deltas;
  std::string text;
};

}  // namespace testing
}  // namespace echelon
