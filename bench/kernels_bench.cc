// The fast CPU backend's kernels next to the machine's own limits, measured
// in the same run (kernels/cpu/cpu_backend.h MeasureMachineLimits): a
// streaming-read bandwidth probe and multiply-add peak probes (float32 FMA,
// bf16 and int8 dot products), all with the backend's thread count.
//
// - CpuLinear, one row (a decode step) times BLOOM-560m-shaped weights,
//   cycling through 160 MiB or more of matrices so that every call reads its
//   weights from memory. The host's memory bandwidth moves (other tenants), so
//   each pass over the matrices (a window) is followed, untimed, by the read
//   probe over those same weights: GB/s of weights (median window), probe
//   (median) and %probe, the median of each window's GEMV rate over the probe
//   taken right after it.
// - CpuLinear, 512 rows (a prefill chunk): GFLOP/s, and % of the FMA probe
//   (f32, f16), the bf16 probe (bf16) or the int8 probe (int8).
// - CpuAttention: decode (one query per sequence, 8 sequences of 2048
//   tokens: GB/s of KV read), one stream's decode step (one sequence of 192
//   tokens, the peer benchmark's mean context, layer after layer through
//   96 layers' pools, 151 MB that the cache cannot hold: GB/s), each pass
//   paired with the read probe over the KV pools as for the GEMVs (median GB/s,
//   probe and %probe); prefill (512-token causal prompt: GFLOP/s) and a long
//   prompt's chunk (the last 512 rows of a 16,384-token prompt, whose keys do
//   not fit the cache: GFLOP/s).
//
// Run: build/bench/alibi-microbench --benchmark_filter=Cpu
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/logging.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace alibi {
namespace {

using kernels::DType;

constexpr int kThreads = 2;

const kernels::cpu::MachineLimits& Limits() {
  static const kernels::cpu::MachineLimits limits = [] {
    SetMinLogSeverity(LogSeverity::kWarning);  // one line per backend made
    const auto l = kernels::cpu::MeasureMachineLimits(kThreads);
    std::fprintf(stderr,
                 "machine limits (%d threads): read %.1f GB/s, f32 FMA %.1f "
                 "GFLOP/s, bf16 dot %.1f GFLOP/s, int8 dot %.1f GOP/s\n",
                 kThreads, l.read_gb_per_s, l.fma_gflop_per_s,
                 l.bf16_gflop_per_s, l.int8_gop_per_s);
    return l;
  }();
  return limits;
}

// The rate next to the machine's limit and the share of it.
void Report(benchmark::State& state, const std::string& unit, double rate,
            double limit) {
  state.counters[unit] = rate;
  state.counters["limit"] = limit;
  state.counters["%limit"] = limit > 0 ? 100.0 * rate / limit : 0.0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Read rates of passes over `regions`, each paired with the read probe over
// the same regions taken right after it (untimed): the share of the
// bandwidth the memory gave just then, whatever other tenants of the host
// do.
class PairedReads {
 public:
  explicit PairedReads(std::vector<absl::Span<const char>> regions)
      : regions_(std::move(regions)) {}

  // A pass that read `bytes` in `seconds`; probes with the timing paused.
  void Add(benchmark::State& state, double bytes, double seconds) {
    state.PauseTiming();
    rate_.push_back(bytes / seconds / 1e9);
    probe_.push_back(kernels::cpu::MeasureReadRate(regions_, kThreads));
    share_.push_back(100.0 * rate_.back() / probe_.back());
    state.ResumeTiming();
  }

  // GB/s, probe and %probe (medians over the passes) and the passes.
  void Report(benchmark::State& state) const {
    if (rate_.empty()) return;
    state.counters["GB/s"] = Median(rate_);
    state.counters["probe"] = Median(probe_);
    state.counters["%probe"] = Median(share_);
    state.counters["windows"] = static_cast<double>(rate_.size());
  }

 private:
  const std::vector<absl::Span<const char>> regions_;
  std::vector<double> rate_, probe_, share_;
};

DType WidthOf(int64_t code) {
  const DType widths[] = {DType::kF32, DType::kBF16, DType::kF16, DType::kI8};
  return widths[code];
}

std::unique_ptr<kernels::Backend> MakeCpu(DType weights) {
  kernels::BackendOptions options;
  options.device = "cpu";
  options.num_threads = kThreads;
  options.cpu_weight_dtype = weights;
  return std::move(*kernels::CreateBackend(options));
}

std::vector<float> RandomVector(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// args: width (0 f32, 1 bf16, 2 f16, 3 int8), rows, N, K.
void BM_CpuLinear(benchmark::State& state) {
  const DType width = WidthOf(state.range(0));
  const int64_t rows = state.range(1), n = state.range(2), k = state.range(3);
  const kernels::cpu::MachineLimits& limits = Limits();
  auto backend = MakeCpu(width);
  // Enough matrices that the weights come from memory each call, each with
  // its own values (a hypervisor may merge equal pages into one).
  const int64_t bytes_each =
      static_cast<int64_t>(n * k * kernels::DTypeSize(width));
  const int copies = rows == 1 ? static_cast<int>(std::max<int64_t>(
                                     2, (int64_t{160} << 20) / bytes_each + 1))
                               : 1;
  std::vector<kernels::Weight> weights;
  for (int c = 0; c < copies; ++c) {
    const std::vector<float> host = RandomVector(n * k, 0.03f, 1 + c);
    weights.push_back(
        std::move(*backend->UploadWeight(host.data(), DType::kF32, n, k)));
  }
  std::vector<float> x = RandomVector(rows * k, 1.0f, 2), y(rows * n);
  const kernels::TensorView in =
      kernels::TensorView::Of(x.data(), DType::kF32, rows, k);
  const kernels::TensorView out =
      kernels::TensorView::Of(y.data(), DType::kF32, rows, n);
  auto linear = [&](size_t i) {
    return backend->Linear(in, weights[i % copies].view, {}, out).ok();
  };
  using Clock = std::chrono::steady_clock;
  if (rows == 1) {
    // Windows of one pass over every matrix, each paired with the read
    // probe over the same weights.
    std::vector<absl::Span<const char>> regions;
    for (const kernels::Weight& w : weights) {
      regions.emplace_back(static_cast<const char*>(w.buffer.data()),
                           w.buffer.bytes());
    }
    const double window_bytes =
        static_cast<double>(weights[0].buffer.bytes()) * copies;
    PairedReads reads(std::move(regions));
    size_t i = 0;
    auto window_start = Clock::now();
    for (auto _ : state) {
      if (!linear(i)) {
        state.SkipWithError("Linear failed");
        return;
      }
      benchmark::DoNotOptimize(y.data());
      if (++i % copies != 0) continue;
      reads.Add(
          state, window_bytes,
          std::chrono::duration<double>(Clock::now() - window_start).count());
      window_start = Clock::now();
    }
    reads.Report(state);
  } else {
    const auto start = Clock::now();
    for (auto _ : state) {
      if (!linear(0)) {
        state.SkipWithError("Linear failed");
        return;
      }
      benchmark::DoNotOptimize(y.data());
    }
    const double per_call =
        std::chrono::duration<double>(Clock::now() - start).count() /
        static_cast<double>(state.iterations());
    Report(state, "GFLOP/s", 2.0 * rows * n * k / per_call / 1e9,
           width == DType::kBF16 ? limits.bf16_gflop_per_s
           : width == DType::kI8 ? limits.int8_gop_per_s
                                 : limits.fma_gflop_per_s);
  }
  state.SetLabel(std::string(kernels::DTypeName(width)));
}

void LinearArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"width", "rows", "N", "K"});
  for (int w = 0; w < 4; ++w) {
    b->Args({w, 1, 4096, 1024});    // MLP up, one decode row
    b->Args({w, 1, 1024, 4096});    // MLP down
    b->Args({w, 512, 4096, 1024});  // a 512-token prefill chunk
  }
}
BENCHMARK(BM_CpuLinear)
    ->Apply(LinearArgs)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

// args: mode (0 decode: 8 sequences x 2048 keys, one query each; 1 prefill:
// one 512-token prompt; 2 long: the last 512 rows of a 16,384-token prompt;
// 3 one stream: one query over 192 keys in each of 96 layers' pools, so
// that the keys come from memory), KV dtype (0 f32, 1 bf16, 2 f16). 16
// heads of 64.
void BM_CpuAttention(benchmark::State& state) {
  const bool one_stream = state.range(0) == 3;
  const bool decode = state.range(0) == 0 || one_stream,
             long_chunk = state.range(0) == 2;
  const DType kv_dtype = WidthOf(state.range(1));
  const kernels::cpu::MachineLimits& limits = Limits();
  kernels::BackendOptions options;
  options.device = "cpu";
  options.num_threads = kThreads;
  options.kv_dtype = kv_dtype;
  auto backend = std::move(*kernels::CreateBackend(options));
  const int heads = 16, d = 64, block = 16;
  const int seqs = decode && !one_stream ? 8 : 1;
  const int ctx = one_stream ? 192 : decode ? 2048 : long_chunk ? 16384 : 512;
  const int layers = one_stream ? 96 : 1;
  const int queries = decode ? 1 : 512;
  const int blocks_per_seq = ctx / block;
  const int num_blocks = layers * seqs * blocks_per_seq;
  const size_t pool_elems = size_t{1} * num_blocks * heads * block * d;
  const size_t elem = kernels::DTypeSize(kv_dtype);
  // The pools come from the backend, as the server's do (2 MiB pages where
  // the kernel gives them).
  kernels::Buffer kbuf = std::move(*backend->Allocate(pool_elems * elem));
  kernels::Buffer vbuf = std::move(*backend->Allocate(pool_elems * elem));
  kernels::PagedKvView kv{kbuf.data(), vbuf.data(), kv_dtype, num_blocks,
                          block,       heads,       d};
  // Fill the pool through WriteKv, every sequence's keys and values in every
  // layer with their own values (a hypervisor may merge equal pages into
  // one); layer l's block tables are tables[l * seqs * blocks_per_seq ...].
  std::vector<int32_t> tables(num_blocks), starts = {0}, lens;
  std::iota(tables.begin(), tables.end(), 0);
  for (int s = 0; s < seqs * layers; ++s) {
    std::vector<float> k_rows =
        RandomVector(static_cast<size_t>(ctx) * heads * d, 1.0f, 3 + s);
    std::vector<float> v_rows =
        RandomVector(static_cast<size_t>(ctx) * heads * d, 1.0f, 100 + s);
    std::vector<int32_t> slots(ctx);
    for (int p = 0; p < ctx; ++p) slots[p] = s * ctx + p;
    const auto kview =
        kernels::TensorView::Of(k_rows.data(), DType::kF32, ctx, heads * d);
    const auto vview =
        kernels::TensorView::Of(v_rows.data(), DType::kF32, ctx, heads * d);
    if (!backend->WriteKv(kview, vview, slots.data(), ctx, kv).ok()) {
      state.SkipWithError("WriteKv failed");
      return;
    }
    if (s >= seqs) continue;
    starts.push_back(starts.back() + queries);
    lens.push_back(ctx);
  }
  const int tokens = seqs * queries;
  std::vector<float> q = RandomVector(static_cast<size_t>(tokens) * heads * d,
                                      1.0f, 4),
                     o(q.size());
  std::vector<float> slopes(heads);
  for (int h = 0; h < heads; ++h) slopes[h] = std::pow(2.0f, -0.5f * (h + 1));
  kernels::AttentionMeta meta;
  meta.num_seqs = seqs;
  meta.num_tokens = tokens;
  meta.query_start = starts.data();
  meta.context_lens = lens.data();
  meta.block_tables = tables.data();
  meta.max_blocks_per_seq = blocks_per_seq;
  meta.max_query_len = queries;
  meta.max_context_len = ctx;
  const auto qv =
      kernels::TensorView::Of(q.data(), DType::kF32, tokens, heads * d);
  const auto ov =
      kernels::TensorView::Of(o.data(), DType::kF32, tokens, heads * d);
  using Clock = std::chrono::steady_clock;
  // Decode: each pass over the pools is paired with the read probe over
  // those same pools, as for the one-row GEMVs.
  PairedReads reads(
      {{static_cast<const char*>(kbuf.data()), pool_elems * elem},
       {static_cast<const char*>(vbuf.data()), pool_elems * elem}});
  const auto start = Clock::now();
  for (auto _ : state) {
    const auto pass_start = Clock::now();
    for (int l = 0; l < layers; ++l) {
      meta.block_tables = tables.data() + l * seqs * blocks_per_seq;
      if (!backend
               ->PagedAttention(qv, kv, meta, slopes.data(), heads, 0.125f, ov)
               .ok()) {
        state.SkipWithError("PagedAttention failed");
        return;
      }
      benchmark::DoNotOptimize(o.data());
    }
    if (!decode) continue;
    reads.Add(state, 2.0 * pool_elems * elem,
              std::chrono::duration<double>(Clock::now() - pass_start).count());
  }
  if (decode) {
    reads.Report(state);
  } else {
    const double per_call =
        std::chrono::duration<double>(Clock::now() - start).count() /
        static_cast<double>(state.iterations());
    // q.k and p.v over the keys each row sees.
    const double first = ctx - queries + 1;
    const double flops = 4.0 * heads * d * queries * (first + ctx) / 2;
    Report(state, "GFLOP/s", flops / per_call / 1e9, limits.fma_gflop_per_s);
  }
  state.SetLabel(std::string(one_stream   ? "one stream, 192 keys, KV "
                             : decode     ? "decode, KV "
                             : long_chunk ? "512 rows at 16k, KV "
                                          : "prefill, KV ") +
                 std::string(kernels::DTypeName(kv_dtype)));
}
BENCHMARK(BM_CpuAttention)
    ->ArgNames({"mode", "kv"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({3, 0})
    ->Args({3, 1})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({2, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

}  // namespace
}  // namespace alibi
