// A fixed pool of threads running posted tasks in order of submission (the
// frontend's output threads, the HTTP core's workers).
//
// Thread-safety: Post and Stop may be called from any thread, but not from
// one of the pool's own tasks for Stop.
#ifndef ALIBI_COMMON_TASK_POOL_H_
#define ALIBI_COMMON_TASK_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace alibi {

class TaskPool {
 public:
  // At least one thread.
  explicit TaskPool(int num_threads);
  // Stop().
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Queues `task`; after Stop() it is dropped.
  void Post(std::function<void()> task);
  // Runs what is queued, then joins the threads. Idempotent.
  void Stop();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  bool stopped_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace alibi

#endif  // ALIBI_COMMON_TASK_POOL_H_
