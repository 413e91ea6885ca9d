// The load driver alibi-bench's backends share: requests start at their
// arrival times (open loop), with a concurrency cap waiting for a free slot
// (a closed loop when every arrival is at 0); each request's outcome is a
// RequestResult on the benchmark's clock; an optional progress bar.
//
// Thread-safety: LoadState is thread-safe (requests finish on any thread);
// DriveLoad blocks its caller until every request finished.
#ifndef ALIBI_CLIENT_BENCH_LOAD_H_
#define ALIBI_CLIENT_BENCH_LOAD_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "absl/types/span.h"
#include "client/bench/runner.h"
#include "client/bench/stats.h"

namespace alibi::client::bench {

using Clock = std::chrono::steady_clock;

// What every request shares: the clock origin and the completion count.
class LoadState {
 public:
  explicit LoadState(size_t n) : results_(n) {}

  void Start() { t0_ = Clock::now(); }
  Clock::time_point t0() const { return t0_; }
  double Now() const {
    return std::chrono::duration<double>(Clock::now() - t0_).count();
  }

  // Blocks until fewer than `cap` requests are in flight (cap 0: no cap),
  // then counts one more.
  void Acquire(int64_t cap) {
    std::unique_lock<std::mutex> lock(mu_);
    if (cap > 0) cv_.wait(lock, [&] { return in_flight_ < cap; });
    ++in_flight_;
  }

  void Finish(size_t index, RequestResult result) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!result.ok) ++failed_;
    results_[index] = std::move(result);
    --in_flight_;
    ++done_;
    cv_.notify_all();
  }

  // Waits until `n` requests finished or `timeout` passed; true when done.
  bool WaitDone(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_ >= n; });
  }

  struct Counts {
    size_t done, failed;
    int64_t in_flight;
  };
  Counts counts() {
    std::lock_guard<std::mutex> lock(mu_);
    return {done_, failed_, in_flight_};
  }

  std::vector<RequestResult> TakeResults() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::move(results_);
  }

 private:
  Clock::time_point t0_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestResult> results_;
  int64_t in_flight_ = 0;
  size_t done_ = 0;
  size_t failed_ = 0;
};

// Runs `n` requests: request i starts at arrival_s[i] seconds after the
// start (and once fewer than options.concurrency are in flight) by calling
// start(state, i), which must return at once and call state.Finish(i, ...)
// exactly once, from any thread, when the request ends.
RunResult DriveLoad(size_t n, absl::Span<const double> arrival_s,
                    const RunOptions& options,
                    const std::function<void(LoadState&, size_t)>& start);

}  // namespace alibi::client::bench

#endif  // ALIBI_CLIENT_BENCH_LOAD_H_
