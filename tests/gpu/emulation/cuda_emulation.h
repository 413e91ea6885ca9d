// A small host emulator of the CUDA features the backend's kernels use, so
// that their source (kernels/cuda/*.cu, turned into host C++ by
// gen_cuda_emulation.py) runs on the CPU in builds and CI without a GPU:
//
// - Every CUDA thread of a block is a fiber (its own stack) on the calling OS
//   thread; a cooperative scheduler runs them until they reach a barrier.
//   Blocks run one after another. On x86-64 fibers switch with a few
//   instructions (cuda_emu_switch, emulation_mode.cc); elsewhere through
//   ucontext (swapcontext also saves the signal mask, a system call per
//   switch, about 100 times slower).
// - __syncthreads, and the warp-wide exchanges behind __shfl_*_sync and
//   mma.sync, are barriers over the block or the warp.
// - mma.sync.m16n8k16 (bf16/fp16 in, fp32 accumulate) follows the PTX ISA
//   fragment layouts, so the kernels' fragment indexing is checked.
// - cp.async is either executed when issued (immediate) or deferred until
//   the cp.async.wait_group that covers it (the latest the hardware may land
//   it); dynamic shared memory starts poisoned (NaN in bf16 and fp16).
// - In random mode, every warp gets a random pace per block and the
//   scheduler skips threads at random, so warps drift apart between block
//   barriers and a missing __syncthreads shows up as wrong results.
//
// Emulated __shared__ variables are function-local statics: one block at a
// time, which is all the scheduler runs. Not a general CUDA emulator.
//
// Thread-safety: one emulated launch at a time per process.
#ifndef ALIBI_TESTS_GPU_EMULATION_CUDA_EMULATION_H_
#define ALIBI_TESTS_GPU_EMULATION_CUDA_EMULATION_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "common/half.h"

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __align__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) alignas(n)
#define __launch_bounds__(...)

namespace cuda_emu {

struct Barrier {
  int expected = 0;
  int arrived = 0;
  uint64_t generation = 0;
};

struct PendingCopy {
  void* dst;
  const void* src;
  int src_bytes;  // 16, or 0 for a zero fill
};

#if defined(__x86_64__)
// Saves the callee-saved registers, MXCSR and the x87 control word on the
// current stack, stores the stack pointer in *save and resumes the fiber
// whose stack pointer is `resume` (defined in emulation_mode.cc).
extern "C" void cuda_emu_switch(void** save, void* resume);
struct FiberContext {
  void* sp = nullptr;
};
#else
using FiberContext = ucontext_t;
#endif

struct ThreadState {
  FiberContext context;
  std::vector<char> stack;
  uint3 thread_idx, block_idx;
  bool done = false;
  std::vector<PendingCopy> open;                // not yet committed
  std::deque<std::vector<PendingCopy>> groups;  // committed, not landed
};

struct Warp {
  Barrier barrier;
  uint32_t exchange[32];
  uint32_t fragments[32][6];
};

struct Block {
  Barrier barrier;
  std::vector<std::unique_ptr<Warp>> warps;
  std::vector<unsigned char> dynamic_smem;
};

struct State {
  Block* block = nullptr;
  dim3 grid, block_dim;
  ThreadState* current = nullptr;
  FiberContext scheduler;
  bool progress = false;
  bool defer_copies = true;
  bool random = false;
  std::mt19937 rng;
  const std::function<void()>* body = nullptr;
};

inline State& S() {
  static State state;
  return state;
}

// Deferred or immediate cp.async; ordered or randomly paced scheduling.
inline void Configure(bool defer_copies, bool random, uint32_t seed) {
  S().defer_copies = defer_copies;
  S().random = random;
  S().rng.seed(seed);
}

// Suspends `from` and resumes `to`.
inline void SwitchFiber(FiberContext& from, FiberContext& to) {
#if defined(__x86_64__)
  cuda_emu_switch(&from.sp, to.sp);
#else
  swapcontext(&from, &to);
#endif
}

inline void Yield() { SwitchFiber(S().current->context, S().scheduler); }

inline void Release(Barrier& b) {
  b.arrived = 0;
  ++b.generation;
  S().progress = true;
}

inline void Arrive(Barrier& b) {
  const uint64_t generation = b.generation;
  S().progress = true;
  if (++b.arrived == b.expected) {
    Release(b);
    return;
  }
  while (b.generation == generation) Yield();
}

inline void Drop(Barrier& b) {
  --b.expected;
  if (b.arrived > 0 && b.arrived == b.expected) Release(b);
}

inline Warp& CurrentWarp() {
  return *S().block->warps[S().current->thread_idx.x / 32];
}

inline unsigned char* DynamicSmem() { return S().block->dynamic_smem.data(); }

inline void Land(const PendingCopy& c) {
  if (c.src_bytes == 16) {
    std::memcpy(c.dst, c.src, 16);
  } else {
    std::memset(c.dst, 0, 16);
  }
}

inline void CpAsync(void* smem, const void* gmem, int src_bytes) {
  const PendingCopy copy{smem, gmem, src_bytes};
  if (S().defer_copies) {
    S().current->open.push_back(copy);
  } else {
    Land(copy);
  }
}

inline void CpAsyncCommit() {
  S().current->groups.push_back(std::move(S().current->open));
  S().current->open.clear();
}

inline void CpAsyncWait(int pending) {
  auto& groups = S().current->groups;
  while (groups.size() > static_cast<size_t>(pending)) {
    for (const PendingCopy& c : groups.front()) Land(c);
    groups.pop_front();
  }
}

inline void Trampoline() {
  (*S().body)();
  ThreadState& me = *S().current;
  if (!me.open.empty() || !me.groups.empty()) {
    std::fprintf(stderr, "cuda_emu: a thread exited with cp.async pending\n");
    std::abort();
  }
  me.done = true;
  S().progress = true;
  Drop(CurrentWarp().barrier);
  Drop(S().block->barrier);
#if defined(__x86_64__)
  // A finished fiber is never resumed (its stack is re-initialised).
  SwitchFiber(me.context, S().scheduler);
  std::abort();
#endif
}

#if defined(__x86_64__)
// A fresh fiber on t.stack whose first resumption enters Trampoline: the
// frame cuda_emu_switch pops (MXCSR and x87 control word, r15..r12, rbx,
// rbp, return address), placed so that Trampoline starts with the stack
// alignment of a called function.
inline void InitContext(ThreadState& t) {
  uintptr_t top = reinterpret_cast<uintptr_t>(t.stack.data() + t.stack.size());
  top &= ~uintptr_t{15};
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;  // pad: the return address slot is 16-byte aligned
  *--sp = reinterpret_cast<void*>(&Trampoline);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp rbx r12 r13 r14 r15
  uint32_t mxcsr = 0;
  uint16_t x87_cw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(x87_cw));
  --sp;
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &x87_cw, 2);
  t.context.sp = sp;
}
#else
// Kept out of Launch: variables live across getcontext() would be at risk
// (-Wclobbered).
[[gnu::noinline]] inline void InitContext(ThreadState& t) {
  getcontext(&t.context);
  t.context.uc_stack.ss_sp = t.stack.data();
  t.context.uc_stack.ss_size = t.stack.size();
  t.context.uc_link = &S().scheduler;
  makecontext(&t.context, &Trampoline, 0);
}
#endif

// Runs `body` as every thread of every block of `grid` (blocks in order).
inline void Launch(dim3 grid, int threads, size_t smem_bytes,
                   const std::function<void()>& body) {
  State& s = S();
  s.grid = grid;
  s.block_dim = dim3(threads, 1, 1);
  s.body = &body;
    // Threads (and their stacks) are reused from launch to launch.
  static std::vector<ThreadState> ts;
  if (ts.size() < static_cast<size_t>(threads)) ts.resize(threads);
  for (ThreadState& t : ts) {
    if (t.stack.empty()) t.stack.resize(128 * 1024);
  }
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        Block block;
        block.barrier.expected = threads;
        for (int w = 0; w < threads / 32; ++w) {
          block.warps.push_back(std::make_unique<Warp>());
          block.warps.back()->barrier.expected = 32;
        }
        block.dynamic_smem.assign(smem_bytes, 0xFF);  // NaN in bf16/fp16
        s.block = &block;
        for (int i = 0; i < threads; ++i) {
          ThreadState& t = ts[i];
          t.thread_idx = uint3{static_cast<unsigned>(i), 0, 0};
          t.block_idx = uint3{x, y, z};
          t.done = false;
          t.open.clear();
          t.groups.clear();
          InitContext(t);
        }
        std::vector<unsigned> pace(threads / 32);  // per mille
        for (unsigned& p : pace) p = 50 + s.rng() % 951;
        int finished = 0, idle_rounds = 0;
        while (finished < threads) {
          s.progress = false;
          finished = 0;
          for (int i = 0; i < threads; ++i) {
            if (ts[i].done) {
              ++finished;
              continue;
            }
            if (s.random && s.rng() % 1000 >= pace[i / 32]) continue;
            s.current = &ts[i];
            SwitchFiber(s.scheduler, ts[i].context);
            if (ts[i].done) ++finished;
          }
          idle_rounds = s.progress ? 0 : idle_rounds + 1;
          if (finished < threads && idle_rounds > (s.random ? 10000 : 1)) {
            std::fprintf(stderr, "cuda_emu: deadlock in block (%u,%u,%u)\n", x,
                         y, z);
            std::abort();
          }
        }
        s.block = nullptr;
      }
    }
  }
}

// What `kernel<<<grid, block, smem, stream>>>(args)` becomes in generated
// sources: runs at once, on the host (streams do not exist here).
inline void LaunchKernel(dim3 grid, dim3 block, size_t smem_bytes,
                         cudaStream_t /*stream*/,
                         const std::function<void()>& body) {
  Launch(grid, static_cast<int>(block.x * block.y * block.z), smem_bytes, body);
}
inline cudaError_t GetLastError() { return cudaSuccess; }
template <typename... Args>
cudaError_t FuncSetAttribute(Args&&...) {
  return cudaSuccess;
}

inline float Unpack16(uint32_t reg, int half, bool bf16) {
  const uint16_t bits = static_cast<uint16_t>(half ? reg >> 16 : reg & 0xFFFF);
  return bf16 ? alibi::Bf16ToFloat(bits) : alibi::Fp16ToFloat(bits);
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: lane = 4g + q holds
// A[g][2q..2q+1], A[g+8][2q..], A[g][2q+8..], A[g+8][2q+8..] (a0..a3),
// B[2q..2q+1][g], B[2q+8..2q+9][g] (b0, b1) and
// C[g][2q..2q+1], C[g+8][2q..2q+1] (c0..c3); low half = lower index.
inline void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                bool bf16) {
  Warp& w = CurrentWarp();
  const int lane = S().current->thread_idx.x & 31;
  for (int i = 0; i < 4; ++i) w.fragments[lane][i] = a[i];
  w.fragments[lane][4] = b0;
  w.fragments[lane][5] = b1;
  Arrive(w.barrier);
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, q = l & 3;
    for (int e = 0; e < 2; ++e) {
      A[g][2 * q + e] = Unpack16(w.fragments[l][0], e, bf16);
      A[g + 8][2 * q + e] = Unpack16(w.fragments[l][1], e, bf16);
      A[g][2 * q + 8 + e] = Unpack16(w.fragments[l][2], e, bf16);
      A[g + 8][2 * q + 8 + e] = Unpack16(w.fragments[l][3], e, bf16);
      B[2 * q + e][g] = Unpack16(w.fragments[l][4], e, bf16);
      B[2 * q + 8 + e][g] = Unpack16(w.fragments[l][5], e, bf16);
    }
  }
  Arrive(w.barrier);
  const int g = lane >> 2, q = lane & 3;
  for (int k = 0; k < 16; ++k) {
    c[0] += A[g][k] * B[k][2 * q];
    c[1] += A[g][k] * B[k][2 * q + 1];
    c[2] += A[g + 8][k] * B[k][2 * q];
    c[3] += A[g + 8][k] * B[k][2 * q + 1];
  }
}

}  // namespace cuda_emu

#define threadIdx (::cuda_emu::S().current->thread_idx)
#define blockIdx (::cuda_emu::S().current->block_idx)
#define blockDim (::cuda_emu::S().block_dim)
#define gridDim (::cuda_emu::S().grid)

inline void __syncthreads() { cuda_emu::Arrive(cuda_emu::S().block->barrier); }

namespace cuda_emu {
// Every lane of the warp publishes `v`, then returns the value that lane
// `source(lane)` published.
template <typename T, typename Source>
T WarpExchange(T v, Source source) {
  static_assert(sizeof(T) == 4);
  Warp& w = CurrentWarp();
  const int lane = threadIdx.x & 31;
  std::memcpy(&w.exchange[lane], &v, 4);
  Arrive(w.barrier);
  T r;
  std::memcpy(&r, &w.exchange[source(lane)], 4);
  Arrive(w.barrier);
  return r;
}
}  // namespace cuda_emu

template <typename T>
T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask) {
  return cuda_emu::WarpExchange(v, [&](int lane) { return lane ^ lane_mask; });
}

// Lanes below `delta` keep their own value.
template <typename T>
T __shfl_up_sync(unsigned /*mask*/, T v, unsigned delta) {
  const int d = static_cast<int>(delta);
  return cuda_emu::WarpExchange(
      v, [&](int lane) { return lane >= d ? lane - d : lane; });
}

inline unsigned atomicOr(unsigned* p, unsigned v) {
  const unsigned old = *p;  // one OS thread: no race
  *p = old | v;
  return old;
}

template <typename T>
T atomicAdd(T* p, T v) {
  const T old = *p;  // one OS thread: no race
  *p = old + v;
  return old;
}

inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

template <typename T>
T __ldg(const T* p) {
  return *p;
}

using std::max;
using std::min;

#endif  // ALIBI_TESTS_GPU_EMULATION_CUDA_EMULATION_H_
