// Cost of alibi_metrics recording on the engine's hot path: what one engine
// step records for N running sequences (N inter-token latencies, the step
// histogram, token counters, queue and KV gauges), batched and unbatched, the
// per-request recording of an RPC thread, and one scrape (serialization).
//
//   build/bench/alibi-microbench --benchmark_filter=Metrics
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "server/metrics/metrics.h"

namespace alibi::metrics {
namespace {

MetricsOptions BenchOptions() {
  MetricsOptions options;
  options.model = {.model = "bench",
                   .architecture = "bloom",
                   .dtype = "bf16",
                   .device = "cpu",
                   .version = "bench"};
  options.rpc_names = {"Complete", "CompleteStream", "Score"};
  return options;
}

// Plausible decode inter-token latencies: 5 to 60 ms.
std::vector<double> Latencies(int n) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<double> dist(0.005, 0.06);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

// Everything the engine records once per step for `seqs` running sequences:
// the inter-token latencies in one call (batched) or one call each, the step
// histogram, token counters, queue and KV gauges.
void StepRecording(benchmark::State& state, bool batched) {
  const int seqs = static_cast<int>(state.range(0));
  Metrics metrics(BenchOptions());
  const std::vector<double> itl = Latencies(seqs);
  int64_t step = 0;
  for (auto _ : state) {
    if (batched) {
      metrics.ObserveInterTokenLatencies(itl);
    } else {
      for (double latency : itl) metrics.ObserveInterTokenLatency(latency);
    }
    metrics.ObserveStep(0.015, seqs);
    metrics.AddGenerationTokens(seqs);
    metrics.AddPromptTokens(0);
    metrics.AddPreemptions(0);
    metrics.AddPrefixCache(0, 0);
    metrics.SetRequests(seqs, 8);
    metrics.SetKvCacheBlocks(1000 + (step & 7), 200, 800);
    ++step;
  }
  state.counters["ns_per_seq"] = benchmark::Counter(
      static_cast<double>(seqs) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_MetricsStepRecording(benchmark::State& state) {
  StepRecording(state, /*batched=*/true);
}
BENCHMARK(BM_MetricsStepRecording)->Arg(1)->Arg(64)->Arg(256);

// The same with one histogram observation (and lock) per sequence.
void BM_MetricsStepRecordingUnbatched(benchmark::State& state) {
  StepRecording(state, /*batched=*/false);
}
BENCHMARK(BM_MetricsStepRecordingUnbatched)->Arg(256);

// What an RPC thread records when a generation request finishes.
void BM_MetricsRequestRecording(benchmark::State& state) {
  Metrics metrics(BenchOptions());
  for (auto _ : state) {
    metrics.RecordRequest("CompleteStream", absl::StatusCode::kOk);
    metrics.RecordFinished("stop");
    metrics.ObserveTimeToFirstToken(0.08);
    metrics.ObserveQueueTime(0.002);
    metrics.ObserveE2eLatency(1.7);
  }
}
BENCHMARK(BM_MetricsRequestRecording)->Threads(1)->Threads(2);

// One scrape: the registry serialized to the text format.
void BM_MetricsSerialize(benchmark::State& state) {
  Metrics metrics(BenchOptions());
  metrics.RecordRequest("Complete", absl::StatusCode::kInvalidArgument);
  metrics.ObserveInterTokenLatencies(Latencies(256));
  size_t bytes = 0;
  for (auto _ : state) {
    const std::string text = metrics.SerializeText();
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_MetricsSerialize);

}  // namespace
}  // namespace alibi::metrics
