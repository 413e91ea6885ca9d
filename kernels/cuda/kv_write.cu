#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/kv_write.cuh"

namespace alibi::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// Grid-stride over (token, kv head, word of the head row). Strides and
// head_words are in units of Word.
template <typename Word>
__global__ void __launch_bounds__(kThreads)
    WriteKvKernel(const Word* __restrict__ k, int64_t k_stride,
                  const Word* __restrict__ v, int64_t v_stride,
                  const int32_t* __restrict__ slots, int num_tokens,
                  Word* __restrict__ k_pool, Word* __restrict__ v_pool,
                  int64_t num_slots, int block_size, int num_kv_heads,
                  int head_words, uint32_t* error_word) {
  const int64_t row_words = static_cast<int64_t>(num_kv_heads) * head_words;
  const int64_t total = row_words * num_tokens;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < total; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / row_words;
    const int64_t w = i - t * row_words;  // word within the token's row
    const int32_t slot = slots[t];
    if (slot < 0) continue;  // padding row
    if (slot >= num_slots) {
      if (w == 0) ReportError(error_word, kErrKvSlot);
      continue;
    }
    const int64_t head = w / head_words, e = w - head * head_words;
    const int64_t block = slot / block_size, offset = slot % block_size;
    const int64_t dst =
        ((block * num_kv_heads + head) * block_size + offset) * head_words + e;
    k_pool[dst] = k[t * k_stride + w];
    v_pool[dst] = v[t * v_stride + w];
  }
}

template <typename Word>
cudaError_t Launch(const void* k, int64_t k_stride, const void* v,
                   int64_t v_stride, const int32_t* slots, int num_tokens,
                   void* k_pool, void* v_pool, int64_t num_slots,
                   int block_size, int num_kv_heads, int head_words,
                   int64_t words_per_elem_divisor, uint32_t* error_word,
                   cudaStream_t stream) {
  const int64_t total =
      static_cast<int64_t>(num_tokens) * num_kv_heads * head_words;
  WriteKvKernel<Word><<<GridFor(total, kThreads), kThreads, 0, stream>>>(
      static_cast<const Word*>(k), k_stride / words_per_elem_divisor,
      static_cast<const Word*>(v), v_stride / words_per_elem_divisor, slots,
      num_tokens, static_cast<Word*>(k_pool), static_cast<Word*>(v_pool),
      num_slots, block_size, num_kv_heads, head_words, error_word);
  return cudaGetLastError();
}

bool Aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

}  // namespace

cudaError_t LaunchWriteKv(const void* k, int64_t k_stride, const void* v,
                          int64_t v_stride, const int32_t* slots,
                          int num_tokens, void* k_pool, void* v_pool,
                          int64_t num_blocks, int block_size, int num_kv_heads,
                          int head_dim, int elem_size, uint32_t* error_word,
                          cudaStream_t stream) {
  if (num_tokens <= 0 || num_kv_heads <= 0 || head_dim <= 0) {
    return cudaSuccess;
  }
  if (elem_size != 2 && elem_size != 4) return cudaErrorInvalidValue;
  const int64_t num_slots = num_blocks * block_size;
  const int64_t row_bytes = static_cast<int64_t>(head_dim) * elem_size;
  const int per_word = 16 / elem_size;  // elements per 16-byte word
  const bool vec = Aligned16(k) && Aligned16(v) && Aligned16(k_pool) &&
                   Aligned16(v_pool) && row_bytes % 16 == 0 &&
                   (k_stride * elem_size) % 16 == 0 &&
                   (v_stride * elem_size) % 16 == 0;
  if (vec) {
    return Launch<uint4>(k, k_stride, v, v_stride, slots, num_tokens, k_pool,
                         v_pool, num_slots, block_size, num_kv_heads,
                         static_cast<int>(row_bytes / 16), per_word, error_word,
                         stream);
  }
  if (elem_size == 4) {
    return Launch<uint32_t>(k, k_stride, v, v_stride, slots, num_tokens, k_pool,
                            v_pool, num_slots, block_size, num_kv_heads,
                            head_dim, 1, error_word, stream);
  }
  return Launch<uint16_t>(k, k_stride, v, v_stride, slots, num_tokens, k_pool,
                          v_pool, num_slots, block_size, num_kv_heads, head_dim,
                          1, error_word, stream);
}

}  // namespace alibi::kernels::cuda
