// Incremental parser for Server-Sent Events (the WHATWG event-stream format)
// as used by streaming LLM APIs. Feed it body bytes as they arrive, split at
// any boundary; it calls back once per dispatched event.
#pragma once

#include <cstddef>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace echelon {

struct SseEvent {
  std::string event;  // the `event:` field; empty means "message"
  std::string data;   // `data:` lines joined with "\n"
};

class SseParser {
 public:
  struct Options {
    // Longest line accepted, in bytes; longer is an error (bounds memory).
    size_t max_line_bytes = 1 << 20;
  };

  SseParser() : SseParser(Options{}) {}
  explicit SseParser(const Options& options) : options_(options) {}

  // Parses `bytes`, calling `on_event` for every event completed by a blank
  // line. Lines may end in LF, CRLF or a lone CR. Comment lines (starting
  // with ':') and unknown fields are ignored; `id:` and `retry:` are ignored.
  // Events without data are not dispatched. Returns kResourceExhausted when
  // a line exceeds max_line_bytes; after an error the parser stays failed.
  absl::Status Feed(absl::string_view bytes,
                    absl::FunctionRef<void(const SseEvent&)> on_event);

  // Whether part of an event (a line or fields without the closing blank
  // line) is buffered: at end of stream it means the stream was cut.
  bool HasPartialEvent() const {
    return !line_.empty() || has_data_ || !event_.event.empty();
  }

 private:
  void ProcessLine(absl::FunctionRef<void(const SseEvent&)> on_event);

  const Options options_;
  std::string line_;
  bool last_was_cr_ = false;  // a CR ended the last line; skip a next LF
  bool has_data_ = false;
  bool failed_ = false;
  SseEvent event_;
};

}  // namespace echelon
