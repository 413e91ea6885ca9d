// The metrics port of the real server (real CPU backend linked) against
// hostile but fair clients: stray paths, methods and malformed requests get
// an HTTP answer and never end the process; idle and half-open connections
// neither delay a scrape nor stay open past the configured limits.
#include <signal.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/raw_socket.h"
#include "tests/testing/server_process.h"

namespace alibi {
namespace {

using ::alibi::testing::HttpExchange;
using ::alibi::testing::HttpStatusOf;
using ::alibi::testing::RawConnection;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(10);

bool Alive(const testing::ServerProcess& server) {
  return kill(server.pid(), 0) == 0 &&
         testing::CheckHealth(*server.Channel()).value_or(false);
}

TEST(MetricsPortE2eTest, StrayRequestsGetAnAnswerNotACrash) {
  auto server = testing::ServerProcess::Start(
      testing::FixtureModel("tiny-bloom"), {});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->metrics_port();
  struct Case {
    std::string request;
    int status;
  };
  const std::vector<Case> cases = {
      {"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
      {"GET /favicon.ico HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
       404},
      {"GET /../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: "
       "close\r\n\r\n",
       404},
      {"GET /metrics/../metrics HTTP/1.0\r\n\r\n", 404},
      {"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
       "Connection: close\r\n\r\n",
       405},
      {"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
      {"BREW /coffee HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
      {"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
      {"GET / HTTP/1.1\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + std::string(70000, 'a') +
           "\r\n\r\n",
       431},
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
      {std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11) +
           "\r\n\r\n",
       400},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
       501},
      {"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
       413},
  };
  for (const Case& c : cases) {
    auto response = HttpExchange(port, c.request, kWait);
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(HttpStatusOf(*response), c.status)
        << c.request.substr(0, 60) << "\n-> " << response->substr(0, 200);
    ASSERT_TRUE(Alive(**server)) << "died after: " << c.request.substr(0, 60)
                                 << "\n" << (*server)->ReadLog();
  }
  auto metrics = (*server)->ScrapeMetrics();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("alibi_requests_total"));
  auto stopped = (*server)->Stop(SIGTERM, absl::Seconds(20));
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(*stopped, 0);
}

TEST(MetricsPortE2eTest, IdleConnectionsNeitherDelayAScrapeNorStayOpen) {
  auto server = testing::ServerProcess::Start(
      testing::FixtureModel("tiny-bloom"), {"--http_header_timeout=2s"});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->metrics_port();
  // Idle connections, and ones that sent part of a request.
  std::vector<RawConnection> held;
  for (int i = 0; i < 300; ++i) {
    auto c = RawConnection::Connect(port);
    ASSERT_TRUE(c.ok()) << c.status();
    if (i % 3 == 1) {
      ASSERT_TRUE(c->Send("GET /metrics HTTP/1.1\r\n").ok());
    }
    held.push_back(*std::move(c));
  }
  const auto start = std::chrono::steady_clock::now();
  auto metrics = (*server)->ScrapeMetrics();
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_LT(took, std::chrono::seconds(1));
  // Every held connection is closed by the header timeout (2 s, swept every
  // 100 ms).
  const auto closing_start = std::chrono::steady_clock::now();
  for (RawConnection& c : held) {
    EXPECT_TRUE(c.ClosedByPeer(absl::Seconds(5)));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - closing_start,
            std::chrono::seconds(4));
  EXPECT_TRUE(Alive(**server));
}

}  // namespace
}  // namespace alibi
