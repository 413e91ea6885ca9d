#include <climits>
#include <cmath>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/sample.cuh"

namespace alibi::kernels::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;
// Probabilities become fixed point for the top_p masses: integer sums do not
// depend on the order of the additions, so a seeded request repeats.
constexpr double kMassScale = 1099511627776.0;  // 2^40

__device__ __forceinline__ float Clean(float v) {  // NaN ranks last
  return v != v ? -INFINITY : v;
}

// (a, ia) ranks before (b, ib): larger value, lowest id among equals.
__device__ __forceinline__ bool Before(float a, int ia, float b, int ib) {
  return a > b || (a == b && ia < ib);
}

__device__ __forceinline__ uint64_t Mix64(uint64_t z) {  // SplitMix64
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Gumbel(0, 1) noise of (seed, draw, token): -log(-log(u)) with u from 52
// bits, strictly inside (0, 1) (u = 1 would give +inf: that token would win
// whatever its probability), so the noise spans about [-3.6, 36.7].
__device__ __forceinline__ float Gumbel(uint64_t seed, uint64_t draw,
                                        int token) {
  const uint64_t h =
      Mix64(Mix64(seed ^ Mix64(draw)) + static_cast<uint64_t>(token));
  const double u = (static_cast<double>(h >> 12) + 0.5) * 0x1p-52;
  return static_cast<float>(-log(-log(u)));
}

__device__ __forceinline__ uint64_t Fixed(float p) {
  return static_cast<uint64_t>(static_cast<double>(p) * kMassScale + 0.5);
}

// The block's best (value, id); every thread gets it. An empty block gives
// (-inf, INT_MAX).
__device__ void BlockArgMax(float& v, int& id, float* sv, int* si) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, offset);
    const int oi = __shfl_xor_sync(0xffffffffu, id, offset);
    if (Before(ov, oi, v, id)) {
      v = ov;
      id = oi;
    }
  }
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = id;
  }
  __syncthreads();
  v = sv[0];
  id = si[0];
  for (int w = 1; w < kWarps; ++w) {
    if (Before(sv[w], si[w], v, id)) {
      v = sv[w];
      id = si[w];
    }
  }
  __syncthreads();
}

// The row's state during one sampled draw: p(t) = exp((l[t] - max) / T).
struct Probs {
  const float* l;
  float max;
  float inv_t;
  float min_p;
  __device__ float P(int t) const { return expf((l[t] - max) * inv_t); }
  // Still possible after min_p (relative to p_max = 1).
  __device__ bool Kept(float p) const { return p > 0.0f && p >= min_p; }
};

// A cut of the (probability desc, id asc) order: a token is inside when its
// probability's bits exceed `key`, or equal it and its id is <= `id`.
struct Cut {
  uint32_t key = 0;
  int id = INT_MAX;
  __device__ bool Inside(uint32_t k, int t) const {
    return k > key || (k == key && t <= id);
  }
};

// The shortest prefix of the (probability desc, id asc) order of the tokens
// for which in(t, p) holds whose count (by_mass false) or fixed-point mass
// reaches `need`: a radix selection on the probability bits, 8 at a time,
// then a bisection on ids among equal probabilities when they straddle it.
template <typename In>
__device__ Cut SelectPrefix(const Probs& probs, int vocab, In in, bool by_mass,
                            uint64_t need, uint32_t* count_bins,
                            unsigned long long* mass_bins, int* si) {
  __shared__ uint32_t s_prefix;
  __shared__ unsigned long long s_above;
  __shared__ uint32_t s_equal_count;
  __shared__ unsigned long long s_equal_mass;
  uint32_t prefix = 0, mask = 0;
  unsigned long long above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < kBins; b += blockDim.x) {
      count_bins[b] = 0;
      mass_bins[b] = 0;
    }
    __syncthreads();
    for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
      const float p = probs.P(t);
      if (!in(t, p)) continue;
      const uint32_t key = __float_as_uint(p);
      if ((key & mask) != prefix) continue;
      const uint32_t bin = (key >> shift) & 0xFFu;
      atomicAdd(&count_bins[bin], 1u);
      if (by_mass) {
        atomicAdd(&mass_bins[bin], static_cast<unsigned long long>(Fixed(p)));
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int digit = -1, last = -1;
      for (int b = kBins - 1; b >= 0; --b) {
        const unsigned long long w = by_mass ? mass_bins[b] : count_bins[b];
        if (count_bins[b] == 0) continue;
        last = b;
        if (above + w >= need) {
          digit = b;
          break;
        }
        above += w;
      }
      if (digit < 0) {  // need is the whole set (rounding): keep it all
        digit = last < 0 ? 0 : last;
        if (last >= 0) {
          above -= by_mass ? mass_bins[last] : count_bins[last];
        }
      }
      s_prefix = prefix | (static_cast<uint32_t>(digit) << shift);
      s_above = above;
      s_equal_count = count_bins[digit];
      s_equal_mass = mass_bins[digit];
    }
    __syncthreads();
    prefix = s_prefix;
    above = s_above;
    mask |= 0xFFu << shift;
  }
  Cut cut;
  cut.key = prefix;
  // Tokens at exactly this probability all weigh the same: take the lowest
  // ids until the count or mass is reached.
  const uint64_t rest = need > above ? need - above : 1;
  const uint32_t equal = s_equal_count;
  uint64_t take = rest;
  if (by_mass && equal > 0) {
    const uint64_t each = s_equal_mass / equal;
    take = each == 0 ? equal : (rest + each - 1) / each;
  }
  if (take >= equal) return cut;  // every tie is inside
  int lo = 0, hi = vocab - 1;     // smallest id with `take` ties at or below
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    int n = 0;
    for (int t = threadIdx.x; t <= mid; t += blockDim.x) {
      const float p = probs.P(t);
      n += in(t, p) && __float_as_uint(p) == cut.key;
    }
    if (static_cast<uint64_t>(BlockSum(n, si)) >= take) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  cut.id = lo;
  return cut;
}

__global__ void __launch_bounds__(kThreads) SampleKernel(SampleArgs a) {
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ uint32_t count_bins[kBins];
  __shared__ unsigned long long mass_bins[kBins];
  __shared__ float s_raw;
  const int vocab = static_cast<int>(a.vocab);
  for (int r = blockIdx.x; r < a.num_rows; r += gridDim.x) {
    const SampleRowParams p = a.rows[r];
    float* l = a.logits + static_cast<int64_t>(p.row) * a.stride;

    // Raw log_softmax: its maximum (and argmax) and normaliser.
    float raw_max = -INFINITY;
    int raw_arg = INT_MAX;
    for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
      const float v = Clean(l[t]);
      if (Before(v, t, raw_max, raw_arg)) {
        raw_max = v;
        raw_arg = t;
      }
    }
    BlockArgMax(raw_max, raw_arg, sv, si);
    float sum = 0.0f;
    for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
      sum += expf(Clean(l[t]) - raw_max);
    }
    const float log_z = raw_max + logf(BlockSum(sum, sv));
    const float raw0 = Clean(l[0]);  // before any edit

    // The top-N alternatives, one argmax each below the previous one.
    float prev_v = INFINITY;
    int prev_i = -1;
    for (int n = 0; n < p.top_n; ++n) {
      float bv = -INFINITY;
      int bi = INT_MAX;
      for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
        const float v = Clean(l[t]);
        if (Before(prev_v, prev_i, v, t) && Before(v, t, bv, bi)) {
          bv = v;
          bi = t;
        }
      }
      BlockArgMax(bv, bi, sv, si);
      if (threadIdx.x == 0) {
        a.top_ids[p.top_begin + n] = bi < vocab ? bi : -1;
        a.top_logprobs[p.top_begin + n] = bv - log_z;
      }
      prev_v = bv;
      prev_i = bi;
    }

    if (p.target >= 0) {
      if (threadIdx.x == 0) {
        a.out[r].token = p.target;
        a.out[r].logprob =
            p.target < vocab ? Clean(l[p.target]) - log_z : -INFINITY;
      }
      continue;
    }

    // The raw value of every token a list edits, before any edit.
    const int lists_begin = p.allowed_begin;
    const int lists_end = p.counts_begin + p.counts_count;
    for (int i = lists_begin + threadIdx.x; i < lists_end; i += blockDim.x) {
      const int t = a.ids[i];
      a.saved[i] = t >= 0 && t < vocab ? Clean(l[t]) : -INFINITY;
    }
    __syncthreads();
    auto each = [&](int begin, int count, auto&& fn) {
      for (int i = begin + threadIdx.x; i < begin + count; i += blockDim.x) {
        const int t = a.ids[i];
        if (t >= 0 && t < vocab) fn(i, t);
      }
      __syncthreads();
    };
    if (p.allowed_count > 0) {
      for (int t = threadIdx.x; t < vocab; t += blockDim.x) l[t] = -INFINITY;
      __syncthreads();
      each(p.allowed_begin, p.allowed_count,
           [&](int i, int t) { l[t] = a.saved[i]; });
    }
    if (p.banned_count > 0) {
      // Read every banned value before writing any (a token may repeat).
      each(p.banned_begin, p.banned_count,
           [&](int i, int t) { a.saved[i] = l[t]; });
      each(p.banned_begin, p.banned_count,
           [&](int, int t) { l[t] = -INFINITY; });
      int finite = 0;
      for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
        finite += l[t] != -INFINITY;
      }
      if (BlockSum(finite, si) == 0) {  // nothing left: lift the bans
        each(p.banned_begin, p.banned_count,
             [&](int i, int t) { l[t] = a.saved[i]; });
      }
    }
    if (p.bias_count > 0) {
      if (threadIdx.x == 0) {  // in order: an id may repeat
        for (int i = p.bias_begin; i < p.bias_begin + p.bias_count; ++i) {
          const int t = a.ids[i];
          if (t >= 0 && t < vocab) l[t] += a.values[i];
        }
      }
      __syncthreads();
    }
    if (p.knobs.repetition_penalty != 1.0f) {
      each(p.seen_begin, p.seen_count, [&](int, int t) {
        l[t] = l[t] > 0 ? l[t] / p.knobs.repetition_penalty
                        : l[t] * p.knobs.repetition_penalty;
      });
    }
    if (p.knobs.frequency_penalty != 0.0f || p.knobs.presence_penalty != 0.0f) {
      each(p.counts_begin, p.counts_count, [&](int i, int t) {
        l[t] -=
            p.knobs.frequency_penalty * a.values[i] + p.knobs.presence_penalty;
      });
    }

    float best_v = -INFINITY;
    int best = INT_MAX;
    for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
      if (Before(l[t], t, best_v, best)) {
        best_v = l[t];
        best = t;
      }
    }
    BlockArgMax(best_v, best, sv, si);
    const bool greedy = p.knobs.temperature < kGreedyTemperature;
    int chosen = best;
    bool from_raw = false;
    float chosen_raw = 0.0f;
    if (best_v == -INFINITY || best >= vocab) {
      // Nothing possible (non-finite logits): as the host sampler, token 0
      // when greedy, else the raw argmax.
      chosen = greedy ? 0 : raw_arg;
      chosen_raw = greedy ? raw0 : raw_max;
      from_raw = true;
    } else if (!greedy) {
      const Probs probs{l, best_v, 1.0f / p.knobs.temperature, p.knobs.min_p};
      int kept = 0;
      for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
        kept += probs.Kept(probs.P(t));
      }
      kept = BlockSum(kept, si);
      Cut top_k;
      if (p.knobs.top_k > 0 && p.knobs.top_k < kept) {
        top_k = SelectPrefix(
            probs, vocab, [&](int, float q) { return probs.Kept(q); },
            /*by_mass=*/false, static_cast<uint64_t>(p.knobs.top_k), count_bins,
            mass_bins, si);
      }
      auto in_top_k = [&](int t, float q) {
        return probs.Kept(q) && top_k.Inside(__float_as_uint(q), t);
      };
      Cut top_p;
      if (p.knobs.top_p < 1.0f) {
        // The total mass of the candidates, in the same fixed point.
        unsigned long long mine = 0;
        for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
          const float q = probs.P(t);
          if (in_top_k(t, q)) mine += Fixed(q);
        }
        __shared__ unsigned long long s_total;
        if (threadIdx.x == 0) s_total = 0;
        __syncthreads();
        atomicAdd(&s_total, mine);
        __syncthreads();
        const double total = static_cast<double>(s_total);
        __syncthreads();
        const uint64_t need = static_cast<uint64_t>(
            ceil(static_cast<double>(p.knobs.top_p) * total));
        top_p = SelectPrefix(probs, vocab, in_top_k, /*by_mass=*/true,
                             need > 0 ? need : 1, count_bins, mass_bins, si);
      }
      // Gumbel-max: argmax of log p + G is a draw from p.
      float draw_v = -INFINITY;
      int draw_t = INT_MAX;
      for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
        const float q = probs.P(t);
        if (!in_top_k(t, q) || !top_p.Inside(__float_as_uint(q), t)) continue;
        const float v =
            (l[t] - best_v) * probs.inv_t + Gumbel(p.seed, p.draw, t);
        if (Before(v, t, draw_v, draw_t)) {
          draw_v = v;
          draw_t = t;
        }
      }
      BlockArgMax(draw_v, draw_t, sv, si);
      chosen = draw_t < vocab ? draw_t : best;
    }

    // The chosen token's raw logit: saved if a list edited it.
    if (threadIdx.x == 0) s_raw = from_raw ? chosen_raw : l[chosen];
    __syncthreads();
    if (!from_raw) {
      for (int i = lists_begin + threadIdx.x; i < lists_end; i += blockDim.x) {
        const bool pristine =
            i < p.banned_begin || i >= p.banned_begin + p.banned_count;
        if (pristine && a.ids[i] == chosen) s_raw = a.saved[i];
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      a.out[r].token = chosen;
      a.out[r].logprob = s_raw - log_z;
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t LaunchSample(const SampleArgs& args, cudaStream_t stream) {
  if (args.num_rows <= 0) return cudaSuccess;
  const unsigned blocks = args.num_rows < 65536 ? args.num_rows : 65536;
  SampleKernel<<<blocks, kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace alibi::kernels::cuda
