#include "kernels/host/checks.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace alibi::kernels::host {

absl::Status ExpectDType(const TensorView& view, DType dtype,
                         absl::string_view backend, absl::string_view what) {
  if (view.dtype != dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat(backend, " backend: ", what, " must be ", DTypeName(dtype),
                     ", got ", DTypeName(view.dtype)));
  }
  if (view.data == nullptr && view.rows > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(backend, " backend: ", what, " is null"));
  }
  return absl::OkStatus();
}

absl::Status CheckEmbedding(const int32_t* ids, int num_tokens,
                            const TensorView& table, const TensorView& out,
                            absl::string_view backend) {
  RETURN_IF_ERROR(ExpectDType(out, DType::kF32, backend, "embedding output"));
  if (out.rows < num_tokens || out.cols != table.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(backend, " backend: embedding shape mismatch"));
  }
  return CheckIndices(ids, num_tokens, table.rows, backend, "token id");
}

absl::Status CheckLayerNorm(const TensorView& in, const float* gamma,
                            const TensorView& out, absl::string_view backend) {
  RETURN_IF_ERROR(ExpectDType(in, DType::kF32, backend, "layernorm input"));
  RETURN_IF_ERROR(ExpectDType(out, DType::kF32, backend, "layernorm output"));
  if (in.rows != out.rows || in.cols != out.cols || gamma == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(backend, " backend: layernorm shape mismatch"));
  }
  return absl::OkStatus();
}

absl::Status CheckLinear(const TensorView& in, const TensorView& weight,
                         const LinearEpilogue& epi, const TensorView& out,
                         absl::string_view backend) {
  RETURN_IF_ERROR(ExpectDType(in, DType::kF32, backend, "linear input"));
  RETURN_IF_ERROR(ExpectDType(out, DType::kF32, backend, "linear output"));
  const int64_t rows = in.rows, n = weight.rows, k = weight.cols;
  if (in.cols != k || out.rows != rows || out.cols != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        backend, " backend: linear shapes [", rows, ",", in.cols, "] x [", n,
        ",", k, "]^T -> [", out.rows, ",", out.cols, "]"));
  }
  if (epi.residual.data != nullptr) {
    RETURN_IF_ERROR(
        ExpectDType(epi.residual, DType::kF32, backend, "linear residual"));
    if (epi.residual.rows != rows || epi.residual.cols != n) {
      return absl::InvalidArgumentError(
          absl::StrCat(backend, " backend: linear residual shape mismatch"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckWriteKv(const TensorView& k, const TensorView& v,
                          const int32_t* slot_mapping, int num_tokens,
                          const PagedKvView& kv, DType kv_dtype,
                          absl::string_view backend) {
  RETURN_IF_ERROR(ExpectDType(k, DType::kF32, backend, "kv key rows"));
  RETURN_IF_ERROR(ExpectDType(v, DType::kF32, backend, "kv value rows"));
  const int64_t width = static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim;
  if (kv.dtype != kv_dtype || k.cols != width || v.cols != width ||
      k.rows < num_tokens || v.rows < num_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat(backend, " backend: WriteKv shape mismatch"));
  }
  return CheckSlots(slot_mapping, num_tokens, kv, backend);
}

absl::Status CheckIndices(const int32_t* ids, int n, int64_t limit,
                          absl::string_view backend, absl::string_view what) {
  for (int i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= limit) {
      return absl::InvalidArgumentError(
          absl::StrCat(backend, " backend: ", what, " ", ids[i],
                       " outside [0, ", limit, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSlots(const int32_t* slots, int n, const PagedKvView& kv,
                        absl::string_view backend) {
  const int64_t limit = static_cast<int64_t>(kv.num_blocks) * kv.block_size;
  for (int t = 0; t < n; ++t) {
    if (slots[t] >= limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          backend, " backend: slot ", slots[t], " outside the pool"));
    }
  }
  return absl::OkStatus();
}

absl::Status ResolveAttentionRows(const TensorView& q, const PagedKvView& kv,
                                  const AttentionMeta& meta, int num_heads,
                                  const TensorView& out,
                                  absl::string_view backend,
                                  std::vector<int32_t>* seq_of,
                                  std::vector<int32_t>* pos_of) {
  const int d = kv.head_dim;
  if (num_heads <= 0 || kv.num_kv_heads <= 0 || d <= 0 || kv.block_size <= 0 ||
      num_heads % kv.num_kv_heads != 0 || q.cols != int64_t{num_heads} * d ||
      out.cols != q.cols || q.rows < meta.num_tokens ||
      out.rows < meta.num_tokens || meta.num_tokens < 0 || meta.num_seqs < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(backend, " backend: attention shape mismatch"));
  }
  seq_of->resize(meta.num_tokens);
  pos_of->resize(meta.num_tokens);
  for (int s = 0; s < meta.num_seqs; ++s) {
    const int32_t begin = meta.query_start[s], end = meta.query_start[s + 1];
    const int32_t ctx = meta.context_lens[s];
    const int32_t window = meta.windows != nullptr ? meta.windows[s] : 0;
    const int32_t first_block = FirstBlock(meta, s);
    const int32_t needed_blocks =
        (ctx + kv.block_size - 1) / kv.block_size - first_block;
    // The first key the sequence's first query row sees.
    const int32_t lowest_key = FirstKey(meta, s, ctx - (end - begin));
    if (begin < 0 || end < begin || end > meta.num_tokens ||
        ctx < end - begin || window < 0 || first_block < 0 ||
        needed_blocks > meta.max_blocks_per_seq ||
        lowest_key < first_block * kv.block_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(backend, " backend: attention metadata of sequence ", s,
                       " is inconsistent"));
    }
    for (int32_t b = 0; b < needed_blocks; ++b) {
      const int32_t block = meta.block_tables[s * meta.max_blocks_per_seq + b];
      if (block < 0 || block >= kv.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat(
            backend, " backend: block ", block, " outside the pool"));
      }
    }
    for (int32_t t = begin; t < end; ++t) {
      (*seq_of)[t] = s;
      (*pos_of)[t] = ctx - (end - begin) + (t - begin);
    }
  }
  return absl::OkStatus();
}

}  // namespace alibi::kernels::host
