// Device-side helpers shared by the .cu files: element conversions, warp and
// block reductions, error reporting. Included only by nvcc-compiled sources.
//
// Thread-safety: stateless device functions.
#ifndef ALIBI_KERNELS_CUDA_DEVICE_COMMON_CUH_
#define ALIBI_KERNELS_CUDA_DEVICE_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace alibi::kernels::cuda {

// Reads element `i` of an array of `type` as fp32.
__device__ __forceinline__ float LoadAsFloat(const void* p, ElemType type,
                                             int64_t i) {
  switch (type) {
    case ElemType::kF32:
      return static_cast<const float*>(p)[i];
    case ElemType::kF16:
      return __half2float(static_cast<const __half*>(p)[i]);
    case ElemType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  }
  return 0.0f;
}

// Writes `v` (rounded to nearest even) as element `i` of an array of `type`.
__device__ __forceinline__ void StoreFromFloat(void* p, ElemType type,
                                               int64_t i, float v) {
  switch (type) {
    case ElemType::kF32:
      static_cast<float*>(p)[i] = v;
      return;
    case ElemType::kF16:
      static_cast<__half*>(p)[i] = __float2half_rn(v);
      return;
    case ElemType::kBF16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
      return;
  }
}

// 16-bit element traits for the templated attention kernels.
template <typename T>
struct Half16;

// The packed-register helpers of a 16-bit type, from its Bits / FromBits.
template <typename Traits>
struct Half16Words {
  // Two floats as one 32-bit register: `lo` in the low half.
  __device__ __forceinline__ static uint32_t Pack(float lo, float hi) {
    return static_cast<uint32_t>(Traits::Bits(lo)) |
           (static_cast<uint32_t>(Traits::Bits(hi)) << 16);
  }
  // Eight consecutive elements held in a uint4 (element 0 in the low half
  // of .x).
  __device__ __forceinline__ static void Unpack8(const uint4& raw,
                                                 float (&out)[8]) {
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = Traits::FromBits(static_cast<uint16_t>(words[i] & 0xFFFFu));
      out[2 * i + 1] = Traits::FromBits(static_cast<uint16_t>(words[i] >> 16));
    }
  }
};

// Bits move through the *_raw structs, never a pointer cast: type-based
// alias analysis may reorder a load through a differently typed pointer (g++
// -O2 was seen to, when the attention kernels ran in the host emulator).
template <>
struct Half16<__nv_bfloat16> : Half16Words<Half16<__nv_bfloat16>> {
  __device__ __forceinline__ static float ToFloat(__nv_bfloat16 x) {
    return __bfloat162float(x);
  }
  __device__ __forceinline__ static __nv_bfloat16 FromFloat(float x) {
    return __float2bfloat16_rn(x);
  }
  __device__ __forceinline__ static uint16_t Bits(float x) {
    return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(x)).x;
  }
  __device__ __forceinline__ static float FromBits(uint16_t bits) {
    __nv_bfloat16_raw raw;
    raw.x = bits;
    return __bfloat162float(__nv_bfloat16(raw));
  }
};

template <>
struct Half16<__half> : Half16Words<Half16<__half>> {
  __device__ __forceinline__ static float ToFloat(__half x) {
    return __half2float(x);
  }
  __device__ __forceinline__ static __half FromFloat(float x) {
    return __float2half_rn(x);
  }
  __device__ __forceinline__ static uint16_t Bits(float x) {
    return static_cast<__half_raw>(__float2half_rn(x)).x;
  }
  __device__ __forceinline__ static float FromBits(uint16_t bits) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
  }
};

template <typename T>
__device__ __forceinline__ T WarpSum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024) of a
// 4-byte T (float, int); every thread gets the result. `scratch` holds >= 32
// values; the trailing barrier lets the caller reuse it at once.
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int num_warps = blockDim.x >> 5;
  v = WarpSum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < num_warps; ++w) total += scratch[w];
  __syncthreads();
  return total;
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int num_warps = blockDim.x >> 5;
  v = WarpMax(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < num_warps; ++w) m = fmaxf(m, scratch[w]);
  __syncthreads();
  return m;
}

// Records invalid input for the host (see ErrorBits).
__device__ __forceinline__ void ReportError(uint32_t* error_word,
                                            uint32_t bits) {
  if (error_word != nullptr) atomicOr(error_word, bits);
}

// Blocks for a grid-stride loop over `n` elements with `threads` per block.
inline unsigned GridFor(int64_t n, int threads, unsigned cap = 65536u) {
  const int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) return 1u;
  return blocks > cap ? cap : static_cast<unsigned>(blocks);
}

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_DEVICE_COMMON_CUH_
