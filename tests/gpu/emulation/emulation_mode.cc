#include "tests/gpu/emulation/cuda_emulation.h"
#include "tests/gpu/emulation/emulated_kernels.h"

#if defined(__x86_64__)
// cuda_emu_switch(void** save, void* resume): the fiber switch of
// cuda_emulation.h. Pushes what the System V ABI makes callee-saved (rbp,
// rbx, r12-r15, MXCSR and the x87 control word), stores rsp in *save (rdi),
// loads rsp from `resume` (rsi) and pops the same frame there.
asm(R"(
  .text
  .p2align 4
  .globl cuda_emu_switch
  .type cuda_emu_switch, @function
cuda_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_emu_switch, .-cuda_emu_switch
)");
#endif

namespace alibi::kernels::cuda::emulated {

void SetEmulationMode(bool random_pace, bool immediate_copies, uint32_t seed) {
  cuda_emu::Configure(/*defer_copies=*/!immediate_copies, random_pace, seed);
}

}  // namespace alibi::kernels::cuda::emulated
