#include "client/bench/load.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>

namespace alibi::client::bench {
namespace {

void DrawProgress(size_t n, const LoadState::Counts& c, double elapsed_s,
                  bool final_line) {
  constexpr int kWidth = 30;
  const int filled = n == 0 ? kWidth : static_cast<int>(kWidth * c.done / n);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  std::fprintf(
      stderr, "\r[%s] %zu/%zu done, %zu failed, %lld in flight, %.1f s%s",
      bar.c_str(), c.done, n, c.failed, static_cast<long long>(c.in_flight),
      elapsed_s, final_line ? "\n" : "  ");
  std::fflush(stderr);
}

}  // namespace

RunResult DriveLoad(size_t n, absl::Span<const double> arrival_s,
                    const RunOptions& options,
                    const std::function<void(LoadState&, size_t)>& start) {
  LoadState state(n);
  state.Start();

  std::thread progress;
  if (options.progress) {
    progress = std::thread([&state, n] {
      while (!state.WaitDone(n, std::chrono::milliseconds(200))) {
        DrawProgress(n, state.counts(), state.Now(), false);
      }
      DrawProgress(n, state.counts(), state.Now(), true);
    });
  }
  for (size_t i = 0; i < n; ++i) {
    const double at = i < arrival_s.size() ? arrival_s[i] : 0.0;
    if (at > 0) {
      std::this_thread::sleep_until(state.t0() +
                                    std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(at)));
    }
    state.Acquire(options.concurrency);
    start(state, i);
  }
  while (!state.WaitDone(n, std::chrono::seconds(1))) {
  }
  if (progress.joinable()) progress.join();

  RunResult run;
  run.results = state.TakeResults();
  for (const RequestResult& r : run.results) {
    run.duration_s = std::max(run.duration_s, r.end_s);
  }
  return run;
}

}  // namespace alibi::client::bench
