#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/gather.cuh"

namespace alibi::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per output row (grid-stride over rows); threads over columns.
__global__ void EmbeddingKernel(const int32_t* __restrict__ ids, int num_tokens,
                                const void* __restrict__ table,
                                ElemType table_type, int64_t table_rows,
                                int64_t cols, int64_t table_stride,
                                float* __restrict__ out, int64_t out_stride,
                                uint32_t* error_word) {
  for (int t = blockIdx.x; t < num_tokens; t += gridDim.x) {
    const int32_t id = ids[t];
    float* dst = out + static_cast<int64_t>(t) * out_stride;
    if (id < 0 || id >= table_rows) {
      if (threadIdx.x == 0) ReportError(error_word, kErrTokenId);
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = 0.0f;
      continue;
    }
    const int64_t base = static_cast<int64_t>(id) * table_stride;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      dst[c] = LoadAsFloat(table, table_type, base + c);
    }
  }
}

template <typename Word>
__global__ void GatherRowsKernel(const Word* __restrict__ in, int64_t in_rows,
                                 int64_t cols, int64_t in_stride,
                                 const int32_t* __restrict__ rows, int num_rows,
                                 Word* __restrict__ out, int64_t out_stride,
                                 uint32_t* error_word) {
  for (int r = blockIdx.x; r < num_rows; r += gridDim.x) {
    const int32_t src_row = rows[r];
    Word* dst = out + static_cast<int64_t>(r) * out_stride;
    if (src_row < 0 || src_row >= in_rows) {
      if (threadIdx.x == 0) ReportError(error_word, kErrGatherRow);
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = Word{};
      continue;
    }
    const Word* src = in + static_cast<int64_t>(src_row) * in_stride;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = src[c];
  }
}

}  // namespace

cudaError_t LaunchEmbedding(const int32_t* ids, int num_tokens,
                            const void* table, ElemType table_type,
                            int64_t table_rows, int64_t cols,
                            int64_t table_stride, float* out,
                            int64_t out_stride, uint32_t* error_word,
                            cudaStream_t stream) {
  if (num_tokens <= 0 || cols <= 0) return cudaSuccess;
  const unsigned blocks = num_tokens < 65536 ? num_tokens : 65536;
  EmbeddingKernel<<<blocks, kThreads, 0, stream>>>(
      ids, num_tokens, table, table_type, table_rows, cols, table_stride, out,
      out_stride, error_word);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const void* in, int64_t in_rows, int64_t cols,
                             int64_t in_stride, const int32_t* rows,
                             int num_rows, void* out, int64_t out_stride,
                             int elem_size, uint32_t* error_word,
                             cudaStream_t stream) {
  if (num_rows <= 0 || cols <= 0) return cudaSuccess;
  const unsigned blocks = num_rows < 65536 ? num_rows : 65536;
  if (elem_size == 4) {
    GatherRowsKernel<uint32_t><<<blocks, kThreads, 0, stream>>>(
        static_cast<const uint32_t*>(in), in_rows, cols, in_stride, rows,
        num_rows, static_cast<uint32_t*>(out), out_stride, error_word);
  } else if (elem_size == 2) {
    GatherRowsKernel<uint16_t><<<blocks, kThreads, 0, stream>>>(
        static_cast<const uint16_t*>(in), in_rows, cols, in_stride, rows,
        num_rows, static_cast<uint16_t*>(out), out_stride, error_word);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace alibi::kernels::cuda
