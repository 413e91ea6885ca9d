// The Python example (client/examples/python) against the real server; skips
// when Debian's python3-grpcio / python3-protobuf or protoc are missing.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "alibi/v1/inference.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/e2e_util.h"
#include "tests/testing/server_process.h"

namespace alibi::client {
namespace {

using ::alibi::client::testing::RunTool;
using ::alibi::client::testing::ToolResult;
using ::alibi::testing::FixtureModel;
using ::alibi::testing::ServerProcess;
using ::testing::HasSubstr;

constexpr char kPython[] = "/usr/bin/python3";

std::string Example() {
  return std::string(ALIBI_SOURCE_DIR) +
         "/client/examples/python/alibi_client.py";
}

TEST(PythonExampleTest, CompleteStreamScoreHealth) {
  if (std::system("/usr/bin/python3 -c 'import grpc, google.protobuf' "
                  "> /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3-grpcio / python3-protobuf are not installed";
  }
  if (std::system("protoc --version > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "protoc (protobuf-compiler) is not installed";
  }
  ::alibi::testing::ServerOptions options;
  options.model_dir = FixtureModel("tiny-mpt");
  auto server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto py = [&](std::vector<std::string> args) {
    args.insert(args.begin(),
                {kPython, Example(), "--address", (*server)->address()});
    auto r = RunTool(args, absl::Seconds(60));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ToolResult();
  };

  ToolResult r = py({"health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");

  // Greedy completion: the same text the C++ stub gets.
  auto stub = v1::InferenceService::NewStub((*server)->Channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  v1::CompleteRequest request;
  request.mutable_params()->set_text("In the beginning");
  request.mutable_params()->set_max_tokens(6);
  request.mutable_params()->mutable_sampling()->set_temperature(0);
  v1::CompleteResponse expected;
  ASSERT_TRUE(stub->Complete(&context, request, &expected).ok());
  ASSERT_FALSE(expected.text().empty());

  r = py({"complete", "In the beginning", "--max_tokens", "6", "--temperature",
          "0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected.text() + "\n");
  EXPECT_THAT(r.err, HasSubstr("finish_reason: FINISH_REASON_"));

  r = py({"stream", "In the beginning", "--max_tokens", "6", "--temperature",
          "0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected.text() + "\n");
  EXPECT_THAT(r.err, HasSubstr("tokens streamed"));

  r = py({"score", "In the beginning God created"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("perplexity: "));

  // An RPC error: exit 1 with the code.
  r = py({"complete", "x", "--max_tokens", "0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: "));
}

}  // namespace
}  // namespace alibi::client
