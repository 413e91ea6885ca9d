// Host-side launch planning for the CUDA backend, kept free of CUDA and
// Abseil so that the unit tests can exercise it in CPU-only builds and the
// .cu files can share its constants:
//
// - PlanAttention: which attention kernel runs a batch, its split-KV factor
//   and the workspace it needs (the dispatch table over head dims, block
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
// Every block size >= 1 works with both kernels (a key's page is looked up
// per key row), and so does any head count with num_heads % num_kv_heads ==
// 0 (MHA, GQA, MQA). Which kernel computes a row depends on its sequence's
// query run alone (<= 8 rows: row kernel), and the row kernel's split-KV
// partitioning on the row's own key count: never on the rest of the batch.
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
// Row kernel: keys whose scores are staged in shared memory at a time.
inline constexpr int kRowTileKeys = 256;
// Row kernel split-KV: partitions of at least this many keys, at most
// kMaxSplits of them per query row.
inline constexpr int kMinPartitionKeys = 256;
inline constexpr int kMaxSplits = 32;
inline constexpr int kMaxHeadDim = 256;
// Sequences whose query run is at most this many rows (decodes, short
// chunks) always go to the row kernel.
inline constexpr int kRowKernelMaxQueryLen = 8;
// Mixed plans: the row kernel's grid aims at about this many blocks, each
// looping over the listed rows.
inline constexpr int kRowKernelTargetBlocks = 4096;

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

// Head dims with a compiled tensor-core prefill kernel.
inline bool HasPrefillVariant(int head_dim) {
  return head_dim == 64 || head_dim == 80 || head_dim == 96 || head_dim == 128;
}

enum class AttentionKernel : int32_t {
  kNone = 0,
  // Mixed: sequences with more than kRowKernelMaxQueryLen query rows in the
  // flash-attention style prefill kernel (64 query rows x 64-key tiles,
  // mma.sync m16n8k16, bf16/fp16 in, fp32 accumulate, online softmax in
  // fp32); the rows of the other sequences, listed on the device by the
  // prefill launch's planning kernel, in the row kernel.
  kPrefillMma = 1,
  // Row kernel only: one block per (query row, head, KV partition); SIMT dot
  // products with 16-byte loads; partitions merged by a combine kernel.
  kRowSplitKv = 2,
};

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  int num_tokens = 0;
  int num_seqs = 0;
  int max_query_len = 0;
  int max_context_len = 0;
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
  // Row kernel: partitions per row the grid provides (grid.y), and grid.x
  // (kRowSplitKv: one block column per query row; kPrefillMma: fewer, each
  // looping over the listed rows).
  int max_splits = 1;
  int64_t row_grid_x = 0;
  // kPrefillMma: upper bounds on the 64-row query tiles of long runs and on
  // the rows of short runs (the row list).
  int64_t max_tiles = 0;
  int64_t max_list_rows = 0;
  // Device workspace, bytes, and where each part starts in it.
  size_t workspace_bytes = 0;
  size_t tile_count_offset = 0;  // after the tiles (int2) at offset 0
  size_t row_list_offset = 0;    // int32 row list, then its count
  size_t row_count_offset = 0;
  size_t partial_o_offset = 0;   // when max_splits > 1: fp32 accumulators
  size_t partial_ml_offset = 0;  // and (max, sum) pairs
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
      s.max_context_len < s.max_query_len) {
    plan.error = "batch maxima are inconsistent";
    return plan;
  }
  plan.max_splits = RowNumSplits(s.max_context_len);
  int64_t row_rows = s.num_tokens;  // rows the row kernel may see
  size_t offset = 0;
  if (s.max_query_len > kRowKernelMaxQueryLen &&
      HasPrefillVariant(s.head_dim) && s.q_out_aligned) {
    plan.kernel = AttentionKernel::kPrefillMma;
    plan.max_tiles = (static_cast<int64_t>(s.num_tokens) + kPrefillBlockM - 1) /
                         kPrefillBlockM +
                     s.num_seqs;
    const int64_t short_rows =
        static_cast<int64_t>(kRowKernelMaxQueryLen) * s.num_seqs;
    plan.max_list_rows = s.num_tokens < short_rows ? s.num_tokens : short_rows;
    plan.tile_count_offset =
        AlignUp16(static_cast<size_t>(plan.max_tiles) * 2 * sizeof(int32_t));
    plan.row_list_offset = plan.tile_count_offset + 16;
    plan.row_count_offset =
        plan.row_list_offset +
        AlignUp16(static_cast<size_t>(plan.max_list_rows) * sizeof(int32_t));
    offset = plan.row_count_offset + 16;
    row_rows = plan.max_list_rows;
    const int64_t per_row = static_cast<int64_t>(plan.max_splits) * s.num_heads;
    const int64_t want = (kRowKernelTargetBlocks + per_row - 1) / per_row;
    plan.row_grid_x = want < row_rows ? want : row_rows;
    if (plan.row_grid_x < 1) plan.row_grid_x = 1;
  } else {
    plan.kernel = AttentionKernel::kRowSplitKv;
    plan.row_grid_x = s.num_tokens;
  }
  if (plan.max_splits > 1) {
    const size_t rows = static_cast<size_t>(row_rows) * s.num_heads *
                        static_cast<size_t>(plan.max_splits);
    plan.partial_o_offset = offset;
    plan.partial_ml_offset =
        offset +
        AlignUp16(rows * static_cast<size_t>(s.head_dim) * sizeof(float));
    offset = plan.partial_ml_offset + AlignUp16(rows * 2 * sizeof(float));
  }
  plan.workspace_bytes = offset;
  return plan;
}

// The most attention workspace any batch of up to `max_tokens` tokens and
// `max_seqs` sequences with contexts up to `max_context_len` can need (for
// memory planning).
inline size_t AttentionWorkspaceBound(int max_tokens, int max_seqs,
                                      int num_heads, int head_dim,
                                      int max_context_len) {
  AttentionShape s;
  s.num_heads = num_heads;
  s.num_kv_heads = 1;
  s.head_dim = head_dim;
  s.block_size = 16;
  s.num_tokens = max_tokens;
  s.num_seqs = max_seqs;
  s.max_context_len = max_context_len;
  s.max_query_len = 1;  // row kernel only
  const size_t row = PlanAttention(s).workspace_bytes;
  if (max_context_len <= kRowKernelMaxQueryLen) return row;
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
  // The GEMM output is fp32 (the bias, fp32, is then D's own type).
  bool out_is_f32 = false;
  // cuBLASLt accepted an fp32 bias with a 16-bit D for this problem (found
  // out at run time; the backend retries with false when it did not).
  bool f32_bias_with_16bit_out = true;
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
// - bias through CUBLASLT_EPILOGUE_BIAS when the output is fp32 or cuBLASLt
//   takes an fp32 bias for a 16-bit output;
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
  const bool bias_fused =
      s.has_bias && (s.out_is_f32 || s.f32_bias_with_16bit_out);
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
