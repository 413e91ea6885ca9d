#include "kernels/host/thread_pool.h"

#include <algorithm>

namespace alibi::kernels::host {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Waits for done() on the calling thread: spins a while, then yields the core
// between polls (a thread it waits for may need that core to finish).
template <typename Done>
void SpinThenYield(const Done& done) {
  for (int polls = 0; !done(); ++polls) {
    if (polls < 4096) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
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
  }
  work_cv_.notify_all();
  for (std::thread& w : workers_) w.join();
}

void ThreadPool::RunPieces(int thread) {
  while (true) {
    const int64_t begin = next_.fetch_add(grain_);
    if (begin >= n_) return;
    (*fn_)(begin, std::min(n_, begin + grain_), thread);
    done_.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::WorkerLoop(int thread) {
  uint64_t seen = 0;
  // A job published after `seen` (even: its fields are written).
  auto new_job = [&](uint64_t g) { return g % 2 == 0 && g != seen; };
  while (true) {
    // Spin a while for the next job, then sleep.
    const auto spin_until = std::chrono::steady_clock::now() + spin_;
    int polls = 0;
    uint64_t g;
    while (!new_job(g = generation_.load(std::memory_order_acquire)) &&
           !stop_.load(std::memory_order_relaxed)) {
      CpuRelax();
      if (++polls % 64 == 0 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(mu_);
        sleeping_.fetch_add(1);
        work_cv_.wait(
            lock, [&] { return stop_.load() || new_job(generation_.load()); });
        sleeping_.fetch_sub(1);
        polls = 0;
      }
    }
    if (stop_.load()) return;
    // Enter the job, then check that the caller has not begun to write the
    // next one meanwhile (it marks the generation odd before it waits for
    // active_ to drop to zero: one of the two sees the other).
    active_.fetch_add(1);
    if (generation_.load() == g) {
      seen = g;
      RunPieces(thread);
    }
    active_.fetch_sub(1, std::memory_order_release);
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
  // Only this thread writes the generation: odd while the job's fields are
  // written, after any worker still inside the last job has left it (one
  // that was descheduled there and found nothing left to do).
  const uint64_t g = generation_.load(std::memory_order_relaxed);
  generation_.store(g + 1);
  SpinThenYield([&] { return active_.load() == 0; });
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  const int64_t pieces = (n + grain - 1) / grain;
  next_.store(0, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  {
    // A worker going to sleep checks the generation under mu_: it either
    // sees this bump or is counted in sleeping_ by the time we look.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.store(g + 2, std::memory_order_release);
  }
  if (sleeping_.load() > 0) work_cv_.notify_all();
  RunPieces(0);
  // Done when every piece is: a worker that has not joined yet (asleep, or
  // descheduled by another process on its core) is not waited for.
  SpinThenYield(
      [&] { return done_.load(std::memory_order_acquire) == pieces; });
}

}  // namespace alibi::kernels::host
