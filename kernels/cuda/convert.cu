#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/device_common.cuh"

namespace alibi::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    ConvertKernel(const void* __restrict__ src, ElemType src_type,
                  void* __restrict__ dst, ElemType dst_type, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < count; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    StoreFromFloat(dst, dst_type, i, LoadAsFloat(src, src_type, i));
  }
}

}  // namespace

cudaError_t LaunchConvert(const void* src, ElemType src_type, void* dst,
                          ElemType dst_type, int64_t count,
                          cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  ConvertKernel<<<GridFor(count, kThreads), kThreads, 0, stream>>>(
      src, src_type, dst, dst_type, count);
  return cudaGetLastError();
}

}  // namespace alibi::kernels::cuda
