#include "adapters/json_util.h"

namespace echelon {
namespace json {

void RawOrFallback(Writer& w, absl::string_view json_text,
                   absl::string_view fallback) {
  rapidjson::Document doc;
  if (!json_text.empty() &&
      !doc.Parse(json_text.data(), json_text.size()).HasParseError()) {
    // Re-serialise the parsed value: always compact and valid.
    doc.Accept(w);
    return;
  }
  rapidjson::Document fb;
  fb.Parse(fallback.data(), fallback.size());
  fb.Accept(w);
}

const rapidjson::Value* Member(const rapidjson::Value& v, const char* name) {
  if (!v.IsObject()) return nullptr;
  auto it = v.FindMember(name);
  if (it == v.MemberEnd()) return nullptr;
  return &it->value;
}

absl::string_view StringMember(const rapidjson::Value& v, const char* name) {
  const rapidjson::Value* m = Member(v, name);
  return m == nullptr ? absl::string_view() : View(*m);
}

int64_t IntMember(const rapidjson::Value& v, const char* name,
                  int64_t fallback) {
  const rapidjson::Value* m = Member(v, name);
  if (m == nullptr) return fallback;
  if (m->IsInt64()) return m->GetInt64();
  // Values an int64_t cannot hold (1e72, 2^64 - 1, from a buggy or hostile
  // upstream) are as unusable as a string: converting an out-of-range double
  // is undefined behaviour, and a wrapped uint64 would turn negative.
  if (m->IsUint64()) return fallback;
  if (m->IsDouble()) {
    const double d = m->GetDouble();
    constexpr double kLimit = 9223372036854775808.0;  // 2^63
    if (d >= -kLimit && d < kLimit) return static_cast<int64_t>(d);
  }
  return fallback;
}

const rapidjson::Document* ScratchParser::Parse(absl::string_view text) {
  scratch_.assign(text.data(), text.size());
  // Release the previous document's pool chunks beyond the inline buffer.
  document_.SetNull();
  allocator_.Clear();
  document_.ParseInsitu(&scratch_[0]);
  if (document_.HasParseError()) return nullptr;
  return &document_;
}

}  // namespace json
}  // namespace echelon
