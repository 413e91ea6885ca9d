// alibi-bench's statistics, arrivals and workloads on hand-computed cases.
#include "client/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "client/bench/arrivals.h"
#include "client/bench/workload.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alibi::client::bench {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// ---------------------------------------------------------------------------
// Percentiles and summaries (expected values computed with numpy).
// ---------------------------------------------------------------------------

TEST(PercentileTest, LinearInterpolationLikeNumpy) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);   // np.percentile(v, 50)
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);   // rank 2.7
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 3.97);  // rank 2.97
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  std::vector<double> ten;
  for (int i = 1; i <= 10; ++i) ten.push_back(i);
  EXPECT_DOUBLE_EQ(Percentile(ten, 90), 9.1);
  EXPECT_DOUBLE_EQ(Percentile(ten, 99), 9.91);
  EXPECT_DOUBLE_EQ(Percentile(std::vector<double>{7}, 99), 7);
  EXPECT_TRUE(std::isnan(Percentile({}, 50)));
}

TEST(SummarizeTest, MeanMedianPopulationStdAndScale) {
  const Summary s = Summarize({4, 1, 3, 2}, 1e3);
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2500);
  EXPECT_DOUBLE_EQ(s.median, 2500);
  EXPECT_NEAR(s.std, 1118.0339887, 1e-6);  // np.std([1,2,3,4]) * 1e3
  EXPECT_DOUBLE_EQ(s.p90, 3700);
  EXPECT_DOUBLE_EQ(s.p99, 3970);
  EXPECT_DOUBLE_EQ(s.min, 1000);
  EXPECT_DOUBLE_EQ(s.max, 4000);
}

TEST(SummarizeTest, EmptyIsAllNan) {
  const Summary s = Summarize({});
  EXPECT_EQ(s.count, 0);
  for (double v : {s.mean, s.median, s.std, s.p90, s.p99, s.min, s.max}) {
    EXPECT_TRUE(std::isnan(v));
  }
}

// ---------------------------------------------------------------------------
// TTFT / ITL / TPOT of one stream.
// ---------------------------------------------------------------------------

TEST(TokenTimelineTest, PerTokenGapsWithCoalescedMessages) {
  TokenTimeline timeline(/*start_s=*/1.0);
  timeline.OnMessage(1.5, 1);
  timeline.OnMessage(1.7, 1);
  timeline.OnMessage(1.7, 0);  // a message without tokens changes nothing
  timeline.OnMessage(2.0, 3);  // three tokens in one message
  timeline.OnMessage(2.1, 1);
  RequestResult r;
  r.ok = true;
  r.start_s = 1.0;
  r.end_s = 2.2;
  timeline.Fill(&r);
  ASSERT_TRUE(r.ttft_s.has_value());
  EXPECT_DOUBLE_EQ(*r.ttft_s, 0.5);
  EXPECT_EQ(r.output_tokens, 6);
  EXPECT_EQ(r.output_messages, 4);
  ASSERT_EQ(r.itl_s.size(), 5u);  // one per token after the first
  EXPECT_NEAR(r.itl_s[0], 0.2, 1e-12);
  EXPECT_NEAR(r.itl_s[1], 0.3, 1e-12);
  EXPECT_EQ(r.itl_s[2], 0.0);
  EXPECT_EQ(r.itl_s[3], 0.0);
  EXPECT_NEAR(r.itl_s[4], 0.1, 1e-12);
  // The gaps add up to first-to-last token time.
  double sum = 0;
  for (double g : r.itl_s) sum += g;
  EXPECT_NEAR(sum, 2.1 - 1.5, 1e-12);
  // TPOT = (e2e - ttft) / (tokens - 1) = (1.2 - 0.5) / 5.
  EXPECT_DOUBLE_EQ(r.e2e_s(), 1.2);
  ASSERT_TRUE(r.tpot_s().has_value());
  EXPECT_NEAR(*r.tpot_s(), 0.14, 1e-12);
}

TEST(TokenTimelineTest, OneTokenHasNoTpotAndNoItl) {
  TokenTimeline timeline(0.0);
  timeline.OnMessage(0.25, 1);
  RequestResult r;
  r.end_s = 0.3;
  timeline.Fill(&r);
  EXPECT_DOUBLE_EQ(*r.ttft_s, 0.25);
  EXPECT_TRUE(r.itl_s.empty());
  EXPECT_FALSE(r.tpot_s().has_value());
}

// ---------------------------------------------------------------------------
// Run metrics.
// ---------------------------------------------------------------------------

RequestResult Ok(double start, double end, double ttft, int prompt, int output,
                 std::vector<double> itl) {
  RequestResult r;
  r.ok = true;
  r.start_s = start;
  r.end_s = end;
  r.ttft_s = ttft;
  r.prompt_tokens = prompt;
  r.output_tokens = output;
  r.output_messages = output;
  r.itl_s = std::move(itl);
  r.finish_reason = "length";
  return r;
}

RequestResult Failed(const char* code) {
  RequestResult r;
  r.ok = false;
  r.code = code;
  r.start_s = 0.1;
  r.end_s = 0.11;  // fast failures must not enter the latency statistics
  r.prompt_tokens = 1000;
  return r;
}

std::vector<RequestResult> HandRun() {
  return {
      // e2e 1.0, ttft 0.2, 5 tokens: tpot (1.0 - 0.2) / 4 = 0.2
      Ok(0.0, 1.0, 0.2, 10, 5, {0.2, 0.2, 0.2, 0.2}),
      // e2e 1.5, ttft 0.5, 3 tokens: tpot (1.5 - 0.5) / 2 = 0.5
      Ok(0.5, 2.0, 0.5, 20, 3, {0.5, 0.5}),
      // e2e 0.3, ttft 0.3, 1 token: no tpot
      Ok(1.0, 1.3, 0.3, 5, 1, {}),
      Failed("RESOURCE_EXHAUSTED"),
      Failed("UNAVAILABLE"),
  };
}

TEST(ComputeMetricsTest, HandComputedRun) {
  const std::vector<RequestResult> run = HandRun();
  const BenchMetrics m = ComputeMetrics(run, /*duration_s=*/2.0, SloOptions());
  EXPECT_EQ(m.num_requests, 5);
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.failed, 2);
  EXPECT_THAT(m.failures_by_code,
              UnorderedElementsAre(Pair("RESOURCE_EXHAUSTED", 1),
                                   Pair("UNAVAILABLE", 1)));
  EXPECT_THAT(m.finish_reasons, ElementsAre(Pair("length", 3)));
  EXPECT_EQ(m.total_input_tokens, 35);  // failed requests' prompts excluded
  EXPECT_EQ(m.total_output_tokens, 9);
  EXPECT_DOUBLE_EQ(m.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(m.output_token_throughput, 4.5);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 22);
  EXPECT_FALSE(m.goodput.has_value());
  EXPECT_FALSE(m.good_requests.has_value());

  EXPECT_EQ(m.ttft_ms.count, 3);
  EXPECT_NEAR(m.ttft_ms.mean, 1000.0 / 3, 1e-9);  // (200 + 500 + 300) / 3
  EXPECT_NEAR(m.ttft_ms.median, 300, 1e-9);
  EXPECT_NEAR(m.ttft_ms.max, 500, 1e-9);
  EXPECT_EQ(m.tpot_ms.count, 2);  // the one-token request has none
  EXPECT_NEAR(m.tpot_ms.mean, 350, 1e-9);
  EXPECT_NEAR(m.tpot_ms.std, 150, 1e-9);
  EXPECT_EQ(m.itl_ms.count, 6);
  EXPECT_NEAR(m.itl_ms.mean, 300, 1e-9);  // (4 * 200 + 2 * 500) / 6
  EXPECT_NEAR(m.itl_ms.median, 200, 1e-9);
  EXPECT_EQ(m.e2e_ms.count, 3);
  EXPECT_NEAR(m.e2e_ms.mean, 2800.0 / 3, 1e-9);
  EXPECT_NEAR(m.e2e_ms.median, 1000, 1e-9);
  EXPECT_NEAR(m.e2e_ms.min, 300, 1e-9);
}

TEST(ComputeMetricsTest, GoodputCountsRequestsMeetingEverySlo) {
  const std::vector<RequestResult> run = HandRun();
  SloOptions both;
  both.ttft_ms = 400;
  both.tpot_ms = 300;
  // A (ttft 200, tpot 200) and C (ttft 300, one token: tpot 0) are good; B
  // misses the TTFT SLO; failures never count.
  BenchMetrics m = ComputeMetrics(run, 2.0, both);
  EXPECT_EQ(m.good_requests, 2);
  EXPECT_DOUBLE_EQ(*m.goodput, 1.0);

  SloOptions ttft_only;
  ttft_only.ttft_ms = 250;  // only A
  m = ComputeMetrics(run, 2.0, ttft_only);
  EXPECT_EQ(m.good_requests, 1);
  EXPECT_DOUBLE_EQ(*m.goodput, 0.5);

  SloOptions tpot_only;
  tpot_only.tpot_ms = 600;  // all three completed requests
  m = ComputeMetrics(run, 2.0, tpot_only);
  EXPECT_EQ(m.good_requests, 3);

  SloOptions e2e;
  e2e.e2e_ms = 1000;  // A (1000, inclusive) and C (300)
  m = ComputeMetrics(run, 2.0, e2e);
  EXPECT_EQ(m.good_requests, 2);
}

TEST(ComputeMetricsTest, ScoreRequestsAreJudgedByE2eForTtft) {
  RequestResult r;
  r.ok = true;
  r.start_s = 0;
  r.end_s = 0.05;  // no ttft: a Score call
  SloOptions slo;
  slo.ttft_ms = 40;
  EXPECT_FALSE(MeetsSlo(r, slo));
  slo.ttft_ms = 60;
  EXPECT_TRUE(MeetsSlo(r, slo));
  const BenchMetrics m = ComputeMetrics({r}, 0.05, slo);
  EXPECT_EQ(m.ttft_ms.count, 0);
  EXPECT_EQ(m.e2e_ms.count, 1);
}

TEST(ComputeMetricsTest, ZeroDurationGivesZeroThroughput) {
  const BenchMetrics m = ComputeMetrics({Failed("UNAVAILABLE")}, 0.0, {});
  EXPECT_EQ(m.request_throughput, 0);
  EXPECT_EQ(m.completed, 0);
  EXPECT_TRUE(std::isnan(m.ttft_ms.mean));
}

// ---------------------------------------------------------------------------
// Random numbers and arrivals.
// ---------------------------------------------------------------------------

TEST(RngTest, UniformIntCoversTheClosedRangeEvenly) {
  Rng rng(1);
  std::map<int64_t, int> counts;
  constexpr int kDraws = 70000;
  for (int i = 0; i < kDraws; ++i) ++counts[rng.UniformInt(3, 9)];
  ASSERT_EQ(counts.size(), 7u);
  EXPECT_EQ(counts.begin()->first, 3);
  EXPECT_EQ(counts.rbegin()->first, 9);
  // Pearson's chi-squared against uniform, 6 degrees of freedom: 22.46 is
  // the 0.999 quantile (the draws are deterministic; this seed is typical).
  double chi2 = 0;
  for (const auto& [value, n] : counts) {
    const double expected = kDraws / 7.0;
    chi2 += (n - expected) * (n - expected) / expected;
  }
  EXPECT_LT(chi2, 22.46);
  EXPECT_EQ(rng.UniformInt(5, 5), 5);
  EXPECT_EQ(rng.UniformInt(-2, -2), -2);
}

TEST(RngTest, UniformIsInUnitInterval) {
  Rng rng(1);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    const double u = rng.Uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);
}

TEST(PoissonArrivalsTest, MeanRateAndExponentialGaps) {
  constexpr int64_t kN = 200000;
  constexpr double kRate = 50;
  const std::vector<double> t = PoissonArrivalTimes(kN, kRate, 7);
  ASSERT_EQ(t.size(), static_cast<size_t>(kN));
  EXPECT_EQ(t[0], 0.0);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  // Mean gap 1 / rate: the observed rate within 1% (about 4.5 sigma).
  const double observed_rate = static_cast<double>(kN - 1) / t.back();
  EXPECT_NEAR(observed_rate, kRate, kRate * 0.01);
  // Exponential gaps: standard deviation equals the mean.
  double sum = 0, sq = 0;
  for (int64_t i = 1; i < kN; ++i) {
    const double gap = t[i] - t[i - 1];
    sum += gap;
    sq += gap * gap;
  }
  const double mean = sum / (kN - 1);
  const double sd = std::sqrt(sq / (kN - 1) - mean * mean);
  EXPECT_NEAR(sd / mean, 1.0, 0.02);
  // Counts per one-second window are Poisson: variance equals mean (50).
  std::vector<int> windows(static_cast<size_t>(t.back()), 0);
  for (double x : t) {
    if (static_cast<size_t>(x) < windows.size())
      ++windows[static_cast<size_t>(x)];
  }
  double wsum = 0, wsq = 0;
  for (int c : windows) {
    wsum += c;
    wsq += static_cast<double>(c) * c;
  }
  const double wmean = wsum / windows.size();
  const double wvar = wsq / windows.size() - wmean * wmean;
  EXPECT_NEAR(wmean, kRate, 1.0);
  EXPECT_NEAR(wvar / wmean, 1.0, 0.1);
}

TEST(PoissonArrivalsTest, InfiniteRateSendsAllAtOnce) {
  const std::vector<double> t =
      PoissonArrivalTimes(5, std::numeric_limits<double>::infinity(), 1);
  EXPECT_THAT(t, ElementsAre(0, 0, 0, 0, 0));
  EXPECT_TRUE(PoissonArrivalTimes(0, 3, 1).empty());
}

TEST(PoissonArrivalsTest, SeedDeterminesTheSchedule) {
  EXPECT_EQ(PoissonArrivalTimes(100, 4, 11), PoissonArrivalTimes(100, 4, 11));
  EXPECT_NE(PoissonArrivalTimes(100, 4, 11), PoissonArrivalTimes(100, 4, 12));
}

// ---------------------------------------------------------------------------
// Workloads.
// ---------------------------------------------------------------------------

std::string ReadCorpus() {
  std::ifstream in(std::string(ALIBI_SOURCE_DIR) +
                   "/tests/client/data/genesis-1-2.txt");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(LengthRangeTest, MatchesVllmRandomDataset) {
  EXPECT_EQ(LengthRange(100, 0.5), std::make_pair(50, 150));
  EXPECT_EQ(LengthRange(10, 0.0), std::make_pair(10, 10));
  EXPECT_EQ(LengthRange(128, 0.25), std::make_pair(96, 160));
  EXPECT_EQ(LengthRange(1, 0.9), std::make_pair(1, 1));  // floor(0.1) -> 1
  EXPECT_EQ(LengthRange(3, 0.5, 2), std::make_pair(2, 4));
}

TEST(WorkloadTest, RandomIdsAndLengthsInRange) {
  WorkloadOptions o;
  o.kind = WorkloadKind::kRandom;
  o.num_requests = 2000;
  o.input_len = 100;
  o.output_len = 20;
  o.range_ratio = 0.2;
  o.vocab_size = 50;
  o.seed = 3;
  auto w = MakeWorkload(o);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->size(), 2000u);
  int min_in = 1 << 30, max_in = 0, min_out = 1 << 30, max_out = 0;
  double in_sum = 0;
  std::set<int32_t> ids;
  for (const WorkloadRequest& r : *w) {
    EXPECT_TRUE(r.text.empty());
    ASSERT_EQ(static_cast<int>(r.token_ids.size()), r.input_len);
    min_in = std::min(min_in, r.input_len);
    max_in = std::max(max_in, r.input_len);
    min_out = std::min(min_out, r.max_tokens);
    max_out = std::max(max_out, r.max_tokens);
    in_sum += r.input_len;
    for (int32_t id : r.token_ids) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, 50);
      ids.insert(id);
    }
  }
  EXPECT_EQ(min_in, 80);
  EXPECT_EQ(max_in, 120);
  EXPECT_EQ(min_out, 16);
  EXPECT_EQ(max_out, 24);
  EXPECT_NEAR(in_sum / 2000, 100, 1.0);
  EXPECT_EQ(ids.size(), 50u);  // every id in the vocabulary shows up

  auto again = MakeWorkload(o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[7].token_ids, (*w)[7].token_ids);
  o.seed = 4;
  auto other = MakeWorkload(o);
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)[7].token_ids, (*w)[7].token_ids);
}

TEST(WorkloadTest, CorpusPromptsAreWholeWordsOfTheTargetSize) {
  const std::string corpus = ReadCorpus();
  ASSERT_GT(corpus.size(), 5000u);
  WorkloadOptions o;
  o.kind = WorkloadKind::kCorpus;
  o.num_requests = 200;
  o.input_len = 50;
  o.output_len = 8;
  o.corpus = corpus;
  o.chars_per_token = 4;  // about 200 bytes per prompt
  auto w = MakeWorkload(o);
  ASSERT_TRUE(w.ok()) << w.status();
  std::set<std::string> distinct;
  for (const WorkloadRequest& r : *w) {
    EXPECT_TRUE(r.token_ids.empty());
    EXPECT_EQ(r.max_tokens, 8);
    ASSERT_FALSE(r.text.empty());
    EXPECT_FALSE(absl::ascii_isspace(r.text.front()));
    EXPECT_FALSE(absl::ascii_isspace(r.text.back()));
    // Within a word of 200 bytes (KJV words are short).
    EXPECT_GE(r.text.size(), 180u) << r.text;
    EXPECT_LE(r.text.size(), 220u) << r.text;
    // Cut from the corpus at word boundaries.
    const size_t at = corpus.find(r.text);
    ASSERT_NE(at, std::string::npos) << r.text;
    EXPECT_TRUE(at == 0 || absl::ascii_isspace(corpus[at - 1])) << r.text;
    const size_t end = at + r.text.size();
    EXPECT_TRUE(end == corpus.size() || absl::ascii_isspace(corpus[end]))
        << r.text;
    distinct.insert(r.text);
  }
  EXPECT_GT(distinct.size(), 150u);
}

TEST(WorkloadTest, ScoreInputsHaveAtLeastTwoTokens) {
  WorkloadOptions o;
  o.kind = WorkloadKind::kScore;
  o.num_requests = 300;
  o.input_len = 3;
  o.range_ratio = 0.9;
  o.vocab_size = 1000;
  auto w = MakeWorkload(o);
  ASSERT_TRUE(w.ok()) << w.status();
  for (const WorkloadRequest& r : *w) {
    EXPECT_GE(r.token_ids.size(), 2u);
    EXPECT_LE(r.token_ids.size(), 5u);
    EXPECT_EQ(r.max_tokens, 0);
  }
  o.corpus = ReadCorpus();
  o.input_len = 20;
  w = MakeWorkload(o);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE((*w)[0].text.empty());
  EXPECT_TRUE((*w)[0].token_ids.empty());
}

TEST(WorkloadTest, BadOptionsAreRejected) {
  WorkloadOptions o;
  o.kind = WorkloadKind::kRandom;
  o.num_requests = 1;
  o.input_len = 10;
  o.output_len = 10;
  o.vocab_size = 100;
  ASSERT_TRUE(MakeWorkload(o).ok());

  WorkloadOptions bad = o;
  bad.range_ratio = 1.0;
  EXPECT_THAT(MakeWorkload(bad).status().message(), HasSubstr("range_ratio"));
  bad = o;
  bad.input_len = 0;
  EXPECT_THAT(MakeWorkload(bad).status().message(), HasSubstr("input_len"));
  bad = o;
  bad.output_len = 0;
  EXPECT_THAT(MakeWorkload(bad).status().message(), HasSubstr("output_len"));
  bad = o;
  bad.vocab_size = 0;
  EXPECT_FALSE(MakeWorkload(bad).ok());
  bad = o;
  bad.kind = WorkloadKind::kScore;
  bad.input_len = 1;
  EXPECT_THAT(MakeWorkload(bad).status().message(), HasSubstr(">= 2"));
  bad = o;
  bad.kind = WorkloadKind::kCorpus;
  EXPECT_THAT(MakeWorkload(bad).status().message(), HasSubstr("--corpus"));
  bad.corpus = "only a few words here";
  EXPECT_THAT(MakeWorkload(bad).status().message(), HasSubstr("too short"));

  EXPECT_FALSE(ParseWorkloadKind("poisson").ok());
  EXPECT_EQ(*ParseWorkloadKind("score"), WorkloadKind::kScore);
}

TEST(CutCorpusTest, StartsAfterAWordAndEndsAtOne) {
  const std::string corpus = "alpha beta gamma delta epsilon";
  EXPECT_EQ(CutCorpus(corpus, 0, 8), "alpha beta");
  EXPECT_EQ(CutCorpus(corpus, 2, 5), "beta gamma");  // skips "pha"
  EXPECT_EQ(CutCorpus(corpus, 6, 1), "gamma");       // mid-"beta": next word
  EXPECT_EQ(CutCorpus(corpus, 25, 100), "alpha beta gamma delta epsilon");
  EXPECT_EQ(CutCorpus("", 0, 10), "");
}

}  // namespace
}  // namespace alibi::client::bench
