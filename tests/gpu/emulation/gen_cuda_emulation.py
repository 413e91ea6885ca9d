#!/usr/bin/env python3
"""Turns the CUDA backend's kernel sources (kernels/cuda/*.cu) into host C++
for the emulator in cuda_emulation.h (cuda_kernels_emulation_test).

Each file's own source is kept verbatim, launchers included, except for what
host C++ cannot express:
- kernel launches `K<<<grid, block, smem, stream>>>(args);` become
  `cuda_emu::LaunchKernel(grid, block, smem, stream, [&] { K(args); });`;
- cudaGetLastError / cudaFuncSetAttribute become the emulator's (success);
- attention_prefill.cu's inline-PTX helpers (cp.async, mma.sync) become
  emulated ones, and its dynamic shared memory the emulator's buffer;
- `namespace alibi::kernels::cuda` becomes `...::cuda::emulated`, so the
  emulated launchers never clash with the real ones.

Fails loudly when a piece it rewrites is no longer found (update this script
together with the kernels).

Usage: gen_cuda_emulation.py KERNELS_CUDA_DIR OUT_DIR NAME...
writes OUT_DIR/NAME_emulated.cc for each NAME (a .cu file's stem).
"""
import os
import re
import sys


def fail(message):
    sys.exit("gen_cuda_emulation: " + message)


def strip_function(src, signature):
    """Removes the definition whose text starts with `signature` (and a
    `template <...>` line right before it), through its matching brace."""
    at = src.find(signature)
    if at < 0:
        fail(f"'{signature}' not found")
    line_start = src.rfind("\n", 0, at) + 1
    prev_start = src.rfind("\n", 0, line_start - 1) + 1
    start = line_start
    if src[prev_start:line_start].strip().startswith("template"):
        start = prev_start
    depth = 0
    i = src.index("{", at)
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
        fail(f"'{old[:60]}' not found")
    return src.replace(old, new, 1)


def split_top_level(text):
    """Splits on commas outside parentheses / angle brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return parts


LAUNCH = re.compile(
    r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\((.*?)\);", re.S)


def rewrite_launches(src):
    def launch(m):
        kernel, config, args = m.group(1), m.group(2), m.group(3)
        parts = split_top_level(config)
        if len(parts) < 2:
            fail(f"launch configuration '{config}'")
        smem = parts[2] if len(parts) > 2 else "0"
        stream = parts[3] if len(parts) > 3 else "nullptr"
        return (f"cuda_emu::LaunchKernel({parts[0]}, {parts[1]}, {smem}, "
                f"{stream}, [&] {{ {kernel}({args}); }});")

    out, n = LAUNCH.subn(launch, src)
    if n == 0:
        fail("no kernel launch found")
    if "<<<" in out:
        fail("a kernel launch was not rewritten")
    return out


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


def rewrite_prefill(src):
    for sig in [
        "__device__ __forceinline__ void CpAsync16(",
        "__device__ __forceinline__ void CpAsyncCommit(",
        "__device__ __forceinline__ void CpAsyncWait(",
        "__device__ __forceinline__ void Mma<__nv_bfloat16>(",
        "__device__ __forceinline__ void Mma<__half>(",
    ]:
        src = strip_function(src, sig)
    src, n = re.subn(
        r"template <typename T>\n__device__ __forceinline__ void Mma\([^;]*\);\n",
        "", src)
    if n != 1:
        fail("Mma declaration not found")
    src = replace_once(
        src, "extern __shared__ __align__(16) unsigned char smem_raw[];",
        "unsigned char* smem_raw = cuda_emu::DynamicSmem();")
    anchor = "constexpr float kLog2e = 1.4426950408889634f;\n"
    return replace_once(src, anchor, anchor + PREFILL_HELPERS)


def generate(path, name):
    with open(path) as f:
        src = f.read()
    if "asm" in src and name != "attention_prefill":
        fail(f"{name}.cu has inline assembly the generator does not handle")
    if name == "attention_prefill":
        src = rewrite_prefill(src)
    src = rewrite_launches(src)
    src = src.replace("cudaGetLastError()", "cuda_emu::GetLastError()")
    src = src.replace("cudaFuncSetAttribute(", "cuda_emu::FuncSetAttribute(")
    src = replace_once(src, "namespace alibi::kernels::cuda {\n",
                       "namespace alibi::kernels::cuda::emulated {\n")
    return ("// Generated by gen_cuda_emulation.py from kernels/cuda/"
            f"{name}.cu: do not edit.\n"
            "#include <type_traits>\n\n"
            "#include \"tests/gpu/emulation/cuda_emulation.h\"\n" + src)


def main():
    kernels_dir, out_dir, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
        out = generate(os.path.join(kernels_dir, name + ".cu"), name)
        target = os.path.join(out_dir, name + "_emulated.cc")
        with open(target + ".tmp", "w") as f:
            f.write(out)
        os.replace(target + ".tmp", target)


if __name__ == "__main__":
    main()
