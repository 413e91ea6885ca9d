// Paged causal attention with the ALiBi bias computed in-kernel:
//   score(i, j) = scale * q_i . k_j - slope_h * (pos_i - j),
//   FirstVisibleKey(pos_i, window) <= j <= pos_i,
// softmax in fp32, then the weighted sum of v_j. Query head h reads KV head
// h / (num_heads / num_kv_heads). No bias tensor exists anywhere.
//
// Three launches (what runs is PlanAttention's choice, dispatch.h), in this
// order on one stream and workspace:
// - LaunchAttentionPlan (attention_plan.cu): checks the batch metadata and
//   writes the work lists (query tiles, rows, KV-partition items). Its
//   output depends on the metadata alone: a caller that knows the metadata
//   did not change (the layers of one step) launches it once.
// - LaunchPrefillAttention (attention_prefill.cu, plan kPrefillMma):
//   flash-attention style over the long query runs; tensor cores.
// - LaunchRowAttention (attention_decode.cu): the listed rows, one block per
//   (KV partition item, head) at a time, plus a combine kernel; decode
//   steps, short query runs and head dims without a prefill variant.
//
// Thread-safety: stateless launchers; callers serialise use of a stream.
#ifndef ALIBI_KERNELS_CUDA_ATTENTION_CUH_
#define ALIBI_KERNELS_CUDA_ATTENTION_CUH_

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dispatch.h"

namespace alibi::kernels::cuda {

// Everything a launch needs; pointers are device memory.
struct AttentionArgs {
  // q: [num_tokens, num_heads * head_dim], row stride q_stride (elements).
  const void* q = nullptr;
  int64_t q_stride = 0;
  // out: [num_tokens, num_heads * head_dim], row stride out_stride.
  void* out = nullptr;
  int64_t out_stride = 0;
  // Pools: [num_blocks, num_kv_heads, block_size, head_dim].
  const void* k_pool = nullptr;
  const void* v_pool = nullptr;
  int num_blocks = 0;
  int block_size = 0;
  int num_kv_heads = 0;
  int num_heads = 0;
  int head_dim = 0;
  // Batch metadata (kernels::AttentionMeta).
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* context_lens = nullptr;  // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  // Sliding windows and the logical block each block table starts at
  // (AttentionMeta::windows / first_blocks): [num_seqs] each, or null.
  const int32_t* windows = nullptr;
  const int32_t* first_blocks = nullptr;
  int num_seqs = 0;
  int num_tokens = 0;
  // [num_heads] fp32; null: no bias (plain causal attention, benchmarks).
  const float* slopes = nullptr;
  float scale = 1.0f;
  // Type of q, out and the pools: kBF16 or kF16.
  ElemType dtype = ElemType::kBF16;
  // At least plan.workspace_bytes, 16-byte aligned.
  void* workspace = nullptr;
  uint32_t* error_word = nullptr;
};

// Writes the work lists of `plan` into the workspace (plan.plan_bytes).
// Invalid metadata (query ranges, context lengths, windows, first blocks,
// block-table widths) is reported through the error word; its rows are left
// out.
cudaError_t LaunchAttentionPlan(const AttentionArgs& args,
                                const AttentionPlan& plan, cudaStream_t stream);

// Sequences with more than kRowKernelMaxQueryLen query rows. plan.kernel
// must be kPrefillMma (head_dim 64, 80, 96 or 128).
cudaError_t LaunchPrefillAttention(const AttentionArgs& args,
                                   const AttentionPlan& plan,
                                   cudaStream_t stream);

// The rows LaunchAttentionPlan listed (kRowSplitKv: every query row).
cudaError_t LaunchRowAttention(const AttentionArgs& args,
                               const AttentionPlan& plan, cudaStream_t stream);

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_ATTENTION_CUH_
