// Drives a workload against a server: with gRPC's callback API (one reactor
// per in-flight request on gRPC's own threads, so thousands of concurrent
// streams need no thread each), or through the OpenAI-compatible HTTP API.
//
// Requests start at their arrival times (open loop); with a concurrency cap a
// request whose time has come also waits for a free slot (closed loop when
// every arrival is at 0). Completion workloads use CompleteStream and time
// every token; the score workload uses Score.
//
// Thread-safety: RunLoad blocks the calling thread until every request ended.
#ifndef ALIBI_CLIENT_BENCH_RUNNER_H_
#define ALIBI_CLIENT_BENCH_RUNNER_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "alibi/v1/inference.pb.h"
#include "client/bench/http_client.h"
#include "client/bench/stats.h"
#include "client/bench/workload.h"
#include "client/connection.h"

namespace alibi::client::bench {

struct RunOptions {
  int64_t concurrency = 0;  // most requests in flight; 0: no cap
  int64_t deadline_ms = 0;  // per request; 0: none
  bool progress = false;    // a progress bar on stderr
  bool score = false;       // Score instead of CompleteStream
  // Sampling for CompleteStream (max_tokens comes from the workload); a
  // seed, if set, is offset by the request's index.
  v1::SamplingParams sampling;
  int32_t score_top_logprobs = 0;
  std::string request_id_prefix = "alibi-bench-";
};

struct RunResult {
  std::vector<RequestResult> results;  // in workload order
  // From the first send to the last request's end.
  double duration_s = 0;
};

// Sends workload[i] at arrival_s[i] seconds after the start (same sizes).
RunResult RunLoad(const Connection& connection,
                  absl::Span<const WorkloadRequest> workload,
                  absl::Span<const double> arrival_s,
                  const RunOptions& options);

// The same through the OpenAI-compatible HTTP API (alibi-bench --backend
// openai): POST /v1/completions with "stream": true and the same prompts,
// lengths and sampling, one thread per request in flight on keep-alive
// connections. Tokens are timed per server-sent event with a choice (one
// token each, as vLLM's benchmark counts them); the output token count is
// the final usage's. `model` is sent when not empty. Completions only.
RunResult RunLoadOpenAi(HttpClient& client, const std::string& model,
                        absl::Span<const WorkloadRequest> workload,
                        absl::Span<const double> arrival_s,
                        const RunOptions& options);

}  // namespace alibi::client::bench

#endif  // ALIBI_CLIENT_BENCH_RUNNER_H_
