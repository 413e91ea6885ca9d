// alibi-bench against the real alibi-server on the tiny-bloom fixture: the
// counts in its report equal the server's own metrics (scraped from
// /metrics before and after), its latencies are consistent with a stopwatch
// around the run and with the server's histograms, the arrival schedule and
// the concurrency cap hold, and the JSON validates against the schema.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/bench/arrivals.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/client/e2e_util.h"
#include "tests/client/json_schema.h"
#include "tests/testing/server_process.h"

namespace alibi::client {
namespace {

using ::alibi::client::testing::BenchBinary;
using ::alibi::client::testing::RunTool;
using ::alibi::client::testing::ToolResult;
using ::alibi::client::testing::ValidateJson;
using ::alibi::testing::FixtureModel;
using ::alibi::testing::ServerProcess;
using ::alibi::testing::SumSeries;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The server's context limit in these tests (prompt + completion).
constexpr int kMaxModelLen = 128;

json LoadSchema() {
  std::ifstream in(std::string(ALIBI_SOURCE_DIR) +
                   "/client/bench_report.schema.json");
  return json::parse(in);
}

// The counters and histogram sums a run should move.
struct ServerCounts {
  double ok_streams = 0;
  double invalid_streams = 0;
  double ok_scores = 0;
  double prompt_tokens = 0;
  double generation_tokens = 0;
  double ttft_sum = 0;
  double ttft_count = 0;
  double e2e_sum = 0;
  double e2e_count = 0;
};

ServerCounts operator-(const ServerCounts& a, const ServerCounts& b) {
  return {a.ok_streams - b.ok_streams,
          a.invalid_streams - b.invalid_streams,
          a.ok_scores - b.ok_scores,
          a.prompt_tokens - b.prompt_tokens,
          a.generation_tokens - b.generation_tokens,
          a.ttft_sum - b.ttft_sum,
          a.ttft_count - b.ttft_count,
          a.e2e_sum - b.e2e_sum,
          a.e2e_count - b.e2e_count};
}

class BenchE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::alibi::testing::ServerOptions options;
    options.model_dir = FixtureModel("tiny-bloom");
    options.flags = {absl::StrCat("--max_model_len=", kMaxModelLen)};
    auto server = ServerProcess::Start(options);
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
  void SetUp() override { ASSERT_NE(server_, nullptr) << *start_error_; }

  static ServerCounts Scrape() {
    auto text = server_->ScrapeMetrics();
    EXPECT_TRUE(text.ok()) << text.status();
    if (!text.ok()) return {};
    const std::string& t = *text;
    ServerCounts c;
    c.ok_streams = SumSeries(
        t, {"alibi_requests_total{", "rpc=\"CompleteStream\"", "code=\"OK\""});
    c.invalid_streams =
        SumSeries(t, {"alibi_requests_total{", "rpc=\"CompleteStream\"",
                      "code=\"INVALID_ARGUMENT\""});
    c.ok_scores =
        SumSeries(t, {"alibi_requests_total{", "rpc=\"Score\"", "code=\"OK\""});
    c.prompt_tokens = SumSeries(t, {"alibi_prompt_tokens_total{"});
    c.generation_tokens = SumSeries(t, {"alibi_generation_tokens_total{"});
    c.ttft_sum = SumSeries(t, {"alibi_time_to_first_token_seconds_sum{"});
    c.ttft_count = SumSeries(t, {"alibi_time_to_first_token_seconds_count{"});
    c.e2e_sum = SumSeries(t, {"alibi_e2e_request_latency_seconds_sum{"});
    c.e2e_count = SumSeries(t, {"alibi_e2e_request_latency_seconds_count{"});
    return c;
  }

  // Runs alibi-bench with `args` and --json; returns the report. The
  // stopwatch reading is stored in *seconds.
  json Bench(std::vector<std::string> args, ToolResult* result,
             int expected_exit = 0) {
    // One file per test process: ctest runs this binary's tests in parallel.
    const std::string path = ::testing::TempDir() + "/alibi-bench-report-" +
                             std::to_string(getpid()) + ".json";
    std::remove(path.c_str());
    args.insert(args.begin(), BenchBinary());
    args.insert(args.end(), {"--address", server_->address(), "--json", path,
                             "--json_requests"});
    auto r = RunTool(args, absl::Seconds(120));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return json();
    *result = *r;
    EXPECT_EQ(r->exit_code, expected_exit) << r->out << r->err;
    std::ifstream in(path);
    EXPECT_TRUE(in.good()) << "no report at " << path << "\n" << r->err;
    if (!in.good()) return json();
    json report = json::parse(in);
    in.close();
    std::remove(path.c_str());
    EXPECT_THAT(ValidateJson(LoadSchema(), report), IsEmpty())
        << report.dump(2);
    return report;
  }

  static ServerProcess* server_;
  static std::string* start_error_;
};

ServerProcess* BenchE2eTest::server_ = nullptr;
std::string* BenchE2eTest::start_error_ = nullptr;

// Latencies that must hold for any run: duration within the stopwatch, each
// request inside the duration, TTFT <= E2E, TPOT by its definition.
void CheckTimings(const json& report, double stopwatch_s) {
  const double duration = report["duration_s"].get<double>();
  EXPECT_GT(duration, 0);
  EXPECT_LE(duration, stopwatch_s);
  double last_end_ms = 0;
  for (const json& r : report["requests"]) {
    const double start = r["start_ms"].get<double>();
    const double e2e = r["e2e_ms"].get<double>();
    last_end_ms = std::max(last_end_ms, start + e2e);
    if (!r["ttft_ms"].is_null()) {
      EXPECT_LE(r["ttft_ms"].get<double>(), e2e);
    }
    if (!r["tpot_ms"].is_null()) {
      const double expected = (e2e - r["ttft_ms"].get<double>()) /
                              (r["output_tokens"].get<double>() - 1);
      EXPECT_NEAR(r["tpot_ms"].get<double>(), expected, 1e-6);
    }
  }
  // The duration ends with the last request.
  EXPECT_NEAR(duration * 1e3, last_end_ms, 1e-3);
  if (report["e2e_latency_ms"]["count"].get<int>() > 0) {
    EXPECT_LE(report["e2e_latency_ms"]["max"].get<double>(),
              duration * 1e3 + 1e-6);
    EXPECT_GE(report["e2e_latency_ms"]["p99"].get<double>(),
              report["e2e_latency_ms"]["median"].get<double>());
  }
}

TEST_F(BenchE2eTest, RandomWorkloadCountsMatchServerMetrics) {
  const ServerCounts before = Scrape();
  ToolResult run;
  const json report =
      Bench({"--num_requests", "12", "--concurrency", "4", "--input_len", "24",
             "--output_len", "8", "--range_ratio", "0.5", "--seed", "5",
             "--slo_ttft_ms", "60000", "--slo_tpot_ms", "60000"},
            &run);
  ASSERT_FALSE(report.is_null());
  const ServerCounts d = Scrape() - before;

  EXPECT_EQ(report["num_requests"], 12);
  EXPECT_EQ(report["completed"], 12);
  EXPECT_EQ(report["failed"], 0);
  EXPECT_EQ(d.ok_streams, 12);
  EXPECT_EQ(report["total_input_tokens"].get<double>(), d.prompt_tokens);
  EXPECT_EQ(report["total_output_tokens"].get<double>(), d.generation_tokens);
  // ignore_eos (the default for random): every request makes max_tokens,
  // drawn from [4, 12].
  EXPECT_EQ(report["finish_reasons"]["length"], 12);
  int output = 0;
  for (const json& r : report["requests"]) {
    EXPECT_GE(r["output_tokens"].get<int>(), 4);
    EXPECT_LE(r["output_tokens"].get<int>(), 12);
    EXPECT_GE(r["prompt_tokens"].get<int>(), 12);
    EXPECT_LE(r["prompt_tokens"].get<int>(), 36);
    output += r["output_tokens"].get<int>();
  }
  EXPECT_EQ(report["total_output_tokens"], output);
  EXPECT_EQ(report["itl_ms"]["count"], output - 12);
  EXPECT_EQ(report["ttft_ms"]["count"], 12);
  // Generous SLOs: every request is good.
  EXPECT_EQ(report["good_requests"], 12);
  EXPECT_NEAR(report["goodput"].get<double>(),
              report["request_throughput"].get<double>(), 1e-9);
  EXPECT_NEAR(report["request_throughput"].get<double>(),
              12 / report["duration_s"].get<double>(), 1e-9);
  CheckTimings(report, run.seconds);

  // The client sees each request from before the server does until after
  // it does: its TTFT and E2E sums bound the server's from above.
  ASSERT_EQ(d.ttft_count, 12);
  ASSERT_EQ(d.e2e_count, 12);
  EXPECT_GE(report["ttft_ms"]["mean"].get<double>() * 12 / 1e3,
            d.ttft_sum * 0.999);
  EXPECT_GE(report["e2e_latency_ms"]["mean"].get<double>() * 12 / 1e3,
            d.e2e_sum * 0.999);

  // The table on stdout.
  EXPECT_THAT(run.out, HasSubstr(absl::StrFormat("%-40s%d\n",
                                                 "Successful requests:", 12)));
  EXPECT_THAT(run.out, HasSubstr("TTFT"));
  EXPECT_THAT(run.err, HasSubstr("alibi-bench: 12 random requests"));
  // stderr is not a terminal here: no progress bar.
  EXPECT_THAT(run.err, ::testing::Not(HasSubstr("in flight")));
}

TEST_F(BenchE2eTest, OpenAiBackendDrivesTheHttpApiLikeGrpc) {
  // The same workload through both APIs: the same prompts and outputs (the
  // same seeds), each counted by the server under its own route.
  const std::vector<std::string> workload = {
      "--num_requests", "10", "--concurrency", "3",  "--input_len",   "20",
      "--output_len",   "6",  "--seed",        "21", "--temperature", "1"};
  auto http_ok = [] {
    auto text = server_->ScrapeMetrics();
    return text.ok()
               ? SumSeries(*text, {"alibi_requests_total{",
                                   "rpc=\"/v1/completions\"", "code=\"OK\""})
               : -1;
  };
  const double http_before = http_ok();
  const ServerCounts before = Scrape();
  ToolResult run;
  std::vector<std::string> args = workload;
  args.insert(args.end(), {"--backend", "openai", "--address",
                           absl::StrCat("127.0.0.1:", server_->http_port())});
  args.insert(args.begin(), BenchBinary());
  const std::string path = ::testing::TempDir() + "/alibi-bench-openai-" +
                           std::to_string(getpid()) + ".json";
  args.insert(args.end(), {"--json", path, "--json_requests"});
  auto r = RunTool(args, absl::Seconds(120));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->exit_code, 0) << r->out << r->err;
  std::ifstream in(path);
  const json report = json::parse(in);
  EXPECT_THAT(ValidateJson(LoadSchema(), report), IsEmpty());
  EXPECT_EQ(report["config"]["backend"], "openai");
  EXPECT_EQ(report["completed"], 10);
  EXPECT_EQ(http_ok() - http_before, 10);
  const ServerCounts d = Scrape() - before;
  EXPECT_EQ(report["total_input_tokens"].get<double>(), d.prompt_tokens);
  EXPECT_EQ(report["total_output_tokens"].get<double>(), d.generation_tokens);
  EXPECT_EQ(report["ttft_ms"]["count"], 10);
  EXPECT_THAT(r->out, HasSubstr("via openai"));

  ToolResult grpc_run;
  const json grpc_report = Bench(workload, &grpc_run);
  ASSERT_FALSE(grpc_report.is_null());
  EXPECT_EQ(grpc_report["config"]["backend"], "grpc");
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(report["requests"][i]["prompt_tokens"],
              grpc_report["requests"][i]["prompt_tokens"]);
    EXPECT_EQ(report["requests"][i]["output_tokens"],
              grpc_report["requests"][i]["output_tokens"]);
  }
  CheckTimings(report, r->seconds);
}

TEST_F(BenchE2eTest, ConcurrencyCapHolds) {
  ToolResult run;
  const json report = Bench({"--num_requests", "8", "--concurrency", "2",
                             "--input_len", "8", "--output_len", "6"},
                            &run);
  ASSERT_FALSE(report.is_null());
  EXPECT_EQ(report["completed"], 8);
  // At no instant are more than two requests in flight.
  std::vector<std::pair<double, int>> events;
  for (const json& r : report["requests"]) {
    const double start = r["start_ms"].get<double>();
    events.push_back({start, +1});
    events.push_back({start + r["e2e_ms"].get<double>(), -1});
  }
  std::sort(events.begin(), events.end());  // an end sorts before a start
  int in_flight = 0, peak = 0;
  for (const auto& [t, delta] : events) {
    in_flight += delta;
    peak = std::max(peak, in_flight);
  }
  EXPECT_EQ(peak, 2);
  CheckTimings(report, run.seconds);
}

TEST_F(BenchE2eTest, PoissonArrivalsFollowTheSchedule) {
  constexpr int kN = 8;
  constexpr double kRate = 20;
  ToolResult run;
  const json report =
      Bench({"--num_requests", "8", "--request_rate", "20", "--seed", "9",
             "--input_len", "8", "--output_len", "2"},
            &run);
  ASSERT_FALSE(report.is_null());
  EXPECT_EQ(report["completed"], kN);
  EXPECT_EQ(report["config"]["request_rate"], kRate);
  const std::vector<double> arrivals =
      bench::PoissonArrivalTimes(kN, kRate, bench::ArrivalSeed(9));
  for (int i = 0; i < kN; ++i) {
    const double start_ms = report["requests"][i]["start_ms"].get<double>();
    EXPECT_GE(start_ms, arrivals[i] * 1e3 - 0.5) << i;
    EXPECT_LT(start_ms, arrivals[i] * 1e3 + 250) << i;
  }
  // The run lasts at least until the last arrival.
  EXPECT_GE(report["duration_s"].get<double>(), arrivals.back());
  CheckTimings(report, run.seconds);
}

TEST_F(BenchE2eTest, FailuresAreCountedByCodeLikeTheServer) {
  // Inputs of 50..150 tokens plus 4..12 generated against a 128-token
  // context: the longer ones are rejected with INVALID_ARGUMENT.
  const ServerCounts before = Scrape();
  ToolResult run;
  const json report =
      Bench({"--num_requests", "10", "--input_len", "100", "--range_ratio",
             "0.5", "--output_len", "8", "--seed", "1", "--concurrency", "5"},
            &run);
  ASSERT_FALSE(report.is_null());
  const ServerCounts d = Scrape() - before;
  const int failed = report["failed"].get<int>();
  const int completed = report["completed"].get<int>();
  EXPECT_GT(failed, 0);
  EXPECT_GT(completed, 0);
  EXPECT_EQ(failed + completed, 10);
  EXPECT_EQ(report["failures_by_code"]["INVALID_ARGUMENT"], failed);
  EXPECT_EQ(d.invalid_streams, failed);
  EXPECT_EQ(d.ok_streams, completed);
  EXPECT_EQ(report["total_input_tokens"].get<double>(), d.prompt_tokens);
  for (const json& r : report["requests"]) {
    const bool fits = r["ok"].get<bool>();
    EXPECT_EQ(fits, r["code"] == "OK");
    if (!fits) {
      EXPECT_THAT(r["error"].get<std::string>(),
                  HasSubstr("maximum context length"));
    }
  }
  EXPECT_THAT(run.err, HasSubstr("warning: requests of up to 162 tokens"));
  EXPECT_THAT(run.err, HasSubstr("failures with INVALID_ARGUMENT"));
  EXPECT_THAT(run.out, HasSubstr("INVALID_ARGUMENT:"));
  CheckTimings(report, run.seconds);
}

TEST_F(BenchE2eTest, ScoreWorkload) {
  const ServerCounts before = Scrape();
  ToolResult run;
  const json report = Bench({"--workload", "score", "--num_requests", "6",
                             "--input_len", "40", "--concurrency", "3"},
                            &run);
  ASSERT_FALSE(report.is_null());
  const ServerCounts d = Scrape() - before;
  EXPECT_EQ(report["completed"], 6);
  EXPECT_EQ(d.ok_scores, 6);
  EXPECT_EQ(d.ok_streams, 0);
  EXPECT_EQ(report["total_input_tokens"], 240);
  EXPECT_EQ(d.prompt_tokens, 240);
  EXPECT_EQ(report["total_output_tokens"], 0);
  EXPECT_EQ(report["ttft_ms"]["count"], 0);
  EXPECT_TRUE(report["ttft_ms"]["mean"].is_null());
  EXPECT_EQ(report["e2e_latency_ms"]["count"], 6);
  EXPECT_EQ(report["config"]["output_len"], 0);
  CheckTimings(report, run.seconds);
}

TEST_F(BenchE2eTest, CorpusWorkload) {
  const ServerCounts before = Scrape();
  ToolResult run;
  const json report = Bench(
      {"--workload", "corpus", "--corpus",
       std::string(ALIBI_SOURCE_DIR) + "/tests/client/data/genesis-1-2.txt",
       "--num_requests", "6", "--input_len", "32", "--output_len", "4",
       "--ignore_eos"},
      &run);
  ASSERT_FALSE(report.is_null());
  const ServerCounts d = Scrape() - before;
  EXPECT_EQ(report["completed"], 6);
  EXPECT_EQ(d.ok_streams, 6);
  EXPECT_EQ(report["total_input_tokens"].get<double>(), d.prompt_tokens);
  EXPECT_EQ(report["total_output_tokens"], 24);
  // Prompts cut to about 32 tokens with the measured bytes per token.
  EXPECT_GT(report["config"]["chars_per_token"].get<double>(), 1.0);
  const double mean_prompt = report["total_input_tokens"].get<double>() / 6.0;
  EXPECT_GT(mean_prompt, 32 * 0.6);
  EXPECT_LT(mean_prompt, 32 * 1.5);
  CheckTimings(report, run.seconds);
}

TEST_F(BenchE2eTest, EveryRequestFailingExitsWithOne) {
  ToolResult run;
  const json report =
      Bench({"--num_requests", "3", "--input_len", "200", "--output_len", "8"},
            &run, /*expected_exit=*/1);
  ASSERT_FALSE(report.is_null());
  EXPECT_EQ(report["completed"], 0);
  EXPECT_EQ(report["failures_by_code"]["INVALID_ARGUMENT"], 3);
  EXPECT_EQ(report["request_throughput"], 0.0);
  EXPECT_TRUE(report["e2e_latency_ms"]["mean"].is_null());
}

}  // namespace
}  // namespace alibi::client
