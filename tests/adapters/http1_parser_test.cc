#include "adapters/http1_parser.h"

#include <string>

#include "gtest/gtest.h"

namespace echelon {
namespace {

using Result = Http1RequestParser::Result;

Http1RequestParser::Limits SmallLimits() {
  Http1RequestParser::Limits l;
  l.max_header_bytes = 256;
  l.max_body_bytes = 64;
  return l;
}

TEST(Http1RequestParserTest, ParsesGetWithHeaders) {
  Http1RequestParser p(SmallLimits());
  p.Feed("GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  v  \r\n\r\n");
  Http1Request req;
  ASSERT_EQ(p.Next(&req), Result::kRequest);
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/v1/models?x=1");
  EXPECT_EQ(req.path, "/v1/models");
  EXPECT_EQ(req.version_minor, 1);
  ASSERT_NE(req.Header("x-thing"), nullptr);
  EXPECT_EQ(*req.Header("x-thing"), "v");
  EXPECT_TRUE(req.keep_alive);
  EXPECT_TRUE(req.body.empty());
  EXPECT_EQ(p.Next(&req), Result::kNeedMore);
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(Http1RequestParserTest, ParsesPostFedOneByteAtATime) {
  Http1RequestParser p(SmallLimits());
  std::string wire =
      "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 11\r\n\r\n"
      "{\"a\":\"bcd\"}";
  Http1Request req;
  for (size_t i = 0; i + 1 < wire.size(); ++i) {
    p.Feed(std::string(1, wire[i]));
    ASSERT_EQ(p.Next(&req), Result::kNeedMore) << "at byte " << i;
  }
  p.Feed(std::string(1, wire.back()));
  ASSERT_EQ(p.Next(&req), Result::kRequest);
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.body, "{\"a\":\"bcd\"}");
}

TEST(Http1RequestParserTest, ReturnsPipelinedRequestsInOrder) {
  Http1RequestParser p(SmallLimits());
  p.Feed(
      "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
      "GET /b HTTP/1.1\r\nConnection: close\r\n\r\nGET /c");
  Http1Request req;
  ASSERT_EQ(p.Next(&req), Result::kRequest);
  EXPECT_EQ(req.path, "/a");
  EXPECT_EQ(req.body, "abc");
  ASSERT_EQ(p.Next(&req), Result::kRequest);
  EXPECT_EQ(req.path, "/b");
  EXPECT_FALSE(req.keep_alive);
  EXPECT_EQ(p.Next(&req), Result::kNeedMore);
  p.Feed(" HTTP/1.1\r\n\r\n");
  ASSERT_EQ(p.Next(&req), Result::kRequest);
  EXPECT_EQ(req.path, "/c");
}

TEST(Http1RequestParserTest, HeaderSectionOverLimitIs431) {
  Http1RequestParser p(SmallLimits());
  p.Feed("GET / HTTP/1.1\r\nX-Big: " + std::string(300, 'a'));
  Http1Request req;
  EXPECT_EQ(p.Next(&req), Result::kError);
  EXPECT_EQ(p.error_status(), 431);
}

TEST(Http1RequestParserTest, CompleteHeaderSectionOverLimitIs431) {
  Http1RequestParser p(SmallLimits());
  p.Feed("GET / HTTP/1.1\r\nX-Big: " + std::string(240, 'a') + "\r\n\r\n");
  Http1Request req;
  EXPECT_EQ(p.Next(&req), Result::kError);
  EXPECT_EQ(p.error_status(), 431);
}

TEST(Http1RequestParserTest, BodyOverLimitIs413BeforeTheBodyArrives) {
  Http1RequestParser p(SmallLimits());
  p.Feed("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n");
  Http1Request req;
  EXPECT_EQ(p.Next(&req), Result::kError);
  EXPECT_EQ(p.error_status(), 413);
}

TEST(Http1RequestParserTest, ChunkedRequestBodyIs411) {
  Http1RequestParser p(SmallLimits());
  p.Feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  Http1Request req;
  EXPECT_EQ(p.Next(&req), Result::kError);
  EXPECT_EQ(p.error_status(), 411);
}

TEST(Http1RequestParserTest, MalformedInputIs400) {
  for (const char* wire : {
           "GARBAGE\r\n\r\n",
           "GET /\r\n\r\n",
           "GET / HTTP/1.1 extra\r\n\r\n",
           "GET nopath HTTP/1.1\r\n\r\n",
           "GET / HTTX/1.1\r\n\r\n",
           "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
           "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
           "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
       }) {
    Http1RequestParser p(SmallLimits());
    p.Feed(wire);
    Http1Request req;
    EXPECT_EQ(p.Next(&req), Result::kError) << wire;
    EXPECT_EQ(p.error_status(), 400) << wire;
  }
}

TEST(Http1RequestParserTest, OtherHttpVersionIs505) {
  Http1RequestParser p(SmallLimits());
  p.Feed("GET / HTTP/2.0\r\n\r\n");
  Http1Request req;
  EXPECT_EQ(p.Next(&req), Result::kError);
  EXPECT_EQ(p.error_status(), 505);
}

TEST(Http1RequestParserTest, Http10ClosesUnlessKeepAliveAsked) {
  Http1RequestParser p(SmallLimits());
  p.Feed(
      "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  Http1Request req;
  ASSERT_EQ(p.Next(&req), Result::kRequest);
  EXPECT_FALSE(req.keep_alive);
  ASSERT_EQ(p.Next(&req), Result::kRequest);
  EXPECT_TRUE(req.keep_alive);
}

TEST(Http1RequestParserTest, AsksForContinueOnceWhenBodyIsExpected) {
  Http1RequestParser p(SmallLimits());
  p.Feed(
      "POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  Http1Request req;
  EXPECT_EQ(p.Next(&req), Result::kNeedMore);
  EXPECT_TRUE(p.TakeContinueRequest());
  EXPECT_FALSE(p.TakeContinueRequest());
  p.Feed("ok");
  ASSERT_EQ(p.Next(&req), Result::kRequest);
  EXPECT_EQ(req.body, "ok");
}

TEST(Http1RequestParserTest, IgnoresEmptyLinesBeforeRequestLine) {
  Http1RequestParser p(SmallLimits());
  p.Feed("\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
  Http1Request req;
  ASSERT_EQ(p.Next(&req), Result::kRequest);
  EXPECT_EQ(req.path, "/x");
}

TEST(Http1RequestParserTest, LongKeepAliveSessionDoesNotAccumulateBytes) {
  Http1RequestParser p(SmallLimits());
  Http1Request req;
  for (int i = 0; i < 1000; ++i) {
    p.Feed("POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    ASSERT_EQ(p.Next(&req), Result::kRequest);
    EXPECT_EQ(p.buffered(), 0u);
  }
}

}  // namespace
}  // namespace echelon
