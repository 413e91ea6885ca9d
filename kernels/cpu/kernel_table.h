// The seam between the CPU backend (kernels/cpu/cpu_backend.cc) and its
// kernel levels: one table of plain functions per instruction-set level,
// each level compiled from kernels/cpu/kernels.inc with its own -m flags
// (kernels/cpu/level.cc), so release builds need no -march=native and the
// backend picks a level at run time (kernels/cpu/dispatch.cc). Only plain
// types cross this seam.
//
// Every level computes bitwise the same results (kernels/cpu/simd.inc): the
// per-element sequence of floating-point operations is fixed by these
// definitions, not by the ISA, the number of rows or the thread.
//
// Packed weight layout (the same for every level; kernels/cpu/packing.h
// writes it): a [N, K] weight is cut into panels of kPanel = 32 output
// columns (N padded with zero columns); panel p holds columns
// [32p, 32p + 32) and is panel_bytes long:
// - kF32 / kF16: [K][32] values; element (n, k) at [k][n % 32].
// - kBF16: [K2 = ceil(K / 2)][32] 32-bit words; word (kp, j) holds
//   bf16(w[n][2kp]) in its low half and bf16(w[n][2kp + 1]) in its high
//   half (K padded with a zero).
// - kI8: ceil(K / 32) groups of 1088 bytes: 8 quads x 32 columns x 4 bytes
//   (byte (q, j, b) = q8(w[n][32g + 4q + b]) + 128), then 32 fp16 scales.
//   q8 = round(w / scale) in [-127, 127], scale = fp16(max |w| / 127) over
//   the group's 32 weights of row n (K padded with zeros).
//
// Per output element (r, n) the dot product is one fixed sequence:
// - kF32 / kF16: acc = fma(x[r][k], w[n][k], acc) for k = 0, 1, ..., K-1.
// - kBF16: x rounded to bf16 (nearest even); for each pair kp:
//   acc = fma(x[2kp+1], w[2kp+1], acc); acc = fma(x[2kp], w[2kp], acc)
//   (what AVX512_BF16's vdpbf16ps computes).
// - kI8: x quantized per group of 32 (sx = max|x| / 127, xq = round(x / sx)
//   in [-127, 127]); per group the exact integer sum s = sum xq * wq, then
//   acc = fma(float(s), scale_w * sx, acc), groups in order.
// Then out = epilogue(alpha * acc) (backend.h's LinearEpilogue order).
//
// Thread-safety: the functions are pure; calls on disjoint outputs may run
// concurrently.
#ifndef ALIBI_KERNELS_CPU_KERNEL_TABLE_H_
#define ALIBI_KERNELS_CPU_KERNEL_TABLE_H_

#include <cstddef>
#include <cstdint>

namespace alibi::kernels::cpu {

// Weight formats, in the order of KernelTable::block_rows.
enum WeightFormat : int { kWF32 = 0, kWF16 = 1, kWBF16 = 2, kWI8 = 3 };
constexpr int kNumWeightFormats = 4;

constexpr int kPanel = 32;  // output columns per panel
constexpr int kGroup = 32;  // int8 weights per scale
constexpr int kGroupBytes = 8 * kPanel * 4 + kPanel * 2;  // 1088

// KV cache element types.
enum KvFormat : int { kKvF32 = 0, kKvF16 = 1, kKvBF16 = 2 };

// Bytes of one packed panel of a [N, k] weight in `format`.
int64_t PanelBytes(int format, int64_t k);

// One Linear call over packed activations (PackA of the same level).
struct GemmCall {
  int format = kWF32;
  const void* a = nullptr;  // packed activations
  int64_t rows = 0;         // T
  int64_t k = 0;
  const uint8_t* w = nullptr;  // packed weight
  int64_t n = 0;
  int64_t panel_bytes = 0;
  // Epilogue (backend.h's LinearEpilogue).
  float alpha = 1.0f;
  const float* bias = nullptr;
  float clamp = 0.0f;
  int activation = 0;  // 0 none, 1 GELU tanh, 2 GELU erf
  const float* residual = nullptr;
  int64_t residual_stride = 0;
  float* out = nullptr;
  int64_t out_stride = 0;
};

// The most query rows one AttentionTask holds.
inline constexpr int kMaxAttentionRows = 32;

// A one-row AttentionTask may cover several KV heads where head_dim is at
// most kMaxInterleavedHeadDim and kv_heads * heads at most
// kMaxInterleavedHeads.
inline constexpr int kMaxInterleavedHeadDim = 128;
inline constexpr int kMaxInterleavedHeads = 32;

// Attention of `rows` consecutive query rows of one sequence (positions
// pos .. pos + rows - 1) for `heads` consecutive query heads that share KV
// head `kv_head` (backend.h's PagedAttention; row r reads keys
// lo_r .. pos + r, lo_r = max(lo, pos + r - window + 1) with a window, lo
// without). A one-row task may cover `kv_heads` consecutive KV heads
// kv_head + i, whose queries, outputs and slopes follow at i * heads heads
// from q, out and slopes: it walks each key block once, reading the heads'
// adjacent slices of it in turn. Each row's result is the same bits
// whatever `rows` and `kv_heads` are: a task's rows and heads only share
// the walk over the keys and their loads.
struct AttentionTask {
  const float* q = nullptr;  // row r: q + r * q_stride, [heads][head_dim]
  float* out = nullptr;      // row r: out + r * out_stride, same layout
  int64_t q_stride = 0;      // elements
  int64_t out_stride = 0;
  int rows = 1;                   // 1 .. kMaxAttentionRows
  const float* slopes = nullptr;  // [heads]
  int heads = 1;
  int head_dim = 0;
  float scale = 1.0f;
  int32_t pos = 0;          // row 0's position
  int32_t lo = 0;           // row 0's first key
  int32_t window = 0;       // 0: none
  const void* k = nullptr;  // the layer's pools
  const void* v = nullptr;
  int kv_format = kKvF32;
  int block_size = 0;
  int num_kv_heads = 0;
  int kv_head = 0;
  int kv_heads = 1;                      // above 1 only with rows 1 (see above)
  const int32_t* block_table = nullptr;  // entry 0 = logical block first_block
  int32_t first_block = 0;
};

struct KernelTable {
  const char* name;
  const char* description;  // the instructions each kernel uses
  // Rows of one packed-activation block, per WeightFormat.
  int block_rows[kNumWeightFormats];
  // Bytes of packed activations for `rows` rows of `k` inputs.
  int64_t (*packed_a_bytes)(int format, int64_t rows, int64_t k);
  // Packs row blocks [block_begin, block_end) of x: [rows, k] (row stride
  // x_stride) into `dst` (sized by packed_a_bytes).
  void (*pack_a)(int format, const float* x, int64_t x_stride, int64_t rows,
                 int64_t k, int64_t block_begin, int64_t block_end, void* dst);
  // Output columns of panels [panel_begin, panel_end) for every row.
  void (*gemm)(const GemmCall& call, int64_t panel_begin, int64_t panel_end);
  // y = (x - mean) / sqrt(var + eps) * gamma + beta over one row of h.
  void (*layer_norm)(const float* x, const float* gamma, const float* beta,
                     float eps, int64_t h, float* y);
  // dst[0..n) = src converted to kv_format.
  void (*store_kv)(const float* src, int64_t n, int kv_format, void* dst);
  void (*attention)(const AttentionTask& task);
  // Machine probes for alibi-microbench: each runs `iterations` rounds of
  // independent multiply-adds and returns the floating-point (or int8)
  // operations done; read_probe sums `bytes` bytes in `streams` interleaved
  // sequential streams.
  double (*fma_probe)(int64_t iterations);
  double (*bf16_probe)(int64_t iterations);
  double (*int8_probe)(int64_t iterations);
  float (*read_probe)(const void* data, int64_t bytes, int streams);
};

}  // namespace alibi::kernels::cpu

#endif  // ALIBI_KERNELS_CPU_KERNEL_TABLE_H_
