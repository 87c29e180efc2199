// Fuzz target for the SSE parser (adapters/sse_parser.h).
//
// Properties checked besides "no crash, no sanitizer report":
//   - the events do not depend on how the bytes are split: feeding the input
//     at once and in pieces (sizes drawn from the input itself) dispatch the
//     same events, fail the same way and leave the same partial state;
//   - a failed parser stays failed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "adapters/sse_parser.h"

namespace {

struct Run {
  std::vector<echelon::SseEvent> events;
  bool ok = true;
  bool partial = false;
};

// Feeds `input` in pieces of the given sizes (cycled; 0 = the rest at once).
Run Parse(absl::string_view input, const std::vector<size_t>& piece_sizes,
          size_t max_line_bytes) {
  echelon::SseParser::Options options;
  options.max_line_bytes = max_line_bytes;
  echelon::SseParser parser(options);
  Run run;
  size_t next = 0;
  size_t pos = 0;
  while (pos < input.size() && run.ok) {
    size_t size =
        piece_sizes.empty() ? 0 : piece_sizes[next++ % piece_sizes.size()];
    if (size == 0 || size > input.size() - pos) size = input.size() - pos;
    absl::Status status = parser.Feed(
        input.substr(pos, size),
        [&](const echelon::SseEvent& e) { run.events.push_back(e); });
    pos += size;
    if (!status.ok()) {
      if (status.code() != absl::StatusCode::kResourceExhausted) abort();
      run.ok = false;
      // A failed parser stays failed.
      bool called = false;
      if (parser
              .Feed("data: x\n\n",
                    [&](const echelon::SseEvent&) { called = true; })
              .ok() ||
          called) {
        abort();
      }
    }
  }
  run.partial = parser.HasPartialEvent();
  return run;
}

bool SameEvents(const std::vector<echelon::SseEvent>& a,
                const std::vector<echelon::SseEvent>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].event != b[i].event || a[i].data != b[i].data) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // Byte 0: the split pattern; byte 1: a small line limit or the default.
  const uint8_t split = data[0];
  const size_t max_line = data[1] < 128 ? 1 << 20 : 1 + (data[1] & 63);
  absl::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  Run whole = Parse(input, {}, max_line);
  std::vector<size_t> pieces = {size_t{1} + (split & 7),
                                size_t{1} + ((split >> 3) & 3), 1};
  Run split_run = Parse(input, pieces, max_line);

  if (whole.ok != split_run.ok) abort();
  if (whole.ok) {
    if (!SameEvents(whole.events, split_run.events)) abort();
    if (whole.partial != split_run.partial) abort();
  } else {
    // Up to the failure both saw a prefix of the same event sequence.
    const auto& shorter = whole.events.size() < split_run.events.size()
                              ? whole.events
                              : split_run.events;
    const auto& longer = whole.events.size() < split_run.events.size()
                             ? split_run.events
                             : whole.events;
    for (size_t i = 0; i < shorter.size(); ++i) {
      if (shorter[i].event != longer[i].event ||
          shorter[i].data != longer[i].data) {
        abort();
      }
    }
  }
  return 0;
}
