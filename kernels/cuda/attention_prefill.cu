// The prefill kernel: flash-attention (FA2) style causal attention of
// variable-length query chunks against the paged KV cache, ALiBi bias
// computed from the slope and the two positions, tensor cores through
// mma.sync.m16n8k16 (bf16 or fp16 operands, fp32 accumulators).
//
// Work decomposition:
// - The planning kernel (attention_plan.cu) lists sequences with more than
//   kRowKernelMaxQueryLen query rows as 64-row query tiles (sequence, first
//   row), longest-running tile of each sequence first. Grid of the attention
//   kernel: (plan.max_tiles, num_heads); blocks past the real tile count
//   exit at once.
// - A block (4 warps) owns 64 query rows of one sequence and one head; warp
//   w owns rows 16w..16w+15. Q (64 x D) is staged through shared memory into
//   registers as mma A fragments once.
// - Keys from the first row's first visible key (0, or the start of its
//   sliding window) to the last row's position are walked in tiles of 64: K
//   and V tiles are gathered from the pool page by page with cp.async
//   (16-byte copies, zero fill past the end and before the sequence's first
//   block table entry, whose blocks were released), K of the next tile in
//   flight while the current tile's softmax and P V run, V of the next while
//   its scores run.
// - S = Q K^T per warp: 16 x 64 fp32 in registers; scale, ALiBi bias,
//   causal mask and sliding-window mask applied in registers in the log2
//   domain; online softmax
//   (running max / sum per row, rows shared by the 4 lanes of a quad); P is
//   rounded to 16 bits and re-used directly as A fragments for O += P V (the
//   accumulator layout of two n8 tiles is the A layout of one k16 slice).
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16/.f16): lane = 4g + q,
//   A (16x16, row): reg0 = A[g][2q..2q+1],   reg1 = A[g+8][2q..2q+1],
//                   reg2 = A[g][2q+8..+9],   reg3 = A[g+8][2q+8..+9]
//   B (16x8, col):  reg0 = B[2q..2q+1][g],   reg1 = B[2q+8..2q+9][g]
//   C (16x8, f32):  c0,c1 = C[g][2q..2q+1],  c2,c3 = C[g+8][2q..2q+1]
// with the lower-indexed element in the low 16 bits of a register.
// Shared-memory rows are padded by 8 elements (16 bytes): with D a multiple
// of 16 the 32-bit fragment reads of a warp fall in 32 distinct banks.
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device_common.cuh"

namespace alibi::kernels::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------------------
// Device helpers
// ---------------------------------------------------------------------------

// 16-byte global -> shared copy; src_bytes 0 fills the 16 bytes with zeros.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem,
                                          int src_bytes) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst),
               "l"(gmem), "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// c += a * b for one m16n8k16 tile.
template <typename T>
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4],
                                    uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void Mma<__nv_bfloat16>(float (&c)[4],
                                                   const uint32_t (&a)[4],
                                                   uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void Mma<__half>(float (&c)[4],
                                            const uint32_t (&a)[4], uint32_t b0,
                                            uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Shared-memory row pitch (elements) of a D-wide tile.
template <int D>
inline constexpr int kPitch = D + 8;

// Q, K and V tiles of 16-bit elements.
template <int D>
inline constexpr size_t kPrefillSmemBytes =
    size_t{3} * kPrefillBlockM* kPitch<D> * 2;

// Gathers keys [key0, key0 + 64) of one KV head into a tile. Keys past
// num_keys, keys before key_lo (no query of the tile sees them: they may be
// in released blocks, before the table's first, or never written since the
// sequence was recomputed from its window) and keys with a bad block id are
// zero-filled, so that masked keys are finite.
template <typename T, int D>
__device__ __forceinline__ void LoadKvTile(T* tile, const T* pool,
                                           const int32_t* table, int key0,
                                           int key_lo, int num_keys,
                                           int block_size, int first_block,
                                           int num_blocks, int num_kv_heads,
                                           int kv_head, uint32_t* error_word) {
  constexpr int kChunks = D / 8;
  for (int idx = threadIdx.x; idx < kPrefillBlockN * kChunks;
       idx += kAttentionThreads) {
    const int r = idx / kChunks, c = idx - r * kChunks;
    const int j = key0 + r;
    const T* src = pool;
    int bytes = 0;
    if (j < num_keys && j >= key_lo) {
      const int32_t block = table[j / block_size - first_block];
      if (block >= 0 && block < num_blocks) {
        src = pool +
              ((static_cast<int64_t>(block) * num_kv_heads + kv_head) *
                   block_size +
               j % block_size) *
                  D +
              c * 8;
        bytes = 16;
      } else if (c == 0) {
        ReportError(error_word, kErrBlockTable);
      }
    }
    CpAsync16(tile + r * kPitch<D> + c * 8, src, bytes);
  }
}

// ---------------------------------------------------------------------------
// The attention kernel
// ---------------------------------------------------------------------------

template <typename T, int D>
__global__ void __launch_bounds__(kAttentionThreads)
    PrefillAttentionKernel(const AttentionArgs a,
                           const int2* __restrict__ tiles,
                           const int* __restrict__ tile_count) {
  static_assert(D % 16 == 0 && D <= kMaxHeadDim, "head_dim");
  constexpr int P = kPitch<D>;
  constexpr int kKSteps = D / 16;  // k16 slices of the head dim
  constexpr int kDTiles = D / 8;   // n8 tiles of the output
  constexpr int kNTiles = kPrefillBlockN / 8;
  using H = Half16<T>;

  if (static_cast<int>(blockIdx.x) >= *tile_count) return;
  const int2 tile = tiles[blockIdx.x];
  const int seq = tile.x, q0 = tile.y;
  const int h = blockIdx.y;
  const int q_begin = a.query_start[seq];
  const int qlen = a.query_start[seq + 1] - q_begin;
  const int ctx = a.context_lens[seq];
  const int window = a.windows != nullptr ? a.windows[seq] : 0;
  const int first_block = a.first_blocks != nullptr ? a.first_blocks[seq] : 0;
  const int rows = min(kPrefillBlockM, qlen - q0);
  const int pos0 = ctx - qlen + q0;  // position of tile row 0
  const int num_keys = pos0 + rows;  // keys up to the last row's position
  // Keys before the first row's window are masked for every row.
  const int key_lo = FirstVisibleKey(pos0, window);
  const int first_key_tile = key_lo / kPrefillBlockN;
  const int num_key_tiles = (num_keys + kPrefillBlockN - 1) / kPrefillBlockN;
  if (rows <= 0 ||
      (num_keys - 1) / a.block_size - first_block >= a.max_blocks_per_seq ||
      key_lo / a.block_size < first_block) {
    if (threadIdx.x == 0 && h == 0)
      ReportError(a.error_word, kErrAttentionMeta);
    return;
  }

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* q_tile = reinterpret_cast<T*>(smem_raw);
  T* k_tile = q_tile + kPrefillBlockM * P;
  T* v_tile = k_tile + kPrefillBlockN * P;

  const int kv_head = h / (a.num_heads / a.num_kv_heads);
  const int32_t* table =
      a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const T* k_pool = static_cast<const T*>(a.k_pool);
  const T* v_pool = static_cast<const T*>(a.v_pool);

  // Prologue: group {Q, K0}, then group {V0}.
  {
    const T* q_base = static_cast<const T*>(a.q) +
                      static_cast<int64_t>(q_begin + q0) * a.q_stride +
                      static_cast<int64_t>(h) * D;
    constexpr int kChunks = D / 8;
    for (int idx = threadIdx.x; idx < kPrefillBlockM * kChunks;
         idx += kAttentionThreads) {
      const int r = idx / kChunks, c = idx - r * kChunks;
      const bool live = r < rows;
      CpAsync16(
          q_tile + r * P + c * 8,
          live ? q_base + static_cast<int64_t>(r) * a.q_stride + c * 8 : q_base,
          live ? 16 : 0);
    }
  }
    // Starts copying keys (or values) [key, key + kPrefillBlockN) into `tile`.
  auto load_tile = [&](T* tile, const T* pool, int key) {
    LoadKvTile<T, D>(tile, pool, table, key, key_lo, num_keys, a.block_size,
                     first_block, a.num_blocks, a.num_kv_heads, kv_head,
                     a.error_word);
    CpAsyncCommit();
  };
  const int key_start = first_key_tile * kPrefillBlockN;
  load_tile(k_tile, k_pool, key_start);
  load_tile(v_tile, v_pool, key_start);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, quad = lane & 3;
  const int r0 = warp * 16 + g, r1 = r0 + 8;  // this lane's two tile rows
  // Padding rows (past the chunk) take the last row's position: finite
  // softmax, output never stored.
  const int pos_r0 = pos0 + min(r0, rows - 1);
  const int pos_r1 = pos0 + min(r1, rows - 1);
  const int lo_r0 = FirstVisibleKey(pos_r0, window);
  const int lo_r1 = FirstVisibleKey(pos_r1, window);
  const float qk_scale = a.scale * kLog2e;
  const float slope = a.slopes != nullptr ? a.slopes[h] * kLog2e : 0.0f;

  CpAsyncWait<1>();  // Q and K0 landed
  __syncthreads();
  uint32_t qf[kKSteps][4];
#pragma unroll
  for (int ks = 0; ks < kKSteps; ++ks) {
    const T* base = q_tile + ks * 16 + 2 * quad;
    qf[ks][0] = *reinterpret_cast<const uint32_t*>(base + r0 * P);
    qf[ks][1] = *reinterpret_cast<const uint32_t*>(base + r1 * P);
    qf[ks][2] = *reinterpret_cast<const uint32_t*>(base + r0 * P + 8);
    qf[ks][3] = *reinterpret_cast<const uint32_t*>(base + r1 * P + 8);
  }

  float o[kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < kDTiles; ++dt) {
    o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  }
  float m0 = -INFINITY, m1 = -INFINITY;  // running max, rows r0 / r1
  float l0 = 0.0f, l1 = 0.0f;            // this lane's share of the sums

  const uint16_t* v_bits = reinterpret_cast<const uint16_t*>(v_tile);
  for (int kt = first_key_tile; kt < num_key_tiles; ++kt) {
    const bool more = kt + 1 < num_key_tiles;
    const int key0 = kt * kPrefillBlockN;
    if (kt > first_key_tile) {
      CpAsyncWait<1>();  // K(kt) landed (V(kt) may be in flight)
      __syncthreads();
    }
    // S = Q K^T: 16 x 64 per warp.
    float s[kNTiles][4];
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
    }
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        const T* kr = k_tile + (nt * 8 + g) * P + ks * 16 + 2 * quad;
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(kr);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(kr + 8);
        Mma<T>(s[nt], qf[ks], b0, b1);
      }
    }
        __syncthreads();  // every warp is done with K(kt)
    if (more) load_tile(k_tile, k_pool, key0 + kPrefillBlockN);

    // Scale, ALiBi bias, causal and window masks (log2 domain).
    const bool need_mask = key0 + kPrefillBlockN - 1 > pos0 || window > 0;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int j = key0 + nt * 8 + 2 * quad + e;
        float v0 = s[nt][e] * qk_scale - slope * static_cast<float>(pos_r0 - j);
        float v1 =
            s[nt][2 + e] * qk_scale - slope * static_cast<float>(pos_r1 - j);
        if (need_mask) {
          if (j > pos_r0 || j < lo_r0) v0 = -INFINITY;
          if (j > pos_r1 || j < lo_r1) v1 = -INFINITY;
        }
        s[nt][e] = v0;
        s[nt][2 + e] = v1;
        mx0 = fmaxf(mx0, v0);
        mx1 = fmaxf(mx1, v1);
      }
    }
    // Row maxima over the quad (lanes 4g..4g+3 hold one row's 64 columns).
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float new0 = fmaxf(m0, mx0), new1 = fmaxf(m1, mx1);
    const float use0 = new0 == -INFINITY ? 0.0f : new0;
    const float use1 = new1 == -INFINITY ? 0.0f : new1;
    const float alpha0 = exp2f(m0 - use0), alpha1 = exp2f(m1 - use1);
    m0 = new0;
    m1 = new1;
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - use0);
      s[nt][1] = exp2f(s[nt][1] - use0);
      s[nt][2] = exp2f(s[nt][2] - use1);
      s[nt][3] = exp2f(s[nt][3] - use1);
      sum0 += s[nt][0] + s[nt][1];
      sum1 += s[nt][2] + s[nt][3];
    }
    l0 = l0 * alpha0 + sum0;
    l1 = l1 * alpha1 + sum1;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      o[dt][0] *= alpha0;
      o[dt][1] *= alpha0;
      o[dt][2] *= alpha1;
      o[dt][3] *= alpha1;
    }
    // P as A fragments: k16 slice kk covers keys 16kk..16kk+15 = n8 tiles
    // 2kk and 2kk+1.
    uint32_t pf[kPrefillBlockN / 16][4];
#pragma unroll
    for (int kk = 0; kk < kPrefillBlockN / 16; ++kk) {
      pf[kk][0] = H::Pack(s[2 * kk][0], s[2 * kk][1]);
      pf[kk][1] = H::Pack(s[2 * kk][2], s[2 * kk][3]);
      pf[kk][2] = H::Pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pf[kk][3] = H::Pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }

    if (more) {
      CpAsyncWait<1>();  // V(kt) landed; K(kt+1) may be in flight
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    // O += P V: B[k][n] = V[key 16kk + k][dim 8dt + n].
#pragma unroll
    for (int kk = 0; kk < kPrefillBlockN / 16; ++kk) {
      const uint16_t* vr = v_bits + (kk * 16 + 2 * quad) * P + g;
#pragma unroll
      for (int dt = 0; dt < kDTiles; ++dt) {
        const uint16_t* col = vr + dt * 8;
        const uint32_t b0 = static_cast<uint32_t>(col[0]) |
                            (static_cast<uint32_t>(col[P]) << 16);
        const uint32_t b1 = static_cast<uint32_t>(col[8 * P]) |
                            (static_cast<uint32_t>(col[9 * P]) << 16);
        Mma<T>(o[dt], pf[kk], b0, b1);
      }
    }
        __syncthreads();  // every warp is done with V(kt)
    if (more) load_tile(v_tile, v_pool, key0 + kPrefillBlockN);
  }

  // Full row sums over the quad, normalise, store two elements per lane.
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f;
  const float inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  T* out_base = static_cast<T*>(a.out) +
                static_cast<int64_t>(q_begin + q0) * a.out_stride +
                static_cast<int64_t>(h) * D + 2 * quad;
#pragma unroll
  for (int dt = 0; dt < kDTiles; ++dt) {
    if (r0 < rows) {
      *reinterpret_cast<uint32_t*>(
          out_base + static_cast<int64_t>(r0) * a.out_stride + dt * 8) =
          H::Pack(o[dt][0] * inv0, o[dt][1] * inv0);
    }
    if (r1 < rows) {
      *reinterpret_cast<uint32_t*>(
          out_base + static_cast<int64_t>(r1) * a.out_stride + dt * 8) =
          H::Pack(o[dt][2] * inv1, o[dt][3] * inv1);
    }
  }
}

template <typename T, int D>
cudaError_t LaunchVariant(const AttentionArgs& args, const AttentionPlan& plan,
                          const int2* tiles, const int* count,
                          cudaStream_t stream) {
  constexpr size_t kSmem = kPrefillSmemBytes<D>;
  auto* kernel = &PrefillAttentionKernel<T, D>;
  if (kSmem > 48 * 1024) {
    // Per device and kernel; cheap, and idempotent.
    cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(kSmem));
    if (err != cudaSuccess) return err;
  }
  const dim3 grid(static_cast<unsigned>(plan.max_tiles), args.num_heads);
  kernel<<<grid, kAttentionThreads, kSmem, stream>>>(args, tiles, count);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchForType(const AttentionArgs& args, const AttentionPlan& plan,
                          const int2* tiles, const int* count,
                          cudaStream_t stream) {
  switch (args.head_dim) {
    case 64:
      return LaunchVariant<T, 64>(args, plan, tiles, count, stream);
    case 80:
      return LaunchVariant<T, 80>(args, plan, tiles, count, stream);
    case 96:
      return LaunchVariant<T, 96>(args, plan, tiles, count, stream);
    case 128:
      return LaunchVariant<T, 128>(args, plan, tiles, count, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t LaunchPrefillAttention(const AttentionArgs& args,
                                   const AttentionPlan& plan,
                                   cudaStream_t stream) {
  if (plan.kernel != AttentionKernel::kPrefillMma ||
      !HasPrefillVariant(args.head_dim) || args.workspace == nullptr ||
      args.num_heads > 65535 || plan.max_tiles > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  if (args.num_tokens <= 0 || args.num_seqs <= 0) return cudaSuccess;
  char* ws = static_cast<char*>(args.workspace);
  const int2* tiles = reinterpret_cast<const int2*>(ws + plan.tiles_offset);
  const int* count = reinterpret_cast<const int*>(ws + plan.counts_offset);
  switch (args.dtype) {
    case ElemType::kBF16:
      return LaunchForType<__nv_bfloat16>(args, plan, tiles, count, stream);
    case ElemType::kF16:
      return LaunchForType<__half>(args, plan, tiles, count, stream);
    case ElemType::kF32:
      break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace alibi::kernels::cuda
