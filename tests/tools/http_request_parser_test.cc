#include "tools/upstream_sim/http_request_parser.h"

#include <string>

#include "gtest/gtest.h"

namespace echelon {
namespace sim {
namespace {

using Result = HttpRequestParser::Result;

constexpr char kPost[] =
    "POST /v1/chat/completions?x=1 HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "Content-Type: application/json\r\n"
    "X-Sim-Scenario:  tokens=3  \r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "{\"model\":\"m\"}";

TEST(HttpRequestParserTest, ParsesACompleteRequestInOneRead) {
  HttpRequestParser p;
  ASSERT_EQ(p.Feed(kPost), Result::kComplete);
  const HttpRequest& r = p.request();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/v1/chat/completions?x=1");
  EXPECT_EQ(r.Path(), "/v1/chat/completions");
  EXPECT_EQ(r.Query(), "x=1");
  EXPECT_EQ(r.minor_version, 1);
  ASSERT_NE(r.FindHeader("x-sim-scenario"), nullptr);
  EXPECT_EQ(*r.FindHeader("x-sim-scenario"), "tokens=3");
  EXPECT_EQ(r.body, "{\"model\":\"m\"}");
  EXPECT_TRUE(r.KeepAlive());
}

TEST(HttpRequestParserTest, ParsesARequestFedOneByteAtATime) {
  HttpRequestParser p;
  std::string all = kPost;
  for (size_t i = 0; i + 1 < all.size(); ++i) {
    ASSERT_EQ(p.Feed(all.substr(i, 1)), Result::kNeedMore) << i;
  }
  ASSERT_EQ(p.Feed(all.substr(all.size() - 1)), Result::kComplete);
  EXPECT_EQ(p.request().body, "{\"model\":\"m\"}");
}

TEST(HttpRequestParserTest, KeepsBytesOfTheNextRequestAfterNext) {
  HttpRequestParser p;
  std::string two =
      std::string(kPost) + "GET /_stats HTTP/1.1\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(p.Feed(two), Result::kComplete);
  EXPECT_EQ(p.request().method, "POST");
  p.Next();
  ASSERT_EQ(p.Feed(""), Result::kComplete);
  EXPECT_EQ(p.request().method, "GET");
  EXPECT_EQ(p.request().target, "/_stats");
  EXPECT_TRUE(p.request().body.empty());
  EXPECT_FALSE(p.request().KeepAlive());
  p.Next();
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(HttpRequestParserTest, Http10DefaultsToClose) {
  HttpRequestParser p;
  ASSERT_EQ(p.Feed("GET / HTTP/1.0\r\n\r\n"), Result::kComplete);
  EXPECT_FALSE(p.request().KeepAlive());
  HttpRequestParser q;
  ASSERT_EQ(q.Feed("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            Result::kComplete);
  EXPECT_TRUE(q.request().KeepAlive());
}

TEST(HttpRequestParserTest, DecodesChunkedBodiesAcrossReads) {
  HttpRequestParser p;
  ASSERT_EQ(p.Feed("POST /v1/messages HTTP/1.1\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel"),
            Result::kNeedMore);
  ASSERT_EQ(p.Feed("lo\r\n6\r\n world\r\n0\r\n"), Result::kNeedMore);
  ASSERT_EQ(p.Feed("Trailer: x\r\n\r\n"), Result::kComplete);
  EXPECT_EQ(p.request().body, "hello world");
}

TEST(HttpRequestParserTest, ReportsExpectContinueOnceHeadersAreIn) {
  HttpRequestParser p;
  ASSERT_EQ(p.Feed("POST / HTTP/1.1\r\nExpect: 100-continue\r\n"
                   "Content-Length: 2\r\n\r\n"),
            Result::kNeedMore);
  EXPECT_TRUE(p.headers_done());
  EXPECT_TRUE(p.expects_continue());
  EXPECT_EQ(p.Feed("{}"), Result::kComplete);
}

struct BadCase {
  const char* input;
  int status;
};

TEST(HttpRequestParserTest, RejectsMalformedRequestsWithAStatus) {
  const BadCase cases[] = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"GET / FTP/1.1\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
       "Content-Length: 3\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc", 400},
  };
  for (const BadCase& c : cases) {
    HttpRequestParser p;
    EXPECT_EQ(p.Feed(c.input), Result::kError) << c.input;
    EXPECT_EQ(p.error_status(), c.status) << c.input;
    EXPECT_FALSE(p.error_message().empty());
    EXPECT_EQ(p.Feed("more"), Result::kError) << "stays in error";
  }
}

TEST(HttpRequestParserTest, RejectsOversizedHeaderBlock) {
  HttpRequestParser::Limits limits;
  limits.max_header_bytes = 100;
  HttpRequestParser p(limits);
  EXPECT_EQ(p.Feed("GET / HTTP/1.1\r\nX: " + std::string(200, 'a')),
            Result::kError);
  EXPECT_EQ(p.error_status(), 431);
}

TEST(HttpRequestParserTest, RejectsOversizedBody) {
  HttpRequestParser::Limits limits;
  limits.max_body_bytes = 4;
  HttpRequestParser p(limits);
  EXPECT_EQ(p.Feed("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Result::kError);
  EXPECT_EQ(p.error_status(), 413);
}

}  // namespace
}  // namespace sim
}  // namespace echelon
