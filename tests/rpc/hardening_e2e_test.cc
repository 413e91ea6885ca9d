// The gRPC port of the real server against hostile but fair clients (issue
// 19): half-open HTTP/2 connections are closed within the documented limits
// while normal clients are served; invalid UTF-8 and undecodable bodies get
// INVALID_ARGUMENT naming the field (counted, not logged as library errors);
// client deadlines count as DEADLINE_EXCEEDED; bearer tokens are checked
// strictly (one header, case-insensitive scheme) and reflection does not
// answer without one; a second SIGTERM ends a drain; bad TLS files are named.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "alibi/v1/inference.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/testing/raw_socket.h"
#include "tests/testing/server_process.h"
#include "tests/testing/tls_certificates.h"

namespace alibi {
namespace {

using ::alibi::testing::RawConnection;
using ::testing::HasSubstr;
using ::testing::Not;

void Deadline(grpc::ClientContext& c, int seconds = 60) {
  c.set_deadline(std::chrono::system_clock::now() +
                 std::chrono::seconds(seconds));
}

// One generic unary call with raw request bytes; `method` is an
// InferenceService method or a full "/service/method" name.
grpc::Status RawCall(std::shared_ptr<grpc::Channel> channel,
                     const std::string& method, const std::string& bytes) {
  grpc::GenericStub stub(std::move(channel));
  grpc::ClientContext context;
  Deadline(context);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(
      &context,
      method[0] == '/' ? method : "/alibi.v1.InferenceService/" + method, {},
      &request, &response,
      [&done](grpc::Status s) { done.set_value(std::move(s)); });
  return done.get_future().get();
}

// A proto3 string field: tag (field number, wire type 2), length, bytes.
std::string StringField(int number, const std::string& bytes) {
  std::string out;
  out.push_back(static_cast<char>((number << 3) | 2));
  out.push_back(static_cast<char>(bytes.size()));
  return out + bytes;
}

constexpr char kReflection[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

TEST(HardeningE2eTest, InvalidUtf8AndUndecodableBodiesNameTheField) {
  auto server =
      testing::ServerProcess::Start(testing::FixtureModel("tiny-mpt"), {});
  ASSERT_TRUE(server.ok()) << server.status();
  std::shared_ptr<grpc::Channel> channel = (*server)->Channel();
  const std::string bad = "ab\xff\xfe";
  // CompletionParams: text 1, request_id 8; SamplingParams.stop 10.
  const std::string params_text = StringField(1, StringField(1, bad));
  const std::string params_id =
      StringField(1, StringField(1, "ok") + StringField(8, bad));
  const std::string sampling_stop = StringField(
      1, StringField(1, "ok") +
             StringField(4, StringField(10, "fine") + StringField(10, bad)));
  struct Case {
    std::string method, bytes, message;
  };
  const std::vector<Case> cases = {
      {"Complete", params_text, "params.text: is not valid UTF-8"},
      {"Complete", params_id, "params.request_id: is not valid UTF-8"},
      {"Complete", sampling_stop,
       "params.sampling.stop[1]: is not valid UTF-8"},
      {"Score", StringField(1, bad), "text: is not valid UTF-8"},
      {"Score", StringField(1, "fine") + StringField(5, bad),
       "request_id: is not valid UTF-8"},
      {"Tokenize", StringField(1, bad), "text: is not valid UTF-8"},
      {"Complete", "\xff\xff\xff\xff", "not a valid alibi.v1.CompleteRequest"},
      {"Score", std::string("\x0a\x7f", 2),
       "not a valid alibi.v1.ScoreRequest"},
  };
  for (const Case& c : cases) {
    const grpc::Status s = RawCall(channel, c.method, c.bytes);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.method << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.method;
  }
  // Streaming methods too.
  {
    auto stub = v1::InferenceService::NewStub((*server)->Channel());
    grpc::ClientContext context;
    Deadline(context);
    v1::CompleteStreamRequest request;
    request.mutable_params()->set_text("ok");
    request.mutable_params()->mutable_sampling()->add_stop(bad);
    auto reader = stub->CompleteStream(&context, request);
    v1::CompleteStreamResponse m;
    EXPECT_FALSE(reader->Read(&m));
    const grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(),
                HasSubstr("params.sampling.stop[0]: is not valid UTF-8"));
  }
  // A call is counted when gRPC is done with it, just after the client has
  // its status.
  double counted = 0;
  for (int i = 0; i < 100 && counted < cases.size() + 1; ++i) {
    auto metrics = (*server)->ScrapeMetrics();
    ASSERT_TRUE(metrics.ok());
    counted = testing::SumSeries(
        *metrics, {"alibi_requests_total{", "code=\"INVALID_ARGUMENT\""});
    if (counted < cases.size() + 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  EXPECT_EQ(counted, cases.size() + 1);
  // Without an API key, reflection is served (the method exists).
  EXPECT_NE(RawCall(channel, kReflection, "").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT((*server)->ReadLog(), Not(HasSubstr("invalid UTF-8")));
}

TEST(HardeningE2eTest, ClientDeadlinesCountAsDeadlineExceeded) {
  auto server =
      testing::ServerProcess::Start(testing::FixtureModel("tiny-mpt"), {});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::InferenceService::NewStub((*server)->Channel());
  constexpr int kCalls = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCalls / 4; ++i) {
        grpc::ClientContext c;
        c.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(30 + i % 20));
        v1::CompleteRequest r;
        r.mutable_params()->set_text("a long one");
        r.mutable_params()->set_max_tokens(400);
        r.mutable_params()->mutable_sampling()->set_ignore_eos(true);
        v1::CompleteResponse response;
        const grpc::Status s = stub->Complete(&c, r, &response);
        EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // The server finishes accounting for abandoned calls shortly after.
  double deadline = 0, cancelled = 0;
  for (int i = 0; i < 100; ++i) {
    auto metrics = (*server)->ScrapeMetrics();
    ASSERT_TRUE(metrics.ok());
    deadline = testing::SumSeries(
        *metrics, {"alibi_requests_total{", "code=\"DEADLINE_EXCEEDED\""});
    cancelled = testing::SumSeries(
        *metrics, {"alibi_requests_total{", "code=\"CANCELLED\""});
    if (deadline + cancelled >= kCalls) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(deadline, kCalls);
  EXPECT_EQ(cancelled, 0);
}

TEST(HardeningE2eTest, BearerTokensAreCheckedStrictly) {
  const std::string key_file =
      absl::StrCat(::testing::TempDir(), "/hardening_key_", getpid());
  std::ofstream(key_file) << "s3cret\n";
  auto server = testing::ServerProcess::Start(testing::FixtureModel("tiny-mpt"),
                                              {"--api_key_file=" + key_file});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::InferenceService::NewStub((*server)->Channel());
  auto info = [&](std::vector<std::string> headers) {
    grpc::ClientContext c;
    Deadline(c);
    for (const std::string& h : headers) c.AddMetadata("authorization", h);
    v1::GetModelInfoResponse r;
    return stub->GetModelInfo(&c, {}, &r).error_code();
  };
  EXPECT_EQ(info({"Bearer s3cret"}), grpc::StatusCode::OK);
  EXPECT_EQ(info({"bearer s3cret"}), grpc::StatusCode::OK);
  EXPECT_EQ(info({"BEARER s3cret"}), grpc::StatusCode::OK);
  EXPECT_EQ(info({}), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(info({"Bearer wrong"}), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(info({"Basic s3cret"}), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(info({"Bearer s3cret", "Bearer wrong"}),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(info({"Bearer wrong", "Bearer s3cret"}),
            grpc::StatusCode::UNAUTHENTICATED);
  // Reflection does not hand out the API without a token: it is off.
  const grpc::Status reflection =
      RawCall((*server)->Channel(), kReflection, "");
  EXPECT_EQ(reflection.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  // Health stays open.
  EXPECT_TRUE(testing::CheckHealth(*(*server)->Channel()).value_or(false));
  std::filesystem::remove(key_file);
}

TEST(HardeningE2eTest, HalfOpenConnectionsAreClosedWhileClientsAreServed) {
  auto server = testing::ServerProcess::Start(
      testing::FixtureModel("tiny-mpt"),
      {"--grpc_handshake_timeout=2s", "--grpc_max_connection_idle=3s"});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  // The HTTP/2 client preface and an empty SETTINGS frame.
  const std::string preface =
      std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
      std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
  std::vector<RawConnection> held;
  for (int i = 0; i < 1000; ++i) {
    auto c = RawConnection::Connect(port);
    ASSERT_TRUE(c.ok()) << i << ": " << c.status();
        if (i % 2 == 1) {
      ASSERT_TRUE(c->Send(preface).ok());
    }
    held.push_back(*std::move(c));
  }
  const auto start = std::chrono::steady_clock::now();
  // Normal clients are served meanwhile.
  auto stub = v1::InferenceService::NewStub((*server)->Channel());
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext c;
    Deadline(c, 30);
    v1::CompleteRequest r;
    r.mutable_params()->set_text("still served");
    r.mutable_params()->set_max_tokens(4);
    v1::CompleteResponse response;
    EXPECT_TRUE(stub->Complete(&c, r, &response).ok());
  }
  int closed = 0;
  for (RawConnection& c : held) {
    const auto left =
        std::chrono::seconds(15) - (std::chrono::steady_clock::now() - start);
    closed += c.ClosedByPeer(absl::FromChrono(
        std::max<std::chrono::steady_clock::duration>(left, {})));
  }
  EXPECT_EQ(closed, 1000);
  // Within the limits: 2 s handshake, 3 s idle (plus gRPC's timer slack).
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_TRUE(testing::CheckHealth(*(*server)->Channel()).value_or(false));
}

TEST(HardeningE2eTest, ASecondSigtermEndsTheDrain) {
  auto server = testing::ServerProcess::Start(testing::FixtureModel("tiny-mpt"),
                                              {"--drain_seconds=60"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::InferenceService::NewStub((*server)->Channel());
  grpc::ClientContext c;
  Deadline(c, 120);
  v1::CompleteStreamRequest r;
  r.mutable_params()->set_text("keep going");
  r.mutable_params()->set_max_tokens(100000);
  r.mutable_params()->set_kv_window(64);
  r.mutable_params()->mutable_sampling()->set_ignore_eos(true);
  auto reader = stub->CompleteStream(&c, r);
  v1::CompleteStreamResponse m;
  ASSERT_TRUE(reader->Read(&m));
  ASSERT_EQ(kill((*server)->pid(), SIGTERM), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto start = std::chrono::steady_clock::now();
  auto code = (*server)->Stop(SIGTERM, absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_THAT((*server)->ReadLog(), HasSubstr("during the drain"));
}

TEST(HardeningE2eTest, BadTlsFilesAreNamed) {
  if (!testing::HaveOpenssl()) GTEST_SKIP() << "no openssl command";
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/hardening_tls_", getpid());
  ASSERT_TRUE(testing::WriteTestCertificates(dir).ok());
  std::ofstream(dir + "/garbage.key") << "not a key\n";
  struct Case {
    std::string key, message;
  };
  for (const Case& c :
       {Case{dir + "/garbage.key", "is not a PEM private key"},
        Case{dir + "/client.key", "does not match the certificate"}}) {
    auto result = testing::RunCommand(
        {testing::ServerBinary(),
         "--model=" + testing::FixtureModel("tiny-mpt"), "--port=0",
         "--metrics_port=-1", "--tls_cert=" + dir + "/server.pem",
         "--tls_key=" + c.key},
        absl::Seconds(60));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->exit_code, 1);
    EXPECT_THAT(result->output, HasSubstr(c.key));
    EXPECT_THAT(result->output, HasSubstr(c.message));
    EXPECT_THAT(result->output, Not(HasSubstr("in use")));
  }
  std::filesystem::remove_all(dir);
}

TEST(HardeningE2eTest, RequestIdsAreLogged) {
  auto server =
      testing::ServerProcess::Start(testing::FixtureModel("tiny-mpt"), {});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::InferenceService::NewStub((*server)->Channel());
  grpc::ClientContext c;
  Deadline(c);
  v1::CompleteRequest r;
  r.mutable_params()->set_text("hello");
  r.mutable_params()->set_max_tokens(2);
  r.mutable_params()->set_request_id("trace-42\nforged line");
  v1::CompleteResponse response;
  ASSERT_TRUE(stub->Complete(&c, r, &response).ok());
  std::string log;
  for (int i = 0; i < 50; ++i) {
    log = (*server)->ReadLog();
    if (log.find("trace-42") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_THAT(log, HasSubstr(absl::StrCat("Complete id=", response.id(),
                                          " request_id=\"trace-42\\nforged "
                                          "line\" code=OK")));
}

}  // namespace
}  // namespace alibi
