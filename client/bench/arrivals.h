// Random numbers and request arrival times for alibi-bench.
//
// Open-loop Poisson arrivals as in vLLM's benchmark_serving: the first
// request at t = 0, then exponentially distributed gaps with mean 1 / rate;
// rate = infinity sends every request at t = 0.
//
// Draws use std::mt19937_64 (whose output the C++ standard fixes) and
// hand-written transforms (the standard library's distributions differ
// between implementations), so a seed gives the same workload everywhere.
//
// Thread-safety: an Rng belongs to one thread; functions are pure.
#ifndef ALIBI_CLIENT_BENCH_ARRIVALS_H_
#define ALIBI_CLIENT_BENCH_ARRIVALS_H_

#include <cstdint>
#include <random>
#include <vector>

namespace alibi::client::bench {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t Next() { return engine_(); }
  // Uniform in [0, 1), 53 random bits.
  double Uniform();
  // Uniform integer in [lo, hi] (lo <= hi), without modulo bias.
  int64_t UniformInt(int64_t lo, int64_t hi);
  // Exponential with mean 1 / rate (rate > 0).
  double Exponential(double rate);

 private:
  std::mt19937_64 engine_;
};

// The seed of the arrival process of a run with --seed `seed`: a stream of
// random numbers separate from the workload's.
inline uint64_t ArrivalSeed(uint64_t seed) {
  return seed ^ 0x9e3779b97f4a7c15ULL;
}

// Send times in seconds of `n` requests (non-decreasing, first 0).
std::vector<double> PoissonArrivalTimes(int64_t n, double rate, uint64_t seed);

}  // namespace alibi::client::bench

#endif  // ALIBI_CLIENT_BENCH_ARRIVALS_H_
