// The row kernel: one block of 128 threads per (query row, head, KV
// partition). Decode steps (one query per sequence), short query runs and
// head dims without a tensor-core prefill variant run here; in a mixed batch
// (AttentionKernel::kPrefillMma) the rows of the short runs, listed on the
// device by LaunchPrefillAttention's planning kernel, which must run first.
//
// Per block, keys [k_begin, k_end) of the row's causal range are processed
// in tiles of kRowTileKeys:
//   1. scores: 16 groups of 8 lanes, one key per group at a time; each lane
//      dots 16-byte chunks of the key row with the (pre-scaled) query held in
//      registers; the group reduces with shuffles; the ALiBi bias
//      -slope * (pos - j) is added in the log2 domain.
//   2. online softmax over the tile (block max and sum; running max m and
//      sum l rescale the accumulator).
//   3. P V: threads take 16-byte chunks of value rows (D/8 threads per row,
//      128/(D/8) rows in parallel), skipping keys whose weight is exactly 0
//      (with ALiBi, far keys of steep heads underflow).
// A row with one partition writes the output directly; otherwise each
// partition writes its unnormalised accumulator and (m, l) to the workspace
// and the combine kernel merges them. Partitioning depends on the row's own
// key count only (RowPartitionKeys), never on the batch.
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device_common.cuh"

namespace alibi::kernels::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// The sequence owning flattened query row t: the largest s with
// query_start[s] <= t (empty sequences are skipped by taking the largest).
__device__ __forceinline__ int FindSequence(const int32_t* query_start,
                                            int num_seqs, int t) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (query_start[mid] <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

struct RowInfo {
  int seq;
  int pos;  // absolute position of the query row; keys 0..pos
  bool ok;
};

__device__ __forceinline__ RowInfo LocateRow(const AttentionArgs& a, int t) {
  RowInfo info;
  info.seq = FindSequence(a.query_start, a.num_seqs, t);
  const int begin = a.query_start[info.seq];
  const int end = a.query_start[info.seq + 1];
  const int ctx = a.context_lens[info.seq];
  info.pos = ctx - (end - begin) + (t - begin);
  info.ok = t >= begin && t < end && info.pos >= 0 && info.pos < ctx &&
            info.pos / a.block_size < a.max_blocks_per_seq;
  return info;
}

// Shared memory of one row-kernel block.
struct RowSmem {
  float logits[kRowTileKeys];
  float reduce[kAttentionThreads * 8];
  float scratch[32];
};

// Query row t (flattened), head h, KV partition `split`; `slot` indexes the
// partial buffers. Every thread of the block calls it with the same
// arguments (its barriers and early returns are block-uniform).
template <typename T>
__device__ __forceinline__ void RowAttention(const AttentionArgs& a, int t,
                                             int64_t slot, int split, int h,
                                             int max_splits, float* partial_o,
                                             float* partial_ml, RowSmem& smem) {
  using H = Half16<T>;
  float* const logits = smem.logits;
  float* const reduce = smem.reduce;
  float* const scratch = smem.scratch;
  const int tid = threadIdx.x;
  const RowInfo row = LocateRow(a, t);
  if (!row.ok) {
    if (tid == 0 && split == 0) ReportError(a.error_word, kErrAttentionMeta);
    return;
  }
  const int num_keys = row.pos + 1;
  const int part = RowPartitionKeys(num_keys);
  const int splits = RowNumSplits(num_keys);
  if (splits > max_splits) {
    if (tid == 0 && split == 0 && h == 0) {
      ReportError(a.error_word, kErrAttentionMeta);  // max_context_len lied
    }
    return;
  }
  if (split >= splits) return;
  const int k_begin = split * part;
  const int k_end = min(num_keys, k_begin + part);

  const int d = a.head_dim;
  const int chunks = d >> 3;  // 16-byte chunks per head row (<= 32)
  const int kvh = h / (a.num_heads / a.num_kv_heads);
  const float slope = a.slopes != nullptr ? a.slopes[h] * kLog2e : 0.0f;
  const int32_t* table =
      a.block_tables + static_cast<int64_t>(row.seq) * a.max_blocks_per_seq;
  const T* k_pool = static_cast<const T*>(a.k_pool);
  const T* v_pool = static_cast<const T*>(a.v_pool);
  const int64_t block_stride = static_cast<int64_t>(a.block_size) * d;

  // Scores: lane gl of group grp owns chunks gl, gl + 8, gl + 16, gl + 24.
  const int gl = tid & 7, grp = tid >> 3;
  float q[4][8];
  {
    const T* q_row = static_cast<const T*>(a.q) +
                     static_cast<int64_t>(t) * a.q_stride +
                     static_cast<int64_t>(h) * d;
    const float qk_scale = a.scale * kLog2e;
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      const int c = gl + 8 * m;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        q[m][e] = c < chunks ? H::ToFloat(q_row[c * 8 + e]) * qk_scale : 0.0f;
      }
    }
  }

  // P V: thread (pv_row, pv_chunk); rows_par rows in flight.
  const int rows_par = kAttentionThreads / chunks;
  const int pv_row = tid / chunks, pv_chunk = tid - pv_row * chunks;
  const bool pv_active = pv_row < rows_par;
  float acc[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = 0.0f;
  float m_run = -INFINITY, l_run = 0.0f;

  for (int tile0 = k_begin; tile0 < k_end; tile0 += kRowTileKeys) {
    const int tile_len = min(kRowTileKeys, k_end - tile0);
    // 1. Scores (log2 domain). Every lane runs every iteration: shuffles.
    for (int i0 = 0; i0 < tile_len; i0 += kAttentionThreads / 8) {
      const int i = i0 + grp;
      const int j = tile0 + i;
      float dot = 0.0f;
      bool valid = false;
      if (i < tile_len) {
        const int32_t block = table[j / a.block_size];
        if (block >= 0 && block < a.num_blocks) {
          valid = true;
          const uint4* k_row = reinterpret_cast<const uint4*>(
              k_pool +
              (static_cast<int64_t>(block) * a.num_kv_heads + kvh) *
                  block_stride +
              static_cast<int64_t>(j % a.block_size) * d);
#pragma unroll
          for (int m = 0; m < 4; ++m) {
            const int c = gl + 8 * m;
            if (c < chunks) {
              float kf[8];
              H::Unpack8(__ldg(k_row + c), kf);
#pragma unroll
              for (int e = 0; e < 8; ++e) dot = fmaf(q[m][e], kf[e], dot);
            }
          }
        } else if (gl == 0) {
          ReportError(a.error_word, kErrBlockTable);
        }
      }
      dot += __shfl_xor_sync(0xffffffffu, dot, 1);
      dot += __shfl_xor_sync(0xffffffffu, dot, 2);
      dot += __shfl_xor_sync(0xffffffffu, dot, 4);
      if (i < tile_len && gl == 0) {
        logits[i] =
            valid ? dot - slope * static_cast<float>(row.pos - j) : -INFINITY;
      }
    }
    __syncthreads();

    // 2. Online softmax over the tile.
    float mx = -INFINITY;
    for (int i = tid; i < tile_len; i += kAttentionThreads) {
      mx = fmaxf(mx, logits[i]);
    }
    mx = BlockMax(mx, scratch);
    const float m_new = fmaxf(m_run, mx);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp2f(m_run - m_use);
    float sum = 0.0f;
    for (int i = tid; i < tile_len; i += kAttentionThreads) {
      const float p = exp2f(logits[i] - m_use);
      logits[i] = p;
      sum += p;
    }
    sum = BlockSum(sum, scratch);  // its barriers publish the weights
    l_run = l_run * alpha + sum;
    m_run = m_new;

    // 3. Weighted sum of the value rows.
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= alpha;
    if (pv_active) {
      for (int i = pv_row; i < tile_len; i += rows_par) {
        const float p = logits[i];
        if (p == 0.0f) continue;
        const int j = tile0 + i;
        const int32_t block = table[j / a.block_size];
        if (block < 0 || block >= a.num_blocks) continue;
        const uint4* v_row = reinterpret_cast<const uint4*>(
            v_pool +
            (static_cast<int64_t>(block) * a.num_kv_heads + kvh) *
                block_stride +
            static_cast<int64_t>(j % a.block_size) * d);
        float vf[8];
        H::Unpack8(__ldg(v_row + pv_chunk), vf);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] = fmaf(p, vf[e], acc[e]);
      }
    }
    __syncthreads();  // `logits` is rewritten by the next tile
  }

  // Sum the row lanes' accumulators: reduce[r * d + dim].
  if (pv_active) {
#pragma unroll
    for (int e = 0; e < 8; ++e) reduce[pv_row * d + pv_chunk * 8 + e] = acc[e];
  }
  __syncthreads();
  const int64_t row_head = slot * a.num_heads + h;
  for (int dim = tid; dim < d; dim += kAttentionThreads) {
    float o = 0.0f;
    for (int r = 0; r < rows_par; ++r) o += reduce[r * d + dim];
    if (splits == 1) {
      T* out = static_cast<T*>(a.out) + static_cast<int64_t>(t) * a.out_stride +
               static_cast<int64_t>(h) * d;
      out[dim] = H::FromFloat(l_run > 0.0f ? o / l_run : 0.0f);
    } else {
      partial_o[(row_head * max_splits + split) * d + dim] = o;
    }
  }
  if (splits > 1 && tid == 0) {
    partial_ml[(row_head * max_splits + split) * 2] = m_run;
    partial_ml[(row_head * max_splits + split) * 2 + 1] = l_run;
  }
}

// Grid (rows, max_splits, heads). Without a row list, block column x is
// flattened query row x; with one (mixed batches), the block columns loop
// over the *row_count listed rows.
template <typename T>
__global__ void __launch_bounds__(kAttentionThreads)
    RowAttentionKernel(const AttentionArgs a,
                       const int32_t* __restrict__ row_list,
                       const int* __restrict__ row_count,
                       float* __restrict__ partial_o,
                       float* __restrict__ partial_ml) {
  __shared__ RowSmem smem;
  const int n = row_list != nullptr ? *row_count : a.num_tokens;
  for (int slot = blockIdx.x; slot < n; slot += gridDim.x) {
    const int t = row_list != nullptr ? row_list[slot] : slot;
    RowAttention<T>(a, t, slot, blockIdx.y, blockIdx.z, gridDim.y, partial_o,
                    partial_ml, smem);
  }
}

// Merges the partitions of rows that have more than one. Grid (rows, heads),
// rows as in RowAttentionKernel.
template <typename T>
__global__ void __launch_bounds__(kAttentionThreads)
    RowCombineKernel(const AttentionArgs a,
                     const int32_t* __restrict__ row_list,
                     const int* __restrict__ row_count, int max_splits,
                     const float* __restrict__ partial_o,
                     const float* __restrict__ partial_ml) {
  using H = Half16<T>;
  __shared__ float weight[kMaxSplits];
  __shared__ float inv_sum;
  const int h = blockIdx.y, d = a.head_dim;
  const int n = row_list != nullptr ? *row_count : a.num_tokens;
  for (int slot = blockIdx.x; slot < n; slot += gridDim.x) {
    const int t = row_list != nullptr ? row_list[slot] : slot;
    const RowInfo row = LocateRow(a, t);
    if (!row.ok) continue;  // reported by the row kernel
    const int splits = RowNumSplits(row.pos + 1);
    if (splits <= 1 || splits > max_splits) continue;
    const int64_t base =
        (static_cast<int64_t>(slot) * a.num_heads + h) * max_splits;
    if (threadIdx.x == 0) {
      float m = -INFINITY;
      for (int i = 0; i < splits; ++i) {
        m = fmaxf(m, partial_ml[(base + i) * 2]);
      }
      const float m_use = m == -INFINITY ? 0.0f : m;
      float l = 0.0f;
      for (int i = 0; i < splits; ++i) {
        const float w = exp2f(partial_ml[(base + i) * 2] - m_use);
        weight[i] = w;
        l += w * partial_ml[(base + i) * 2 + 1];
      }
      inv_sum = l > 0.0f ? 1.0f / l : 0.0f;
    }
    __syncthreads();
    T* out = static_cast<T*>(a.out) + static_cast<int64_t>(t) * a.out_stride +
             static_cast<int64_t>(h) * d;
    for (int dim = threadIdx.x; dim < d; dim += blockDim.x) {
      float o = 0.0f;
      for (int i = 0; i < splits; ++i) {
        o += weight[i] * partial_o[(base + i) * d + dim];
      }
      out[dim] = H::FromFloat(o * inv_sum);
    }
    __syncthreads();  // `weight` is rewritten for the next row
  }
}

template <typename T>
cudaError_t LaunchRow(const AttentionArgs& args, const AttentionPlan& plan,
                      cudaStream_t stream) {
  char* ws = static_cast<char*>(args.workspace);
  const int32_t* row_list = nullptr;
  const int* row_count = nullptr;
  if (plan.kernel == AttentionKernel::kPrefillMma) {
    row_list = reinterpret_cast<const int32_t*>(ws + plan.row_list_offset);
    row_count = reinterpret_cast<const int*>(ws + plan.row_count_offset);
  }
  float* partial_o = nullptr;
  float* partial_ml = nullptr;
  if (plan.max_splits > 1) {
    partial_o = reinterpret_cast<float*>(ws + plan.partial_o_offset);
    partial_ml = reinterpret_cast<float*>(ws + plan.partial_ml_offset);
  }
  const unsigned columns = static_cast<unsigned>(plan.row_grid_x);
  RowAttentionKernel<T>
      <<<dim3(columns, plan.max_splits, args.num_heads), kAttentionThreads, 0,
         stream>>>(args, row_list, row_count, partial_o, partial_ml);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || plan.max_splits <= 1) return err;
  RowCombineKernel<T>
      <<<dim3(columns, args.num_heads), kAttentionThreads, 0, stream>>>(
          args, row_list, row_count, plan.max_splits, partial_o, partial_ml);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchRowAttention(const AttentionArgs& args,
                               const AttentionPlan& plan, cudaStream_t stream) {
  const bool mixed = plan.kernel == AttentionKernel::kPrefillMma;
  if ((!mixed && plan.kernel != AttentionKernel::kRowSplitKv) ||
      args.head_dim % 8 != 0 || args.head_dim > kMaxHeadDim ||
      plan.max_splits > kMaxSplits || args.num_heads > 65535 ||
      plan.row_grid_x > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  if (args.num_tokens <= 0 || args.num_seqs <= 0 || plan.row_grid_x <= 0) {
    return cudaSuccess;
  }
  if ((mixed || plan.max_splits > 1) && args.workspace == nullptr) {
    return cudaErrorInvalidValue;
  }
  switch (args.dtype) {
    case ElemType::kBF16:
      return LaunchRow<__nv_bfloat16>(args, plan, stream);
    case ElemType::kF16:
      return LaunchRow<__half>(args, plan, stream);
    case ElemType::kF32:
      break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace alibi::kernels::cuda
