// Monotonic time for latency measurements. All engine and RPC timings use
// this clock so that they can be compared with each other.
//
// Thread-safety: free functions; safe from any thread.
#ifndef ALIBI_COMMON_CLOCK_H_
#define ALIBI_COMMON_CLOCK_H_

#include <chrono>

namespace alibi {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

inline TimePoint Now() { return Clock::now(); }

// Seconds between two time points (b - a), as a double.
inline double SecondsBetween(TimePoint a, TimePoint b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace alibi

#endif  // ALIBI_COMMON_CLOCK_H_
