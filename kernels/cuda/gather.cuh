// Row gathers on the device: the token embedding (table rows -> fp32
// residual stream) and GatherRows (rows of the residual stream whose logits
// are needed). Launchers enqueue on `stream` and return the launch error.
//
// Thread-safety: stateless launchers; callers serialise use of a stream.
#ifndef ALIBI_KERNELS_CUDA_GATHER_CUH_
#define ALIBI_KERNELS_CUDA_GATHER_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace alibi::kernels::cuda {

// out[t, :] = float(table[ids[t], :]) for t < num_tokens.
// ids: [num_tokens] int32 (device); table: [table_rows, cols] of
// `table_type`, row stride `table_stride` elements; out: [num_tokens, cols]
// fp32, row stride `out_stride`. An id outside [0, table_rows) writes a zero
// row and sets kErrTokenId in `error_word`.
cudaError_t LaunchEmbedding(const int32_t* ids, int num_tokens,
                            const void* table, ElemType table_type,
                            int64_t table_rows, int64_t cols,
                            int64_t table_stride, float* out,
                            int64_t out_stride, uint32_t* error_word,
                            cudaStream_t stream);

// out[r, :] = in[rows[r], :] for r < num_rows; both of `elem_size` bytes
// per element (2 or 4). in: [in_rows, cols] stride `in_stride`; out:
// [num_rows, cols] stride `out_stride`. A row outside [0, in_rows) writes
// zero bytes and sets kErrGatherRow.
cudaError_t LaunchGatherRows(const void* in, int64_t in_rows, int64_t cols,
                             int64_t in_stride, const int32_t* rows,
                             int num_rows, void* out, int64_t out_stride,
                             int elem_size, uint32_t* error_word,
                             cudaStream_t stream);

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_GATHER_CUH_
