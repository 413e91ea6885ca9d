#!/usr/bin/env python3
"""Turns kernels/cuda/attention_{prefill,decode}.cu into host C++ for the
emulator in cuda_emulation.h (attention_emulation_test).

The kernels' own source is kept verbatim; only what host C++ cannot express
is replaced: the inline-PTX helpers (cp.async, mma.sync) by emulated ones,
the dynamic shared-memory declaration by the emulator's buffer, and the
host launchers (<<<...>>>) by emulated launchers with external linkage:

  void EmulatePrefillAttention(const AttentionArgs&, const AttentionPlan&);
  void EmulateRowAttention(const AttentionArgs&, const AttentionPlan&);
  void ConfigureAttentionEmulation(bool defer_copies, bool random,
                                   uint32_t seed);

Fails loudly when a piece it replaces is no longer found (update this script
together with the kernels).

Usage: gen_attention_emulation.py KERNELS_CUDA_DIR OUT_DIR
"""
import os
import re
import sys


def strip_function(src, signature):
    """Removes the definition whose text starts with `signature` (and a
    `template <...>` line right before it), through its matching brace."""
    at = src.find(signature)
    if at < 0:
        sys.exit(f"gen_attention_emulation: '{signature}' not found")
    start = at
    line_start = src.rfind("\n", 0, at) + 1
    prev_start = src.rfind("\n", 0, line_start - 1) + 1
    if src[prev_start:line_start].strip().startswith("template"):
        start = prev_start
    else:
        start = line_start
    brace = src.index("{", at)
    depth = 0
    i = brace
    while True:
        if src[i] == "{":
            depth += 1
        elif src[i] == "}":
            depth -= 1
            if depth == 0:
                break
        i += 1
    return src[:start] + src[i + 1:]


def replace_once(src, old, new):
    if old not in src:
        sys.exit(f"gen_attention_emulation: '{old[:60]}...' not found")
    return src.replace(old, new, 1)


def insert_before_anonymous_namespace_end(src, text):
    marker = "}  // namespace\n"
    at = src.find(marker)
    if at < 0:
        sys.exit("gen_attention_emulation: end of anonymous namespace not found")
    return src[:at] + text + src[at:]


PREFILL_HELPERS = """
inline void CpAsync16(void* smem, const void* gmem, int src_bytes) {
  cuda_emu::CpAsync(smem, gmem, src_bytes);
}
inline void CpAsyncCommit() { cuda_emu::CpAsyncCommit(); }
template <int N>
inline void CpAsyncWait() {
  cuda_emu::CpAsyncWait(N);
}
template <typename T>
inline void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                uint32_t b1) {
  cuda_emu::Mma(c, a, b0, b1, std::is_same_v<T, __nv_bfloat16>);
}
"""

PREFILL_LAUNCH = """
template <typename T, int D>
void EmulateVariant(const AttentionArgs& args, const AttentionPlan& plan,
                    const int2* tiles, const int* count) {
  cuda_emu::Launch(dim3(plan.max_tiles, args.num_heads), kAttentionThreads,
                   kPrefillSmemBytes<D>,
                   [&] { PrefillAttentionKernel<T, D>(args, tiles, count); });
}

template <typename T>
void EmulateForType(const AttentionArgs& args, const AttentionPlan& plan,
                    const int2* tiles, const int* count) {
  switch (args.head_dim) {
    case 64: return EmulateVariant<T, 64>(args, plan, tiles, count);
    case 80: return EmulateVariant<T, 80>(args, plan, tiles, count);
    case 96: return EmulateVariant<T, 96>(args, plan, tiles, count);
    case 128: return EmulateVariant<T, 128>(args, plan, tiles, count);
    default: std::abort();
  }
}
}  // namespace

void EmulatePrefillAttention(const AttentionArgs& args,
                             const AttentionPlan& plan) {
  int2* tiles = static_cast<int2*>(args.workspace);
  int* count = reinterpret_cast<int*>(static_cast<char*>(args.workspace) +
                                      plan.tile_count_offset);
  cuda_emu::Launch(dim3(1), kPlanThreads, 0, [&] {
    PlanTilesKernel(args.query_start, args.context_lens, args.num_seqs,
                    plan.max_tiles, tiles, count, args.error_word);
  });
  if (args.dtype == ElemType::kBF16) {
    EmulateForType<__nv_bfloat16>(args, plan, tiles, count);
  } else {
    EmulateForType<__half>(args, plan, tiles, count);
  }
}

void ConfigureAttentionEmulation(bool defer_copies, bool random,
                                 uint32_t seed) {
  cuda_emu::Configure(defer_copies, random, seed);
}

namespace {
"""

ROW_LAUNCH = """
template <typename T>
void EmulateRow(const AttentionArgs& args, const AttentionPlan& plan) {
  float* partial_o = nullptr;
  float* partial_ml = nullptr;
  if (plan.max_splits > 1) {
    partial_o = static_cast<float*>(args.workspace);
    partial_ml = reinterpret_cast<float*>(static_cast<char*>(args.workspace) +
                                          plan.partial_ml_offset);
  }
  cuda_emu::Launch(dim3(args.num_tokens, plan.max_splits, args.num_heads),
                   kAttentionThreads, 0, [&] {
                     RowAttentionKernel<T>(args, partial_o, partial_ml);
                   });
  if (plan.max_splits > 1) {
    cuda_emu::Launch(dim3(args.num_tokens, args.num_heads), kAttentionThreads,
                     0, [&] {
                       RowCombineKernel<T>(args, plan.max_splits, partial_o,
                                           partial_ml);
                     });
  }
}
}  // namespace

void EmulateRowAttention(const AttentionArgs& args,
                         const AttentionPlan& plan) {
  if (args.dtype == ElemType::kBF16) {
    EmulateRow<__nv_bfloat16>(args, plan);
  } else {
    EmulateRow<__half>(args, plan);
  }
}

namespace {
"""


def generate_prefill(src):
    for sig in [
        "__device__ __forceinline__ void CpAsync16(",
        "__device__ __forceinline__ void CpAsyncCommit(",
        "__device__ __forceinline__ void CpAsyncWait(",
        "__device__ __forceinline__ void Mma<__nv_bfloat16>(",
        "__device__ __forceinline__ void Mma<__half>(",
        "cudaError_t LaunchVariant(",
        "cudaError_t LaunchForType(",
        "cudaError_t LaunchPrefillAttention(",
    ]:
        src = strip_function(src, sig)
    # The primary template's declaration.
    src, n = re.subn(
        r"template <typename T>\n__device__ __forceinline__ void Mma\([^;]*\);\n",
        "", src)
    if n != 1:
        sys.exit("gen_attention_emulation: Mma declaration not found")
    src = replace_once(
        src, "extern __shared__ __align__(16) unsigned char smem_raw[];",
        "unsigned char* smem_raw = cuda_emu::DynamicSmem();")
    src = replace_once(src, "constexpr int kPlanThreads = 1024;\n",
                       "constexpr int kPlanThreads = 1024;\n" + PREFILL_HELPERS)
    return insert_before_anonymous_namespace_end(src, PREFILL_LAUNCH)


def generate_row(src):
    for sig in ["cudaError_t LaunchRow(", "cudaError_t LaunchRowAttention("]:
        src = strip_function(src, sig)
    return insert_before_anonymous_namespace_end(src, ROW_LAUNCH)


def main():
    kernels_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    header = ("// Generated by gen_attention_emulation.py from {}: do not edit.\n"
              "#include <type_traits>\n\n"
              "#include \"tests/gpu/emulation/cuda_emulation.h\"\n")
    for name, gen in [("attention_prefill", generate_prefill),
                      ("attention_decode", generate_row)]:
        path = os.path.join(kernels_dir, name + ".cu")
        with open(path) as f:
            src = f.read()
        out = header.format("kernels/cuda/" + name + ".cu") + gen(src)
        target = os.path.join(out_dir, name + "_emulated.cc")
        with open(target + ".tmp", "w") as f:
            f.write(out)
        os.replace(target + ".tmp", target)


if __name__ == "__main__":
    main()
