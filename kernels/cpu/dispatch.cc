#include "kernels/cpu/dispatch.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace alibi::kernels::cpu {

// The tables of kernels/cpu/level.cc, one namespace per level.
namespace portable {
const KernelTable& Table();
}
#if defined(__x86_64__)
namespace avx2 {
const KernelTable& Table();
}
namespace avx512 {
const KernelTable& Table();
}
namespace avx512_vnni {
const KernelTable& Table();
}
namespace avx512_bf16 {
const KernelTable& Table();
}
#endif

namespace {

#if defined(__x86_64__)
CpuFeatures Detect() {
  CpuFeatures f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27);
  const bool fma = ecx & (1u << 12), f16c = ecx & (1u << 29);
  if (!osxsave) return f;
  unsigned xcr0_lo, xcr0_hi;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool ymm_state = (xcr0_lo & 0x6) == 0x6;
  const bool zmm_state = (xcr0_lo & 0xE6) == 0xE6;
  if (!ymm_state || !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
    return f;
  }
  f.fma = fma;
  f.f16c = f16c;
  f.avx2 = ebx & (1u << 5);
  if (zmm_state) {
    f.avx512f = ebx & (1u << 16);
    f.avx512dq = ebx & (1u << 17);
    f.avx512bw = ebx & (1u << 30);
    f.avx512vl = ebx & (1u << 31);
    f.avx512_vnni = ecx & (1u << 11);
    unsigned a1, b1, c1, d1;
    if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) {
      f.avx512_bf16 = a1 & (1u << 5);
    }
  }
  return f;
}
#else
CpuFeatures Detect() { return CpuFeatures{}; }
#endif

}  // namespace

const CpuFeatures& DetectCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

std::vector<KernelLevel> KernelLevels() {
  const CpuFeatures& f = DetectCpuFeatures();
  std::vector<KernelLevel> levels;
#if defined(__x86_64__)
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  const bool avx512 =
      avx2 && f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl;
  levels.push_back(
      {&avx512_bf16::Table(), avx512 && f.avx512_vnni && f.avx512_bf16});
  levels.push_back({&avx512_vnni::Table(), avx512 && f.avx512_vnni});
  levels.push_back({&avx512::Table(), avx512});
  levels.push_back({&avx2::Table(), avx2});
#else
  (void)f;
#endif
  levels.push_back({&portable::Table(), true});
  return levels;
}

absl::StatusOr<const KernelTable*> SelectKernels(absl::string_view name) {
  std::vector<std::string> names;
  for (const KernelLevel& level : KernelLevels()) {
    if (name == "auto" && level.supported) return level.table;
    if (name == level.table->name) {
      if (!level.supported) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cpu kernels \"", name, "\": this CPU cannot run them"));
      }
      return level.table;
    }
    names.push_back(level.table->name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cpu kernels: unknown level \"", name, "\" (auto, ",
                   absl::StrJoin(names, ", "), ")"));
}

}  // namespace alibi::kernels::cpu
