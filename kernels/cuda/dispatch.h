// Host-side launch planning for the CUDA backend, kept free of CUDA and
// Abseil so that the unit tests can exercise it in CPU-only builds and the
// .cu files can share its constants and work-list records:
//
// - PlanAttention: which attention kernels run a batch, the bounds of the
//   work lists the planning kernel builds on the device, the row kernel's
//   grid and the workspace layout (the dispatch table over head dims, block
//   sizes and batch shapes).
// - PlanLinear: how Linear's epilogue is divided between cuBLASLt's fused
//   epilogues and the element-wise epilogue kernel.
//
// Attention dispatch table (see PlanAttention):
//
//   batch                 head_dim                   kernels
//   -------------------   ------------------------   ------------------------
//   max_query_len <= 8    multiple of 8, <= 256      row kernel over every
//                                                    query row (split-KV)
//   max_query_len > 8     64, 80, 96, 128, q/out     mixed: sequences with
//                         16-byte aligned            more than 8 query rows
//                                                    in the prefill kernel
//                                                    (tensor cores), the
//                                                    others (decodes) in the
//                                                    row kernel, both in the
//                                                    same step
//   max_query_len > 8     other multiples of 8,      row kernel over every
//                         <= 256                     query row
//   anything              not a multiple of 8, or    error
//                         > 256
//
// Every launch starts with a one-block planning kernel
// (attention_plan.cu) that reads the batch metadata on the device and
// writes the work lists: the prefill kernel's 64-row query tiles, the row
// kernel's rows and its (row, KV partition) items. The row kernel's grid
// loops over the items, so only the partitions rows need run, whatever the
// longest context (or window) of the batch. Every block size >= 1 works with
// both kernels, and so does any head count with num_heads % num_kv_heads ==
// 0 (MHA, GQA, MQA). Sliding windows (AttentionMeta::windows) limit a row's
// keys to its window: its partitions cover the window only. Which kernel
// computes a row depends on its sequence's query run alone (<= 8 rows: row
// kernel), and the row kernel's split-KV partitioning on the row's own key
// count: never on the rest of the batch.
//
// Thread-safety: pure functions and constants.
#ifndef ALIBI_KERNELS_CUDA_DISPATCH_H_
#define ALIBI_KERNELS_CUDA_DISPATCH_H_

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define ALIBI_HOST_DEVICE __host__ __device__
#else
#define ALIBI_HOST_DEVICE
#endif

namespace alibi::kernels::cuda {

// ---------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------

// Threads per block of every attention kernel (4 warps).
inline constexpr int kAttentionThreads = 128;
// Prefill kernel: query rows per block (4 warps x 16 rows) and keys per tile.
inline constexpr int kPrefillBlockM = 64;
inline constexpr int kPrefillBlockN = 64;
// Row kernel: keys per tile (each thread looks up one key's page per tile).
inline constexpr int kRowTileKeys = kAttentionThreads;
// Row kernel split-KV: partitions of at least this many keys, at most
// kMaxSplits of them per query row.
inline constexpr int kMinPartitionKeys = 256;
inline constexpr int kMaxSplits = 32;
inline constexpr int kMaxHeadDim = 256;
// Sequences whose query run is at most this many rows (decodes, short
// chunks) always go to the row kernel.
inline constexpr int kRowKernelMaxQueryLen = 8;
// The row and combine kernels' grids aim at about this many blocks, each
// looping over work items.
inline constexpr int kRowKernelTargetBlocks = 4096;
// Threads of the one-block planning kernel.
inline constexpr int kPlanThreads = 1024;

// Keys per split-KV partition for a query row that sees `num_keys` keys.
// Depends on that row alone (never on the rest of the batch), so a
// sequence's decode result does not change with the batch it runs in.
// (Written to avoid int overflow up to num_keys = INT_MAX.)
ALIBI_HOST_DEVICE inline int RowPartitionKeys(int num_keys) {
  constexpr int kSpan = kMinPartitionKeys * kMaxSplits;
  const int factor = num_keys <= kSpan ? 1 : (num_keys - 1) / kSpan + 1;
  return kMinPartitionKeys * factor;
}

// Number of split-KV partitions (1..kMaxSplits) of a row that sees
// `num_keys` keys.
ALIBI_HOST_DEVICE inline int RowNumSplits(int num_keys) {
  if (num_keys <= 0) return 1;
  return (num_keys - 1) / RowPartitionKeys(num_keys) + 1;
}

// The first key a query at `pos` sees: with a sliding window of `window`
// keys (> 0) the window's first, else 0.
ALIBI_HOST_DEVICE inline int FirstVisibleKey(int pos, int window) {
  return window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
}

// How the row kernel spreads a head row over a warp: `lanes` lanes share one
// key, each holding `chunks` 16-byte pieces (8 elements) of it; a group of
// lanes takes `keys` keys per iteration, so that each lane has keys * chunks
// 16-byte loads of K and as many of V in flight at once.
struct RowLayout {
  int lanes;
  int chunks;
  int keys;
};

ALIBI_HOST_DEVICE inline RowLayout RowLayoutFor(int head_dim) {
  const int pieces = head_dim / 8;
  if (pieces <= 4) return {4, 1, 4};
  if (pieces <= 8) return {8, 1, 4};
  if (pieces <= 16) return {8, 2, 2};
  return {8, 4, 1};
}

// Head dims with a compiled tensor-core prefill kernel.
inline bool HasPrefillVariant(int head_dim) {
  return head_dim == 64 || head_dim == 80 || head_dim == 96 || head_dim == 128;
}

enum class AttentionKernel : int32_t {
  kNone = 0,
  // Mixed: sequences with more than kRowKernelMaxQueryLen query rows in the
  // flash-attention style prefill kernel (64 query rows x 64-key tiles,
  // mma.sync m16n8k16, bf16/fp16 in, fp32 accumulate, online softmax in
  // fp32); the rows of the other sequences in the row kernel.
  kPrefillMma = 1,
  // Row kernel only: every query row, split-KV items; SIMT dot products with
  // 16-byte loads; partitions merged by a combine kernel.
  kRowSplitKv = 2,
};

// Work-list records the planning kernel writes and the attention kernels
// read (device memory; plain structs shared by host and device code).
//
// A query row of the row kernel.
struct RowWork {
  int32_t token;       // flattened query row
  int32_t seq;         // its sequence
  int32_t first_item;  // index of its first RowItem
  int32_t num_items;   // its KV partitions (RowNumSplits of its keys)
};
// One KV partition of a row: keys [key_begin, key_end) of the query at
// absolute position `pos`; partial results (several partitions) go to slot
// `item` of the partial buffers, the combine kernel merges a row's slots.
struct RowItem {
  int32_t token;
  int32_t seq;
  int32_t pos;
  int32_t key_begin;
  int32_t key_end;
  int32_t row;        // index in the RowWork list
  int32_t num_items;  // the row's partitions (1: write the output directly)
  int32_t pad;
};
static_assert(sizeof(RowWork) == 16 && sizeof(RowItem) == 32, "layout");

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  int num_tokens = 0;
  int num_seqs = 0;
  int max_query_len = 0;
  int max_context_len = 0;
  // The most keys any query row sees (AttentionMeta::max_keys): with sliding
  // windows at most the largest window. 0: max_context_len.
  int max_keys = 0;
  // q and out pointers and row strides allow 16-byte (q) and 4-byte (out)
  // vector access.
  bool q_out_aligned = true;
  // Both KV pool pointers are 16-byte aligned.
  bool kv_aligned = true;
};

struct AttentionPlan {
  // Non-null when the shape is unsupported: says why (a static string).
  const char* error = nullptr;
  AttentionKernel kernel = AttentionKernel::kNone;
  // Upper bounds of the work lists (from the host-side maxima): 64-row query
  // tiles of long runs (kPrefillMma), rows and items of the row kernel, and
  // the partitions of one row.
  int64_t max_tiles = 0;
  int64_t max_rows = 0;
  int64_t max_items = 0;
  int max_splits = 1;
  // Grid columns of the row kernel (items) and of the combine kernel (rows);
  // grid rows are heads.
  int64_t row_grid_x = 0;
  int64_t combine_grid_x = 0;
  // Device workspace, bytes, and where each part starts in it. The first
  // plan_bytes (the work lists and their counts) depend only on the batch
  // metadata, so one planning launch serves every layer of a step.
  size_t workspace_bytes = 0;
  size_t plan_bytes = 0;
  size_t tiles_offset = 0;       // int2 [max_tiles] (kPrefillMma)
  size_t rows_offset = 0;        // RowWork [max_rows]
  size_t items_offset = 0;       // RowItem [max_items]
  size_t counts_offset = 0;      // int32 tiles, rows, items
  size_t partial_o_offset = 0;   // when max_splits > 1: fp32 accumulators
  size_t partial_ml_offset = 0;  // and (max, sum) pairs, per item and head
};

inline size_t AlignUp16(size_t n) { return (n + 15) / 16 * 16; }

inline AttentionPlan PlanAttention(const AttentionShape& s) {
  AttentionPlan plan;
  if (s.num_heads <= 0 || s.num_kv_heads <= 0 ||
      s.num_heads % s.num_kv_heads != 0) {
    plan.error = "num_heads must be a positive multiple of num_kv_heads";
    return plan;
  }
  if (s.head_dim <= 0 || s.head_dim % 8 != 0 || s.head_dim > kMaxHeadDim) {
    plan.error = "head_dim must be a multiple of 8 between 8 and 256";
    return plan;
  }
  if (s.block_size <= 0) {
    plan.error = "block_size must be positive";
    return plan;
  }
  if (!s.kv_aligned) {
    plan.error = "KV pool pointers must be 16-byte aligned";
    return plan;
  }
  if (s.num_tokens < 0 || s.num_seqs < 0 || s.max_query_len < 0 ||
      s.max_context_len < s.max_query_len || s.max_keys < 0) {
    plan.error = "batch maxima are inconsistent";
    return plan;
  }
  const int keys = s.max_keys > 0 && s.max_keys < s.max_context_len
                       ? s.max_keys
                       : s.max_context_len;
  plan.max_splits = RowNumSplits(keys);
  size_t offset = 0;
  if (s.max_query_len > kRowKernelMaxQueryLen &&
      HasPrefillVariant(s.head_dim) && s.q_out_aligned) {
    plan.kernel = AttentionKernel::kPrefillMma;
    plan.max_tiles = (static_cast<int64_t>(s.num_tokens) + kPrefillBlockM - 1) /
                         kPrefillBlockM +
                     s.num_seqs;
    const int64_t short_rows =
        static_cast<int64_t>(kRowKernelMaxQueryLen) * s.num_seqs;
    plan.max_rows = s.num_tokens < short_rows ? s.num_tokens : short_rows;
    plan.tiles_offset = 0;
    offset = AlignUp16(static_cast<size_t>(plan.max_tiles) * 2 * 4);
  } else {
    plan.kernel = AttentionKernel::kRowSplitKv;
    plan.max_rows = s.num_tokens;
  }
  plan.max_items = plan.max_rows * plan.max_splits;
  plan.rows_offset = offset;
  offset += AlignUp16(static_cast<size_t>(plan.max_rows) * sizeof(RowWork));
  plan.items_offset = offset;
  offset += AlignUp16(static_cast<size_t>(plan.max_items) * sizeof(RowItem));
  plan.counts_offset = offset;
  offset += 16;
  plan.plan_bytes = offset;
  if (plan.max_splits > 1) {
    const size_t slots =
        static_cast<size_t>(plan.max_items) * static_cast<size_t>(s.num_heads);
    plan.partial_o_offset = offset;
    offset += AlignUp16(slots * static_cast<size_t>(s.head_dim) * 4);
    plan.partial_ml_offset = offset;
    offset += AlignUp16(slots * 2 * 4);
  }
  plan.workspace_bytes = offset;
  const int64_t columns =
      (kRowKernelTargetBlocks + s.num_heads - 1) / s.num_heads;
  plan.row_grid_x = plan.max_items < columns ? plan.max_items : columns;
  plan.combine_grid_x = plan.max_rows < columns ? plan.max_rows : columns;
  return plan;
}

// The most attention workspace any batch of up to `max_tokens` tokens and
// `max_seqs` sequences whose query rows see up to `max_keys` keys (0: any
// number) can need, queries and output 16-byte aligned (as the model's
// buffers are): what the server reserves at start so that no step
// allocates.
inline size_t AttentionWorkspaceBound(int max_tokens, int max_seqs,
                                      int num_heads, int head_dim,
                                      int max_keys) {
  AttentionShape s;
  s.num_heads = num_heads;
  s.num_kv_heads = 1;
  s.head_dim = head_dim;
  s.block_size = 16;
  s.num_seqs = max_seqs;
  // Past kMinPartitionKeys * kMaxSplits keys the partitions grow instead.
  constexpr int kAny = kMinPartitionKeys * kMaxSplits;
  s.max_context_len = max_keys > 0 && max_keys < kAny ? max_keys : kAny;
  // Row kernel only: every query row; with a prefill variant, query runs of
  // at most kRowKernelMaxQueryLen rows (longer ones make a mixed plan).
  s.max_query_len = 1;
  s.num_tokens = max_tokens;
  if (HasPrefillVariant(head_dim) &&
      static_cast<int64_t>(kRowKernelMaxQueryLen) * max_seqs < max_tokens) {
    s.num_tokens = kRowKernelMaxQueryLen * max_seqs;
  }
  const size_t row = PlanAttention(s).workspace_bytes;
  if (s.max_context_len <= kRowKernelMaxQueryLen) return row;
  s.num_tokens = max_tokens;
  s.max_query_len = kRowKernelMaxQueryLen + 1;  // mixed, when compiled
  const size_t mixed = PlanAttention(s).workspace_bytes;
  return row > mixed ? row : mixed;
}

// ---------------------------------------------------------------------------
// Linear epilogue
// ---------------------------------------------------------------------------

// cuBLASLt epilogue variants the backend uses (cuBLASLt's GELU is the tanh
// approximation, BLOOM's).
enum class GemmEpilogue : int32_t {
  kDefault = 0,
  kBias = 1,
  kGelu = 2,
  kGeluBias = 3,
};

// Mirrors kernels::Activation.
enum class EpilogueAct : int32_t { kNone = 0, kGeluTanh = 1, kGeluErf = 2 };

struct LinearShape {
  bool has_bias = false;
  // cuBLASLt has an algorithm with its bias epilogue for this problem, the
  // bias in D's dtype as CUDA 13 requires (fp32 for an fp32 D, else the
  // backend's 16-bit copy of the fp32 bias). Found out at run time: the
  // backend retries with false when there is none.
  bool bias_epilogue_ok = true;
  float clamp = 0.0f;
  EpilogueAct act = EpilogueAct::kNone;
  bool has_residual = false;
  bool residual_same_dtype = false;   // residual dtype == out dtype
  bool residual_aliases_out = false;  // residual.data == out.data
  bool residual_same_layout = false;  // and the same row stride
};

struct LinearPlan {
  const char* error = nullptr;
  GemmEpilogue gemm_epilogue = GemmEpilogue::kDefault;
  // C = residual with beta = 1 (D = alpha AB + bias + residual).
  bool gemm_beta_residual = false;
  // The GEMM writes a scratch [T, N] buffer of the output dtype that the
  // epilogue kernel reads (the residual lives in `out` and must survive).
  bool gemm_to_scratch = false;
  // The element-wise epilogue kernel and what it applies, in this order.
  bool run_kernel = false;
  bool kernel_bias = false;
  bool kernel_clamp = false;
  EpilogueAct kernel_act = EpilogueAct::kNone;
  bool kernel_residual = false;
};

// y = alpha x W^T; y += bias; y = clamp(y); y = act(y); y += residual, with
// as much as possible fused into the GEMM:
// - bias through CUBLASLT_EPILOGUE_BIAS (bias in the output's dtype)
//   unless cuBLASLt has no algorithm for it;
// - tanh GELU through CUBLASLT_EPILOGUE_GELU(_BIAS) when no clamp precedes
//   it and the bias (if any) is fused;
// - the residual through beta = 1, C = residual when no clamp/activation
//   must precede it and it has the output's dtype (in place when it aliases
//   the output with the same layout);
// everything else in one element-wise kernel after the GEMM.
inline LinearPlan PlanLinear(const LinearShape& s) {
  LinearPlan plan;
  if (s.has_residual && s.residual_aliases_out &&
      (!s.residual_same_dtype || !s.residual_same_layout)) {
    plan.error =
        "a residual that aliases the output must have its dtype and layout";
    return plan;
  }
  const bool bias_fused = s.has_bias && s.bias_epilogue_ok;
  const bool act_fused = s.act == EpilogueAct::kGeluTanh && s.clamp <= 0.0f &&
                         (!s.has_bias || bias_fused);
  const bool residual_fused = s.has_residual && s.residual_same_dtype &&
                              s.clamp <= 0.0f && s.act == EpilogueAct::kNone;
  if (bias_fused) {
    plan.gemm_epilogue =
        act_fused ? GemmEpilogue::kGeluBias : GemmEpilogue::kBias;
  } else {
    plan.gemm_epilogue =
        act_fused ? GemmEpilogue::kGelu : GemmEpilogue::kDefault;
  }
  plan.gemm_beta_residual = residual_fused;
  plan.kernel_bias = s.has_bias && !bias_fused;
  plan.kernel_clamp = s.clamp > 0.0f;
  plan.kernel_act = act_fused ? EpilogueAct::kNone : s.act;
  plan.kernel_residual = s.has_residual && !residual_fused;
  plan.run_kernel = plan.kernel_bias || plan.kernel_clamp ||
                    plan.kernel_act != EpilogueAct::kNone ||
                    plan.kernel_residual;
  plan.gemm_to_scratch = plan.kernel_residual && s.residual_aliases_out;
  return plan;
}

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_DISPATCH_H_
