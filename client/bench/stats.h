// alibi-bench's metrics, defined as vLLM's benchmarks/benchmark_serving.py
// defines them, so numbers compare across servers:
//
// - Over completed (status OK) requests only: input / output token totals,
//   TTFT, TPOT, ITL, E2E latency. Failed requests count by status code.
// - duration: from the benchmark start to the last request's end.
// - request throughput = completed / duration; output token throughput =
//   output tokens / duration; total token throughput = (input + output) /
//   duration.
// - TTFT: from sending the request to receiving the first generated token.
// - TPOT, per request with more than one output token:
//   (e2e - ttft) / (output_tokens - 1).
// - ITL, per token after the first: the time between the arrival of a token
//   and of the one before it. The server may coalesce several tokens into one
//   stream message (when the reader lags); the first token of such a message
//   gets the whole gap and the others 0, so a request's ITLs sum to the time
//   from its first to its last token.
// - E2E latency: from sending the request to the end of the call.
// - goodput: completed requests that meet every SLO given (TTFT, TPOT, E2E;
//   a request with one output token counts as TPOT 0, a request without a
//   TTFT, i.e. Score, is judged by its E2E latency) per second of duration;
//   absent when no SLO is given.
// - Summaries: mean, median, std (population), p90, p99 (numpy's default
//   linear interpolation), min, max; all NaN when there is no value.
//
// Thread-safety: pure functions and plain values; a TokenTimeline belongs to
// one request (one thread at a time).
#ifndef ALIBI_CLIENT_BENCH_STATS_H_
#define ALIBI_CLIENT_BENCH_STATS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace alibi::client::bench {

struct Summary {
  int64_t count = 0;
  double mean = 0;
  double median = 0;
  double std = 0;
  double p90 = 0;
  double p99 = 0;
  double min = 0;
  double max = 0;
};

// The p-th percentile (p in [0, 100]) of sorted values by linear
// interpolation between closest ranks (numpy.percentile's default): rank
// p/100 * (n-1). NaN for no values.
double Percentile(absl::Span<const double> sorted, double p);

// Summary of `values` (any order), each multiplied by `scale` (1e3: seconds
// to milliseconds).
Summary Summarize(std::vector<double> values, double scale = 1.0);

// What one request measured. Times are seconds on the benchmark's clock
// (0 = benchmark start).
struct RequestResult {
  bool ok = false;
  std::string code = "OK";  // gRPC status code name
  std::string error;        // status message when !ok
  double start_s = 0;       // call started
  double end_s = 0;         // call finished (status received)
  std::optional<double> ttft_s;
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  int64_t output_messages = 0;  // stream messages that carried tokens
  std::vector<double> itl_s;    // output_tokens - 1 entries for streams
  std::string finish_reason;    // "length", "eos", ... ("" for Score)

  double e2e_s() const { return end_s - start_s; }
  // (e2e - ttft) / (output_tokens - 1), when output_tokens > 1 and a TTFT was
  // measured.
  std::optional<double> tpot_s() const;
};

// Accumulates a stream's token arrival times into a RequestResult.
class TokenTimeline {
 public:
  explicit TokenTimeline(double start_s) : start_s_(start_s) {}
  // A stream message carrying `num_tokens` tokens arrived at `now_s`.
  void OnMessage(double now_s, int num_tokens);
  // Copies ttft_s, output_tokens, output_messages and itl_s into *result.
  void Fill(RequestResult* result) const;

 private:
  double start_s_;
  double last_s_ = 0;
  std::optional<double> ttft_s_;
  int64_t tokens_ = 0;
  int64_t messages_ = 0;
  std::vector<double> itl_s_;
};

struct SloOptions {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2e_ms;
  bool any() const { return ttft_ms || tpot_ms || e2e_ms; }
};

// Whether a completed request meets every SLO in `slo`.
bool MeetsSlo(const RequestResult& result, const SloOptions& slo);

struct BenchMetrics {
  int64_t num_requests = 0;
  int64_t completed = 0;
  int64_t failed = 0;
  std::map<std::string, int64_t> failures_by_code;
  std::map<std::string, int64_t> finish_reasons;  // completed requests
  double duration_s = 0;
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  double request_throughput = 0;
  double output_token_throughput = 0;
  double total_token_throughput = 0;
  std::optional<int64_t> good_requests;  // with an SLO
  std::optional<double> goodput;         // good_requests / duration
  // Milliseconds.
  Summary ttft_ms;
  Summary tpot_ms;
  Summary itl_ms;
  Summary e2e_ms;
};

// The metrics of a run; duration_s <= 0 gives zero throughputs.
BenchMetrics ComputeMetrics(absl::Span<const RequestResult> results,
                            double duration_s, const SloOptions& slo);

}  // namespace alibi::client::bench

#endif  // ALIBI_CLIENT_BENCH_STATS_H_
