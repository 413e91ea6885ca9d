// The row kernel: the query rows the planning kernel listed (decode steps,
// short query runs, head dims without a tensor-core prefill variant), as
// (KV partition item, head) units of work. Grid (plan.row_grid_x, heads):
// each block loops over the items, so the grid never depends on the longest
// context of the batch and no block idles.
//
// One item: keys [key_begin, key_end) of one query row (its sliding window
// already applied by the planner), in tiles of kRowTileKeys:
//   - page lookups hoisted: per tile, each thread resolves one key's pool row
//     from the block table into shared memory; it walks (page, offset)
//     incrementally (no division per key), and issues the next tile's
//     block-table load before the current tile's math;
//   - the block's threads form groups of RowLayout::lanes lanes; a group
//     takes RowLayout::keys keys per iteration, every lane issuing all of
//     its 16-byte K and V loads for them before any math (keys * chunks * 2
//     loads in flight per lane); scores reduce over the group with shuffles,
//     the ALiBi bias -slope * (pos - j) is added in the log2 domain;
//   - each group keeps its own online softmax (max, sum) and P V
//     accumulator, so the tile needs no block-wide softmax pass; the groups
//     are merged once per item, in a fixed order.
// An item that is a row's only partition writes the output; otherwise it
// writes its unnormalised accumulator and (max, sum) to the partial buffers
// and the combine kernel merges the row's partitions. Partitioning depends
// on the row's own key count only (RowPartitionKeys), never on the batch.
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device_common.cuh"

namespace alibi::kernels::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

template <int kLanes, int kChunks>
struct RowSmem {
  static constexpr int kGroups = kAttentionThreads / kLanes;
  // Pool rows ((block * num_kv_heads + kv_head) * block_size + offset) of
  // the current and the next tile's keys; -1: no key.
  int32_t key_rows[2][kRowTileKeys];
  float group_m[kGroups];
  float group_l[kGroups];
  float group_w[kGroups];
  float acc[kGroups * kLanes * kChunks * 8];  // [group][head dim]
};

// One item for head h. Every thread of the block calls it with the same
// arguments (its barriers are block-uniform).
template <typename T, int kLanes, int kChunks, int kKeys>
__device__ __forceinline__ void RowItemAttention(
    const AttentionArgs& a, const RowItem& it, int64_t slot, int h,
    float* partial_o, float* partial_ml, RowSmem<kLanes, kChunks>& sm) {
  using H = Half16<T>;
  constexpr int kGroups = kAttentionThreads / kLanes;
  const int tid = threadIdx.x;
  const int group = tid / kLanes, gl = tid % kLanes;
  const int d = a.head_dim, pieces = d >> 3;
  const int kvh = h / (a.num_heads / a.num_kv_heads);
  const float slope = a.slopes != nullptr ? a.slopes[h] * kLog2e : 0.0f;
  const int bs = a.block_size;
  const int first_block =
      a.first_blocks != nullptr ? a.first_blocks[it.seq] : 0;
  const int32_t* table =
      a.block_tables + static_cast<int64_t>(it.seq) * a.max_blocks_per_seq;
  const T* k_pool = static_cast<const T*>(a.k_pool);
  const T* v_pool = static_cast<const T*>(a.v_pool);

  // The query, pre-scaled: lane gl holds pieces gl, gl + kLanes, ...
  float q[kChunks][8];
  {
    const T* q_row = static_cast<const T*>(a.q) +
                     static_cast<int64_t>(it.token) * a.q_stride +
                     static_cast<int64_t>(h) * d;
    const float qk_scale = a.scale * kLog2e;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int piece = gl + kLanes * c;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        q[c][e] =
            piece < pieces ? H::ToFloat(q_row[piece * 8 + e]) * qk_scale : 0.0f;
      }
    }
  }

  // This thread's key in each tile, as (page, offset): one division per
  // item, then steps of kRowTileKeys.
  const int key_begin = it.key_begin, key_end = it.key_end;
  const int num_tiles = (key_end - key_begin + kRowTileKeys - 1) / kRowTileKeys;
  int page = (key_begin + tid) / bs;
  int offset = key_begin + tid - page * bs;
  const int page_step = kRowTileKeys / bs;
  const int offset_step = kRowTileKeys - page_step * bs;
  auto lookup = [&](int tile) {
    const int j = key_begin + tile * kRowTileKeys + tid;
    int32_t row = -1;
    if (j < key_end) {
      const int32_t block = table[page - first_block];
      if (block >= 0 && block < a.num_blocks) {
        row = (block * a.num_kv_heads + kvh) * bs + offset;
      } else {
        ReportError(a.error_word, kErrBlockTable);
      }
    }
    page += page_step;
    offset += offset_step;
    if (offset >= bs) {
      offset -= bs;
      ++page;
    }
    return row;
  };

  sm.key_rows[0][tid] = lookup(0);
  __syncthreads();
  float m = -INFINITY, l = 0.0f;
  float acc[kChunks][8];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[c][e] = 0.0f;
  }
  for (int tile = 0; tile < num_tiles; ++tile) {
    const int buf = tile & 1;
    const int tile0 = key_begin + tile * kRowTileKeys;
    const int tile_len = min(kRowTileKeys, key_end - tile0);
    const bool more = tile + 1 < num_tiles;
    const int32_t next = more ? lookup(tile + 1) : -1;  // load in flight
    for (int base = 0; base < tile_len; base += kKeys * kGroups) {
      int32_t rows[kKeys];
      uint4 k_raw[kKeys][kChunks], v_raw[kKeys][kChunks];
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        const int i = base + group + u * kGroups;
        rows[u] = i < tile_len ? sm.key_rows[buf][i] : -1;
      }
      // Every load of the iteration first.
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          const int piece = gl + kLanes * c;
          if (rows[u] >= 0 && piece < pieces) {
            const int64_t at = static_cast<int64_t>(rows[u]) * d + piece * 8;
            k_raw[u][c] = __ldg(reinterpret_cast<const uint4*>(k_pool + at));
            v_raw[u][c] = __ldg(reinterpret_cast<const uint4*>(v_pool + at));
          } else {
            k_raw[u][c] = make_uint4(0, 0, 0, 0);
            v_raw[u][c] = make_uint4(0, 0, 0, 0);
          }
        }
      }
      // Scores (log2 domain), reduced over the group's lanes.
      float s[kKeys];
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        float dot = 0.0f;
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          float kf[8];
          H::Unpack8(k_raw[u][c], kf);
#pragma unroll
          for (int e = 0; e < 8; ++e) dot = fmaf(q[c][e], kf[e], dot);
        }
#pragma unroll
        for (int o = kLanes / 2; o > 0; o >>= 1) {
          dot += __shfl_xor_sync(0xffffffffu, dot, o);
        }
        const int j = tile0 + base + group + u * kGroups;
        s[u] = rows[u] >= 0 ? dot - slope * static_cast<float>(it.pos - j)
                            : -INFINITY;
      }
      // Online softmax of the group, then P V.
      float mx = s[0];
#pragma unroll
      for (int u = 1; u < kKeys; ++u) mx = fmaxf(mx, s[u]);
      const float m_new = fmaxf(m, mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m - m_use);
      l *= alpha;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[c][e] *= alpha;
      }
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        const float p = exp2f(s[u] - m_use);
        l += p;
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          float vf[8];
          H::Unpack8(v_raw[u][c], vf);
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[c][e] = fmaf(p, vf[e], acc[c][e]);
        }
      }
      m = m_new;
    }
    if (more) sm.key_rows[buf ^ 1][tid] = next;
    __syncthreads();  // publishes the next tile's rows; this tile's are read
  }

  // Merge the groups (in group order).
  if (gl == 0) {
    sm.group_m[group] = m;
    sm.group_l[group] = l;
  }
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int piece = gl + kLanes * c;
    if (piece < pieces) {
#pragma unroll
      for (int e = 0; e < 8; ++e) sm.acc[group * d + piece * 8 + e] = acc[c][e];
    }
  }
  __syncthreads();
  float m_all = -INFINITY;
  for (int g = 0; g < kGroups; ++g) m_all = fmaxf(m_all, sm.group_m[g]);
  const float m_use = m_all == -INFINITY ? 0.0f : m_all;
  if (tid < kGroups) sm.group_w[tid] = exp2f(sm.group_m[tid] - m_use);
  __syncthreads();
  float l_all = 0.0f;
  for (int g = 0; g < kGroups; ++g) l_all += sm.group_w[g] * sm.group_l[g];
  const int64_t slot_head = slot * a.num_heads + h;
  for (int dim = tid; dim < d; dim += kAttentionThreads) {
    float o = 0.0f;
    for (int g = 0; g < kGroups; ++g) {
      o = fmaf(sm.group_w[g], sm.acc[g * d + dim], o);
    }
    if (it.num_items == 1) {
      T* out = static_cast<T*>(a.out) +
               static_cast<int64_t>(it.token) * a.out_stride +
               static_cast<int64_t>(h) * d;
      out[dim] = H::FromFloat(l_all > 0.0f ? o / l_all : 0.0f);
    } else {
      partial_o[slot_head * d + dim] = o;
    }
  }
  if (it.num_items > 1 && tid == 0) {
    partial_ml[slot_head * 2] = m_all;
    partial_ml[slot_head * 2 + 1] = l_all;
  }
  __syncthreads();  // shared memory is reused by the next item
}

// Grid (columns, heads): block column x takes items x, x + columns, ...
template <typename T, int kLanes, int kChunks, int kKeys>
__global__ void __launch_bounds__(kAttentionThreads)
    RowAttentionKernel(const AttentionArgs a, const RowItem* __restrict__ items,
                       const int* __restrict__ counts,
                       float* __restrict__ partial_o,
                       float* __restrict__ partial_ml) {
  __shared__ RowSmem<kLanes, kChunks> smem;
  const int n = counts[2];
  for (int k = blockIdx.x; k < n; k += gridDim.x) {
    const RowItem it = items[k];
    RowItemAttention<T, kLanes, kChunks, kKeys>(a, it, k, blockIdx.y, partial_o,
                                                partial_ml, smem);
  }
}

// Merges the partitions of rows that have more than one. Grid (columns,
// heads): block column x takes listed rows x, x + columns, ...
template <typename T>
__global__ void __launch_bounds__(kAttentionThreads)
    RowCombineKernel(const AttentionArgs a, const RowWork* __restrict__ rows,
                     const int* __restrict__ counts,
                     const float* __restrict__ partial_o,
                     const float* __restrict__ partial_ml) {
  using H = Half16<T>;
  __shared__ float weight[kMaxSplits];
  __shared__ float inv_sum;
  const int h = blockIdx.y, d = a.head_dim;
  const int n = counts[1], num_items = counts[2];
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const RowWork w = rows[r];
    if (w.num_items <= 1 || w.num_items > kMaxSplits ||
        w.first_item + w.num_items > num_items) {
      continue;  // written by the row kernel, or reported by the planner
    }
    const int64_t first = static_cast<int64_t>(w.first_item) * a.num_heads + h;
    if (threadIdx.x == 0) {
      float m = -INFINITY;
      for (int i = 0; i < w.num_items; ++i) {
        m = fmaxf(m, partial_ml[(first + int64_t{i} * a.num_heads) * 2]);
      }
      const float m_use = m == -INFINITY ? 0.0f : m;
      float l = 0.0f;
      for (int i = 0; i < w.num_items; ++i) {
        const int64_t at = (first + int64_t{i} * a.num_heads) * 2;
        const float wt = exp2f(partial_ml[at] - m_use);
        weight[i] = wt;
        l += wt * partial_ml[at + 1];
      }
      inv_sum = l > 0.0f ? 1.0f / l : 0.0f;
    }
    __syncthreads();
    T* out = static_cast<T*>(a.out) +
             static_cast<int64_t>(w.token) * a.out_stride +
             static_cast<int64_t>(h) * d;
    for (int dim = threadIdx.x; dim < d; dim += blockDim.x) {
      float o = 0.0f;
      for (int i = 0; i < w.num_items; ++i) {
        o +=
            weight[i] * partial_o[(first + int64_t{i} * a.num_heads) * d + dim];
      }
      out[dim] = H::FromFloat(o * inv_sum);
    }
    __syncthreads();  // `weight` is rewritten for the next row
  }
}

template <typename T, int kLanes, int kChunks, int kKeys>
cudaError_t LaunchRowVariant(const AttentionArgs& args,
                             const AttentionPlan& plan, cudaStream_t stream) {
  char* ws = static_cast<char*>(args.workspace);
  const RowItem* items =
      reinterpret_cast<const RowItem*>(ws + plan.items_offset);
  const RowWork* rows = reinterpret_cast<const RowWork*>(ws + plan.rows_offset);
  const int* counts = reinterpret_cast<const int*>(ws + plan.counts_offset);
  float* partial_o = nullptr;
  float* partial_ml = nullptr;
  if (plan.max_splits > 1) {
    partial_o = reinterpret_cast<float*>(ws + plan.partial_o_offset);
    partial_ml = reinterpret_cast<float*>(ws + plan.partial_ml_offset);
  }
  const unsigned heads = static_cast<unsigned>(args.num_heads);
  RowAttentionKernel<T, kLanes, kChunks, kKeys>
      <<<dim3(static_cast<unsigned>(plan.row_grid_x), heads), kAttentionThreads,
         0, stream>>>(args, items, counts, partial_o, partial_ml);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || plan.max_splits <= 1) return err;
  RowCombineKernel<T><<<dim3(static_cast<unsigned>(plan.combine_grid_x), heads),
                        kAttentionThreads, 0, stream>>>(args, rows, counts,
                                                        partial_o, partial_ml);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchRow(const AttentionArgs& args, const AttentionPlan& plan,
                      cudaStream_t stream) {
  const RowLayout layout = RowLayoutFor(args.head_dim);
  if (layout.lanes == 4)
    return LaunchRowVariant<T, 4, 1, 4>(args, plan, stream);
  if (layout.chunks == 1) {
    return LaunchRowVariant<T, 8, 1, 4>(args, plan, stream);
  }
  if (layout.chunks == 2) {
    return LaunchRowVariant<T, 8, 2, 2>(args, plan, stream);
  }
  return LaunchRowVariant<T, 8, 4, 1>(args, plan, stream);
}

}  // namespace

cudaError_t LaunchRowAttention(const AttentionArgs& args,
                               const AttentionPlan& plan, cudaStream_t stream) {
  if ((plan.kernel != AttentionKernel::kPrefillMma &&
       plan.kernel != AttentionKernel::kRowSplitKv) ||
      args.head_dim % 8 != 0 || args.head_dim > kMaxHeadDim ||
      plan.max_splits > kMaxSplits || args.num_heads > 65535 ||
      plan.row_grid_x > 0x7fffffff || plan.combine_grid_x > 0x7fffffff ||
      args.workspace == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (args.num_tokens <= 0 || args.num_seqs <= 0 || plan.row_grid_x <= 0) {
    return cudaSuccess;
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
