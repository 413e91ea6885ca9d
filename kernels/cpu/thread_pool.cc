#include "kernels/cpu/thread_pool.h"

#include <algorithm>

namespace alibi::kernels::cpu {

ThreadPool::ThreadPool(int num_threads) {
  for (int t = 1; t < std::max(num_threads, 1); ++t) {
    workers_.emplace_back([this, t] { WorkerLoop(t); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
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
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++busy_workers_;
    }
    RunPieces(thread);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --busy_workers_;
    }
    done_cv_.notify_one();
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
  {
    std::unique_lock<std::mutex> lock(mu_);
    // A worker woken late for the previous job may still be leaving it.
    done_cv_.wait(lock, [&] { return busy_workers_ == 0; });
    fn_ = &fn;
    n_ = n;
    grain_ = grain;
    next_.store(0);
    ++generation_;
  }
  work_cv_.notify_all();
  RunPieces(0);
  // Wait until no worker is still inside this job. A worker that wakes late
  // finds no pieces left and leaves at once.
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return busy_workers_ == 0; });
  fn_ = nullptr;
}

}  // namespace alibi::kernels::cpu
