// Declarations of the emulated launchers that gen_cuda_emulation.py
// generates from kernels/cuda/*.cu (same signatures as the real ones in the
// .cuh headers, in namespace ...::cuda::emulated; pointers are host memory
// and every launch runs to completion before it returns), and the
// emulator's scheduling mode.
//
// Thread-safety: one emulated launch at a time per process.
#ifndef ALIBI_TESTS_GPU_EMULATION_EMULATED_KERNELS_H_
#define ALIBI_TESTS_GPU_EMULATION_EMULATED_KERNELS_H_

#include <cstdint>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dispatch.h"
#include "kernels/cuda/sample.cuh"

namespace alibi::kernels::cuda::emulated {

cudaError_t LaunchAttentionPlan(const AttentionArgs& args,
                                const AttentionPlan& plan, cudaStream_t stream);
cudaError_t LaunchPrefillAttention(const AttentionArgs& args,
                                   const AttentionPlan& plan,
                                   cudaStream_t stream);
cudaError_t LaunchRowAttention(const AttentionArgs& args,
                               const AttentionPlan& plan, cudaStream_t stream);
cudaError_t LaunchEmbedding(const int32_t* ids, int num_tokens,
                            const void* table, ElemType table_type,
                            int64_t table_rows, int64_t cols,
                            int64_t table_stride, float* out,
                            int64_t out_stride, uint32_t* error_word,
                            cudaStream_t stream);
cudaError_t LaunchGatherRows(const void* in, int64_t in_rows, int64_t cols,
                             int64_t in_stride, const int32_t* rows,
                             int num_rows, void* out, int64_t out_stride,
                             int elem_size, uint32_t* error_word,
                             cudaStream_t stream);
cudaError_t LaunchLayerNorm(const float* in, int64_t in_stride, int64_t rows,
                            int64_t cols, const float* gamma, const float* beta,
                            float eps, void* out, ElemType out_type,
                            int64_t out_stride, cudaStream_t stream);
cudaError_t LaunchLinearEpilogue(
    const void* src, ElemType src_type, int64_t src_stride, int64_t rows,
    int64_t cols, const float* bias, float clamp, EpilogueAct act,
    const void* residual, ElemType residual_type, int64_t residual_stride,
    void* out, ElemType out_type, int64_t out_stride, cudaStream_t stream);
cudaError_t LaunchConvert(const void* src, ElemType src_type, void* dst,
                          ElemType dst_type, int64_t count,
                          cudaStream_t stream);
cudaError_t LaunchWriteKv(const void* k, int64_t k_stride, const void* v,
                          int64_t v_stride, const int32_t* slots,
                          int num_tokens, void* k_pool, void* v_pool,
                          int64_t num_blocks, int block_size, int num_kv_heads,
                          int head_dim, int elem_size, uint32_t* error_word,
                          cudaStream_t stream);

cudaError_t LaunchSample(const SampleArgs& args, cudaStream_t stream);

// In-order scheduling with cp.async landing at its wait (false, false), or
// randomly paced warps with copies landing at once (true, true).
void SetEmulationMode(bool random_pace, bool immediate_copies, uint32_t seed);

}  // namespace alibi::kernels::cuda::emulated

#endif  // ALIBI_TESTS_GPU_EMULATION_EMULATED_KERNELS_H_
