#include "adapters/sse_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace echelon {
namespace {

struct Collected {
  std::vector<SseEvent> events;
  absl::Status status;
};

Collected FeedInPieces(absl::string_view input, size_t piece) {
  SseParser parser;
  Collected out;
  for (size_t i = 0; i < input.size() && out.status.ok(); i += piece) {
    out.status = parser.Feed(input.substr(i, piece), [&](const SseEvent& e) {
      out.events.push_back(e);
    });
  }
  return out;
}

Collected FeedAll(absl::string_view input) {
  return FeedInPieces(input, input.size() == 0 ? 1 : input.size());
}

TEST(SseParserTest, DispatchesDataOnBlankLine) {
  Collected c = FeedAll("data: {\"a\":1}\n\ndata: [DONE]\n\n");
  ASSERT_TRUE(c.status.ok());
  ASSERT_EQ(c.events.size(), 2u);
  EXPECT_EQ(c.events[0].data, "{\"a\":1}");
  EXPECT_EQ(c.events[0].event, "");
  EXPECT_EQ(c.events[1].data, "[DONE]");
}

TEST(SseParserTest, DoesNotDispatchWithoutClosingBlankLine) {
  SseParser parser;
  int n = 0;
  ASSERT_TRUE(parser.Feed("data: x\n", [&](const SseEvent&) { ++n; }).ok());
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(parser.HasPartialEvent());
  ASSERT_TRUE(parser.Feed("\n", [&](const SseEvent&) { ++n; }).ok());
  EXPECT_EQ(n, 1);
  EXPECT_FALSE(parser.HasPartialEvent());
}

TEST(SseParserTest, JoinsMultiLineDataWithNewline) {
  Collected c = FeedAll("data: one\ndata:two\ndata:  three\n\n");
  ASSERT_EQ(c.events.size(), 1u);
  // Only one leading space is stripped.
  EXPECT_EQ(c.events[0].data, "one\ntwo\n three");
}

TEST(SseParserTest, KeepsEventNameAndResetsItAfterDispatch) {
  Collected c = FeedAll(
      "event: message_start\ndata: {}\n\n"
      "data: plain\n\n");
  ASSERT_EQ(c.events.size(), 2u);
  EXPECT_EQ(c.events[0].event, "message_start");
  EXPECT_EQ(c.events[1].event, "");
}

TEST(SseParserTest, IgnoresCommentsKeepAlivesIdAndUnknownFields) {
  Collected c = FeedAll(
      ": keep-alive\n\n:\n\nid: 7\nretry: 100\nfoo: bar\ndata: x\n\n"
      "event: ping\n\n");
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].data, "x");
}

TEST(SseParserTest, AcceptsCrLfAndLoneCrLineEndings) {
  Collected crlf = FeedAll("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n");
  ASSERT_EQ(crlf.events.size(), 2u);
  EXPECT_EQ(crlf.events[0].data, "a\nb");
  EXPECT_EQ(crlf.events[1].data, "c");

  Collected cr = FeedAll("data: a\rdata: b\r\rdata: c\r\r");
  ASSERT_EQ(cr.events.size(), 2u);
  EXPECT_EQ(cr.events[0].data, "a\nb");
  EXPECT_EQ(cr.events[1].data, "c");
}

TEST(SseParserTest, SameEventsForEveryChunkSize) {
  const std::string input =
      "event: content_block_delta\r\ndata: {\"x\": \"a:b\"}\r\n\r\n"
      ": ping\n\ndata: line1\ndata: line2\n\n"
      "data: cr\r\rdata: [DONE]\n\n";
  Collected whole = FeedAll(input);
  ASSERT_EQ(whole.events.size(), 4u);
  for (size_t piece = 1; piece <= input.size(); ++piece) {
    Collected c = FeedInPieces(input, piece);
    ASSERT_TRUE(c.status.ok());
    ASSERT_EQ(c.events.size(), whole.events.size()) << "piece " << piece;
    for (size_t i = 0; i < c.events.size(); ++i) {
      EXPECT_EQ(c.events[i].data, whole.events[i].data) << "piece " << piece;
      EXPECT_EQ(c.events[i].event, whole.events[i].event);
    }
  }
}

TEST(SseParserTest, CrLfSplitBetweenChunksIsOneLineEnd) {
  SseParser parser;
  std::vector<std::string> data;
  auto cb = [&](const SseEvent& e) { data.push_back(e.data); };
  ASSERT_TRUE(parser.Feed("data: a\r", cb).ok());
  ASSERT_TRUE(parser.Feed("\n", cb).ok());
  ASSERT_TRUE(parser.Feed("\r", cb).ok());
  ASSERT_TRUE(parser.Feed("\n", cb).ok());
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0], "a");
}

TEST(SseParserTest, FieldWithoutColonHasEmptyValue) {
  Collected c = FeedAll("data\ndata\n\n");
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].data, "\n");
}

TEST(SseParserTest, RejectsLineLongerThanLimitAndStaysFailed) {
  SseParser::Options options;
  options.max_line_bytes = 16;
  SseParser parser(options);
  auto cb = [](const SseEvent&) {};
  EXPECT_TRUE(parser.Feed("data: 0123456789", cb).ok());
  EXPECT_EQ(parser.Feed("x", cb).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(parser.Feed("\n\n", cb).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(SseParserTest, DefaultLimitIsOneMebibyte) {
  SseParser parser;
  auto cb = [](const SseEvent&) {};
  std::string big(1 << 20, 'a');
  EXPECT_TRUE(parser.Feed(big, cb).ok());
  EXPECT_EQ(parser.Feed("a", cb).code(), absl::StatusCode::kResourceExhausted);
}

TEST(SseParserTest, LongLinesWithinLimitAcrossManyChunks) {
  SseParser parser;
  std::string payload(300000, 'z');
  std::string input = "data: " + payload + "\n\n";
  std::vector<std::string> data;
  for (size_t i = 0; i < input.size(); i += 4096) {
    ASSERT_TRUE(parser
                    .Feed(absl::string_view(input).substr(i, 4096),
                          [&](const SseEvent& e) { data.push_back(e.data); })
                    .ok());
  }
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0], payload);
}

}  // namespace
}  // namespace echelon
