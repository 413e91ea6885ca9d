#include "tests/gpu/emulation/cuda_emulation.h"
#include "tests/gpu/emulation/emulated_kernels.h"

namespace alibi::kernels::cuda::emulated {

void SetEmulationMode(bool random_pace, bool immediate_copies, uint32_t seed) {
  cuda_emu::Configure(/*defer_copies=*/!immediate_copies, random_pace, seed);
}

}  // namespace alibi::kernels::cuda::emulated
