#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/layernorm.cuh"

namespace alibi::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row (grid-stride over rows). Three passes over the row:
// mean, variance about the mean, normalise. The second and third passes hit
// L1/L2. With out == in, each element is read before the same thread
// overwrites it, after both reductions have completed.
__global__ void __launch_bounds__(kThreads)
    LayerNormKernel(const float* in, int64_t in_stride, int64_t rows,
                    int64_t cols, const float* __restrict__ gamma,
                    const float* __restrict__ beta, float eps, void* out,
                    ElemType out_type, int64_t out_stride) {
  __shared__ float scratch[32];
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* x = in + r * in_stride;
    float sum = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += x[c];
    const float mean = BlockSum(sum, scratch) * inv_cols;
    float sq = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float d = x[c] - mean;
      sq += d * d;
    }
    const float var = BlockSum(sq, scratch) * inv_cols;
    const float inv_std = 1.0f / sqrtf(var + eps);
    const int64_t out_base = r * out_stride;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      float y = (x[c] - mean) * inv_std * gamma[c];
      if (beta != nullptr) y += beta[c];
      StoreFromFloat(out, out_type, out_base + c, y);
    }
    // The next row's first BlockSum barrier orders this row's writes before
    // any reuse of `scratch`; rows are independent otherwise.
  }
}

}  // namespace

cudaError_t LaunchLayerNorm(const float* in, int64_t in_stride, int64_t rows,
                            int64_t cols, const float* gamma, const float* beta,
                            float eps, void* out, ElemType out_type,
                            int64_t out_stride, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  const unsigned blocks = rows < 65536 ? static_cast<unsigned>(rows) : 65536u;
  LayerNormKernel<<<blocks, kThreads, 0, stream>>>(
      in, in_stride, rows, cols, gamma, beta, eps, out, out_type, out_stride);
  return cudaGetLastError();
}

}  // namespace alibi::kernels::cuda
