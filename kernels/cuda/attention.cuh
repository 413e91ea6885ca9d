// Paged causal attention with the ALiBi bias computed in-kernel:
//   score(i, j) = scale * q_i . k_j - slope_h * (pos_i - j),  j <= pos_i,
// softmax in fp32, then the weighted sum of v_j. Query head h reads KV head
// h / (num_heads / num_kv_heads). No bias tensor exists anywhere.
//
// Two kernels (which run is PlanAttention's choice, dispatch.h):
// - LaunchPrefillAttention (attention_prefill.cu): flash-attention style
//   over variable-length query chunks; tensor cores.
// - LaunchRowAttention (attention_decode.cu): one block per query row,
//   head and KV partition (split-KV) plus a combine kernel; decode steps,
//   short query runs and head dims without a prefill variant.
// A mixed batch (plan kPrefillMma) runs both: long query runs in the first,
// the other sequences' rows in the second.
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

// Sequences with more than kRowKernelMaxQueryLen query rows; also lists the
// others' rows in the workspace for LaunchRowAttention. plan.kernel must be
// kPrefillMma (head_dim 64, 80, 96 or 128).
cudaError_t LaunchPrefillAttention(const AttentionArgs& args,
                                   const AttentionPlan& plan,
                                   cudaStream_t stream);

// kRowSplitKv: every query row. kPrefillMma: the rows LaunchPrefillAttention
// listed (call it after that, on the same stream and workspace).
cudaError_t LaunchRowAttention(const AttentionArgs& args,
                               const AttentionPlan& plan, cudaStream_t stream);

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_ATTENTION_CUH_
