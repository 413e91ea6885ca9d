// alibi-serve's Prometheus metrics: every family is created once, up front, in
// one registry; the engine and the RPC layer record through the narrow API
// below, and Prometheus scrapes the registry over HTTP (`/metrics`).
//
// Names and semantics follow vLLM's families with the prefix `alibi_` (see
// Families() for the complete list), so dashboards written for vLLM map over:
//
//   Metrics metrics({.model = {.model = "bloom-560m", .architecture = "bloom",
//                              .dtype = "bf16", .device = "cuda:0",
//                              .version = "0.1.0"},
//                    .rpc_names = {"Complete", "CompleteStream", "Score"}});
//   metrics.RecordRequest("Complete", absl::StatusCode::kOk);   // rpc thread
//   metrics.ObserveStep(0.012, 384);                            // engine
//
// Every family except alibi_model_info carries the constant label `model`
// (vLLM's `model_name`), so one dashboard can tell several servers apart.
//
// Thread-safety: every method may be called concurrently from any thread
// (the one engine thread, many gRPC threads, the scrape endpoint's threads)
// once the object is constructed. Recording never allocates or formats strings,
// except the first time a new (rpc, code) pair or finish reason is seen.
// Counter and gauge updates are lock-free atomics; a histogram observation
// takes that histogram's own uncontended mutex (prometheus-cpp), so batch the
// per-step inter-token latencies with ObserveInterTokenLatencies() (one lock a
// step).
//
// Recording never fails: negative counts are ignored (counters only go up)
// and NaN observations are dropped (they would poison `_sum` for good).
#ifndef ALIBI_SERVER_METRICS_METRICS_H_
#define ALIBI_SERVER_METRICS_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace alibi::metrics {

// Describes the served model; exported as alibi_model_info{...} = 1.
struct ModelLabels {
  std::string model;         // served model name, e.g. "bloom-560m"
  std::string architecture;  // "bloom" or "mpt"
  std::string dtype;         // weights as served: "f32", "f16", "bf16"
  std::string device;        // "cpu", "cuda:0", ...
  std::string version;       // alibi-serve version
};

struct MetricsOptions {
  ModelLabels model;
  // RPC method names (e.g. "Complete") whose alibi_requests_total{code="OK"}
  // series start at 0, so the first request of each shows up in rate() and
  // increase(). Other (rpc, code) pairs are created on first use.
  std::vector<std::string> rpc_names;
  // Finish reasons whose alibi_request_finished_total series start at 0
  // (vLLM's set by default). Other reasons are created on first use.
  std::vector<std::string> finish_reasons = {"stop", "length", "abort"};
};

enum class MetricType { kCounter, kGauge, kHistogram };

// One metric family as exposed in the Prometheus text format.
struct FamilyInfo {
  std::string name;  // exactly as exposed (no suffix is appended)
  MetricType type;
  std::string help;
  // Label names of every series, sorted, without histograms' `le`.
  std::vector<std::string> label_names;
};

class Metrics {
 public:
  explicit Metrics(MetricsOptions options);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Every family this library registers, in registration order.
  static const std::vector<FamilyInfo>& Families();

  // gRPC's canonical name for `code` ("OK", "INVALID_ARGUMENT", ...); absl and
  // gRPC status codes share their numbers. Out-of-range codes give "UNKNOWN".
  static absl::string_view CodeName(absl::StatusCode code);

  // The registry in the Prometheus text format, as a scrape would return it.
  std::string SerializeText() const;

  // --- Per request (any thread). -------------------------------------------
  // One finished RPC: alibi_requests_total{rpc, code}. `code` is the status
  // the RPC ended with (static_cast a grpc::StatusCode; the numbers agree).
  void RecordRequest(absl::string_view rpc, absl::StatusCode code);
  // One finished generation request: alibi_request_finished_total
  // {finish_reason}. Keep reasons to a small fixed set ("stop", "length",
  // "abort", ...): each distinct value is a new series.
  void RecordFinished(absl::string_view finish_reason);
  void ObserveTimeToFirstToken(double seconds);
  void ObserveE2eLatency(double seconds);
  void ObserveQueueTime(double seconds);

  // --- Per engine step (engine thread). -------------------------------------
  void ObserveInterTokenLatency(double seconds);
  // The same for a whole step's sequences at once: one lock, one update.
  void ObserveInterTokenLatencies(absl::Span<const double> seconds);
  // Step wall time and the tokens it computed (prefill + decode).
  void ObserveStep(double duration_seconds, int64_t num_tokens);
  void AddPromptTokens(int64_t n);
  void AddGenerationTokens(int64_t n);
  void AddPreemptions(int64_t n);
  // Prefix cache lookups in tokens (vLLM's semantics): `queried_tokens` looked
  // up, `hit_tokens` of them found cached.
  void AddPrefixCache(int64_t queried_tokens, int64_t hit_tokens);
  void SetRequests(int64_t running, int64_t waiting);
  // Running requests with a sliding KV window.
  void SetWindowedRequests(int64_t running);
  // KV blocks sliding windows released.
  void AddWindowReleasedBlocks(int64_t n);
  // KV blocks by state. `used`: held by live requests; `cached`: kept only for
  // prefix reuse (evictable); `free`: unused. Sets alibi_kv_cache_blocks and
  // alibi_kv_cache_usage_ratio = used / (used + cached + free), 0 if empty.
  void SetKvCacheBlocks(int64_t used, int64_t cached, int64_t free);
  void SetDeviceMemory(int64_t used_bytes, int64_t total_bytes);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace alibi::metrics

#endif  // ALIBI_SERVER_METRICS_METRICS_H_
