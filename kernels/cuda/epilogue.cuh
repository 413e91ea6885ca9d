// The parts of Linear's epilogue that cuBLASLt does not fuse (see
// dispatch.h, PlanLinear): bias, clamp (MPT clip_qkv), exact-erf GELU (MPT)
// and residual adds whose dtype differs from the output's, applied in one
// element-wise pass after the GEMM.
//
// Thread-safety: stateless launchers; callers serialise use of a stream.
#ifndef ALIBI_KERNELS_CUDA_EPILOGUE_CUH_
#define ALIBI_KERNELS_CUDA_EPILOGUE_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dispatch.h"

namespace alibi::kernels::cuda {

// For r < rows, c < cols:
//   y = src[r, c]; if (bias) y += bias[c]; if (clamp > 0) y = clamp(y, +-c);
//   y = act(y); if (residual) y += residual[r, c]; out[r, c] = y.
// src: [rows, cols] of `src_type` (may be `out` itself); bias: [cols] fp32 or
// null; residual: [rows, cols] of `residual_type` or null (may alias `out`
// only when src does not); out: [rows, cols] of `out_type`. Arithmetic in
// fp32; each element is read and written by the same thread.
cudaError_t LaunchLinearEpilogue(
    const void* src, ElemType src_type, int64_t src_stride, int64_t rows,
    int64_t cols, const float* bias, float clamp, EpilogueAct act,
    const void* residual, ElemType residual_type, int64_t residual_stride,
    void* out, ElemType out_type, int64_t out_stride, cudaStream_t stream);

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_EPILOGUE_CUH_
