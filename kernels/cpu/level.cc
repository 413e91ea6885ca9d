// One kernel level: kernels/cpu/kernels.inc compiled with this level's -m
// flags (kernels/cpu/CMakeLists.txt defines ALIBI_CPU_LEVEL and
// ALIBI_CPU_LEVEL_NAME per object library). Everything here lives in the
// level's own namespace, so no inline function compiled for one instruction
// set can stand in for another's; nothing from the standard library or
// Abseil is used.
#include <cstdint>

#include "kernels/cpu/kernel_table.h"

#if defined(__x86_64__)
// GCC 12 warns inside its own AVX-512 headers when their "undefined"
// vectors are inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
#if !defined(__AVX2__)
#include "common/half.h"  // built with the flags of everything else
#endif

namespace alibi::kernels::cpu::ALIBI_CPU_LEVEL {

#include "kernels/cpu/simd.inc"
// (simd.inc before kernels.inc)
#include "kernels/cpu/kernels.inc"

const KernelTable& Table() { return kTable; }

}  // namespace alibi::kernels::cpu::ALIBI_CPU_LEVEL
