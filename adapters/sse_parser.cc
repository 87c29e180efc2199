#include "adapters/sse_parser.h"

#include <cstring>

namespace echelon {

absl::Status SseParser::Feed(
    absl::string_view bytes,
    absl::FunctionRef<void(const SseEvent&)> on_event) {
  if (failed_) return absl::ResourceExhaustedError("SSE line too long");
  size_t i = 0;
  const size_t n = bytes.size();
  while (i < n) {
    if (last_was_cr_) {
      last_was_cr_ = false;
      if (bytes[i] == '\n') {
        ++i;
        continue;
      }
    }
    // Find the end of the current line in this chunk.
    const char* start = bytes.data() + i;
    size_t rest = n - i;
    const char* end = static_cast<const char*>(std::memchr(start, '\n', rest));
    const char* cr = static_cast<const char*>(std::memchr(
        start, '\r', end ? static_cast<size_t>(end - start) : rest));
    if (cr != nullptr) end = cr;
    size_t len = end ? static_cast<size_t>(end - start) : rest;
    if (line_.size() + len > options_.max_line_bytes) {
      failed_ = true;
      line_.clear();
      return absl::ResourceExhaustedError("SSE line too long");
    }
    line_.append(start, len);
    i += len;
    if (end == nullptr) break;  // line continues in the next chunk
    if (*end == '\r') last_was_cr_ = true;
    ++i;  // the terminator
    ProcessLine(on_event);
    line_.clear();
  }
  return absl::OkStatus();
}

void SseParser::ProcessLine(absl::FunctionRef<void(const SseEvent&)> on_event) {
  if (line_.empty()) {
    if (has_data_) on_event(event_);
    event_.event.clear();
    event_.data.clear();
    has_data_ = false;
    return;
  }
  if (line_[0] == ':') return;  // comment / keep-alive
  absl::string_view line(line_);
  absl::string_view field = line;
  absl::string_view value;
  size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) event_.data.push_back('\n');
    event_.data.append(value.data(), value.size());
    has_data_ = true;
  } else if (field == "event") {
    event_.event.assign(value.data(), value.size());
  }
  // id, retry and unknown fields are ignored.
}

}  // namespace echelon
