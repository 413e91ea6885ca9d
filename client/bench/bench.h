// alibi-bench: a load generator for alibi-serve that reports what serving
// benchmarks report (vLLM's benchmarks/benchmark_serving.py): throughput,
// TTFT, TPOT, ITL, end-to-end latency and goodput.
//
//   alibi-bench --num_requests 200 --request_rate 8 --input_len 256
//       --output_len 64 --json out.json     (one command line)
//   alibi-bench --backend openai --address localhost:8000 ...   (the HTTP API)
//
// Exit codes: 0 the run completed with at least one successful request;
// 1 the server could not be reached, or every request failed; 2 usage error.
//
// Thread-safety: RunBench blocks its caller; concurrent runs share nothing.
#ifndef ALIBI_CLIENT_BENCH_BENCH_H_
#define ALIBI_CLIENT_BENCH_BENCH_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/bench/stats.h"
#include "client/bench/workload.h"
#include "client/connection.h"

namespace alibi::client::bench {

// The API alibi-bench drives.
enum class Backend {
  kGrpc,    // CompleteStream / Score
  kOpenAi,  // POST /v1/completions, streamed (server-sent events)
};

struct BenchConfig {
  Backend backend = Backend::kGrpc;
  // Backend openai: each request's `model` (empty: the one /v1/models
  // lists).
  std::string model;
  ConnectionOptions connection;
  int num_channels = 1;
  int64_t num_requests = 100;
  double request_rate = std::numeric_limits<double>::infinity();
  int64_t concurrency = 0;
  WorkloadKind workload = WorkloadKind::kRandom;
  int input_len = 1024;
  int output_len = 128;
  double range_ratio = 0;
  std::string corpus;          // path
  double chars_per_token = 0;  // 0: measure with one Tokenize call
  uint64_t seed = 0;
  SloOptions slo;
  std::string json_path;
  bool json_requests = false;
  bool ignore_eos = true;  // default: true for random, false otherwise
  std::optional<double> temperature = 0.0;  // greedy unless set
  std::optional<double> top_p;
  int32_t top_k = 0;
  int32_t top_logprobs = 0;      // score workload
  std::optional<bool> progress;  // default: when stderr is a terminal
};

// Parses the arguments after the program name; INVALID_ARGUMENT for usage
// errors (unknown flag, bad value, positional argument, inconsistent flags).
// help_requested is set for --help (and the config left default).
absl::StatusOr<BenchConfig> ParseBenchArgs(absl::Span<const std::string> args,
                                           bool* help_requested);

std::string BenchUsage();

// Runs alibi-bench: table to `out`, messages to `err`; returns the exit code.
int RunBench(absl::Span<const std::string> args, std::ostream& out,
             std::ostream& err);

}  // namespace alibi::client::bench

#endif  // ALIBI_CLIENT_BENCH_BENCH_H_
