// What does decoding one streamed chat.completion.chunk cost with each JSON
// library we could use? Every variant extracts the same fields the OpenAI
// adapter needs (delta.content, finish_reason) from the same chunk.
//
//   bazel run -c opt //tools/bench:json_chunk_bench
#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "adapters/openai_provider.h"
#include "adapters/sse_parser.h"
#include "domain/chat.h"
#include "rapidjson/document.h"
#include "rapidjson/reader.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace echelon {
namespace {

// A typical content chunk as OpenAI sends it.
const char kChunk[] =
    R"({"id":"chatcmpl-9xYzAbCdEfGhIjKlMnOpQrStUv","object":)"
    R"("chat.completion.chunk","created":1718000000,"model":"gpt-4o-2024-08-06",)"
    R"("system_fingerprint":"fp_abc123def4","choices":[{"index":0,"delta":)"
    R"({"content":" world"},"logprobs":null,"finish_reason":null}]})";

void BM_RapidJsonDom(benchmark::State& state) {
  for (auto _ : state) {
    rapidjson::Document doc;
    doc.Parse(kChunk);
    const auto& choice = doc["choices"][0];
    const auto& content = choice["delta"]["content"];
    benchmark::DoNotOptimize(content.GetStringLength());
    benchmark::DoNotOptimize(choice["finish_reason"].IsNull());
  }
}
BENCHMARK(BM_RapidJsonDom);

// The adapter's path: copy into a reused buffer, parse in situ into a pool
// allocator that starts on an inline buffer (no heap once warm).
void BM_RapidJsonInsituPooled(benchmark::State& state) {
  char pool[16 * 1024];
  rapidjson::MemoryPoolAllocator<> allocator(pool, sizeof(pool));
  rapidjson::Document doc(&allocator);
  std::string scratch;
  for (auto _ : state) {
    scratch.assign(kChunk, sizeof(kChunk) - 1);
    doc.SetNull();
    allocator.Clear();
    doc.ParseInsitu(&scratch[0]);
    const auto& choice = doc["choices"][0];
    benchmark::DoNotOptimize(choice["delta"]["content"].GetStringLength());
    benchmark::DoNotOptimize(choice["finish_reason"].IsNull());
  }
}
BENCHMARK(BM_RapidJsonInsituPooled);

// SAX: no DOM at all; remembers the last key and picks the two values.
struct ChunkHandler
    : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, ChunkHandler> {
  const char* key = "";
  size_t key_len = 0;
  std::string content;
  bool finished = false;
  bool Key(const char* s, rapidjson::SizeType len, bool) {
    key = s;
    key_len = len;
    return true;
  }
  bool String(const char* s, rapidjson::SizeType len, bool) {
    if (key_len == 7 && std::memcmp(key, "content", 7) == 0) {
      content.assign(s, len);
    } else if (key_len == 13 && std::memcmp(key, "finish_reason", 13) == 0) {
      finished = true;
    }
    return true;
  }
};

void BM_RapidJsonSaxReader(benchmark::State& state) {
  rapidjson::Reader reader;
  ChunkHandler handler;
  std::string scratch;
  for (auto _ : state) {
    scratch.assign(kChunk, sizeof(kChunk) - 1);
    rapidjson::InsituStringStream stream(&scratch[0]);
    reader.Parse<rapidjson::kParseInsituFlag>(stream, handler);
    benchmark::DoNotOptimize(handler.content.size());
  }
}
BENCHMARK(BM_RapidJsonSaxReader);

void BM_NlohmannDom(benchmark::State& state) {
  for (auto _ : state) {
    nlohmann::json doc = nlohmann::json::parse(kChunk);
    const auto& choice = doc["choices"][0];
    const std::string& content =
        choice["delta"]["content"].get_ref<const std::string&>();
    benchmark::DoNotOptimize(content.size());
    benchmark::DoNotOptimize(choice["finish_reason"].is_null());
  }
}
BENCHMARK(BM_NlohmannDom);

void BM_SimdjsonOnDemand(benchmark::State& state) {
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(kChunk, sizeof(kChunk) - 1);
  for (auto _ : state) {
    simdjson::ondemand::document doc = parser.iterate(padded);
    simdjson::ondemand::value choice = doc["choices"].at(0);
    std::string_view content = choice["delta"]["content"].get_string();
    benchmark::DoNotOptimize(content.size());
    benchmark::DoNotOptimize(choice["finish_reason"].is_null());
  }
}
BENCHMARK(BM_SimdjsonOnDemand);

// simdjson needs padding: a real stream chunk must be copied into a padded
// buffer first, so include that copy.
void BM_SimdjsonOnDemandWithCopy(benchmark::State& state) {
  simdjson::ondemand::parser parser;
  for (auto _ : state) {
    simdjson::padded_string padded(kChunk, sizeof(kChunk) - 1);
    simdjson::ondemand::document doc = parser.iterate(padded);
    simdjson::ondemand::value choice = doc["choices"].at(0);
    std::string_view content = choice["delta"]["content"].get_string();
    benchmark::DoNotOptimize(content.size());
    benchmark::DoNotOptimize(choice["finish_reason"].is_null());
  }
}
BENCHMARK(BM_SimdjsonOnDemandWithCopy);

// The adapter end to end for one chunk: SSE framing + decode to StreamDelta.
void BM_OpenAiDecoderWithSse(benchmark::State& state) {
  auto decoder = openai::OpenAiDialect().NewStreamDecoder();
  SseParser sse;
  std::string frame = std::string("data: ") + kChunk + "\n\n";
  for (auto _ : state) {
    sse.Feed(frame,
             [&](const SseEvent& event) {
               StreamDelta delta;
               UpstreamError error;
               decoder->OnEvent(event, &delta, &error);
               benchmark::DoNotOptimize(delta.content.size());
             })
        .IgnoreError();
  }
}
BENCHMARK(BM_OpenAiDecoderWithSse);

// Writing: one request body with a short conversation.
ChatRequest SmallRequest() {
  ChatRequest r;
  ChatMessage system;
  system.role = Role::kSystem;
  system.content = "You are a helpful assistant.";
  ChatMessage user;
  user.role = Role::kUser;
  user.content = "Write a haiku about event loops and \"quotes\".";
  r.messages = {system, user};
  r.params.temperature = 0.7;
  r.params.max_tokens = 256;
  return r;
}

void BM_WriteRequestRapidJson(benchmark::State& state) {
  ChatRequest r = SmallRequest();
  for (auto _ : state) {
    std::string body = openai::BuildRequestBody(r, "gpt-4o", true);
    benchmark::DoNotOptimize(body.size());
  }
}
BENCHMARK(BM_WriteRequestRapidJson);

void BM_WriteRequestNlohmann(benchmark::State& state) {
  ChatRequest r = SmallRequest();
  for (auto _ : state) {
    nlohmann::json j;
    j["model"] = "gpt-4o";
    nlohmann::json messages = nlohmann::json::array();
    for (const auto& m : r.messages) {
      messages.push_back({{"role", m.role == Role::kSystem ? "system" : "user"},
                          {"content", m.content}});
    }
    j["messages"] = std::move(messages);
    j["temperature"] = *r.params.temperature;
    j["max_tokens"] = *r.params.max_tokens;
    j["stream"] = true;
    j["stream_options"] = {{"include_usage", true}};
    std::string body = j.dump();
    benchmark::DoNotOptimize(body.size());
  }
}
BENCHMARK(BM_WriteRequestNlohmann);

}  // namespace
}  // namespace echelon

BENCHMARK_MAIN();
