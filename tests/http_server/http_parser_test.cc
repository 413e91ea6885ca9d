#include "server/http_server/http_parser.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alibi::http_server {
namespace {

using ::testing::HasSubstr;

HttpParserLimits Limits() {
  HttpParserLimits limits;
  limits.max_header_bytes = 1024;
  limits.max_body_bytes = 100;
  return limits;
}

// Feeds `bytes` whole; returns the parser.
HttpParser Parse(const std::string& bytes, size_t* used = nullptr) {
  HttpParser parser(Limits());
  const size_t n = parser.Feed(bytes);
  if (used != nullptr) *used = n;
  return parser;
}

TEST(HttpParserTest, SimpleGet) {
  HttpParser p = Parse(
      "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  two words \r\n\r\n");
  ASSERT_EQ(p.state(), HttpParser::State::kDone);
  const HttpRequest r = p.TakeRequest();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/v1/models?x=1");
  EXPECT_EQ(r.path, "/v1/models");
  EXPECT_EQ(r.query, "x=1");
  EXPECT_EQ(r.version_minor, 1);
  ASSERT_NE(r.Header("x-thing"), nullptr);
  EXPECT_EQ(*r.Header("x-thing"), "two words");
  EXPECT_EQ(r.Header("missing"), nullptr);
  EXPECT_FALSE(r.WantsClose());
  EXPECT_TRUE(r.body.empty());
}

TEST(HttpParserTest, BodyByContentLengthFedByteByByte) {
  const std::string bytes =
      "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
  HttpParser p(Limits());
  for (char c : bytes) {
    ASSERT_NE(p.state(), HttpParser::State::kDone);
    EXPECT_EQ(p.Feed(std::string(1, c)), 1u);
  }
  ASSERT_EQ(p.state(), HttpParser::State::kDone);
  EXPECT_EQ(p.TakeRequest().body, "hello world");
}

TEST(HttpParserTest, ChunkedBodyWithExtensionsAndTrailers) {
  const std::string bytes =
      "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
  HttpParser p(Limits());
  // In three uneven pieces.
  size_t used = p.Feed(bytes.substr(0, 40));
  used += p.Feed(bytes.substr(used, 27));
  used += p.Feed(bytes.substr(used));
  EXPECT_EQ(used, bytes.size());
  ASSERT_EQ(p.state(), HttpParser::State::kDone) << p.error_message();
  EXPECT_EQ(p.TakeRequest().body, "hello world");
}

TEST(HttpParserTest, PipelinedRequestsOneAtATime) {
  const std::string one = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string two =
      "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok";
  size_t used = 0;
  HttpParser p = Parse(one + two, &used);
  EXPECT_EQ(used, one.size());
  ASSERT_EQ(p.state(), HttpParser::State::kDone);
  EXPECT_EQ(p.TakeRequest().path, "/1");
  EXPECT_EQ(p.Feed(two), two.size());
  ASSERT_EQ(p.state(), HttpParser::State::kDone);
  const HttpRequest r = p.TakeRequest();
  EXPECT_EQ(r.path, "/2");
  EXPECT_EQ(r.body, "ok");
}

TEST(HttpParserTest, LeadingEmptyLinesAndBareLineFeeds) {
  HttpParser p = Parse("\r\n\nGET / HTTP/1.0\nHost: a\n\n");
  ASSERT_EQ(p.state(), HttpParser::State::kDone) << p.error_message();
  const HttpRequest r = p.TakeRequest();
  EXPECT_EQ(r.version_minor, 0);
  EXPECT_TRUE(r.WantsClose());
}

TEST(HttpParserTest, AbsoluteFormTarget) {
  HttpParser p = Parse("GET http://example.com/x?y HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(p.state(), HttpParser::State::kDone);
  const HttpRequest r = p.TakeRequest();
  EXPECT_EQ(r.path, "/x");
  EXPECT_EQ(r.query, "y");
}

TEST(HttpParserTest, ConnectionOptions) {
  EXPECT_TRUE(Parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                  .TakeRequest()
                  .WantsClose());
  EXPECT_FALSE(
      Parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
          .TakeRequest()
          .WantsClose());
}

TEST(HttpParserTest, ExpectContinue) {
  HttpParser p(Limits());
  p.Feed(
      "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
      "Content-Length: 3\r\n\r\n");
  EXPECT_EQ(p.state(), HttpParser::State::kBody);
  EXPECT_TRUE(p.expects_continue());
  p.Feed("abc");
  EXPECT_EQ(p.state(), HttpParser::State::kDone);
}

struct BadCase {
  const char* name;
  std::string bytes;
  int status;
  const char* message;
};

class HttpParserErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(HttpParserErrorTest, RefusedWithTheRightStatus) {
  HttpParser p = Parse(GetParam().bytes);
  ASSERT_EQ(p.state(), HttpParser::State::kError);
  EXPECT_EQ(p.error_status(), GetParam().status);
  EXPECT_THAT(p.error_message(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HttpParserErrorTest,
    ::testing::Values(
        BadCase{"no_host", "GET / HTTP/1.1\r\n\r\n", 400, "Host"},
        BadCase{"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                400, "Host"},
        BadCase{"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
                400, "folding"},
        BadCase{"space_before_colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
                400, "name"},
        BadCase{"no_colon", "GET / HTTP/1.1\r\nHost: a\r\nnonsense\r\n\r\n",
                400, "colon"},
        BadCase{"nul_in_value",
                std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a") + '\0' +
                    "b\r\n\r\n",
                400, "control"},
        BadCase{"cl_and_te",
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                "Transfer-Encoding: chunked\r\n\r\n",
                400, "both"},
        BadCase{"conflicting_cl",
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                "Content-Length: 4\r\n\r\n",
                400, "conflicting"},
        BadCase{"bad_cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                400, "Content-Length"},
        BadCase{"gzip_te",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                501, "gzip"},
        BadCase{"http2", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2.0"},
        BadCase{"garbage", "\x16\x03\x01\x02\x05\x01\x07\x01\xfc\r\n\r\n", 400,
                "request line"},
        BadCase{"bad_method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "method"},
        BadCase{"space_in_target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "request line"},
        BadCase{"relative_target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "target"},
        BadCase{"huge_header",
                "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(2000, 'a'),
                431, "header section"},
        BadCase{"huge_body_cl",
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
                413, "101 bytes"},
        BadCase{"huge_body_chunked",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                "\r\n50\r\n" + std::string(80, 'a') + "\r\n50\r\n",
                413, "exceeds"},
        BadCase{"bad_chunk_size",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                "\r\nzz\r\n",
                400, "chunk size"},
        BadCase{"chunk_without_crlf",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                "\r\n1\r\nab\r\n",
                400, "CRLF"},
        BadCase{"expect_other",
                "POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417,
                "magic"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(HttpParserTest, ReasonPhrases) {
  EXPECT_EQ(ReasonPhrase(404), "Not Found");
  EXPECT_EQ(ReasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(ReasonPhrase(999), "Unknown");
}

}  // namespace
}  // namespace alibi::http_server
