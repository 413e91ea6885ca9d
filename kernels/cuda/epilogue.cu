#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/epilogue.cuh"

namespace alibi::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float Activate(EpilogueAct act, float x) {
  switch (act) {
    case EpilogueAct::kNone:
      return x;
    case EpilogueAct::kGeluTanh:
      return 0.5f * x *
             (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case EpilogueAct::kGeluErf:
      return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
  }
  return x;
}

__global__ void __launch_bounds__(kThreads)
    EpilogueKernel(const void* src, ElemType src_type, int64_t src_stride,
                   int64_t rows, int64_t cols, const float* __restrict__ bias,
                   float clamp, EpilogueAct act, const void* residual,
                   ElemType residual_type, int64_t residual_stride, void* out,
                   ElemType out_type, int64_t out_stride) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < total; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    float y = LoadAsFloat(src, src_type, r * src_stride + c);
    if (bias != nullptr) y += bias[c];
    if (clamp > 0.0f) y = fminf(fmaxf(y, -clamp), clamp);
    y = Activate(act, y);
    if (residual != nullptr) {
      y += LoadAsFloat(residual, residual_type, r * residual_stride + c);
    }
    StoreFromFloat(out, out_type, r * out_stride + c, y);
  }
}

}  // namespace

cudaError_t LaunchLinearEpilogue(
    const void* src, ElemType src_type, int64_t src_stride, int64_t rows,
    int64_t cols, const float* bias, float clamp, EpilogueAct act,
    const void* residual, ElemType residual_type, int64_t residual_stride,
    void* out, ElemType out_type, int64_t out_stride, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  EpilogueKernel<<<GridFor(rows * cols, kThreads), kThreads, 0, stream>>>(
      src, src_type, src_stride, rows, cols, bias, clamp, act, residual,
      residual_type, residual_stride, out, out_type, out_stride);
  return cudaGetLastError();
}

}  // namespace alibi::kernels::cuda
