// The fast CPU backend ("cpu"), the default without a GPU.
//
// - Weights are packed once at load (UploadWeight) into 32-column panels in
//   the micro-kernels' order, stored as float32, bfloat16, float16 or int8
//   with an fp16 scale per 32 weights (kernels/cpu/kernel_table.h).
//   Activations and accumulation are float32 (bf16 dot products round the
//   activations to bf16; int8 ones quantize them per group of 32).
// - Linear: threads own slices of output panels and run register-blocked
//   micro-kernels (up to 12 rows x 32 columns on AVX-512) over all rows of
//   the call, so each weight is read from memory once per call; bias, clamp,
//   GELU and the residual are applied in registers before the one store.
// - Batch invariance is bitwise by construction: an output element's
//   reduction over K is one fixed sequence of operations (kernel_table.h)
//   whatever the number of rows, the row's position, the blocking or the
//   thread count. No padding rows are computed.
// - Attention: per (token, KV head) task, all query heads of the group at
//   once, vectorised dot products and value sums with an online softmax over
//   keys in position order (so chunked prefill gives the same bits as a
//   whole one); tasks are split across threads by context length. Sliding
//   windows and first_blocks as backend.h defines them.
// - Layernorm vectorised; the KV cache in float32, float16 or bfloat16.
// - Kernels come in levels (portable C++, AVX2+FMA, AVX-512, AVX-512 VNNI,
//   AVX-512 BF16+VNNI), each compiled with its own flags; the best one this
//   CPU runs is picked at start and logged. All levels give the same bits.
// - Scratch memory grows to the largest call and is then reused: steps do
//   not allocate.
//
// Thread-safety: not thread-safe (see kernels/backend.h).
#ifndef ALIBI_KERNELS_CPU_CPU_BACKEND_H_
#define ALIBI_KERNELS_CPU_CPU_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/backend.h"

namespace alibi::kernels::cpu {

// Uses options.num_threads (0: every core), cpu_weight_dtype, kv_dtype and
// cpu_kernels.
absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(
    const BackendOptions& options);

// Kernel levels of this build that this CPU runs, best first (values for
// BackendOptions::cpu_kernels).
std::vector<std::string> SupportedKernelLevels();

// The machine's limits, measured now with `num_threads` threads by the best
// kernel level: streaming reads from buffers far larger than the caches (the
// best of 1 to 8 interleaved streams per thread), and multiply-adds from
// registers (for alibi-microbench).
struct MachineLimits {
  double read_gb_per_s = 0;
  double fma_gflop_per_s = 0;   // float32 FMA
  double bf16_gflop_per_s = 0;  // bf16 dot products (vdpbf16ps), or FMA
  double int8_gop_per_s = 0;    // int8 dot products (vpdpbusd); 0 if none
};
MachineLimits MeasureMachineLimits(int num_threads);

// GB/s of reading every byte of `regions` once with `num_threads` threads
// (each reads its own slice of every region), the best of 1, 2, 4 and 8
// interleaved streams per thread: the read probe over memory a caller chose,
// e.g. the very weights a GEMV has just read. Runs its own threads.
double MeasureReadRate(absl::Span<const absl::Span<const char>> regions,
                       int num_threads);

}  // namespace alibi::kernels::cpu

#endif  // ALIBI_KERNELS_CPU_CPU_BACKEND_H_
