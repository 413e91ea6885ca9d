#include "server/kv_cache/kv_cache_manager.h"

#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alibi {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

std::vector<int32_t> Tokens(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

std::vector<int32_t> Concat(std::vector<int32_t> a,
                            const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::unique_ptr<KvCacheManager> Make(int32_t num_blocks, int32_t block_size,
                                     bool caching = true) {
  auto kv =
      KvCacheManager::Create(KvCacheOptions{.num_blocks = num_blocks,
                                            .block_size = block_size,
                                            .enable_prefix_caching = caching});
  EXPECT_TRUE(kv.ok()) << kv.status();
  return *std::move(kv);
}

// Allocates and "computes" all of `tokens` for a fresh sequence, taking a
// prefix hit first.
void ComputeAll(KvCacheManager& kv, SequenceBlocks* seq,
                const std::vector<int32_t>& tokens) {
  PrefixMatch m = kv.MatchPrefix(tokens);
  ASSERT_TRUE(kv.Allocate(seq, static_cast<int32_t>(tokens.size()), &m));
  kv.CacheComputedBlocks(seq, tokens, static_cast<int32_t>(tokens.size()));
}

TEST(KvCacheManagerTest, CreateRejectsBadOptions) {
  EXPECT_EQ(KvCacheManager::Create({.num_blocks = 0, .block_size = 16})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCacheManager::Create({.num_blocks = 8, .block_size = 0})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KvCacheManagerTest, AllocateGrowsTheTableBlockByBlock) {
  auto kv = Make(8, 4);
  SequenceBlocks seq;
  ASSERT_TRUE(kv->Allocate(&seq, 5));
  EXPECT_THAT(seq.block_ids(), ElementsAre(0, 1));
  ASSERT_TRUE(kv->Allocate(&seq, 8));  // still two blocks
  EXPECT_EQ(seq.num_blocks(), 2);
  ASSERT_TRUE(kv->Allocate(&seq, 9));
  EXPECT_THAT(seq.block_ids(), ElementsAre(0, 1, 2));
  ASSERT_TRUE(kv->Allocate(&seq, 3));  // never shrinks
  EXPECT_EQ(seq.num_blocks(), 3);
  EXPECT_EQ(kv->Stats().num_used_blocks, 3);
  kv->Free(&seq);
  EXPECT_TRUE(seq.empty());
  EXPECT_EQ(kv->Stats().num_used_blocks, 0);
}

TEST(KvCacheManagerTest, AllocateFailureChangesNothing) {
  auto kv = Make(4, 4);
  SequenceBlocks a, b;
  ASSERT_TRUE(kv->Allocate(&a, 12));
  EXPECT_FALSE(kv->Allocate(&b, 8));
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(kv->Stats().num_used_blocks, 3);
  EXPECT_TRUE(kv->Allocate(&b, 4));
  EXPECT_EQ(kv->num_allocatable_blocks(), 0);
}

TEST(KvCacheManagerTest, PrefixHitSharesFullBlocks) {
  auto kv = Make(16, 4);
  const std::vector<int32_t> prompt = Tokens(0, 10);  // 2 full blocks + 2
  SequenceBlocks a;
  ComputeAll(*kv, &a, prompt);
  EXPECT_EQ(a.num_blocks(), 3);

  SequenceBlocks b;
  const std::vector<int32_t> b_tokens = Concat(Tokens(0, 8), Tokens(50, 5));
  PrefixMatch m = kv->MatchPrefix(b_tokens);
  EXPECT_EQ(m.num_tokens, 8);
  EXPECT_EQ(m.num_queried_tokens, 13);
  EXPECT_THAT(m.blocks, ElementsAre(a.block_ids()[0], a.block_ids()[1]));
  ASSERT_TRUE(kv->Allocate(&b, 13, &m));
  EXPECT_EQ(b.num_blocks(), 4);
  EXPECT_EQ(b.block_ids()[0], a.block_ids()[0]);
  EXPECT_EQ(b.block_ids()[1], a.block_ids()[1]);
  EXPECT_NE(b.block_ids()[2], a.block_ids()[2]);
  EXPECT_EQ(kv->pool().ref_count(a.block_ids()[0]), 2);
  EXPECT_EQ(kv->pool().ref_count(a.block_ids()[2]), 1);
  // Shared blocks count once.
  EXPECT_EQ(kv->Stats().num_used_blocks, 5);

  KvCacheStats s = kv->Stats();
  EXPECT_EQ(s.prefix_cache_queries, 10u + 13u);
  EXPECT_EQ(s.prefix_cache_hits, 8u);

  kv->Free(&a);
  EXPECT_EQ(kv->pool().ref_count(b.block_ids()[0]), 1);
  EXPECT_EQ(kv->Stats().num_used_blocks, 4);
  kv->Free(&b);
  EXPECT_TRUE(kv->pool().Validate().ok()) << kv->pool().Validate();
}

TEST(KvCacheManagerTest, HitNeverCoversTheLastToken) {
  auto kv = Make(16, 4);
  SequenceBlocks a;
  ComputeAll(*kv, &a, Tokens(0, 12));
  kv->Free(&a);
  // Same 8 tokens: two full blocks cached, but only one may be used.
  EXPECT_EQ(kv->MatchPrefix(Tokens(0, 8)).num_tokens, 4);
  EXPECT_EQ(kv->MatchPrefix(Tokens(0, 9)).num_tokens, 8);
  EXPECT_EQ(kv->MatchPrefix(Tokens(0, 12)).num_tokens, 8);
  EXPECT_EQ(kv->MatchPrefix(Tokens(0, 13)).num_tokens, 12);
  EXPECT_EQ(kv->MatchPrefix(Tokens(0, 4)).num_tokens, 0);
  EXPECT_EQ(kv->MatchPrefix(Tokens(0, 1)).num_tokens, 0);
  EXPECT_EQ(kv->MatchPrefix({}).num_queried_tokens, 0);
}

TEST(KvCacheManagerTest, MatchIsExactAlongTheChain) {
  auto kv = Make(16, 2);
  SequenceBlocks a;
  ComputeAll(*kv, &a, {1, 2, 3, 4, 5});
  // Block {3, 4} after a different first block is not a hit.
  EXPECT_EQ(kv->MatchPrefix({9, 9, 3, 4, 5}).num_tokens, 0);
  EXPECT_EQ(kv->MatchPrefix({1, 2, 3, 9, 5}).num_tokens, 2);
  EXPECT_EQ(kv->MatchPrefix({1, 2, 3, 4, 5}).num_tokens, 4);
}

TEST(KvCacheManagerTest, OnlyComputedFullBlocksAreCached) {
  auto kv = Make(16, 4);
  const std::vector<int32_t> t = Tokens(0, 12);
  SequenceBlocks a;
  ASSERT_TRUE(kv->Allocate(&a, 12));
  kv->CacheComputedBlocks(&a, t, 7);  // one full block computed
  EXPECT_EQ(kv->MatchPrefix(Tokens(0, 13)).num_tokens, 4);
  kv->CacheComputedBlocks(&a, t, 12);
  EXPECT_EQ(kv->MatchPrefix(Tokens(0, 13)).num_tokens, 12);
  kv->CacheComputedBlocks(&a, t, 12);  // idempotent
  EXPECT_TRUE(kv->pool().Validate().ok());
}

TEST(KvCacheManagerTest, ReleasedBlocksStayCachedAndIdleUsageIsZero) {
  auto kv = Make(10, 4);
  SequenceBlocks a;
  ComputeAll(*kv, &a, Tokens(0, 10));
  kv->Free(&a);
  KvCacheStats s = kv->Stats();
  EXPECT_EQ(s.num_blocks, 10);
  EXPECT_EQ(s.num_used_blocks, 0);
  EXPECT_EQ(s.num_cached_blocks, 2);  // the partial third block is not
  EXPECT_EQ(s.num_free_blocks, 8);
  EXPECT_DOUBLE_EQ(s.usage, 0.0);

  SequenceBlocks b;
  ComputeAll(*kv, &b, Tokens(0, 10));
  s = kv->Stats();
  EXPECT_EQ(s.num_used_blocks, 3);
  EXPECT_EQ(s.num_cached_blocks, 0);
  EXPECT_EQ(s.num_free_blocks, 7);
  EXPECT_DOUBLE_EQ(s.usage, 0.3);
  EXPECT_EQ(s.prefix_cache_hits, 8u);
}

TEST(KvCacheManagerTest, EvictionTakesLeastRecentlyUsedAndTailFirst) {
  auto kv = Make(6, 2);
  SequenceBlocks a, b;
  ComputeAll(*kv, &a, {1, 2, 3, 4, 5});  // caches {1,2} {3,4}
  ComputeAll(*kv, &b, {7, 8, 9, 10, 11});
  kv->Free(&a);  // released first: least recently used
  kv->Free(&b);
  EXPECT_EQ(kv->Stats().num_cached_blocks, 4);

  // Needs all 6 blocks: 2 empty ones, then evicts a's tail, then a's head.
  SequenceBlocks c;
  ASSERT_TRUE(kv->Allocate(&c, 6));
  EXPECT_EQ(kv->MatchPrefix({1, 2, 3, 4, 5}).num_tokens, 2);
  EXPECT_EQ(kv->MatchPrefix({7, 8, 9, 10, 11}).num_tokens, 4);
  ASSERT_TRUE(kv->Allocate(&c, 8));
  EXPECT_EQ(kv->MatchPrefix({1, 2, 3, 4, 5}).num_tokens, 0);
  EXPECT_EQ(kv->MatchPrefix({7, 8, 9, 10, 11}).num_tokens, 4);
  EXPECT_EQ(kv->Stats().num_evictions, 2u);
  ASSERT_TRUE(kv->Allocate(&c, 10));
  EXPECT_EQ(kv->MatchPrefix({7, 8, 9, 10, 11}).num_tokens, 2);
  EXPECT_TRUE(kv->pool().Validate().ok());
}

TEST(KvCacheManagerTest, MatchedFreeBlocksCountAgainstSupply) {
  auto kv = Make(4, 2);
  SequenceBlocks a;
  ComputeAll(*kv, &a, {1, 2, 3, 4, 5});  // 3 blocks, 2 cached
  kv->Free(&a);
  const std::vector<int32_t> t = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  PrefixMatch m = kv->MatchPrefix(t);
  ASSERT_EQ(m.num_tokens, 4);
  SequenceBlocks b;
  // 10 tokens: 2 matched + 3 new = 5 blocks > 4.
  EXPECT_FALSE(kv->Allocate(&b, 10, &m));
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(kv->Stats().prefix_cache_hits, 0u);  // not committed
  // 8 tokens: 2 matched + 2 new = 4.
  EXPECT_TRUE(kv->Allocate(&b, 8, &m));
  EXPECT_EQ(b.num_blocks(), 4);
  EXPECT_THAT(
      std::vector<int32_t>(b.block_ids().begin(), b.block_ids().begin() + 2),
      ElementsAreArray(m.blocks));
  EXPECT_EQ(kv->Stats().prefix_cache_hits, 4u);
  EXPECT_EQ(kv->Stats().prefix_cache_queries, 5u + 10u);
}

TEST(KvCacheManagerTest, ConcurrentDuplicatesChainThroughTheSharedNode) {
  auto kv = Make(16, 2);
  const std::vector<int32_t> t = {1, 2, 3, 4, 5, 6, 7};
  // Two sequences compute the same first block; neither hit the other.
  SequenceBlocks a, b;
  ASSERT_TRUE(kv->Allocate(&a, 7));
  ASSERT_TRUE(kv->Allocate(&b, 7));
  kv->CacheComputedBlocks(&a, t, 2);  // a caches {1,2}
  kv->CacheComputedBlocks(&b, t, 6);  // b: {1,2} duplicate, {3,4} {5,6} new
  EXPECT_FALSE(kv->pool().is_registered(b.block_ids()[0]));
  EXPECT_TRUE(kv->pool().is_registered(b.block_ids()[1]));
  // The longest match goes through a's first block and b's later ones.
  PrefixMatch m = kv->MatchPrefix(t);
  EXPECT_EQ(m.num_tokens, 6);
  EXPECT_THAT(m.blocks, ElementsAre(a.block_ids()[0], b.block_ids()[1],
                                    b.block_ids()[2]));
  // a goes on caching its own later blocks: duplicates of b's.
  kv->CacheComputedBlocks(&a, t, 6);
  EXPECT_FALSE(kv->pool().is_registered(a.block_ids()[1]));
  kv->Free(&a);
  kv->Free(&b);
  EXPECT_EQ(kv->Stats().num_cached_blocks, 3);
  EXPECT_TRUE(kv->pool().Validate().ok()) << kv->pool().Validate();
}

TEST(KvCacheManagerTest, DisabledCachingNeverHitsNorCounts) {
  auto kv = Make(8, 2, /*caching=*/false);
  SequenceBlocks a;
  ComputeAll(*kv, &a, {1, 2, 3, 4, 5});
  kv->Free(&a);
  PrefixMatch m = kv->MatchPrefix({1, 2, 3, 4, 5});
  EXPECT_THAT(m.blocks, IsEmpty());
  EXPECT_EQ(m.num_queried_tokens, 0);
  KvCacheStats s = kv->Stats();
  EXPECT_EQ(s.num_cached_blocks, 0);
  EXPECT_EQ(s.num_free_blocks, 8);
  EXPECT_EQ(s.prefix_cache_queries, 0u);
}

TEST(KvCacheSizingTest, BytesPerBlock) {
  // BLOOM-560m-like: 24 layers, 16 heads of 64, fp16, block 16.
  EXPECT_EQ(KvBytesPerBlock(16, 24, 16, 64, 2), 2LL * 24 * 16 * 16 * 64 * 2);
  EXPECT_EQ(KvBytesPerBlock(16, 24, 16, 64, 2), 1572864);
}

TEST(KvCacheSizingTest, NumBlocksForBudget) {
  EXPECT_EQ(*NumBlocksForBudget(1000, 100), 10);
  EXPECT_EQ(*NumBlocksForBudget(1099, 100), 10);
  EXPECT_EQ(*NumBlocksForBudget(int64_t{1} << 62, 1), INT32_MAX);
  EXPECT_EQ(NumBlocksForBudget(99, 100).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(NumBlocksForBudget(-5, 100).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(NumBlocksForBudget(1000, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alibi
