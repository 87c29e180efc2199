// Small RapidJSON helpers shared by the provider adapters. RapidJSON was
// picked over nlohmann-json and simdjson by tools/bench/json_chunk_bench.cc:
// in-situ parsing into a pooled DOM on a stack buffer decodes one streamed
// chunk without touching the heap.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace echelon {
namespace json {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

inline void String(Writer& w, absl::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

inline void Key(Writer& w, absl::string_view s) {
  w.Key(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

// Writes `json_text` as a nested value when it is a valid JSON document,
// else `fallback` (itself valid JSON text). Used for caller-supplied schemas
// so that a bad schema cannot corrupt the request body.
void RawOrFallback(Writer& w, absl::string_view json_text,
                   absl::string_view fallback);

// Member lookups that tolerate absent members and wrong types.
const rapidjson::Value* Member(const rapidjson::Value& v, const char* name);
// The string member `name`, or "" (also for null or non-strings).
absl::string_view StringMember(const rapidjson::Value& v, const char* name);
// The integer member `name`, or `fallback`.
int64_t IntMember(const rapidjson::Value& v, const char* name,
                  int64_t fallback = 0);

inline absl::string_view View(const rapidjson::Value& v) {
  return v.IsString() ? absl::string_view(v.GetString(), v.GetStringLength())
                      : absl::string_view();
}

// A one-shot document whose DOM and parse stack start in inline buffers
// (spilling to the heap only for large documents): parsing a unary response
// of a few hundred bytes costs no 64 KiB pool chunk and no stack allocation.
// Lives on the caller's stack; its values are plain rapidjson::Value.
class LocalDocument {
 public:
  using Doc = rapidjson::GenericDocument<rapidjson::UTF8<>,
                                         rapidjson::MemoryPoolAllocator<>,
                                         rapidjson::MemoryPoolAllocator<>>;
  LocalDocument()
      : pool_(pool_buffer_, sizeof(pool_buffer_)),
        stack_pool_(stack_buffer_, sizeof(stack_buffer_)),
        doc_(&pool_, sizeof(stack_buffer_) / 2, &stack_pool_) {}
  LocalDocument(const LocalDocument&) = delete;
  LocalDocument& operator=(const LocalDocument&) = delete;

  // Parses `text` (not modified). Check HasParseError() on the result.
  Doc& Parse(absl::string_view text) {
    doc_.Parse(text.data(), text.size());
    return doc_;
  }
  Doc& doc() { return doc_; }

 private:
  char pool_buffer_[4 * 1024];
  char stack_buffer_[1024];
  rapidjson::MemoryPoolAllocator<> pool_;
  rapidjson::MemoryPoolAllocator<> stack_pool_;
  Doc doc_;
};

// A reusable in-situ parser: copies `text` into an owned scratch buffer and
// parses it in place with a pool allocator that starts on an inline buffer,
// so small documents (streamed chunks) cost no heap allocation once warm.
// The returned document lives until the next Parse().
class ScratchParser {
 public:
  ScratchParser()
      : allocator_(inline_buffer_, sizeof(inline_buffer_)),
        document_(&allocator_) {}
  ScratchParser(const ScratchParser&) = delete;
  ScratchParser& operator=(const ScratchParser&) = delete;

  // Returns nullptr when `text` is not valid JSON.
  const rapidjson::Document* Parse(absl::string_view text);

 private:
  // Enough for a typical streamed chunk's DOM; larger documents spill to
  // the pool's heap blocks. Kept small: every open stream holds one.
  char inline_buffer_[4 * 1024];
  rapidjson::MemoryPoolAllocator<> allocator_;
  rapidjson::Document document_;
  std::string scratch_;
};

}  // namespace json
}  // namespace echelon
