// alibi-cli against the real alibi-server on the tiny-mpt fixture (its
// tokenizer covers nearly all of the vocabulary, so random-weight outputs
// decode to text, unlike tiny-bloom's): every
// subcommand in text and --json form, checked against the same RPC made with
// the generated stubs; error statuses, deadlines, the API key and TLS.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "alibi/v1/inference.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/client/e2e_util.h"
#include "tests/testing/server_process.h"
#include "tests/testing/tls_certificates.h"

namespace alibi::client {
namespace {

using ::alibi::client::testing::CliBinary;
using ::alibi::client::testing::RunTool;
using ::alibi::client::testing::SilentListener;
using ::alibi::client::testing::ToolResult;
using ::alibi::testing::FixtureModel;
using ::alibi::testing::ServerProcess;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr char kPrompt[] = "In the beginning God created the heaven";

::alibi::testing::ServerOptions Options(const std::string& model,
                                        std::vector<std::string> flags = {}) {
  ::alibi::testing::ServerOptions options;
  options.model_dir = FixtureModel(model);
  options.flags = std::move(flags);
  return options;
}

ToolResult RunCliBinary(std::vector<std::string> args) {
  args.insert(args.begin(), CliBinary());
  auto result = RunTool(args, absl::Seconds(60));
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : ToolResult();
}

class CliE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto server = ServerProcess::Start(Options("tiny-mpt"));
    if (server.ok()) {
      server_ = server->release();
    } else {
      start_error_ = new std::string(server.status().ToString());
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr) << *start_error_;
    stub_ = v1::InferenceService::NewStub(server_->Channel());
  }

  // alibi-cli <command> <args...> --address <server>.
  ToolResult Cli(std::vector<std::string> args) {
    args.push_back("--address");
    args.push_back(server_->address());
    return RunCliBinary(std::move(args));
  }

  static grpc::ClientContext* Context(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(30));
    return context;
  }

  v1::CompleteResponse Complete(const v1::CompletionParams& params) {
    grpc::ClientContext context;
    v1::CompleteRequest request;
    *request.mutable_params() = params;
    v1::CompleteResponse response;
    grpc::Status status =
        stub_->Complete(Context(&context), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  static v1::CompletionParams Greedy(int max_tokens) {
    v1::CompletionParams params;
    params.set_text(kPrompt);
    params.set_max_tokens(max_tokens);
    params.mutable_sampling()->set_temperature(0);
    params.mutable_sampling()->set_ignore_eos(true);
    return params;
  }

  static ServerProcess* server_;
  static std::string* start_error_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
};

ServerProcess* CliE2eTest::server_ = nullptr;
std::string* CliE2eTest::start_error_ = nullptr;

TEST_F(CliE2eTest, HealthIsServing) {
  ToolResult r = Cli({"health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  EXPECT_THAT(r.err, IsEmpty());

  r = Cli({"health", "--service", "alibi.v1.InferenceService", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["status"], "SERVING");

  // gRPC's health service answers NOT_FOUND for a service it does not know.
  r = Cli({"health", "--service", "no.such.Service"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("error: NOT_FOUND"));
}

TEST_F(CliE2eTest, HealthGivesUpQuicklyOnAServerThatDoesNotAnswer) {
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  ToolResult r = RunCliBinary(
      {"health", "--address", absl::StrCat("127.0.0.1:", silent.port())});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("error: DEADLINE_EXCEEDED"));
  EXPECT_THAT(r.err, HasSubstr("hint: no answer within the deadline"));
  // The default deadline of health is 2 s.
  EXPECT_GE(r.seconds, 1.8);
  EXPECT_LT(r.seconds, 5.0);
}

TEST_F(CliE2eTest, InfoTextAndJsonMatchGetModelInfo) {
  grpc::ClientContext context;
  v1::GetModelInfoResponse info;
  ASSERT_TRUE(stub_->GetModelInfo(Context(&context), {}, &info).ok());

  ToolResult r = Cli({"info"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("architecture: "));
  EXPECT_THAT(r.out, HasSubstr(info.architecture()));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(" ", info.vocab_size(), "\n")));
  // One line per field, the slopes as one comma-separated line.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'),
            info.GetDescriptor()->field_count());
  const size_t slopes = r.out.find("alibi_slopes:");
  ASSERT_NE(slopes, std::string::npos);
  const std::string line =
      r.out.substr(slopes, r.out.find('\n', slopes) - slopes);
  EXPECT_EQ(std::count(line.begin(), line.end(), ','),
            info.alibi_slopes_size() - 1);

  r = Cli({"info", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["model"], info.model());
  EXPECT_EQ(j["architecture"], info.architecture());
  EXPECT_EQ(j["vocab_size"], info.vocab_size());
  EXPECT_EQ(j["num_heads"], info.num_heads());
  ASSERT_EQ(j["alibi_slopes"].size(),
            static_cast<size_t>(info.alibi_slopes_size()));
  EXPECT_DOUBLE_EQ(j["alibi_slopes"][0].get<double>(), info.alibi_slopes(0));
}

TEST_F(CliE2eTest, CompleteMatchesTheRpc) {
  const v1::CompleteResponse expected = Complete(Greedy(8));
  ASSERT_FALSE(expected.text().empty());
  ToolResult r = Cli({"complete", kPrompt, "--max_tokens", "8", "--temperature",
                      "0", "--ignore_eos"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected.text() + "\n");
  EXPECT_THAT(r.err, StartsWith("[finish_reason: length"));
  EXPECT_THAT(r.err, HasSubstr("completion_tokens: 8"));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("prompt_tokens: ",
                                            expected.usage().prompt_tokens())));

  // --prompt and --json: the response message as JSON on stdout only.
  r = Cli({"complete", "--prompt", kPrompt, "--max_tokens", "8",
           "--temperature", "0", "--ignore_eos", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, IsEmpty());
  const json j = json::parse(r.out);
  EXPECT_EQ(j["text"], expected.text());
  EXPECT_EQ(j["finish_reason"], "FINISH_REASON_LENGTH");
  EXPECT_EQ(j["usage"]["completion_tokens"], 8);
  ASSERT_EQ(j["token_ids"].size(), 8u);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(j["token_ids"][i], expected.token_ids(i));
}

TEST_F(CliE2eTest, CompleteWithTokenIdsLogprobsEchoAndStop) {
  v1::CompletionParams params = Greedy(6);
  params.clear_text();
  for (int id : {11, 22, 33}) params.add_token_ids(id);
  params.set_logprobs(2);
  params.set_echo(true);
  const v1::CompleteResponse expected = Complete(params);

  ToolResult r = Cli({"complete", "--token_ids", "11,22,33", "--max_tokens",
                      "6", "--temperature", "0", "--ignore_eos", "--logprobs",
                      "2", "--echo", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["text"], expected.text());
  EXPECT_EQ(j["prompt_token_ids"].size(), 3u);
  ASSERT_EQ(j["logprobs"].size(), 6u);
  EXPECT_EQ(j["logprobs"][0]["top_logprobs"].size(), 2u);
  EXPECT_FLOAT_EQ(j["logprobs"][0]["logprob"].get<float>(),
                  expected.logprobs(0).logprob());

  // Text mode prints a logprob table after the text.
  r = Cli({"complete", "--token_ids", "11,22,33", "--max_tokens", "6",
           "--temperature", "0", "--ignore_eos", "--logprobs", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("logprobs:\n"));
  EXPECT_THAT(r.out, HasSubstr(absl::StrFormat(
                         "%.4f", expected.logprobs(0).logprob())));
  EXPECT_THAT(r.out, HasSubstr("top: "));

  // Stop on the second generated token's id: finish_reason stop.
  const int stop_id = expected.token_ids(1);
  r = Cli({"complete", "--token_ids", "11,22,33", "--max_tokens", "6",
           "--temperature", "0", "--ignore_eos", "--stop_token_ids",
           absl::StrCat(stop_id), "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json stopped = json::parse(r.out);
  EXPECT_EQ(stopped["finish_reason"], "FINISH_REASON_STOP");
  EXPECT_LE(stopped["token_ids"].size(), 2u);
}

TEST_F(CliE2eTest, StreamPrintsTheSameTextAsComplete) {
  const v1::CompleteResponse expected = Complete(Greedy(12));
  ASSERT_FALSE(expected.text().empty());
  ToolResult r = Cli({"stream", kPrompt, "--max_tokens", "12", "--temperature",
                      "0", "--ignore_eos"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected.text() + "\n");
  EXPECT_THAT(r.err, StartsWith("[finish_reason: length"));
  EXPECT_THAT(r.err, HasSubstr("completion_tokens: 12"));
  EXPECT_THAT(r.err, HasSubstr("client ttft/total:"));

  // --json: one message per line; the ids add up to the completion.
  r = Cli({"stream", kPrompt, "--max_tokens", "12", "--temperature", "0",
           "--ignore_eos", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, IsEmpty());
  std::vector<int> ids;
  std::string text;
  json last;
  for (absl::string_view line :
       absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    last = json::parse(line);
    text += last["text"].get<std::string>();
    for (const json& id : last["token_ids"]) ids.push_back(id.get<int>());
  }
  EXPECT_EQ(text, expected.text());
  ASSERT_EQ(ids.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(ids[i], expected.token_ids(i));
  EXPECT_EQ(last["finish_reason"], "FINISH_REASON_LENGTH");
  EXPECT_EQ(last["usage"]["completion_tokens"], 12);
}

TEST_F(CliE2eTest, ScoreTextFileAndIds) {
  grpc::ClientContext context;
  v1::ScoreRequest request;
  request.set_text(kPrompt);
  v1::ScoreResponse expected;
  ASSERT_TRUE(stub_->Score(Context(&context), request, &expected).ok());
  const int n = expected.token_ids_size();
  ASSERT_GE(n, 2);

  ToolResult r = Cli({"score", kPrompt});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // A header, one line per token, the totals.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), n + 2);
  EXPECT_THAT(r.out, HasSubstr(absl::StrFormat("tokens: %d  sum_logprob: %.4f  "
                                               "perplexity: %.4f\n",
                                               n, expected.sum_logprob(),
                                               expected.perplexity())));
  EXPECT_THAT(r.out, HasSubstr(absl::StrFormat(
                         "%.4f", expected.token_logprobs(n - 2))));

  // --file: the same text from a file (no trailing newline).
  const std::string path = ::testing::TempDir() + "/alibi-cli-score.txt";
  std::ofstream(path) << kPrompt;
  r = Cli({"score", "--file", path, "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["token_logprobs"].size(), static_cast<size_t>(n - 1));
  EXPECT_DOUBLE_EQ(j["perplexity"].get<double>(), expected.perplexity());

  // --file - reads stdin.
  auto piped = RunTool({CliBinary(), "score", "--file", "-", "--json",
                        "--address", server_->address()},
                       absl::Seconds(60), path);
  ASSERT_TRUE(piped.ok()) << piped.status();
  EXPECT_EQ(piped->exit_code, 0) << piped->err;
  EXPECT_DOUBLE_EQ(json::parse(piped->out)["perplexity"].get<double>(),
                   expected.perplexity());

  // Token ids with alternatives.
  r = Cli({"score", "--token_ids", absl::StrJoin(expected.token_ids(), ","),
           "--top_logprobs", "3", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_DOUBLE_EQ(j["sum_logprob"].get<double>(), expected.sum_logprob());
  ASSERT_EQ(j["top_logprobs"].size(), static_cast<size_t>(n - 1));
  EXPECT_EQ(j["top_logprobs"][0]["top_logprobs"].size(), 3u);
}

TEST_F(CliE2eTest, TokenizeMatchesTheRpc) {
  grpc::ClientContext context;
  v1::TokenizeRequest request;
  request.set_text("Hello world, hello alibi");
  v1::TokenizeResponse expected;
  ASSERT_TRUE(stub_->Tokenize(Context(&context), request, &expected).ok());

  ToolResult r = Cli({"tokenize", "Hello world, hello alibi"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(
      r.out, StartsWith(absl::StrCat(
                 "num_tokens: ", expected.token_ids_size(), "\n", "token_ids: ",
                 absl::StrJoin(expected.token_ids(), ","), "\n")));

  r = Cli({"tokenize", "--text", "Hello world, hello alibi", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_EQ(j["tokens"].size(), static_cast<size_t>(expected.tokens_size()));
  EXPECT_EQ(j["tokens"][0], expected.tokens(0));
}

TEST_F(CliE2eTest, ServerErrorsArePrintedWithTheirCode) {
  // The server's own message, after the code name.
  v1::CompletionParams params = Greedy(4);
  params.mutable_sampling()->set_top_p(1.5);
  grpc::ClientContext context;
  v1::CompleteRequest request;
  *request.mutable_params() = params;
  v1::CompleteResponse response;
  const grpc::Status status =
      stub_->Complete(Context(&context), request, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  ToolResult r = Cli({"complete", kPrompt, "--max_tokens", "4", "--top_p",
                      "1.5", "--temperature", "0", "--ignore_eos"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: INVALID_ARGUMENT: " + status.error_message() + "\n");
  EXPECT_THAT(r.err, HasSubstr("params.sampling.top_p"));
  EXPECT_THAT(r.out, IsEmpty());

  // The same through the stream and score paths.
  r = Cli({"stream", kPrompt, "--top_p", "1.5"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              StartsWith("error: INVALID_ARGUMENT: params.sampling.top_p"));
  r = Cli({"score", "--token_ids", "5"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("error: INVALID_ARGUMENT: token_ids"));

  // A deadline too short for the work.
  r = Cli({"complete", kPrompt, "--max_tokens", "200", "--ignore_eos",
           "--deadline_ms", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("error: DEADLINE_EXCEEDED"));
}

TEST(CliAuthE2eTest, ApiKeyFromFlagOrFile) {
  const std::string key_file = ::testing::TempDir() + "/alibi-cli-api-key";
  std::ofstream(key_file) << "s3cret-token\n";
  auto server =
      ServerProcess::Start(Options("tiny-mpt", {"--api_key_file=" + key_file}));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();

  ToolResult r = RunCliBinary({"info", "--address", address});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("error: UNAUTHENTICATED"));
  EXPECT_THAT(r.err, HasSubstr("hint: the server wants an API key"));

  r = RunCliBinary({"info", "--address", address, "--api_key", "wrong"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("error: UNAUTHENTICATED"));

  r = RunCliBinary({"info", "--address", address, "--api_key", "s3cret-token"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = RunCliBinary(
      {"tokenize", "hi", "--address", address, "--api_key_file", key_file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // Health stays open for probes.
  r = RunCliBinary({"health", "--address", address});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliTlsE2eTest, MutualTls) {
  if (!::alibi::testing::HaveOpenssl()) {
    GTEST_SKIP() << "openssl is not installed";
  }
  const std::string dir = ::testing::TempDir() + "/alibi-cli-tls";
  ASSERT_TRUE(::alibi::testing::WriteTestCertificates(dir).ok());
  ASSERT_FALSE(HasFailure());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ::alibi::testing::ReadFileToString(dir + "/ca.pem");
  ssl.pem_private_key = ::alibi::testing::ReadFileToString(dir + "/client.key");
  ssl.pem_cert_chain = ::alibi::testing::ReadFileToString(dir + "/client.pem");
  ::alibi::testing::ServerOptions options =
      Options("tiny-mpt", {"--tls_cert=" + dir + "/server.pem",
                           "--tls_key=" + dir + "/server.key",
                           "--tls_client_ca=" + dir + "/ca.pem"});
  options.credentials = grpc::SslCredentials(ssl);
  auto server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  const std::vector<std::string> mtls = {"--tls_ca",   dir + "/ca.pem",
                                         "--tls_cert", dir + "/client.pem",
                                         "--tls_key",  dir + "/client.key"};

  auto with = [&](std::vector<std::string> args,
                  const std::vector<std::string>& extra) {
    args.push_back("--address");
    args.push_back(address);
    args.insert(args.end(), extra.begin(), extra.end());
    return RunCliBinary(args);
  };
  ToolResult r = with({"tokenize", "secure"}, mtls);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("token_ids: "));
  r = with({"health"}, mtls);
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // The name checked in the server certificate is --tls_server_name's.
  std::vector<std::string> named = mtls;
  named.push_back("--tls_server_name");
  named.push_back("localhost");
  r = with({"health"}, named);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  named.back() = "elsewhere.example";
  r = with({"health"}, named);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("error: UNAVAILABLE"));

  // Without a client certificate, or without TLS: refused.
  r = with({"health"}, {"--tls_ca", dir + "/ca.pem"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("error: UNAVAILABLE"));
  r = with({"health"}, {});
  EXPECT_EQ(r.exit_code, 1);
}

}  // namespace
}  // namespace alibi::client
