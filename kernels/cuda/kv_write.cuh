// Writes the keys and values of a step's tokens into the paged KV pool via
// the slot mapping (slot = block * block_size + offset).
//
// Thread-safety: stateless launcher; callers serialise use of a stream.
#ifndef ALIBI_KERNELS_CUDA_KV_WRITE_CUH_
#define ALIBI_KERNELS_CUDA_KV_WRITE_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace alibi::kernels::cuda {

// For t < num_tokens with slots[t] >= 0 and every kv head h:
//   k_pool[slot / block_size, h, slot % block_size, :] = k[t, h*D : h*D+D]
//   (same for v), D = head_dim.
// k, v: [num_tokens, num_kv_heads * head_dim] (strided views, `k_stride` /
// `v_stride` elements per row); pools: [num_blocks, num_kv_heads,
// block_size, head_dim]; all of `elem_size` bytes per element (2 or 4).
// Negative slots are padding and skipped; a slot >= num_blocks * block_size
// is skipped and sets kErrKvSlot. Uses 16-byte copies when every pointer,
// stride and head row allows it.
cudaError_t LaunchWriteKv(const void* k, int64_t k_stride, const void* v,
                          int64_t v_stride, const int32_t* slots,
                          int num_tokens, void* k_pool, void* v_pool,
                          int64_t num_blocks, int block_size, int num_kv_heads,
                          int head_dim, int elem_size, uint32_t* error_word,
                          cudaStream_t stream);

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_KV_WRITE_CUH_
