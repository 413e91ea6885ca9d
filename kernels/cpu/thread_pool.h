// A fixed pool of worker threads for the CPU backend's data-parallel loops.
// Idle workers block on a condition variable (no spinning), so the pool
// behaves on a busy machine where OpenMP's spin-waiting would burn the cores
// the rest of the server needs.
//
// Thread-safety: ParallelFor may be called from one thread at a time (the
// backend's owner); `fn` runs concurrently on the pool's threads and the
// caller's.
#ifndef ALIBI_KERNELS_CPU_THREAD_POOL_H_
#define ALIBI_KERNELS_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace alibi::kernels::cpu {

class ThreadPool {
 public:
  // `num_threads` >= 1 counts the calling thread: num_threads - 1 workers.
  explicit ThreadPool(int num_threads);
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

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ = 0;  // bumped per ParallelFor
  int busy_workers_ = 0;
  bool stop_ = false;
  // The current job.
  const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  std::atomic<int64_t> next_{0};
};

}  // namespace alibi::kernels::cpu

#endif  // ALIBI_KERNELS_CPU_THREAD_POOL_H_
