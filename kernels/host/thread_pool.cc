#include "kernels/host/thread_pool.h"

#include <algorithm>

namespace alibi::kernels::host {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int num_threads, std::chrono::microseconds spin)
    : spin_(spin) {
  for (int t = 1; t < std::max(num_threads, 1); ++t) {
    workers_.emplace_back([this, t] { WorkerLoop(t); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  work_cv_.notify_all();
  for (std::thread& w : workers_) w.join();
}

void ThreadPool::RunPieces(int thread) {
  while (true) {
    const int64_t begin = next_.fetch_add(grain_);
    if (begin >= n_) return;
    (*fn_)(begin, std::min(n_, begin + grain_), thread);
  }
}

void ThreadPool::WorkerLoop(int thread) {
  uint64_t seen = 0;
  while (true) {
    // Spin a while for the next job, then sleep.
    const auto spin_until = std::chrono::steady_clock::now() + spin_;
    int polls = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      CpuRelax();
      if (++polls % 64 == 0 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(mu_);
        sleeping_.fetch_add(1);
        work_cv_.wait(lock, [&] { return generation_.load() != seen; });
        sleeping_.fetch_sub(1);
        break;
      }
    }
    if (stop_.load()) return;
    // busy_ was raised for this worker by ParallelFor before the generation
    // moved, so the caller waits for it even if it starts late.
    seen = generation_.load(std::memory_order_acquire);
    RunPieces(thread);
    busy_.fetch_sub(1, std::memory_order_release);
  }
}

void ThreadPool::ParallelFor(
    int64_t n, int64_t grain,
    const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (workers_.empty() || n <= grain) {
    fn(0, n, 0);
    return;
  }
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  next_.store(0, std::memory_order_relaxed);
  busy_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    // A worker going to sleep checks the generation under mu_: it either
    // sees this bump or is counted in sleeping_ by the time we look.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  if (sleeping_.load() > 0) work_cv_.notify_all();
  RunPieces(0);
  // Every worker takes part in every job (possibly finding nothing left),
  // so the job's state stays put until all of them have left it.
  while (busy_.load(std::memory_order_acquire) != 0) CpuRelax();
  fn_ = nullptr;
}

}  // namespace alibi::kernels::host
