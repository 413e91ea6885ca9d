// A paged-attention test case and the batch it describes, shared by the CUDA
// attention tests (tests/gpu/cuda_backend_test.cc, on a GPU) and the
// emulated-kernel tests (tests/gpu/emulation, on the CPU): block tables with
// shuffled block ids (optionally a shared prefix), per-sequence query ranges,
// context lengths and sliding windows (a windowed sequence's table starts at
// the first block its window reaches), the ALiBi slopes, which pool
// positions no query may read (NaN in the tests), and the CPU backend's
// result that both compare against.
//
// Thread-safety: test-only helpers, one thread.
#ifndef ALIBI_TESTS_GPU_PAGED_ATTENTION_CASE_H_
#define ALIBI_TESTS_GPU_PAGED_ATTENTION_CASE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/dispatch.h"
#include "server/model/config.h"

namespace alibi::kernels::gpu_test {

struct SeqSpec {
  int context_len;  // tokens in the cache after the step
  int query_len;    // of which this step's queries (the last ones)
  int window = 0;   // sliding window (AttentionMeta::windows); 0: none
};

struct AttentionCase {
  std::string name;
  int num_heads, num_kv_heads, head_dim, block_size;
  std::vector<SeqSpec> seqs;
  // The kernel PlanAttention must pick, so a case keeps testing what it was
  // written for.
  cuda::AttentionKernel expected;
  bool alibi = true;
  // Sequences 0 and 1 share their first `shared_blocks` blocks (a prefix
  // cache hit).
  int shared_blocks = 0;
};

// gtest prints a failing case's parameters: its name says it.
inline void PrintTo(const AttentionCase& c, std::ostream* os) { *os << c.name; }

// `seqs` decoding sequences (one query each) with contexts drawn from 1 ..
// max_context (a fixed LCG: the same batch every run); with kPrefillMma the
// first one is a 72-token prefill chunk instead.
inline AttentionCase BatchCase(std::string name, int seqs, int heads,
                               int head_dim, int block_size, int max_context,
                               uint32_t seed, cuda::AttentionKernel kernel) {
  AttentionCase c{std::move(name), heads, heads, head_dim,
                  block_size,      {},    kernel};
  uint32_t x = seed;
  for (int s = 0; s < seqs; ++s) {
    x = x * 1664525u + 1013904223u;
    const int ctx = 1 + static_cast<int>((x >> 8) % max_context);
    c.seqs.push_back({ctx, 1});
  }
  if (kernel == cuda::AttentionKernel::kPrefillMma) c.seqs[0] = {200, 72};
  return c;
}

// The host-side batch of a case.
struct PagedBatch {
  int num_blocks = 0;           // KV pool size, a few more than referenced
  int max_blocks = 0;           // row width of `tables`
  std::vector<int32_t> tables;  // [num_seqs, max_blocks]; unused: 1 << 30
  std::vector<int32_t> starts;  // [num_seqs + 1] query row ranges
  std::vector<int32_t> ctx;     // [num_seqs] context lengths
  // [num_seqs] each, or empty when no sequence has a window.
  std::vector<int32_t> windows, first_blocks;
  int max_q = 0, max_ctx = 0, max_keys = 0;

  int num_seqs() const { return static_cast<int>(ctx.size()); }
  int num_tokens() const { return starts.back(); }

  // Metadata pointing at this batch's host vectors.
  AttentionMeta Meta() const {
    AttentionMeta meta;
    meta.num_seqs = num_seqs();
    meta.num_tokens = num_tokens();
    meta.query_start = starts.data();
    meta.context_lens = ctx.data();
    meta.block_tables = tables.data();
    meta.max_blocks_per_seq = max_blocks;
    meta.max_query_len = max_q;
    meta.max_context_len = max_ctx;
    meta.max_keys = max_keys;
    if (!windows.empty()) {
      meta.windows = windows.data();
      meta.first_blocks = first_blocks.data();
    }
    return meta;
  }

  cuda::AttentionShape Shape(const AttentionCase& c) const {
    cuda::AttentionShape shape;
    shape.num_heads = c.num_heads;
    shape.num_kv_heads = c.num_kv_heads;
    shape.head_dim = c.head_dim;
    shape.block_size = c.block_size;
    shape.num_tokens = num_tokens();
    shape.num_seqs = num_seqs();
    shape.max_query_len = max_q;
    shape.max_context_len = max_ctx;
    shape.max_keys = max_keys;
    return shape;
  }
};

// The first key sequence `s`'s queries see (0 without a window).
inline int LowestVisibleKey(const SeqSpec& s) {
  const int first_pos = s.context_len - s.query_len;
  return s.window > 0 ? std::max(0, first_pos - s.window + 1) : 0;
}

// Every sequence gets its own blocks, drawn from a shuffled pool (sequences 0
// and 1 share a prefix when the case asks); a windowed sequence only those
// from the first block its window reaches (its table starts there, the
// earlier ones were released). Table entries past a sequence's last block
// hold an invalid id that must never be read.
inline PagedBatch BuildPagedBatch(const AttentionCase& c, std::mt19937& rng) {
  PagedBatch b;
  const int bs = c.block_size, num_seqs = static_cast<int>(c.seqs.size());
  bool windowed = false;
  int total_blocks = 0;
  for (const SeqSpec& s : c.seqs) {
    const int nb = (s.context_len + bs - 1) / bs - LowestVisibleKey(s) / bs;
    b.max_blocks = std::max(b.max_blocks, nb + 2);
    total_blocks += nb;
    windowed = windowed || s.window > 0;
  }
  b.num_blocks = total_blocks + 5;
  std::vector<int32_t> ids(b.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  b.tables.assign(static_cast<size_t>(num_seqs) * b.max_blocks, 1 << 30);
  int next = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const SeqSpec& spec = c.seqs[s];
    const int first = LowestVisibleKey(spec) / bs;
    const int nb = (spec.context_len + bs - 1) / bs - first;
    for (int i = 0; i < nb; ++i) {
      b.tables[s * b.max_blocks + i] =
          s == 1 && i < c.shared_blocks ? b.tables[i] : ids[next++];
    }
    if (windowed) {
      b.windows.push_back(spec.window);
      b.first_blocks.push_back(first);
    }
  }
  b.starts = {0};
  for (const SeqSpec& s : c.seqs) {
    b.starts.push_back(b.starts.back() + s.query_len);
    b.ctx.push_back(s.context_len);
    b.max_q = std::max(b.max_q, s.query_len);
    b.max_ctx = std::max(b.max_ctx, s.context_len);
    b.max_keys =
        std::max(b.max_keys, s.window > 0 ? std::min(s.window, s.context_len)
                                          : s.context_len);
  }
  return b;
}

// Pool rows ([num_blocks, num_kv_heads, block_size] head rows) no query of
// the batch may read: blocks no table references, positions past a
// sequence's context, and the positions of a windowed sequence's first
// block before its first visible key (released or never written). The tests
// fill them with NaN.
inline std::vector<bool> UnseenPoolRows(const AttentionCase& c,
                                        const PagedBatch& b) {
  const int bs = c.block_size, kvh = c.num_kv_heads;
  std::vector<bool> unseen(static_cast<size_t>(b.num_blocks) * kvh * bs, true);
  for (int s = 0; s < b.num_seqs(); ++s) {
    const SeqSpec& spec = c.seqs[s];
    const int lowest = LowestVisibleKey(spec);
    const int first = lowest / bs;
    const int nb = (spec.context_len + bs - 1) / bs - first;
    for (int i = 0; i < nb; ++i) {
      const int block = b.tables[s * b.max_blocks + i];
      for (int h = 0; h < kvh; ++h) {
        for (int o = 0; o < bs; ++o) {
          const int pos = (first + i) * bs + o;
          if (pos < lowest || pos >= spec.context_len) continue;
          unseen[(static_cast<size_t>(block) * kvh + h) * bs + o] = false;
        }
      }
    }
  }
  return unseen;
}

// [num_heads] ALiBi slopes (max bias 8), or zeros for a case without ALiBi.
inline std::vector<float> CaseSlopes(const AttentionCase& c) {
  std::vector<float> slopes(c.num_heads, 0.0f);
  if (c.alibi) {
    const std::vector<double> m = model::AlibiSlopes(c.num_heads, 8.0);
    for (int i = 0; i < c.num_heads; ++i) slopes[i] = static_cast<float>(m[i]);
  }
  return slopes;
}

inline float CaseScale(const AttentionCase& c) {
  return 1.0f / std::sqrt(static_cast<float>(c.head_dim));
}

// The CPU backend's attention output [num_tokens, num_heads * head_dim] for
// queries in the first num_heads * head_dim columns of `qkv` (fp32, row
// width `qkv_width`) over fp32 pools k, v
// ([num_blocks, num_kv_heads, block_size, head_dim]).
inline absl::StatusOr<std::vector<float>> CpuAttention(
    Backend& cpu, const AttentionCase& c, const PagedBatch& b,
    std::vector<float> k, std::vector<float> v, const std::vector<float>& qkv,
    int qkv_width) {
  const int t = b.num_tokens(), qw = c.num_heads * c.head_dim;
  const std::vector<float> slopes = CaseSlopes(c);
  std::vector<float> out(static_cast<size_t>(t) * qw);
  PagedKvView kv{k.data(),     v.data(),       DType::kF32, b.num_blocks,
                 c.block_size, c.num_kv_heads, c.head_dim};
  absl::Status status = cpu.PagedAttention(
      TensorView::Of(const_cast<float*>(qkv.data()), DType::kF32, t, qkv_width)
          .Cols(0, qw),
      kv, b.Meta(), slopes.data(), c.num_heads, CaseScale(c),
      TensorView::Of(out.data(), DType::kF32, t, qw));
  if (!status.ok()) return status;
  return out;
}

}  // namespace alibi::kernels::gpu_test

#endif  // ALIBI_TESTS_GPU_PAGED_ATTENTION_CASE_H_
