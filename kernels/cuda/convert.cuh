// Element type conversion on the device (weights at load: checkpoint F32,
// F16 or BF16 -> the backend's bf16 / fp16 / fp32 copies).
//
// Thread-safety: stateless launcher; callers serialise use of a stream.
#ifndef ALIBI_KERNELS_CUDA_CONVERT_CUH_
#define ALIBI_KERNELS_CUDA_CONVERT_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace alibi::kernels::cuda {

// dst[i] = dst_type(src[i]) for i < count (round to nearest even; NaN and
// infinities preserved). src and dst must not overlap.
cudaError_t LaunchConvert(const void* src, ElemType src_type, void* dst,
                          ElemType dst_type, int64_t count,
                          cudaStream_t stream);

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_CONVERT_CUH_
