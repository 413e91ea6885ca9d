// The HTTP server core over loopback: keep-alive, pipelining, streaming with
// back-pressure, disconnect notification, every limit and timeout, TLS.
#include "server/http_server/http_server.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/raw_socket.h"
#include "tests/testing/tls_certificates.h"

namespace alibi::http_server {
namespace {

using ::alibi::testing::HttpBodyOf;
using ::alibi::testing::HttpExchange;
using ::alibi::testing::HttpStatusOf;
using ::alibi::testing::RawConnection;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(5);

HttpServerOptions Options() {
  HttpServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  return options;
}

// Answers "<method> <path> <body>" for every request.
std::unique_ptr<HttpServer> EchoServer(HttpServerOptions options = Options()) {
  auto server = HttpServer::Start(
      options, [](HttpRequest r, std::shared_ptr<Responder> responder) {
        responder->Respond(200, {{"Content-Type", "text/plain"}},
                           absl::StrCat(r.method, " ", r.path, " ", r.body));
      });
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  auto server = EchoServer();
  auto c = RawConnection::Connect(server->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n").ok());
  std::string got = c->ReadUntil("GET /one ", kWait);
  EXPECT_EQ(HttpStatusOf(got), 200);
  EXPECT_THAT(got, HasSubstr("Content-Length: 9\r\n"));
  ASSERT_TRUE(
      c->Send("POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
          .ok());
  got = c->ReadUntil("POST /two body", kWait);
  EXPECT_THAT(got, HasSubstr("POST /two body"));
  EXPECT_EQ(server->stats().accepted, 1);
  EXPECT_EQ(server->stats().requests, 2);
}

TEST(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  // The handler answers the first request late: the second must still come
  // after it.
  auto server = HttpServer::Start(
      Options(), [](HttpRequest r, std::shared_ptr<Responder> responder) {
        std::thread([r = std::move(r), responder] {
          if (r.path == "/slow") {
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
          }
          responder->Respond(200, {}, r.path);
        }).detach();
      });
  ASSERT_TRUE(server.ok());
  auto c = RawConnection::Connect((*server)->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                  .ok());
  const std::string got = c->ReadUntilClose(kWait);
  const size_t slow = got.find("/slow");
  const size_t fast = got.find("/fast");
  ASSERT_NE(slow, std::string::npos) << got;
  ASSERT_NE(fast, std::string::npos) << got;
  EXPECT_LT(slow, fast);
}

TEST(HttpServerTest, HeadRequestGetsHeadersOnly) {
  auto server = EchoServer();
  auto got = HttpExchange(server->port(),
                          "HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                          kWait);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(HttpStatusOf(*got), 200);
  EXPECT_THAT(*got, HasSubstr("Content-Length: 8\r\n"));
  EXPECT_EQ(HttpBodyOf(*got), "");
}

TEST(HttpServerTest, MalformedRequestGetsItsStatusAndTheConnectionCloses) {
  HttpServerOptions options = Options();
  options.error_body = [](int status, absl::string_view message) {
    return std::make_pair(std::string("application/json"),
                          absl::StrCat("{\"status\":", status, ",\"m\":\"",
                                       message, "\"}"));
  };
  auto server = EchoServer(options);
  auto got = HttpExchange(server->port(), "GET / HTTP/1.1\r\n\r\n", kWait);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(HttpStatusOf(*got), 400);
  EXPECT_THAT(*got, HasSubstr("Content-Type: application/json"));
  EXPECT_THAT(HttpBodyOf(*got), HasSubstr("\"status\":400"));
  EXPECT_THAT(HttpBodyOf(*got), HasSubstr("Host"));
}

TEST(HttpServerTest, ExpectContinueGetsAnInterimResponse) {
  auto server = EchoServer();
  auto c = RawConnection::Connect(server->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Send("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                      "Content-Length: 3\r\nConnection: close\r\n\r\n")
                  .ok());
  EXPECT_THAT(c->ReadUntil("100 Continue\r\n\r\n", kWait),
              HasSubstr("HTTP/1.1 100 Continue\r\n\r\n"));
  ASSERT_TRUE(c->Send("abc").ok());
  EXPECT_THAT(c->ReadUntilClose(kWait), HasSubstr("POST /e abc"));
}

TEST(HttpServerTest, StreamsChunksAndSignalsDrain) {
  std::atomic<int> drains{0};
  auto drained = std::make_shared<std::promise<void>>();
  auto server = HttpServer::Start(
      Options(), [&](HttpRequest, std::shared_ptr<Responder> r) {
        r->SetOnDrain([&drains, drained] {
          if (drains++ == 0) drained->set_value();
        });
        ASSERT_TRUE(r->StartStream(200, {{"Content-Type", "text/event-stream"}}));
        std::thread([r, drained] {
          for (int i = 0; i < 3; ++i) {
            EXPECT_TRUE(r->Write(absl::StrCat("data: ", i, "\n\n")));
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
          // More than the socket takes at once: the rest waits for the
          // client, and the producer for its drain.
          EXPECT_TRUE(r->Write(std::string(16 << 20, 'x')));
          EXPECT_GT(r->pending_bytes(), 0u);
          EXPECT_EQ(drained->get_future().wait_for(std::chrono::seconds(10)),
                    std::future_status::ready);
          EXPECT_EQ(r->pending_bytes(), 0u);
          r->EndStream();
        }).detach();
      });
  ASSERT_TRUE(server.ok());
  auto got = HttpExchange(
      (*server)->port(),
      "GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", kWait);
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(*got, HasSubstr("Transfer-Encoding: chunked\r\n"));
  EXPECT_THAT(HttpBodyOf(*got),
              HasSubstr("9\r\ndata: 0\n\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: "
                        "2\n\n\r\n1000000\r\nxxx"));
  EXPECT_TRUE(absl::EndsWith(*got, "xxx\r\n0\r\n\r\n"));
  EXPECT_EQ(got->size() - got->find("1000000\r\n"), 9 + (16 << 20) + 7u);
  EXPECT_GE(drains.load(), 1);
}

TEST(HttpServerTest, Http10StreamEndsWithTheConnection) {
  auto server = HttpServer::Start(
      Options(), [&](HttpRequest, std::shared_ptr<Responder> r) {
        r->StartStream(200, {});
        r->Write("abc");
        r->Write("def");
        r->EndStream();
      });
  ASSERT_TRUE(server.ok());
  auto got = HttpExchange((*server)->port(), "GET /s HTTP/1.0\r\n\r\n", kWait);
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(*got, ::testing::Not(HasSubstr("chunked")));
  EXPECT_EQ(HttpBodyOf(*got), "abcdef");
}

TEST(HttpServerTest, ClientDisconnectRunsOnClose) {
  std::promise<void> closed;
  std::shared_ptr<Responder> kept;
  std::mutex mu;
  auto server = HttpServer::Start(
            Options(), [&](HttpRequest, std::shared_ptr<Responder> r) {
        {
          std::lock_guard<std::mutex> lock(mu);
          kept = r;  // never ends the stream
        }
        r->SetOnClose([&closed] { closed.set_value(); });
        r->StartStream(200, {});
        r->Write("first");
      });
  ASSERT_TRUE(server.ok());
  {
    auto c = RawConnection::Connect((*server)->port());
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c->Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok());
    EXPECT_THAT(c->ReadUntil("first", kWait), HasSubstr("first"));
  }  // disconnects
  EXPECT_EQ(closed.get_future().wait_for(std::chrono::seconds(5)),
            std::future_status::ready);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(kept->closed());
  EXPECT_FALSE(kept->Write("more"));
}

TEST(HttpServerTest, SetOnCloseAfterTheClientLeftRunsAtOnce) {
  std::promise<std::shared_ptr<Responder>> got;
  auto server = HttpServer::Start(
      Options(), [&](HttpRequest, std::shared_ptr<Responder> r) {
        got.set_value(r);
      });
  ASSERT_TRUE(server.ok());
  {
    auto c = RawConnection::Connect((*server)->port());
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c->Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok());
    ASSERT_EQ(got.get_future().wait_for(std::chrono::seconds(5)),
              std::future_status::ready);
  }
  // Wait for the server to notice.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((*server)->stats().open_connections > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ((*server)->stats().open_connections, 0);
}

TEST(HttpServerTest, HeaderTimeoutClosesSlowAndSilentClients) {
  HttpServerOptions options = Options();
  options.header_timeout = absl::Milliseconds(300);
  auto server = EchoServer(options);
  auto silent = RawConnection::Connect(server->port());
  auto trickle = RawConnection::Connect(server->port());
  ASSERT_TRUE(silent.ok() && trickle.ok());
  const auto start = std::chrono::steady_clock::now();
  // A slowloris: a byte every 100 ms never completes the header section.
  std::string got;
  for (int i = 0; i < 8; ++i) {
    if (!trickle->Send("G").ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  got = trickle->ReadUntilClose(kWait);
  EXPECT_EQ(HttpStatusOf(got), 408) << got;
  EXPECT_TRUE(silent->ClosedByPeer(kWait));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(server->stats().closed_header_timeout, 2);
}

TEST(HttpServerTest, BodyTimeoutAnswers408) {
  HttpServerOptions options = Options();
  options.body_timeout = absl::Milliseconds(300);
  auto server = EchoServer(options);
  auto got = HttpExchange(
      server->port(),
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf", kWait);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(HttpStatusOf(*got), 408);
  EXPECT_THAT(*got, HasSubstr("body"));
  EXPECT_EQ(server->stats().closed_body_timeout, 1);
}

TEST(HttpServerTest, IdleKeepAliveConnectionIsClosed) {
  HttpServerOptions options = Options();
  options.idle_timeout = absl::Milliseconds(300);
  auto server = EchoServer(options);
  auto c = RawConnection::Connect(server->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok());
  EXPECT_THAT(c->ReadUntil("GET / ", kWait), HasSubstr("200 OK"));
  EXPECT_TRUE(c->ClosedByPeer(kWait));
  EXPECT_EQ(server->stats().closed_idle, 1);
}

TEST(HttpServerTest, ConnectionsOverTheLimitGet503) {
  HttpServerOptions options = Options();
  options.max_connections = 3;
  auto server = EchoServer(options);
  std::vector<RawConnection> held;
  for (int i = 0; i < 3; ++i) {
    auto c = RawConnection::Connect(server->port());
    ASSERT_TRUE(c.ok());
    held.push_back(*std::move(c));
  }
  // Let the loop accept them.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (server->stats().open_connections < 3 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto refused = HttpExchange(server->port(),
                              "GET / HTTP/1.1\r\nHost: x\r\n\r\n", kWait);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(HttpStatusOf(*refused), 503);
  EXPECT_EQ(server->stats().refused_over_limit, 1);
  held.clear();
  // Room again once they are gone.
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto ok = HttpExchange(
        server->port(),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", kWait);
    if (ok.ok() && HttpStatusOf(*ok) == 200) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "never served after the held connections closed";
}

TEST(HttpServerTest, IdleConnectionsDoNotDelayOthers) {
  auto server = EchoServer();
  std::vector<RawConnection> idle;
  for (int i = 0; i < 200; ++i) {
    auto c = RawConnection::Connect(server->port());
    ASSERT_TRUE(c.ok());
    if (i % 2 == 0) {
      ASSERT_TRUE(c->Send("GET / HTTP/1.1\r\nHo").ok());
    }
    idle.push_back(*std::move(c));
  }
  const auto start = std::chrono::steady_clock::now();
  auto got = HttpExchange(
      server->port(),
      "GET /now HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", kWait);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(HttpStatusOf(*got), 200);
  EXPECT_LT(took, std::chrono::milliseconds(500));
}

TEST(HttpServerTest, ReaderThatStopsReadingIsDroppedAfterWriteTimeout) {
  HttpServerOptions options = Options();
  options.write_timeout = absl::Milliseconds(300);
  std::promise<void> closed;
  auto server = HttpServer::Start(
      options, [&](HttpRequest, std::shared_ptr<Responder> r) {
        r->SetOnClose([&closed] { closed.set_value(); });
        r->StartStream(200, {});
        // Far more than the socket buffers hold; nobody reads it.
        const std::string block(1 << 20, 'x');
        for (int i = 0; i < 64 && r->Write(block); ++i) {
        }
      });
  ASSERT_TRUE(server.ok());
  auto c = RawConnection::Connect((*server)->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok());
  EXPECT_EQ(closed.get_future().wait_for(std::chrono::seconds(10)),
            std::future_status::ready);
  EXPECT_EQ((*server)->stats().closed_write_timeout, 1);
}

TEST(HttpServerTest, ShutdownEndsStreamsInProgress) {
  std::promise<void> closed;
  std::promise<void> started;
  auto server = HttpServer::Start(
      Options(), [&](HttpRequest, std::shared_ptr<Responder> r) {
        r->SetOnClose([&closed] { closed.set_value(); });
        r->StartStream(200, {});
        started.set_value();
      });
  ASSERT_TRUE(server.ok());
  auto c = RawConnection::Connect((*server)->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok());
  ASSERT_EQ(started.get_future().wait_for(std::chrono::seconds(5)),
            std::future_status::ready);
  (*server)->Shutdown();
  EXPECT_EQ(closed.get_future().wait_for(std::chrono::seconds(5)),
            std::future_status::ready);
  EXPECT_TRUE(c->ClosedByPeer(kWait));
}

TEST(HttpServerTest, ShutdownWithAFlushTimeoutDeliversQueuedResponses) {
  // A response larger than the socket buffers, queued before Shutdown and
  // read by the client only afterwards, arrives whole.
  const std::string big(16 << 20, 'b');
  std::promise<void> answered;
  auto server = HttpServer::Start(
      Options(), [&](HttpRequest, std::shared_ptr<Responder> r) {
        r->Respond(200, {}, big);
        answered.set_value();
      });
  ASSERT_TRUE(server.ok());
  auto c = RawConnection::Connect((*server)->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok());
  ASSERT_EQ(answered.get_future().wait_for(std::chrono::seconds(5)),
            std::future_status::ready);
  std::thread stopper([&] { (*server)->Shutdown(absl::Seconds(20)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string got = c->ReadUntilClose(absl::Seconds(20));
  stopper.join();
  EXPECT_EQ(HttpStatusOf(got), 200);
  EXPECT_EQ(HttpBodyOf(got).size(), big.size());
}

TEST(HttpServerTest, PortInUseAndBadAddressAreErrors) {
  auto first = EchoServer();
  HttpServerOptions options = Options();
  options.port = first->port();
  auto second = HttpServer::Start(options, nullptr);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  options.port = 0;
  options.host = "not an address";
  EXPECT_EQ(HttpServer::Start(options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --- TLS ---

class HttpServerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!alibi::testing::HaveOpenssl()) GTEST_SKIP() << "no openssl command";
    dir_ = absl::StrCat(::testing::TempDir(), "/http_tls_", getpid());
    ASSERT_TRUE(alibi::testing::WriteTestCertificates(dir_).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // One HTTPS exchange; returns the response or "" on failure.
  std::string HttpsGet(int port, bool client_cert) {
    return alibi::testing::HttpsExchange(
        port, "GET /tls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", dir_,
        client_cert);
  }

  std::string dir_;
};

TEST_F(HttpServerTlsTest, ServesHttps) {
  HttpServerOptions options = Options();
  options.tls.cert_file = dir_ + "/server.pem";
  options.tls.key_file = dir_ + "/server.key";
  auto server = EchoServer(options);
  ASSERT_NE(server, nullptr);
  const std::string got = HttpsGet(server->port(), false);
  EXPECT_EQ(HttpStatusOf(got), 200) << got;
  EXPECT_THAT(got, HasSubstr("GET /tls"));
  // Plaintext on a TLS port gets nothing useful and is closed.
  auto plain = HttpExchange(server->port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                            kWait);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(HttpStatusOf(*plain), 0);
}

TEST_F(HttpServerTlsTest, MutualTlsRequiresAClientCertificate) {
  HttpServerOptions options = Options();
  options.tls.cert_file = dir_ + "/server.pem";
  options.tls.key_file = dir_ + "/server.key";
  options.tls.client_ca_file = dir_ + "/ca.pem";
  auto server = EchoServer(options);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(HttpStatusOf(HttpsGet(server->port(), true)), 200);
  EXPECT_EQ(HttpStatusOf(HttpsGet(server->port(), false)), 0);
}

TEST_F(HttpServerTlsTest, BadKeyFilesAreClearErrors) {
  HttpServerOptions options = Options();
  options.tls.cert_file = dir_ + "/server.pem";
  options.tls.key_file = dir_ + "/client.key";  // does not match
  auto mismatch = HttpServer::Start(options, nullptr);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatch.status().message(), HasSubstr("does not match"));

  const std::string garbage = dir_ + "/garbage.key";
  FILE* f = fopen(garbage.c_str(), "w");
  fputs("not a key\n", f);
  fclose(f);
  options.tls.key_file = garbage;
  auto bad = HttpServer::Start(options, nullptr);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("garbage.key"));
}

}  // namespace
}  // namespace alibi::http_server
