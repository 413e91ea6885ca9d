// Argument checks shared by the host (CPU) backends: every index an op is
// about to follow is checked first, so bad input is an InvalidArgument
// status naming the thing, never a wild read.
//
// Thread-safety: pure functions.
#ifndef ALIBI_KERNELS_HOST_CHECKS_H_
#define ALIBI_KERNELS_HOST_CHECKS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "kernels/backend.h"

namespace alibi::kernels::host {

// `view` has dtype `dtype` and data unless it is empty.
absl::Status ExpectDType(const TensorView& view, DType dtype,
                         absl::string_view backend, absl::string_view what);

// The operands of Embedding: out f32 [>= num_tokens, table.cols], every id a
// row of the table (the table's dtype is the backend's to check).
absl::Status CheckEmbedding(const int32_t* ids, int num_tokens,
                            const TensorView& table, const TensorView& out,
                            absl::string_view backend);

// The f32 operands of LayerNorm (in and out [T, H], gamma non-null).
absl::Status CheckLayerNorm(const TensorView& in, const float* gamma,
                            const TensorView& out, absl::string_view backend);

// The f32 operands of Linear: in [rows, K] x weight [N, K]^T -> out
// [rows, N], and the residual [rows, N] when there is one (the weight's
// dtype is the backend's to check).
absl::Status CheckLinear(const TensorView& in, const TensorView& weight,
                         const LinearEpilogue& epi, const TensorView& out,
                         absl::string_view backend);

// The operands of WriteKv: k and v f32 [>= num_tokens, kv heads x head_dim]
// into a pool of `kv_dtype`, and every slot in the pool.
absl::Status CheckWriteKv(const TensorView& k, const TensorView& v,
                          const int32_t* slot_mapping, int num_tokens,
                          const PagedKvView& kv, DType kv_dtype,
                          absl::string_view backend);

// Each of ids[0..n) is in [0, limit).
absl::Status CheckIndices(const int32_t* ids, int n, int64_t limit,
                          absl::string_view backend, absl::string_view what);

// Each slot is below the pool's num_blocks * block_size (negative: padding
// rows, skipped by WriteKv).
absl::Status CheckSlots(const int32_t* slots, int n, const PagedKvView& kv,
                        absl::string_view backend);

// Checks a PagedAttention call (shapes, head counts, every sequence's
// metadata and the block-table entries its keys live in) and fills, for each
// query row t, its sequence and absolute position.
absl::Status ResolveAttentionRows(const TensorView& q, const PagedKvView& kv,
                                  const AttentionMeta& meta, int num_heads,
                                  const TensorView& out,
                                  absl::string_view backend,
                                  std::vector<int32_t>* seq_of,
                                  std::vector<int32_t>* pos_of);

// The first key position query position `pos` of sequence s attends to.
inline int32_t FirstKey(const AttentionMeta& meta, int s, int32_t pos) {
  const int32_t window = meta.windows != nullptr ? meta.windows[s] : 0;
  return window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
}

// Sequence s's first logical block (its block table's entry 0).
inline int32_t FirstBlock(const AttentionMeta& meta, int s) {
  return meta.first_blocks != nullptr ? meta.first_blocks[s] : 0;
}

}  // namespace alibi::kernels::host

#endif  // ALIBI_KERNELS_HOST_CHECKS_H_
