#include "kernels/host/thread_pool.h"

#include <atomic>
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
