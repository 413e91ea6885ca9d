#include "client/bench/arrivals.h"

#include <cmath>
#include <limits>

namespace alibi::client::bench {

double Rng::Uniform() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

int64_t Rng::UniformInt(int64_t lo, int64_t hi) {
  const uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  if (range == std::numeric_limits<uint64_t>::max()) {
    return static_cast<int64_t>(engine_());
  }
  const uint64_t span = range + 1;
  // Reject the top partial bucket so every value is equally likely.
  const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                         std::numeric_limits<uint64_t>::max() % span;
  uint64_t x;
  do {
    x = engine_();
  } while (x >= limit);
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + x % span);
}

double Rng::Exponential(double rate) {
  // 1 - U is in (0, 1]: the log is finite.
  return -std::log1p(-Uniform()) / rate;
}

std::vector<double> PoissonArrivalTimes(int64_t n, double rate, uint64_t seed) {
  std::vector<double> times;
  if (n <= 0) return times;
  times.reserve(static_cast<size_t>(n));
  times.push_back(0.0);
  if (std::isinf(rate)) {
    times.resize(static_cast<size_t>(n), 0.0);
    return times;
  }
  Rng rng(seed);
  double t = 0;
  for (int64_t i = 1; i < n; ++i) {
    t += rng.Exponential(rate);
    times.push_back(t);
  }
  return times;
}

}  // namespace alibi::client::bench
