// Weight packing for the CPU backend: host matrices [N, K] (f32, f16 or
// bf16, row-major) into the panel layout of kernels/cpu/kernel_table.h, in
// f32, f16, bf16 or int8, and back (dequantized) for Embedding and
// DownloadWeight. The same for every kernel level; done once at load.
//
// Thread-safety: pure functions; calls on disjoint panels may run
// concurrently.
#ifndef ALIBI_KERNELS_CPU_PACKING_H_
#define ALIBI_KERNELS_CPU_PACKING_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cpu/kernel_table.h"

namespace alibi::kernels::cpu {

// The WeightFormat storing `dtype` (kF32, kF16, kBF16, kI8).
absl::StatusOr<int> WeightFormatOf(DType dtype);

// Bytes of a packed [n, k] weight.
int64_t PackedWeightBytes(int format, int64_t n, int64_t k);

// Packs panels [panel_begin, panel_end) of src: [n, k] row-major of
// src_dtype (kF32, kF16 or kBF16) into `dst` (PackedWeightBytes long).
void PackWeightPanels(const void* src, DType src_dtype, int64_t n, int64_t k,
                      int format, int64_t panel_begin, int64_t panel_end,
                      uint8_t* dst);

// Row `row` of a packed [*, k] weight: the k values the kernels multiply
// with, as float32.
void UnpackWeightRow(const uint8_t* packed, int format, int64_t k, int64_t row,
                     float* dst);

}  // namespace alibi::kernels::cpu

#endif  // ALIBI_KERNELS_CPU_PACKING_H_
