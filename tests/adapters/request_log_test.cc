#include "adapters/request_log.h"

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace echelon {
namespace {

RequestDoneEvent Event() {
  RequestDoneEvent e;
  e.request_id = "abc-1";
  e.target = "fast-pool";
  e.model = "sim-fast";
  e.instance = "sim-fast/a";
  e.attempts = 2;
  e.duration = absl::Milliseconds(12);
  e.upstream_time = absl::Milliseconds(11);
  e.tokens_in = 7;
  e.tokens_out = 8;
  return e;
}

TEST(RequestLogTest, TextLineNamesRequestRouteOutcomeAndTokens) {
  std::string line = RequestLog::Format(Event(), /*json=*/false);
  for (const char* part :
       {"request id=abc-1", "target=fast-pool", "model=sim-fast",
        "instance=sim-fast/a", "outcome=ok", "attempts=2", "duration_ms=12.000",
        "tokens_in=7", "tokens_out=8"}) {
    EXPECT_TRUE(absl::StrContains(line, part)) << part << " in " << line;
  }
  EXPECT_EQ(line.back(), '\n');
}

TEST(RequestLogTest, JsonLineEscapesErrorText) {
  RequestDoneEvent e = Event();
  e.code = absl::StatusCode::kUnavailable;
  e.message = "upstream said \"no\"\nbye";
  std::string line = RequestLog::Format(e, /*json=*/true);
  EXPECT_TRUE(absl::StrContains(line, "\"outcome\":\"unavailable\""));
  EXPECT_TRUE(
      absl::StrContains(line, "\"error\":\"upstream said \\\"no\\\"\\nbye\""))
      << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line per request";
}

TEST(RequestLogTest, WritesLinesAtOrAboveTheLevel) {
  char* data = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&data, &size);
  {
    RequestLog::Options o;
    o.out = out;
    o.level = LogLevel::kWarning;
    RequestLog log(o);
    log.OnRequestDone(Event());  // ok -> info: dropped
    RequestDoneEvent failed = Event();
    failed.code = absl::StatusCode::kDeadlineExceeded;
    log.OnRequestDone(failed);
    log.Log(LogLevel::kError, "config reload failed");
    log.Log(LogLevel::kDebug, "noise");
  }  // destructor flushes
  fclose(out);
  std::string text(data, size);
  free(data);
  EXPECT_FALSE(absl::StrContains(text, "outcome=ok"));
  EXPECT_TRUE(absl::StrContains(text, "outcome=deadline_exceeded"));
  EXPECT_TRUE(absl::StrContains(text, "error config reload failed"));
  EXPECT_FALSE(absl::StrContains(text, "noise"));
}

TEST(RequestLogTest, ParsesLevels) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("loud").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace echelon
