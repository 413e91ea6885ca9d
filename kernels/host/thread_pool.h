// A fixed pool of worker threads for the CPU backends' data-parallel loops.
// After a job a worker spins for a short while (`spin`, default 200 us)
// waiting for the next one, then blocks on a condition variable: the ops of
// one forward pass follow each other within microseconds, so they are handed
// out without a wake-up, while an idle server burns no core (OpenMP-style
// long spinning would starve the rest of the server on a small machine).
// The caller waits for the job's pieces, not for every worker to check in: a
// worker descheduled by another process on its core (or still asleep) does
// not hold the job up, and the caller does the pieces it leaves.
//
// Thread-safety: ParallelFor may be called from one thread at a time (the
// backend's owner); `fn` runs concurrently on the pool's threads and the
// caller's.
#ifndef ALIBI_KERNELS_HOST_THREAD_POOL_H_
#define ALIBI_KERNELS_HOST_THREAD_POOL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace alibi::kernels::host {

class ThreadPool {
 public:
  // `num_threads` >= 1 counts the calling thread: num_threads - 1 workers.
  explicit ThreadPool(int num_threads, std::chrono::microseconds spin =
                                           std::chrono::microseconds(200));
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end, thread) over [0, n) in pieces of at most `grain`
  // indices, claimed dynamically; `thread` in [0, num_threads()) identifies
  // the executing thread (for per-thread scratch). Returns when all pieces
  // are done. Runs inline when the range is one piece.
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void WorkerLoop(int thread);
  void RunPieces(int thread);

  const std::chrono::microseconds spin_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  // Bumped by two per job, odd while the caller writes the job's fields;
  // workers watch it.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleeping_{0};  // workers blocked on work_cv_
  std::atomic<int> active_{0};    // workers inside a job
  std::atomic<bool> stop_{false};
  // The current job.
  const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  std::atomic<int64_t> next_{0};  // first index not yet claimed
  std::atomic<int64_t> done_{0};  // pieces finished
};

}  // namespace alibi::kernels::host

#endif  // ALIBI_KERNELS_HOST_THREAD_POOL_H_
