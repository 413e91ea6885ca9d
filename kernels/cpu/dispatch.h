// Run-time choice of the CPU kernel level: what this CPU (and its OS) can
// run, read with cpuid/xgetbv, against the levels this build compiled
// (kernels/cpu/level.cc, one per instruction set).
//
// Thread-safety: thread-safe (detection runs once).
#ifndef ALIBI_KERNELS_CPU_DISPATCH_H_
#define ALIBI_KERNELS_CPU_DISPATCH_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/cpu/kernel_table.h"

namespace alibi::kernels::cpu {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_vnni = false, avx512_bf16 = false;
};

// This CPU's features, as usable (the OS saves the registers).
const CpuFeatures& DetectCpuFeatures();

struct KernelLevel {
  const KernelTable* table;
  bool supported;  // by this CPU
};

// Every level of this build, best first.
std::vector<KernelLevel> KernelLevels();

// "auto": the best level this CPU runs; otherwise the level of that name
// (InvalidArgument when this build has none, FailedPrecondition when this
// CPU cannot run it).
absl::StatusOr<const KernelTable*> SelectKernels(absl::string_view name);

}  // namespace alibi::kernels::cpu

#endif  // ALIBI_KERNELS_CPU_DISPATCH_H_
