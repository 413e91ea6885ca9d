#include "kernels/host/thread_pool.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace alibi::kernels::host {
namespace {

TEST(ThreadPoolTest, VisitsEveryIndexOnceAcrossManyJobs) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.num_threads(), 3);
  for (int job = 0; job < 200; ++job) {
    const int64_t n = 1 + job * 7;
    std::vector<std::atomic<int>> hits(n);
    std::atomic<int> bad_thread{0};
    pool.ParallelFor(n, 1 + job % 5, [&](int64_t b, int64_t e, int thread) {
      if (thread < 0 || thread >= 3) bad_thread.fetch_add(1);
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << job;
    EXPECT_EQ(bad_thread.load(), 0);
  }
}

// More threads than this machine has cores, jobs back to back: workers often
// arrive after the caller has done a job alone, or while it writes the next.
// Every index is visited once, and no two pieces run at once on one thread id
// (the backends' per-thread scratch).
TEST(ThreadPoolTest, ShortJobsOnMoreThreadsThanCores) {
  constexpr int kThreads = 8;
  ThreadPool pool(kThreads);
  std::atomic<bool> in_use[kThreads] = {};
  std::atomic<int> shared_id{0};
  for (int job = 0; job < 5000; ++job) {
    const int64_t n = 2 + job % 61;
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, 1 + job % 3, [&](int64_t b, int64_t e, int thread) {
      if (in_use[thread].exchange(true)) shared_id.fetch_add(1);
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      in_use[thread].store(false);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << job;
  }
  EXPECT_EQ(shared_id.load(), 0);
}

// Workers that went to sleep between jobs wake for the next one, and the
// pool shuts down with its workers asleep.
TEST(ThreadPoolTest, SleepingWorkersWakeAndShutDown) {
  ThreadPool pool(3, std::chrono::microseconds(50));
  for (int job = 0; job < 5; ++job) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::atomic<int64_t> total{0};
    std::atomic<int> seen_threads{0};
    pool.ParallelFor(3000, 1, [&](int64_t b, int64_t e, int thread) {
      total.fetch_add(e - b);
      seen_threads.fetch_or(1 << thread);
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    });
    EXPECT_EQ(total.load(), 3000);
    // 60 ms of pieces: the sleeping workers woke and took some.
    EXPECT_EQ(seen_threads.load(), 0b111) << job;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

TEST(ThreadPoolTest, SingleThreadRunsInline) {
  ThreadPool pool(1);
  int64_t total = 0;
  pool.ParallelFor(10, 3, [&](int64_t b, int64_t e, int thread) {
    EXPECT_EQ(thread, 0);
    total += e - b;
  });
  EXPECT_EQ(total, 10);
  pool.ParallelFor(0, 1, [&](int64_t, int64_t, int) { FAIL(); });
}

}  // namespace
}  // namespace alibi::kernels::host
