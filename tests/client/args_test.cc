// Command-line parsing of alibi-cli and alibi-bench: flag syntax, the mapping
// of flags to request fields, and usage errors (exit code 2).
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "client/bench/bench.h"
#include "client/cli.h"
#include "client/flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alibi::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// ---------------------------------------------------------------------------
// FlagSet
// ---------------------------------------------------------------------------

struct Targets {
  int32_t n = 1;
  std::optional<float> f;
  bool b = false;
  std::optional<bool> ob;
  std::string s = "default";
  std::vector<std::string> list;
  std::vector<int32_t> ids;
  uint64_t u = 0;
};

FlagSet MakeFlags(Targets* t) {
  FlagSet flags;
  flags.Add("n", &t->n, "an int");
  flags.Add("f", &t->f, "a float");
  flags.Add("b", &t->b, "a bool");
  flags.Add("ob", &t->ob, "an optional bool");
  flags.Add("s", &t->s, "a string");
  flags.Add("list", &t->list, "repeatable strings");
  flags.Add("ids", &t->ids, "ids");
  flags.Add("u", &t->u, "unsigned");
  return flags;
}

TEST(FlagSetTest, AcceptsEveryForm) {
  Targets t;
  FlagSet flags = MakeFlags(&t);
  std::vector<std::string> positional;
  const std::vector<std::string> args = {"cmd",
                                         "--n=5",
                                         "-f",
                                         "0.25",
                                         "--b",
                                         "--noob",
                                         "pos",
                                         "--s",
                                         "a b",
                                         "--list",
                                         "x,y",
                                         "--list=z",
                                         "--ids",
                                         "1, 2",
                                         "--ids=3",
                                         "--u",
                                         "18446744073709551615",
                                         "--",
                                         "--n"};
  ASSERT_TRUE(flags.Parse(args, &positional).ok());
  EXPECT_EQ(t.n, 5);
  EXPECT_FLOAT_EQ(*t.f, 0.25f);
  EXPECT_TRUE(t.b);
  EXPECT_EQ(t.ob, false);
  EXPECT_EQ(t.s, "a b");
  EXPECT_THAT(t.list, ElementsAre("x,y", "z"));
  EXPECT_THAT(t.ids, ElementsAre(1, 2, 3));
  EXPECT_EQ(t.u, 18446744073709551615ull);
  EXPECT_THAT(positional, ElementsAre("cmd", "pos", "--n"));
  EXPECT_TRUE(flags.IsSet("n"));
  EXPECT_FALSE(flags.IsSet("nothing"));
  EXPECT_THAT(flags.SetFlags(),
              ElementsAre("n", "f", "b", "ob", "s", "list", "ids", "u"));
}

TEST(FlagSetTest, NegativeNumbersAreValuesAndPositionals) {
  Targets t;
  FlagSet flags = MakeFlags(&t);
  std::vector<std::string> positional;
  ASSERT_TRUE(flags.Parse({"--n", "-3", "-7"}, &positional).ok());
  EXPECT_EQ(t.n, -3);
  EXPECT_THAT(positional, ElementsAre("-7"));
}

TEST(FlagSetTest, ReportsErrorsNamingTheFlag) {
  auto error = [](std::vector<std::string> args) {
    Targets t;
    FlagSet flags = MakeFlags(&t);
    std::vector<std::string> positional;
    absl::Status s = flags.Parse(args, &positional);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  EXPECT_EQ(error({"--bogus"}), "unknown flag --bogus");
  EXPECT_EQ(error({"--n", "x"}), "flag --n: expected an integer, got \"x\"");
  EXPECT_EQ(error({"--n"}), "flag --n needs a value");
  EXPECT_THAT(error({"--n=1", "--n=2"}), HasSubstr("more than once"));
  EXPECT_THAT(error({"--b=maybe"}), HasSubstr("expected true or false"));
  EXPECT_THAT(error({"--nob=true"}), HasSubstr("takes no value"));
  EXPECT_THAT(error({"--nos"}), HasSubstr("unknown flag --nos"));
  EXPECT_THAT(error({"--ids", "1,,2"}), HasSubstr("comma-separated"));
  EXPECT_THAT(error({"--u", "-1"}), HasSubstr("non-negative"));
  EXPECT_THAT(error({"--f", "1.5x"}), HasSubstr("expected a number"));
  EXPECT_THAT(error({"--n", "99999999999"}), HasSubstr("integer"));
}

TEST(FlagSetTest, HelpListsFlags) {
  Targets t;
  FlagSet flags = MakeFlags(&t);
  const std::string help = flags.Help();
  EXPECT_THAT(help, HasSubstr("--n <int>"));
  EXPECT_THAT(help, HasSubstr("--ids <ids>"));
  EXPECT_THAT(help, HasSubstr("an optional bool"));
  EXPECT_THAT(flags.Help({"s"}), Not(HasSubstr("--n")));
}

// ---------------------------------------------------------------------------
// alibi-cli
// ---------------------------------------------------------------------------

TEST(CliArgsTest, CompleteMapsEveryFlagToTheRequest) {
  auto inv =
      ParseCliArgs(std::vector<std::string>{"complete",
                                            "In the beginning",
                                            "--max_tokens",
                                            "32",
                                            "--temperature",
                                            "0.7",
                                            "--top_k",
                                            "40",
                                            "--top_p",
                                            "0.9",
                                            "--min_p",
                                            "0.05",
                                            "--repetition_penalty",
                                            "1.1",
                                            "--presence_penalty",
                                            "0.5",
                                            "--frequency_penalty",
                                            "-0.5",
                                            "--seed",
                                            "7",
                                            "--ignore_eos",
                                            "--stop",
                                            "\n",
                                            "--stop",
                                            "Amen",
                                            "--stop_token_ids",
                                            "2,3",
                                            "--min_tokens",
                                            "4",
                                            "--include_stop_str_in_output",
                                            "--noskip_special_tokens",
                                            "--logprobs",
                                            "3",
                                            "--echo",
                                            "--priority",
                                            "-1",
                                            "--request_id",
                                            "r1",
                                            "--address",
                                            "h:1",
                                            "--deadline_ms",
                                            "500",
                                            "--json"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->command, "complete");
  EXPECT_TRUE(inv->json);
  EXPECT_EQ(inv->connection.address, "h:1");
  EXPECT_EQ(inv->connection.deadline_ms, 500);
  const v1::CompletionParams& p = inv->completion;
  EXPECT_EQ(p.text(), "In the beginning");
  EXPECT_TRUE(p.token_ids().empty());
  EXPECT_EQ(p.max_tokens(), 32);
  EXPECT_EQ(p.logprobs(), 3);
  EXPECT_TRUE(p.echo());
  EXPECT_EQ(p.priority(), -1);
  EXPECT_EQ(p.request_id(), "r1");
  const v1::SamplingParams& s = p.sampling();
  EXPECT_FLOAT_EQ(s.temperature(), 0.7f);
  EXPECT_EQ(s.top_k(), 40);
  EXPECT_FLOAT_EQ(s.top_p(), 0.9f);
  EXPECT_FLOAT_EQ(s.min_p(), 0.05f);
  EXPECT_FLOAT_EQ(s.repetition_penalty(), 1.1f);
  EXPECT_FLOAT_EQ(s.presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(s.frequency_penalty(), -0.5f);
  EXPECT_EQ(s.seed(), 7u);
  EXPECT_TRUE(s.ignore_eos());
  EXPECT_THAT(s.stop(), ElementsAre("\n", "Amen"));
  EXPECT_THAT(s.stop_token_ids(), ElementsAre(2, 3));
  EXPECT_EQ(s.min_tokens(), 4);
  EXPECT_TRUE(s.include_stop_str_in_output());
  ASSERT_TRUE(s.has_skip_special_tokens());
  EXPECT_FALSE(s.skip_special_tokens());
}

TEST(CliArgsTest, UnsetOptionalFieldsStayUnset) {
  // Flags before the command work too.
  auto inv = ParseCliArgs(std::vector<std::string>{"--address", "x:2", "stream",
                                                   "--token_ids", "1,2,3"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->command, "stream");
  const v1::CompletionParams& p = inv->completion;
  EXPECT_TRUE(p.text().empty());
  EXPECT_THAT(p.token_ids(), ElementsAre(1, 2, 3));
  EXPECT_FALSE(p.has_max_tokens());  // the server's default applies
  EXPECT_FALSE(p.has_logprobs());
  EXPECT_FALSE(p.sampling().has_temperature());
  EXPECT_FALSE(p.sampling().has_top_p());
  EXPECT_FALSE(p.sampling().has_repetition_penalty());
  EXPECT_FALSE(p.sampling().has_seed());
  EXPECT_FALSE(p.sampling().has_skip_special_tokens());
  EXPECT_EQ(inv->connection.deadline_ms, 0);
}

TEST(CliArgsTest, ScoreTokenizeInfoHealth) {
  auto score = ParseCliArgs(std::vector<std::string>{
      "score", "--file",
      std::string(ALIBI_SOURCE_DIR) + "/tests/client/data/genesis-1-2.txt",
      "--top_logprobs", "2"});
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_THAT(score->score.text(), HasSubstr("In the beginning God created"));
  EXPECT_EQ(score->score.top_logprobs(), 2);

  auto ids = ParseCliArgs(
      std::vector<std::string>{"score", "--token_ids", "5,6", "--json"});
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(ids->score.token_ids(), ElementsAre(5, 6));

  auto tokenize =
      ParseCliArgs(std::vector<std::string>{"tokenize", "--text", "hi there"});
  ASSERT_TRUE(tokenize.ok());
  EXPECT_EQ(tokenize->tokenize.text(), "hi there");

  auto health = ParseCliArgs(std::vector<std::string>{"health"});
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->connection.deadline_ms, kHealthDefaultDeadlineMs);
  auto health_long = ParseCliArgs(
      std::vector<std::string>{"health", "--deadline_ms", "9000", "--service",
                               "alibi.v1.InferenceService"});
  ASSERT_TRUE(health_long.ok());
  EXPECT_EQ(health_long->connection.deadline_ms, 9000);
  EXPECT_EQ(health_long->health_service, "alibi.v1.InferenceService");

  EXPECT_TRUE(ParseCliArgs(std::vector<std::string>{"info"}).ok());
}

TEST(CliArgsTest, UsageErrors) {
  auto error = [](std::vector<std::string> args) {
    auto inv = ParseCliArgs(args);
    EXPECT_FALSE(inv.ok());
    return std::string(inv.status().message());
  };
  EXPECT_THAT(error({}), HasSubstr("no command"));
  EXPECT_THAT(error({"generate", "x"}), HasSubstr("unknown command"));
  EXPECT_THAT(error({"complete"}), HasSubstr("no input"));
  EXPECT_THAT(error({"complete", "a", "--token_ids", "1"}),
              HasSubstr("exactly one input"));
  EXPECT_THAT(error({"complete", "a", "b"}), HasSubstr("one input argument"));
  EXPECT_THAT(error({"complete", "a", "--top_p", "high"}),
              HasSubstr("--top_p: expected a number"));
  EXPECT_THAT(error({"complete", "a", "--token_ids", "1,x"}),
              HasSubstr("comma-separated"));
  EXPECT_THAT(error({"score", "a", "--max_tokens", "3"}),
              HasSubstr("--max_tokens does not apply to 'score'"));
  EXPECT_THAT(error({"tokenize", "--token_ids", "1"}),
              HasSubstr("does not apply"));
  EXPECT_THAT(error({"info", "extra"}), HasSubstr("takes no arguments"));
  EXPECT_THAT(error({"health", "--temperature", "1"}),
              HasSubstr("does not apply"));
  EXPECT_THAT(error({"score", "--file", "/nonexistent/file.txt"}),
              HasSubstr("cannot read /nonexistent/file.txt"));
}

TEST(RunCliTest, UsageErrorsExitWithTwo) {
  std::ostringstream out, err;
  EXPECT_EQ(RunCli(std::vector<std::string>{"complete", "x", "--top_k", "many"},
                   out, err),
            kExitUsage);
  EXPECT_THAT(
      err.str(),
      HasSubstr("error: flag --top_k: expected an integer, got \"many\""));
  EXPECT_THAT(out.str(), IsEmpty());

  err.str("");
  EXPECT_EQ(RunCli(std::vector<std::string>{"complete", "x", "--tls_cert",
                                            "/tmp/c.pem"},
                   out, err),
            kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("--tls_cert and --tls_key go together"));

  err.str("");
  EXPECT_EQ(RunCli(std::vector<std::string>{"info", "--api_key", "k",
                                            "--api_key_file", "/tmp/k"},
                   out, err),
            kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("not both"));

  err.str("");
  EXPECT_EQ(RunCli(std::vector<std::string>{"info", "--api_key_file",
                                            "/nonexistent/key"},
                   out, err),
            kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("cannot read /nonexistent/key"));
}

TEST(RunCliTest, HelpExitsWithZero) {
  std::ostringstream out, err;
  EXPECT_EQ(RunCli(std::vector<std::string>{"--help"}, out, err), kExitOk);
  EXPECT_THAT(out.str(), HasSubstr("usage: alibi-cli <command>"));
  EXPECT_THAT(out.str(), HasSubstr("exit codes: 0"));
  out.str("");
  EXPECT_EQ(RunCli(std::vector<std::string>{"complete", "--help"}, out, err),
            kExitOk);
  EXPECT_THAT(out.str(), HasSubstr("--repetition_penalty"));
  EXPECT_THAT(out.str(), HasSubstr("--api_key_file"));
  out.str("");
  EXPECT_EQ(RunCli(std::vector<std::string>{"help", "health"}, out, err),
            kExitOk);
  EXPECT_THAT(out.str(), HasSubstr("--service"));
  EXPECT_THAT(err.str(), IsEmpty());
}

TEST(RunCliTest, UnreachableServerIsAnRpcError) {
  // Port 1 on loopback: nothing listens (connection refused at once).
  std::ostringstream out, err;
  EXPECT_EQ(
      RunCli(std::vector<std::string>{"health", "--address", "127.0.0.1:1"},
             out, err),
      kExitRpcError);
  EXPECT_THAT(err.str(), HasSubstr("error: UNAVAILABLE"));
  EXPECT_THAT(err.str(), HasSubstr("hint: the server at 127.0.0.1:1"));
}

// ---------------------------------------------------------------------------
// alibi-bench
// ---------------------------------------------------------------------------

TEST(BenchArgsTest, DefaultsAndValues) {
  bool help = false;
  auto c = bench::ParseBenchArgs(std::vector<std::string>{}, &help);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(help);
  EXPECT_EQ(c->connection.address, "localhost:50051");
  EXPECT_TRUE(std::isinf(c->request_rate));
  EXPECT_EQ(c->workload, bench::WorkloadKind::kRandom);
  EXPECT_TRUE(c->ignore_eos);  // default true for random
  EXPECT_EQ(c->temperature, 0.0);

  c = bench::ParseBenchArgs(
      std::vector<std::string>{
          "--request_rate", "12.5",        "--concurrency", "4",
          "--workload",     "corpus",      "--corpus",      "/x.txt",
          "--slo_ttft_ms",  "100",         "--slo_tpot_ms", "20",
          "--json",         "/tmp/r.json", "--range_ratio", "0.5",
          "--num_requests", "7",           "--seed",        "3"},
      &help);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->request_rate, 12.5);
  EXPECT_EQ(c->concurrency, 4);
  EXPECT_EQ(c->workload, bench::WorkloadKind::kCorpus);
  EXPECT_FALSE(c->ignore_eos);  // default false for corpus
  EXPECT_EQ(c->slo.ttft_ms, 100);
  EXPECT_EQ(c->slo.tpot_ms, 20);
  EXPECT_FALSE(c->slo.e2e_ms.has_value());
  EXPECT_EQ(c->json_path, "/tmp/r.json");
  EXPECT_EQ(c->num_requests, 7);

  c = bench::ParseBenchArgs(
      std::vector<std::string>{"--request_rate=INF", "--noignore_eos"}, &help);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(std::isinf(c->request_rate));
  EXPECT_FALSE(c->ignore_eos);
  EXPECT_EQ(c->backend, bench::Backend::kGrpc);

  // The OpenAI backend defaults to the HTTP API's port.
  c = bench::ParseBenchArgs(
      std::vector<std::string>{"--backend", "openai", "--model", "m"}, &help);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->backend, bench::Backend::kOpenAi);
  EXPECT_EQ(c->connection.address, "localhost:8000");
  EXPECT_EQ(c->model, "m");
  c = bench::ParseBenchArgs(
      std::vector<std::string>{"--backend=openai", "--address", "h:9"}, &help);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->connection.address, "h:9");
}

TEST(BenchArgsTest, UsageErrors) {
  auto error = [](std::vector<std::string> args) {
    bool help = false;
    auto c = bench::ParseBenchArgs(args, &help);
    EXPECT_FALSE(c.ok());
    return std::string(c.status().message());
  };
  EXPECT_THAT(error({"--request_rate", "0"}), HasSubstr("--request_rate"));
  EXPECT_THAT(error({"--request_rate", "-2"}), HasSubstr("--request_rate"));
  EXPECT_THAT(error({"--request_rate", "nan"}), HasSubstr("--request_rate"));
  EXPECT_THAT(error({"--request_rate", "lots"}), HasSubstr("--request_rate"));
  EXPECT_THAT(error({"--num_requests", "0"}), HasSubstr("--num_requests"));
  EXPECT_THAT(error({"--concurrency", "-1"}), HasSubstr("--concurrency"));
  EXPECT_THAT(error({"--workload", "sharegpt"}), HasSubstr("--workload"));
  EXPECT_THAT(error({"--workload", "corpus"}), HasSubstr("needs --corpus"));
  EXPECT_THAT(error({"--corpus", "/x.txt"}), HasSubstr("not random"));
  EXPECT_THAT(error({"--range_ratio", "1"}), HasSubstr("--range_ratio"));
  EXPECT_THAT(error({"--input_len", "0"}), HasSubstr("--input_len"));
  EXPECT_THAT(error({"--workload", "score", "--input_len", "1"}),
              HasSubstr(">= 2"));
  EXPECT_THAT(error({"--workload", "score", "--output_len", "5"}),
              HasSubstr("do not apply to --workload score"));
  EXPECT_THAT(error({"--top_logprobs", "2"}), HasSubstr("score only"));
  EXPECT_THAT(error({"--slo_ttft_ms", "0"}), HasSubstr("--slo_ttft_ms"));
  EXPECT_THAT(error({"--num_channels", "0"}), HasSubstr("--num_channels"));
  EXPECT_THAT(error({"extra"}), HasSubstr("unexpected argument"));
  EXPECT_THAT(error({"--bogus"}), HasSubstr("unknown flag --bogus"));
  EXPECT_THAT(error({"--backend", "rest"}), HasSubstr("--backend"));
  EXPECT_THAT(error({"--backend", "openai", "--workload", "score"}),
              HasSubstr("needs --backend grpc"));
  EXPECT_THAT(error({"--backend", "openai", "--tls"}), HasSubstr("plaintext"));
  EXPECT_THAT(error({"--backend", "openai", "--num_channels", "2"}),
              HasSubstr("--num_channels"));
  EXPECT_THAT(error({"--model", "m"}), HasSubstr("--backend openai"));
}

TEST(RunBenchTest, UsageErrorsExitWithTwoAndHelpWithZero) {
  std::ostringstream out, err;
  EXPECT_EQ(bench::RunBench(std::vector<std::string>{"--num_requests", "x"},
                            out, err),
            2);
  EXPECT_THAT(err.str(), HasSubstr("error: flag --num_requests"));
  EXPECT_EQ(bench::RunBench(std::vector<std::string>{"--help"}, out, err), 0);
  EXPECT_THAT(out.str(), HasSubstr("usage: alibi-bench"));
  EXPECT_THAT(out.str(), HasSubstr("--slo_tpot_ms"));
  err.str("");
  EXPECT_EQ(bench::RunBench(
                std::vector<std::string>{"--workload", "corpus", "--corpus",
                                         "/nonexistent/c.txt"},
                out, err),
            2);
  EXPECT_THAT(err.str(), HasSubstr("cannot read /nonexistent/c.txt"));
}

TEST(RunBenchTest, UnreachableServerExitsWithOne) {
  std::ostringstream out, err;
  EXPECT_EQ(bench::RunBench(std::vector<std::string>{"--address", "127.0.0.1:1",
                                                     "--num_requests", "1"},
                            out, err),
            1);
  EXPECT_THAT(err.str(), HasSubstr("error: UNAVAILABLE"));
  EXPECT_THAT(err.str(), HasSubstr("nothing was sent"));
}

}  // namespace
}  // namespace alibi::client
