// alibi-gpubench: the CUDA backend's speed on real model shapes, each figure
// next to its floor.
//
//   alibi-mkmodel --preset bloom-560m --dtype bf16 --out /tmp/bloom-560m
//   alibi-mkmodel --preset bloom-7b1 --dtype bf16 --out /tmp/bloom-7b1
//   alibi-gpubench --model_dir /tmp/bloom-560m,/tmp/bloom-7b1
//
// For each model it prints
// - decode step time (Model::Forward of one token per sequence, logits of
//   every sequence copied to the host, as the engine runs it: decode graphs
//   replayed) at batch 1, 8, 32 (hf_generate.py's second batch), 64 and 256
//   and contexts 512 and 2048, where the KV cache fits;
// - prefill time of one 2048-token prompt (logits of its last position);
// - the attention kernel alone: prefill TFLOP/s (2048-token prompt) and
//   decode GB/s (KV bytes read), with ALiBi and with no bias (slopes null:
//   the same kernels without the bias term), so the bias's cost shows;
// and for every figure its floor and the ratio measured / floor. Floors come
// from two ceilings measured first on this device: device-to-device copy
// bandwidth (bytes read + written / time of a 1 GiB cudaMemcpy) and the bf16
// GEMM rate (an 8192^3 bf16 product through the backend's cuBLASLt Linear).
// A figure's floor is max(bytes it must move / copy bandwidth, FLOPs it must
// do / GEMM rate).
//
// Times are medians over repetitions (host clock around a synchronised batch
// of launches, so launch overheads count, as in serving). The KV cache is
// filled by real prefill passes before decode timings (never zeros).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "kernels/backend.h"
#include "kernels/cuda/dispatch.h"
#include "kernels/memory_plan.h"
#include "server/model/config.h"
#include "server/model/model.h"

ABSL_FLAG(std::string, model_dir, "",
          "Comma-separated checkpoint directories (alibi-mkmodel output).");
ABSL_FLAG(std::string, dtype, "bf16", "bf16 or fp16.");
ABSL_FLAG(int, reps, 7, "Repetitions per figure (the median is reported).");
ABSL_FLAG(double, gpu_memory_fraction, 0.92,
          "Share of device memory the model, workspace and KV cache may use.");

namespace alibi::bench {
namespace {

using kernels::Backend;
using kernels::Buffer;
using kernels::DType;
using kernels::TensorView;

constexpr int kBlockSize = 16;
constexpr int kPrefillTokens = 2048;
constexpr int kFillChunkSeqs = 8;  // prefill sequences per fill step

double Seconds(std::chrono::steady_clock::time_point a,
               std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Median seconds per call of `fn` over `reps` repetitions of `iters` calls,
// after one warm-up repetition; the backend is synchronised around each.
absl::StatusOr<double> Time(Backend& backend, int iters, int reps,
                            const std::function<absl::Status()>& fn) {
  std::vector<double> samples;
  for (int r = -1; r < reps; ++r) {
    RETURN_IF_ERROR(backend.Synchronize());
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) RETURN_IF_ERROR(fn());
    RETURN_IF_ERROR(backend.Synchronize());
    const double s = Seconds(start, std::chrono::steady_clock::now()) / iters;
    if (r >= 0) samples.push_back(s);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

absl::Status Cuda(cudaError_t err, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(err)));
}

// Fills `bytes` of device memory with random 16-bit values (N(0, scale)):
// one random chunk uploaded, then copied across.
absl::Status FillRandom(Backend& backend, void* dst, size_t bytes, DType dtype,
                        float scale, std::mt19937& rng) {
  const size_t chunk_elems =
      std::min<size_t>(bytes / 2, size_t{16} << 20);  // 32 MiB of bf16
  std::vector<float> host(chunk_elems);
  std::normal_distribution<float> normal(0.0f, scale);
  for (float& x : host) x = normal(rng);
  RETURN_IF_ERROR(
      backend.UploadConvert(host.data(), DType::kF32, chunk_elems, dst, dtype));
  RETURN_IF_ERROR(backend.Synchronize());
  const size_t chunk_bytes = chunk_elems * 2;
  for (size_t off = chunk_bytes; off < bytes; off += chunk_bytes) {
    RETURN_IF_ERROR(Cuda(cudaMemcpy(static_cast<char*>(dst) + off, dst,
                                    std::min(chunk_bytes, bytes - off),
                                    cudaMemcpyDeviceToDevice),
                         "fill"));
  }
  return Cuda(cudaDeviceSynchronize(), "fill");
}

struct Ceilings {
  double copy_bytes_per_s = 0;  // read + write
  double gemm_flops_per_s = 0;  // bf16 in, fp32 accumulate
};

absl::StatusOr<Ceilings> MeasureCeilings(Backend& backend, DType dtype,
                                         int reps, std::mt19937& rng) {
  Ceilings c;
  {  // D2D copy of 1 GiB, timed with events on one stream.
    const size_t bytes = size_t{1} << 30;
    ASSIGN_OR_RETURN(Buffer a, backend.Allocate(bytes));
    ASSIGN_OR_RETURN(Buffer b, backend.Allocate(bytes));
    RETURN_IF_ERROR(FillRandom(backend, a.data(), bytes, dtype, 1.0f, rng));
    cudaStream_t stream;
    cudaEvent_t start, stop;
    RETURN_IF_ERROR(Cuda(cudaStreamCreate(&stream), "stream"));
    RETURN_IF_ERROR(Cuda(cudaEventCreate(&start), "event"));
    RETURN_IF_ERROR(Cuda(cudaEventCreate(&stop), "event"));
    std::vector<float> ms;
    for (int r = -1; r < reps; ++r) {
      RETURN_IF_ERROR(Cuda(cudaEventRecord(start, stream), "record"));
      for (int i = 0; i < 5; ++i) {
        RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(b.data(), a.data(), bytes,
                                             cudaMemcpyDeviceToDevice, stream),
                             "copy"));
      }
      RETURN_IF_ERROR(Cuda(cudaEventRecord(stop, stream), "record"));
      RETURN_IF_ERROR(Cuda(cudaEventSynchronize(stop), "sync"));
      float t = 0;
      RETURN_IF_ERROR(Cuda(cudaEventElapsedTime(&t, start, stop), "elapsed"));
      if (r >= 0) ms.push_back(t / 5);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
    std::sort(ms.begin(), ms.end());
    c.copy_bytes_per_s = 2.0 * bytes / (ms[ms.size() / 2] * 1e-3);
  }
  {  // bf16 GEMM 8192^3 through the backend's cuBLASLt path.
    const int n = 8192;
    const size_t bytes = size_t{2} * n * n;
    ASSIGN_OR_RETURN(Buffer x, backend.Allocate(bytes));
    ASSIGN_OR_RETURN(Buffer w, backend.Allocate(bytes));
    ASSIGN_OR_RETURN(Buffer y, backend.Allocate(bytes));
    RETURN_IF_ERROR(FillRandom(backend, x.data(), bytes, dtype, 1.0f, rng));
    RETURN_IF_ERROR(FillRandom(backend, w.data(), bytes, dtype, 0.01f, rng));
    const TensorView xv = TensorView::Of(x.data(), dtype, n, n);
    const TensorView wv = TensorView::Of(w.data(), dtype, n, n);
    const TensorView yv = TensorView::Of(y.data(), dtype, n, n);
    ASSIGN_OR_RETURN(const double s, Time(backend, 5, reps, [&] {
                       return backend.Linear(xv, wv, {}, yv);
                     }));
    c.gemm_flops_per_s = 2.0 * n * n * static_cast<double>(n) / s;
  }
  return c;
}

double Floor(const Ceilings& c, double bytes, double flops) {
  return std::max(bytes / c.copy_bytes_per_s, flops / c.gemm_flops_per_s);
}

void PrintFigure(const std::string& what, double seconds, double floor_s,
                 const std::string& extra) {
  std::printf("  %-46s %10.3f ms   floor %9.3f ms   x%6.2f  %s\n", what.c_str(),
              seconds * 1e3, floor_s * 1e3, seconds / floor_s, extra.c_str());
}

// ---------------------------------------------------------------------------
// Attention kernels alone
// ---------------------------------------------------------------------------

absl::Status BenchAttention(Backend& backend, const model::ModelConfig& cfg,
                            const Ceilings& ceil, DType dtype, int reps,
                            std::mt19937& rng) {
  const int h = cfg.num_heads, kvh = cfg.num_kv_heads, d = cfg.head_dim;
  const size_t token_kv_bytes = size_t{2} * kvh * d * 2;  // K + V, one layer
  std::vector<double> slopes_d = model::AlibiSlopes(h, cfg.alibi_bias_max);
  std::vector<float> slopes(slopes_d.begin(), slopes_d.end());
  ASSIGN_OR_RETURN(Buffer slopes_buf, backend.Allocate(h * sizeof(float)));
  RETURN_IF_ERROR(backend.CopyToDevice(slopes_buf.data(), slopes.data(),
                                       h * sizeof(float)));
  // One layer's pool, as large as the biggest case (256 x 2048) allows.
  size_t free_b = 0, total_b = 0;
  RETURN_IF_ERROR(Cuda(cudaMemGetInfo(&free_b, &total_b), "memory info"));
  const int64_t want_blocks = int64_t{256} * 2048 / kBlockSize;
  const int64_t fit_blocks =
      static_cast<int64_t>((free_b / 2) / (token_kv_bytes * kBlockSize));
  const int64_t num_blocks = std::min(want_blocks, fit_blocks);
  const size_t half_pool = static_cast<size_t>(num_blocks) * kBlockSize * kvh *
                           d * 2;  // K (or V) bytes
  ASSIGN_OR_RETURN(Buffer pool, backend.Allocate(2 * half_pool));
  RETURN_IF_ERROR(
      FillRandom(backend, pool.data(), 2 * half_pool, dtype, 1.0f, rng));
  kernels::PagedKvView kv;
  kv.k = pool.data();
  kv.v = pool.as<char>() + half_pool;
  kv.dtype = dtype;
  kv.num_blocks = static_cast<int>(num_blocks);
  kv.block_size = kBlockSize;
  kv.num_kv_heads = kvh;
  kv.head_dim = d;
  const int64_t qw = int64_t{h} * d;
  const int max_t = std::max(kPrefillTokens, 256);
  ASSIGN_OR_RETURN(Buffer q, backend.Allocate(max_t * qw * 2));
  ASSIGN_OR_RETURN(Buffer out, backend.Allocate(max_t * qw * 2));
  RETURN_IF_ERROR(
      FillRandom(backend, q.data(), max_t * qw * 2, dtype, 1.0f, rng));
  ASSIGN_OR_RETURN(Buffer meta_buf,
                   backend.Allocate((4 * 257 + 256 * 128) * sizeof(int32_t)));

  uint64_t batch_id = 0;
  // Runs one attention configuration: `seqs` sequences of `ctx` tokens, the
  // last `qlen` of each being queries.
  auto run = [&](int seqs, int ctx, int qlen, bool alibi,
                 double* seconds) -> absl::Status {
    const int nb = (ctx + kBlockSize - 1) / kBlockSize;
    std::vector<int32_t> host = {0};
    for (int s = 0; s < seqs; ++s) host.push_back(host.back() + qlen);
    for (int s = 0; s < seqs; ++s) host.push_back(ctx);
    for (int s = 0; s < seqs; ++s) {
      for (int b = 0; b < nb; ++b) host.push_back(s * nb + b);
    }
    RETURN_IF_ERROR(backend.CopyToDevice(meta_buf.data(), host.data(),
                                         host.size() * sizeof(int32_t)));
    const int32_t* dev = meta_buf.as<const int32_t>();
    kernels::AttentionMeta meta;
    meta.num_seqs = seqs;
    meta.num_tokens = seqs * qlen;
    meta.query_start = dev;
    meta.context_lens = dev + seqs + 1;
    meta.block_tables = dev + 2 * seqs + 1;
    meta.max_blocks_per_seq = nb;
    meta.max_query_len = qlen;
    meta.max_context_len = ctx;
    // One planning launch per configuration, as one per step in the model:
    // the figures are the attention kernels' per-layer cost.
    meta.batch_id = ++batch_id;
    const TensorView qv = TensorView::Of(q.data(), dtype, seqs * qlen, qw);
    const TensorView ov = TensorView::Of(out.data(), dtype, seqs * qlen, qw);
    const float* sl = alibi ? slopes_buf.as<const float>() : nullptr;
    ASSIGN_OR_RETURN(*seconds, Time(backend, 10, reps, [&] {
      return backend.PagedAttention(qv, kv, meta, sl, h, cfg.softmax_scale, ov);
    }));
    return absl::OkStatus();
  };
  auto kernel_name = [&](int seqs, int ctx, int qlen) {
    kernels::cuda::AttentionShape s;
    s.num_heads = h;
    s.num_kv_heads = kvh;
    s.head_dim = d;
    s.block_size = kBlockSize;
    s.num_tokens = seqs * qlen;
    s.num_seqs = seqs;
    s.max_query_len = qlen;
    s.max_context_len = ctx;
    const kernels::cuda::AttentionPlan p = kernels::cuda::PlanAttention(s);
    return p.kernel == kernels::cuda::AttentionKernel::kPrefillMma
               ? std::string("prefill mma")
               : absl::StrCat("row, ", p.max_splits, " split(s)");
  };

  std::printf(" attention kernel (one layer, %d heads, %d KV heads, dim %d)\n",
              h, kvh, d);
  {  // Prefill: causal FLOPs 4 h d T(T+1)/2 (QK^T and PV).
    const int t = kPrefillTokens;
    if (int64_t{(t + kBlockSize - 1) / kBlockSize} <= num_blocks) {
      const double flops = 4.0 * h * d * (static_cast<double>(t) * (t + 1) / 2);
      const double bytes =
          2.0 * t * qw * 2 + static_cast<double>(t) * token_kv_bytes;
      for (bool alibi : {true, false}) {
        double s = 0;
        RETURN_IF_ERROR(run(1, t, t, alibi, &s));
        PrintFigure(absl::StrCat("prefill T=", t, alibi ? " alibi" : " no-bias",
                                 " [", kernel_name(1, t, t), "]"),
                    s, Floor(ceil, bytes, flops),
                    absl::StrFormat("%.1f TFLOP/s", flops / s / 1e12));
      }
    }
  }
  for (int ctx : {512, 2048}) {  // Decode: bytes = the KV read once.
    for (int b : {1, 8, 64, 256}) {
      if (int64_t{b} * ((ctx + kBlockSize - 1) / kBlockSize) > num_blocks) {
        std::printf("  decode B=%d C=%d: skipped (pool too small)\n", b, ctx);
        continue;
      }
      const double bytes =
          static_cast<double>(b) * ctx * token_kv_bytes + 2.0 * b * qw * 2;
      const double flops = 4.0 * b * h * d * static_cast<double>(ctx);
      for (bool alibi : {true, false}) {
        double s = 0;
        RETURN_IF_ERROR(run(b, ctx, 1, alibi, &s));
        PrintFigure(absl::StrCat("decode B=", b, " C=", ctx,
                                 alibi ? " alibi" : " no-bias", " [",
                                 kernel_name(b, ctx, 1), "]"),
                    s, Floor(ceil, bytes, flops),
                    absl::StrFormat("%.0f GB/s", bytes / s / 1e9));
      }
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Whole model
// ---------------------------------------------------------------------------

absl::Status BenchModel(const std::string& dir, Backend& backend,
                        const Ceilings& ceil, DType dtype, int reps,
                        double fraction, std::mt19937& rng) {
  ASSIGN_OR_RETURN(const model::ModelConfig cfg, model::LoadModelConfig(dir));
  std::printf(
      "\nmodel %s: %s, hidden %d, %d layers, %d heads (%d KV), "
      "head dim %d, vocab %d\n",
      dir.c_str(), cfg.architecture_name.c_str(), cfg.hidden_size,
      cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
      cfg.vocab_size);
  RETURN_IF_ERROR(BenchAttention(backend, cfg, ceil, dtype, reps, rng));

  const auto load_start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<model::Model> m,
                   model::Model::Load(dir, &backend));
  std::printf(" loaded %.2f GB of weights in %.1f s\n", m->weight_bytes() / 1e9,
              Seconds(load_start, std::chrono::steady_clock::now()));
  const int fill_tokens = kFillChunkSeqs * kPrefillTokens;
  RETURN_IF_ERROR(m->Reserve(fill_tokens, 256));
  kernels::WorkspaceLimits limits;
  limits.max_tokens = fill_tokens;
  limits.max_seqs = 256;
  limits.num_heads = cfg.num_heads;
  limits.head_dim = cfg.head_dim;
  ASSIGN_OR_RETURN(const size_t scratch_bytes,
                   backend.ReserveWorkspace(limits));
  // KV pool: what the memory plan allows, at most what the cases need.
  size_t free_b = 0, total_b = 0;
  RETURN_IF_ERROR(Cuda(cudaMemGetInfo(&free_b, &total_b), "memory info"));
  kernels::MemoryPlanInput in;
  in.total_bytes = total_b;
  in.free_bytes = free_b;
  in.weight_bytes = m->weight_bytes();
  in.workspace_bytes = m->workspace_bytes() + scratch_bytes;
  in.memory_fraction = fraction;
  in.reserve_bytes = size_t{1} << 30;
  in.kv_bytes_per_block = m->KvBytesPerBlock(kBlockSize);
  in.min_blocks = kPrefillTokens / kBlockSize;
  in.max_blocks = int64_t{256} * 2048 / kBlockSize;
  ASSIGN_OR_RETURN(const kernels::MemoryPlan plan, kernels::PlanKvMemory(in));
  std::printf(" %s\n", plan.Summary().c_str());
  RETURN_IF_ERROR(m->AllocateKvCache(plan.num_blocks, kBlockSize));
  const int blocks_per_seq = kPrefillTokens / kBlockSize;
  // Whole 2048-token sequences get filled; cases use only those blocks.
  const int fill_seqs = plan.num_blocks / blocks_per_seq;
  const int num_blocks = fill_seqs * blocks_per_seq;

  std::uniform_int_distribution<int32_t> token(0, cfg.vocab_size - 1);
  // Fill the whole pool with real K/V: prefill passes of 2048-token
  // sequences over consecutive blocks.
  {
    const auto start = std::chrono::steady_clock::now();
    for (int s0 = 0; s0 < fill_seqs; s0 += kFillChunkSeqs) {
      const int n = std::min(kFillChunkSeqs, fill_seqs - s0);
      model::ForwardBatch batch;
      batch.query_start = {0};
      batch.max_blocks_per_seq = blocks_per_seq;
      for (int s = 0; s < n; ++s) {
        for (int p = 0; p < kPrefillTokens; ++p) {
          batch.token_ids.push_back(token(rng));
          batch.slot_mapping.push_back((s0 + s) * kPrefillTokens + p);
        }
        batch.query_start.push_back(batch.query_start.back() + kPrefillTokens);
        batch.context_lens.push_back(kPrefillTokens);
        for (int b = 0; b < blocks_per_seq; ++b) {
          batch.block_tables.push_back((s0 + s) * blocks_per_seq + b);
        }
      }
      RETURN_IF_ERROR(m->Forward(
          batch, [](int, int, const float*) { return absl::OkStatus(); }));
    }
    std::printf(" filled %d KV blocks by prefill in %.1f s\n",
                fill_seqs * blocks_per_seq,
                Seconds(start, std::chrono::steady_clock::now()));
  }

  // Bytes every forward must read: the weights (the tied LM head once).
  const double weight_bytes = static_cast<double>(m->weight_bytes());
  const double kv_token_bytes =
      static_cast<double>(m->KvBytesPerBlock(kBlockSize)) / kBlockSize;
  // FLOPs per token of the dense layers and of the LM head.
  const double h = cfg.hidden_size, f = cfg.ffn_hidden_size;
  const double qkv = (cfg.num_heads + 2.0 * cfg.num_kv_heads) * cfg.head_dim;
  const double layer_flops =
      2.0 * (h * qkv + cfg.num_heads * static_cast<double>(cfg.head_dim) * h +
             2 * h * f);
  const double head_flops = 2.0 * h * cfg.vocab_size;
  const double attn_per_key =
      4.0 * cfg.num_heads * static_cast<double>(cfg.head_dim) * cfg.num_layers;

  // Prefill of one 2048-token prompt (logits of its last position).
  {
    model::ForwardBatch batch;
    for (int p = 0; p < kPrefillTokens; ++p) {
      batch.token_ids.push_back(token(rng));
      batch.slot_mapping.push_back(p);
    }
    batch.query_start = {0, kPrefillTokens};
    batch.context_lens = {kPrefillTokens};
    batch.max_blocks_per_seq = blocks_per_seq;
    for (int b = 0; b < blocks_per_seq; ++b) batch.block_tables.push_back(b);
    batch.logit_rows = {kPrefillTokens - 1};
    std::vector<float> logits(cfg.vocab_size);
    ASSIGN_OR_RETURN(const double s, Time(backend, 1, reps, [&] {
                       return m->Forward(batch, absl::MakeSpan(logits));
                     }));
    const double t = kPrefillTokens;
    const double flops = t * cfg.num_layers * layer_flops + head_flops +
                         attn_per_key * t * (t + 1) / 2;
    PrintFigure(absl::StrCat("prefill T=", kPrefillTokens, " (whole model)"), s,
                Floor(ceil, weight_bytes + t * kv_token_bytes, flops),
                absl::StrFormat("%.0f tok/s", t / s));
  }

  // Decode steps.
  for (int ctx : {512, 2048}) {
    for (int b : {1, 8, 32, 64, 256}) {
      const int nb = (ctx + kBlockSize - 1) / kBlockSize;
      if (int64_t{b} * nb > num_blocks) {
        std::printf(
            "  decode B=%d C=%d: skipped (KV needs %lld blocks, %d "
            "fit)\n",
            b, ctx, static_cast<long long>(int64_t{b} * nb), num_blocks);
        continue;
      }
      model::ForwardBatch batch;
      batch.query_start = {0};
      batch.max_blocks_per_seq = nb;
      for (int s = 0; s < b; ++s) {
        batch.token_ids.push_back(token(rng));
        batch.query_start.push_back(s + 1);
        batch.context_lens.push_back(ctx);
        for (int k = 0; k < nb; ++k) batch.block_tables.push_back(s * nb + k);
        batch.slot_mapping.push_back((s * nb + (ctx - 1) / kBlockSize) *
                                         kBlockSize +
                                     (ctx - 1) % kBlockSize);
        batch.logit_rows.push_back(s);
      }
      std::vector<float> logits(static_cast<size_t>(b) * cfg.vocab_size);
      ASSIGN_OR_RETURN(const double s, Time(backend, 3, reps, [&] {
                         return m->Forward(batch, absl::MakeSpan(logits));
                       }));
      const double logits_bytes = 4.0 * b * cfg.vocab_size;
      // The share of the step that is the logits' trip to the host (the
      // engine samples there), measured alone.
      ASSIGN_OR_RETURN(Buffer dev_logits,
                       backend.Allocate(static_cast<size_t>(logits_bytes)));
      ASSIGN_OR_RETURN(const double copy_s, Time(backend, 3, reps, [&] {
                         return backend.CopyToHost(
                             logits.data(), dev_logits.data(),
                             static_cast<size_t>(logits_bytes));
                       }));
      const double bytes = weight_bytes +
                           static_cast<double>(b) * ctx * kv_token_bytes +
                           logits_bytes;
      const double flops = b * (cfg.num_layers * layer_flops + head_flops) +
                           attn_per_key * b * ctx;
      PrintFigure(absl::StrCat("decode step B=", b, " C=", ctx), s,
                  Floor(ceil, bytes, flops),
                  absl::StrFormat("%.0f tok/s; logits %.0f MB to host "
                                  "take %.3f ms of it",
                                  b / s, logits_bytes / 1e6, copy_s * 1e3));
    }
  }
  return absl::OkStatus();
}

int Main() {
  if (!kernels::CudaAvailable()) {
    std::fprintf(stderr,
                 "alibi-gpubench: no CUDA device is visible (no GPU, no "
                 "driver, or CUDA_VISIBLE_DEVICES hides it); nothing to "
                 "measure.\n");
    return 1;
  }
  const std::vector<std::string> dirs =
      absl::StrSplit(absl::GetFlag(FLAGS_model_dir), ',', absl::SkipEmpty());
  absl::StatusOr<DType> dtype = kernels::ParseDType(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok() || (*dtype != DType::kBF16 && *dtype != DType::kF16)) {
    std::fprintf(stderr, "alibi-gpubench: --dtype must be bf16 or fp16\n");
    return 2;
  }
  kernels::BackendOptions options;
  options.device = "cuda";
  options.cuda_dtype = *dtype;
  auto backend = kernels::CreateBackend(options);
  if (!backend.ok()) {
    std::fprintf(stderr, "alibi-gpubench: %s\n",
                 std::string(backend.status().message()).c_str());
    return 1;
  }
  const int reps = std::max(1, absl::GetFlag(FLAGS_reps));
  std::mt19937 rng(20240607);
  std::printf("alibi-gpubench on %s, %s\n", (*backend)->Name().c_str(),
              std::string(kernels::DTypeName(*dtype)).c_str());
  auto ceilings = MeasureCeilings(**backend, *dtype, reps, rng);
  if (!ceilings.ok()) {
    std::fprintf(stderr, "alibi-gpubench: ceilings: %s\n",
                 std::string(ceilings.status().message()).c_str());
    return 1;
  }
  std::printf(
      "ceilings: copy %.0f GB/s (1 GiB D2D, read + write), GEMM "
      "%.0f TFLOP/s (%s 8192^3, cuBLASLt)\n",
      ceilings->copy_bytes_per_s / 1e9, ceilings->gemm_flops_per_s / 1e12,
      std::string(kernels::DTypeName(*dtype)).c_str());
  if (dirs.empty()) {
    std::printf("(no --model_dir: ceilings only)\n");
    return 0;
  }
  std::printf(
      "figure                                               measured"
      "        floor (max of bytes/copy, FLOPs/GEMM)   ratio\n");
  int failures = 0;
  for (const std::string& dir : dirs) {
    const absl::Status s =
        BenchModel(dir, **backend, *ceilings, *dtype, reps,
                   absl::GetFlag(FLAGS_gpu_memory_fraction), rng);
    if (!s.ok()) {
      std::fprintf(stderr, "alibi-gpubench: %s: %s\n", dir.c_str(),
                   std::string(s.message()).c_str());
      ++failures;
    }
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace alibi::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return alibi::bench::Main();
}
