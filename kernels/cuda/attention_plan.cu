// The attention planning kernel: one block reads the batch metadata on the
// device, checks it, and writes the work lists every attention launch of the
// batch reads (dispatch.h): the prefill kernel's 64-row query tiles
// (sequences with more than kRowKernelMaxQueryLen query rows, mixed plans
// only), the row kernel's rows (every other query row), and for each row its
// KV partitions (RowItem: RowNumSplits of the keys the row sees, its sliding
// window included). A sequence with invalid metadata sets kErrAttentionMeta
// and gets no work.
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device_common.cuh"

namespace alibi::kernels::cuda {
namespace {

// Exclusive prefix sum of `v` over the block; `*total` gets the block's sum
// in every thread. `warp_total` holds 32 ints; the leading barrier makes it
// reusable by consecutive calls.
__device__ __forceinline__ int BlockExclusiveScan(int v, int* warp_total,
                                                  int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int num_warps = blockDim.x >> 5;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += u;
  }
  __syncthreads();  // every thread has read the previous call's totals
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int w = lane < num_warps ? warp_total[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += u;
    }
    warp_total[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  *total = warp_total[num_warps - 1];
  return (warp > 0 ? warp_total[warp - 1] : 0) + incl - v;
}

// One sequence's metadata, and whether it is consistent: its query rows lie
// in the batch, its context holds them, and its block table (which starts at
// logical block first_block) covers every key its queries see and no more
// than max_blocks_per_seq entries.
struct SeqInfo {
  int begin;
  int num_queries;
  int context_len;
  int window;
  int first_block;
  bool ok;
};

__device__ __forceinline__ SeqInfo ReadSeq(const AttentionArgs& a, int s) {
  SeqInfo q;
  q.begin = a.query_start[s];
  const int end = a.query_start[s + 1];
  q.num_queries = end - q.begin;
  q.context_len = a.context_lens[s];
  q.window = a.windows != nullptr ? a.windows[s] : 0;
  q.first_block = a.first_blocks != nullptr ? a.first_blocks[s] : 0;
  q.ok = q.begin >= 0 && q.num_queries >= 0 && end <= a.num_tokens &&
         q.context_len >= q.num_queries && q.window >= 0 && q.first_block >= 0;
  if (q.ok && q.num_queries > 0) {
    const int lowest = FirstVisibleKey(q.context_len - q.num_queries, q.window);
    q.ok = lowest / a.block_size >= q.first_block &&
           (q.context_len - 1) / a.block_size - q.first_block <
               a.max_blocks_per_seq;
  }
  return q;
}

__global__ void __launch_bounds__(kPlanThreads)
    PlanAttentionKernel(const AttentionArgs a, const AttentionPlan p) {
  __shared__ int warp_total[32];
  char* const ws = static_cast<char*>(a.workspace);
  int2* const tiles = reinterpret_cast<int2*>(ws + p.tiles_offset);
  RowWork* const rows = reinterpret_cast<RowWork*>(ws + p.rows_offset);
  RowItem* const items = reinterpret_cast<RowItem*>(ws + p.items_offset);
  int* const counts = reinterpret_cast<int*>(ws + p.counts_offset);
  const bool mixed = p.kernel == AttentionKernel::kPrefillMma;

  // 1. Sequences: long query runs become tiles (the last tile, which sees
  //    the most keys, first), the others' rows are listed.
  int64_t tile_carry = 0, row_carry = 0;  // the same in every thread
  for (int base = 0; base < a.num_seqs; base += blockDim.x) {
    const int s = base + threadIdx.x;
    int n_tiles = 0, n_rows = 0, first_row = 0;
    if (s < a.num_seqs) {
      const SeqInfo q = ReadSeq(a, s);
      first_row = q.begin;
      if (!q.ok) {
        ReportError(a.error_word, kErrAttentionMeta);
      } else if (mixed && q.num_queries > kRowKernelMaxQueryLen) {
        n_tiles = (q.num_queries + kPrefillBlockM - 1) / kPrefillBlockM;
      } else {
        n_rows = q.num_queries;
      }
    }
    int tiles_total = 0, rows_total = 0;
    const int64_t tile_at =
        tile_carry + BlockExclusiveScan(n_tiles, warp_total, &tiles_total);
    const int64_t row_at =
        row_carry + BlockExclusiveScan(n_rows, warp_total, &rows_total);
    for (int i = 0; i < n_tiles && tile_at + i < p.max_tiles; ++i) {
      tiles[tile_at + i] = make_int2(s, (n_tiles - 1 - i) * kPrefillBlockM);
    }
    for (int i = 0; i < n_rows && row_at + i < p.max_rows; ++i) {
      RowWork w;
      w.token = first_row + i;
      w.seq = s;
      w.first_item = 0;
      w.num_items = 0;
      rows[row_at + i] = w;
    }
    tile_carry += tiles_total;
    row_carry += rows_total;
  }
  const int num_rows =
      static_cast<int>(row_carry < p.max_rows ? row_carry : p.max_rows);
  if (threadIdx.x == 0) {
    if (tile_carry > p.max_tiles || row_carry > p.max_rows) {
      ReportError(a.error_word, kErrAttentionMeta);  // the maxima lied
    }
    counts[0] =
        static_cast<int>(tile_carry < p.max_tiles ? tile_carry : p.max_tiles);
    counts[1] = num_rows;
  }
  __syncthreads();  // the row list is visible to the whole block

  // 2. Rows: their KV partitions (items), numbered row after row.
  int64_t item_carry = 0;
  for (int base = 0; base < num_rows; base += blockDim.x) {
    const int r = base + threadIdx.x;
    int n_items = 0, pos = 0, lo = 0;
    RowWork w{};
    if (r < num_rows) {
      w = rows[r];
      const SeqInfo q = ReadSeq(a, w.seq);
      pos = q.context_len - q.num_queries + (w.token - q.begin);
      lo = FirstVisibleKey(pos, q.window);
      n_items = RowNumSplits(pos - lo + 1);
    }
    int items_total = 0;
    const int64_t at =
        item_carry + BlockExclusiveScan(n_items, warp_total, &items_total);
    if (r < num_rows) {
      w.first_item = static_cast<int>(at < p.max_items ? at : p.max_items);
      w.num_items = n_items;
      rows[r] = w;
      const int part = RowPartitionKeys(pos - lo + 1);
      for (int i = 0; i < n_items && at + i < p.max_items; ++i) {
        RowItem it;
        it.token = w.token;
        it.seq = w.seq;
        it.pos = pos;
        it.key_begin = lo + i * part;
        it.key_end = min(pos + 1, lo + (i + 1) * part);
        it.row = r;
        it.num_items = n_items;
        it.pad = 0;
        items[at + i] = it;
      }
    }
    item_carry += items_total;
  }
  if (threadIdx.x == 0) {
    if (item_carry > p.max_items) ReportError(a.error_word, kErrAttentionMeta);
    counts[2] =
        static_cast<int>(item_carry < p.max_items ? item_carry : p.max_items);
  }
}

}  // namespace

cudaError_t LaunchAttentionPlan(const AttentionArgs& args,
                                const AttentionPlan& plan,
                                cudaStream_t stream) {
  if (plan.kernel != AttentionKernel::kPrefillMma &&
      plan.kernel != AttentionKernel::kRowSplitKv) {
    return cudaErrorInvalidValue;
  }
  if (args.workspace == nullptr || args.block_size <= 0) {
    return cudaErrorInvalidValue;
  }
  PlanAttentionKernel<<<1, kPlanThreads, 0, stream>>>(args, plan);
  return cudaGetLastError();
}

}  // namespace alibi::kernels::cuda
