// LayerNorm over the rows of the fp32 residual stream, writing fp32 (in
// place allowed) or the 16-bit activation dtype for the next GEMM.
//
// Thread-safety: stateless launcher; callers serialise use of a stream.
#ifndef ALIBI_KERNELS_CUDA_LAYERNORM_CUH_
#define ALIBI_KERNELS_CUDA_LAYERNORM_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace alibi::kernels::cuda {

// out[r, :] = (in[r, :] - mean) / sqrt(var + eps) * gamma + beta (beta may
// be null). in: [rows, cols] fp32, stride `in_stride`; out: [rows, cols] of
// `out_type`, stride `out_stride` (may alias `in` when out_type is fp32 and
// the strides match); gamma, beta: [cols] fp32. Mean and variance are
// computed in fp32 in two passes over the row.
cudaError_t LaunchLayerNorm(const float* in, int64_t in_stride, int64_t rows,
                            int64_t cols, const float* gamma, const float* beta,
                            float eps, void* out, ElemType out_type,
                            int64_t out_stride, cudaStream_t stream);

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_LAYERNORM_CUH_
