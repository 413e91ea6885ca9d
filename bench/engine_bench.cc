// Engine step time with 256 running sequences on the CPU backend (tiny-mpt
// fixture model), with and without metrics recording: the difference is the
// whole cost of metrics per step.
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/clock.h"
#include "kernels/backend.h"
#include "server/engine/engine_core.h"
#include "server/metrics/metrics.h"
#include "server/model/model.h"

namespace alibi {
namespace {

constexpr int kSequences = 256;

// Runs 256 greedy requests of 8 prompt + `decode` tokens to completion and
// reports the engine's step time from its own step histogram.
void BM_EngineDecode256(benchmark::State& state) {
  const bool with_metrics = state.range(0) != 0;
  const std::string dir = std::string(ALIBI_TEST_DATA_DIR) + "/models/tiny-mpt";
  kernels::BackendOptions options;
  options.device = "cpu";
  auto backend = kernels::CreateBackend(options);
  auto model = model::Model::Load(dir, backend->get());
  if (!backend.ok() || !model.ok()) {
    state.SkipWithError("cannot load the tiny-mpt fixture");
    return;
  }
  metrics::Metrics metrics(metrics::MetricsOptions{});
  engine::EngineConfig config;
  config.scheduler.kv.num_blocks = 4096;
  config.scheduler.max_num_seqs = kSequences;
  auto engine =
      engine::CreateEngine(config, std::move(*backend), std::move(*model),
                           with_metrics ? &metrics : nullptr);
  if (!engine.ok()) {
    state.SkipWithError("cannot start the engine");
    return;
  }
  const int decode = 64;
  uint64_t steps = 0;
  double seconds = 0.0;
  for (auto _ : state) {
    const TimePoint start = Now();
    const uint64_t before = (*engine)->GetSnapshot().num_steps;
    std::vector<std::shared_ptr<engine::OutputStream>> streams;
    for (int i = 0; i < kSequences; ++i) {
      engine::EngineRequest r;
      for (int t = 0; t < 8; ++t) r.prompt.push_back(100 + (i * 8 + t) % 30000);
      r.max_tokens = decode;
      r.sampling.temperature = 0.0f;
      r.ignore_eos = true;
      streams.push_back(std::make_shared<engine::OutputStream>());
      if (!(*engine)->Submit(r, streams.back()).ok()) {
        state.SkipWithError("submit failed");
        return;
      }
    }
    for (auto& s : streams) {
      while (!s->finished()) s->WaitAndTake(absl::Milliseconds(50));
    }
    steps += (*engine)->GetSnapshot().num_steps - before;
    seconds += SecondsBetween(start, Now());
  }
  state.counters["steps"] = static_cast<double>(steps);
  state.counters["ms_per_step"] = 1e3 * seconds / static_cast<double>(steps);
}
BENCHMARK(BM_EngineDecode256)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("metrics")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

}  // namespace
}  // namespace alibi
