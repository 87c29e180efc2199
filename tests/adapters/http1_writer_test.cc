#include "adapters/http1_writer.h"

#include <string>

#include "gtest/gtest.h"

namespace echelon {
namespace {

TEST(Http1WriterTest, WholeResponseHasLengthHeadersAndBody) {
  std::string out;
  AppendHttpResponse(&out, 429, "application/json", "{}",
                     {{"Retry-After", "2"}}, /*keep_alive=*/true);
  EXPECT_EQ(out,
            "HTTP/1.1 429 Too Many Requests\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 2\r\n"
            "Retry-After: 2\r\n"
            "Connection: keep-alive\r\n\r\n{}");
}

TEST(Http1WriterTest, ChunkedBodyFramesEachPieceAndEndsWithLastChunk) {
  std::string out;
  AppendHttpHead(&out, 200, "text/event-stream", kHttpChunked, {},
                 /*keep_alive=*/false);
  AppendHttpChunk(&out, std::string(26, 'a'));
  AppendHttpChunk(&out, "");  // nothing: an empty chunk would end the body
  AppendHttpLastChunk(&out);
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/event-stream\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
            "1a\r\n" +
                std::string(26, 'a') + "\r\n0\r\n\r\n");
}

TEST(Http1WriterTest, CloseDelimitedHeadHasNoFramingHeader) {
  std::string out;
  AppendHttpHead(&out, 200, "text/event-stream", kHttpCloseDelimited, {},
                 /*keep_alive=*/false);
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/event-stream\r\n"
            "Connection: close\r\n\r\n");
}

TEST(Http1WriterTest, ReasonPhrasesForTheStatusesTheFrontSends) {
  EXPECT_EQ(HttpReasonPhrase(413), "Content Too Large");
  EXPECT_EQ(HttpReasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(HttpReasonPhrase(504), "Gateway Timeout");
  EXPECT_EQ(HttpReasonPhrase(299), "Unknown");
}

}  // namespace
}  // namespace echelon
