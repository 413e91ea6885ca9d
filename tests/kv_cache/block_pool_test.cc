#include "server/kv_cache/block_pool.h"

#include <cstdint>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alibi {
namespace {

using ::testing::ElementsAre;

constexpr uint64_t kRoot = BlockPool::kRootNode;

std::vector<int32_t> Tokens(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

std::vector<int32_t> Take(BlockPool& pool, int32_t n) {
  std::vector<int32_t> out;
  pool.Allocate(n, &out);
  return out;
}

TEST(BlockPoolTest, StartsFreeAndAllocatesInIdOrder) {
  BlockPool pool(4, 2, true);
  EXPECT_EQ(pool.num_free_blocks(), 4);
  EXPECT_EQ(pool.num_used_blocks(), 0);
  EXPECT_THAT(Take(pool, 3), ElementsAre(0, 1, 2));
  EXPECT_EQ(pool.num_free_blocks(), 1);
  EXPECT_EQ(pool.num_used_blocks(), 3);
  for (int32_t b : {0, 1, 2}) EXPECT_EQ(pool.ref_count(b), 1);
  EXPECT_EQ(pool.ref_count(3), 0);
  EXPECT_TRUE(pool.Validate().ok()) << pool.Validate();
}

TEST(BlockPoolTest, RefCountsAndRelease) {
  BlockPool pool(3, 2, false);
  std::vector<int32_t> b = Take(pool, 1);
  pool.Ref(b[0]);
  EXPECT_EQ(pool.ref_count(b[0]), 2);
  pool.Release(b[0]);
  EXPECT_EQ(pool.ref_count(b[0]), 1);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  pool.Release(b[0]);
  EXPECT_EQ(pool.ref_count(b[0]), 0);
  EXPECT_EQ(pool.num_free_blocks(), 3);
  EXPECT_TRUE(pool.Validate().ok()) << pool.Validate();
}

TEST(BlockPoolTest, ReleasedEmptyBlockIsReusedFirst) {
  BlockPool pool(4, 2, false);
  std::vector<int32_t> b = Take(pool, 3);  // 0 1 2; 3 still free
  pool.Release(2);
  EXPECT_THAT(Take(pool, 1), ElementsAre(2));
  EXPECT_THAT(Take(pool, 1), ElementsAre(3));
}

TEST(BlockPoolTest, RegisteredBlocksAreEvictedLeastRecentlyReleasedFirst) {
  BlockPool pool(5, 2, true);
  std::vector<int32_t> b = Take(pool, 3);  // 0 1 2 held; 3 4 free, empty
  uint64_t n0 = pool.Register(b[0], kRoot, Tokens(0, 2));
  uint64_t n1 = pool.Register(b[1], n0, Tokens(2, 2));
  uint64_t n2 = pool.Register(b[2], kRoot, Tokens(10, 2));
  EXPECT_NE(n0, kRoot);
  EXPECT_NE(n0, n1);
  pool.Release(b[1]);
  pool.Release(b[2]);
  pool.Release(b[0]);
  EXPECT_EQ(pool.num_free_blocks(), 5);
  EXPECT_EQ(pool.num_cached_free_blocks(), 3);
  EXPECT_TRUE(pool.Validate().ok()) << pool.Validate();

  // Empty blocks go first, then the LRU registered one (b[1]).
  EXPECT_THAT(Take(pool, 2), ElementsAre(3, 4));
  EXPECT_EQ(pool.num_evictions(), 0u);
  EXPECT_THAT(Take(pool, 1), ElementsAre(b[1]));
  EXPECT_EQ(pool.num_evictions(), 1u);
  EXPECT_FALSE(pool.is_registered(b[1]));
  EXPECT_EQ(pool.Lookup(n0, Tokens(2, 2)), -1);
  EXPECT_EQ(pool.Lookup(kRoot, Tokens(10, 2)), b[2]);
  EXPECT_EQ(pool.node(b[2]), n2);
  EXPECT_EQ(pool.num_cached_free_blocks(), 2);
  EXPECT_TRUE(pool.Validate().ok()) << pool.Validate();
}

TEST(BlockPoolTest, RefOfCachedFreeBlockTakesItOffTheFreeList) {
  BlockPool pool(3, 2, true);
  std::vector<int32_t> b = Take(pool, 1);
  pool.Register(b[0], kRoot, Tokens(0, 2));
  pool.Release(b[0]);
  EXPECT_EQ(pool.num_cached_free_blocks(), 1);
  pool.Ref(b[0]);
  EXPECT_EQ(pool.ref_count(b[0]), 1);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  EXPECT_EQ(pool.num_cached_free_blocks(), 0);
  EXPECT_TRUE(pool.is_registered(b[0]));  // still a cache entry while held
  // The two other blocks are allocated; the held one is never evicted.
  EXPECT_THAT(Take(pool, 2), ElementsAre(1, 2));
  EXPECT_EQ(pool.Lookup(kRoot, Tokens(0, 2)), b[0]);
  EXPECT_TRUE(pool.Validate().ok()) << pool.Validate();
}

TEST(BlockPoolTest, LookupIsExactOnParentAndTokens) {
  BlockPool pool(4, 3, true);
  std::vector<int32_t> b = Take(pool, 2);
  uint64_t n0 = pool.Register(b[0], kRoot, {1, 2, 3});
  pool.Register(b[1], n0, {4, 5, 6});
  EXPECT_EQ(pool.Lookup(kRoot, {1, 2, 3}), b[0]);
  EXPECT_EQ(pool.Lookup(n0, {4, 5, 6}), b[1]);
  EXPECT_EQ(pool.Lookup(kRoot, {4, 5, 6}), -1);  // same tokens, other prefix
  EXPECT_EQ(pool.Lookup(n0, {4, 5, 7}), -1);
  EXPECT_EQ(pool.Lookup(n0 + 100, {4, 5, 6}), -1);
}

uint64_t ConstantKey(uint64_t, absl::Span<const int32_t>) { return 42; }

TEST(BlockPoolTest, KeyCollisionsNeverGiveAWrongHit) {
  BlockPool pool(4, 2, true, &ConstantKey);
  std::vector<int32_t> b = Take(pool, 3);
  uint64_t n0 = pool.Register(b[0], kRoot, {1, 2});
  EXPECT_EQ(pool.Lookup(kRoot, {1, 2}), b[0]);
  // Same key, other tokens or other prefix: misses.
  EXPECT_EQ(pool.Lookup(kRoot, {1, 3}), -1);
  EXPECT_EQ(pool.Lookup(n0, {1, 2}), -1);
  // Colliding content stays unregistered, under a node no lookup reaches.
  uint64_t n1 = pool.Register(b[1], kRoot, {3, 4});
  EXPECT_NE(n1, n0);
  EXPECT_FALSE(pool.is_registered(b[1]));
  EXPECT_EQ(pool.Lookup(kRoot, {3, 4}), -1);
  uint64_t n2 = pool.Register(b[2], n0, {1, 2});
  EXPECT_NE(n2, n0);
  EXPECT_NE(n2, n1);
  EXPECT_FALSE(pool.is_registered(b[2]));
  EXPECT_EQ(pool.Lookup(n0, {1, 2}), -1);
  EXPECT_TRUE(pool.Validate().ok()) << pool.Validate();
}

TEST(BlockPoolTest, DuplicateContentIsCachedOnce) {
  BlockPool pool(4, 2, true);
  std::vector<int32_t> b = Take(pool, 2);
  uint64_t first = pool.Register(b[0], kRoot, {7, 8});
  uint64_t second = pool.Register(b[1], kRoot, {7, 8});
  EXPECT_EQ(second, first);
  EXPECT_TRUE(pool.is_registered(b[0]));
  EXPECT_FALSE(pool.is_registered(b[1]));
  // The duplicate is released as an empty block: reused before the cache.
  pool.Release(b[1]);
  pool.Release(b[0]);
  EXPECT_EQ(pool.num_cached_free_blocks(), 1);
  EXPECT_THAT(Take(pool, 1), ElementsAre(b[1]));
  EXPECT_TRUE(pool.Validate().ok()) << pool.Validate();
}

TEST(BlockPoolTest, NodeIdsAreNeverReused) {
  BlockPool pool(1, 1, true);
  uint64_t last = kRoot;
  for (int i = 0; i < 5; ++i) {
    std::vector<int32_t> b = Take(pool, 1);  // evicts the previous content
    uint64_t n = pool.Register(b[0], kRoot, {i});
    EXPECT_GT(n, last);
    last = n;
    pool.Release(b[0]);
  }
  EXPECT_EQ(pool.num_evictions(), 4u);
}

TEST(BlockPoolDeathTest, ReleasingAFreeBlockIsABug) {
  BlockPool pool(2, 2, false);
  EXPECT_DEATH(pool.Release(0), "double release");
}

TEST(BlockPoolDeathTest, AllocatingMoreThanFreeIsABug) {
  BlockPool pool(2, 2, false);
  std::vector<int32_t> out;
  EXPECT_DEATH(pool.Allocate(3, &out), "Check failed");
}

}  // namespace
}  // namespace alibi
