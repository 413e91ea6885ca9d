#include "server/kv_cache/kv_cache_manager.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace alibi {

absl::StatusOr<std::unique_ptr<KvCacheManager>> KvCacheManager::Create(
    const KvCacheOptions& options) {
  if (options.num_blocks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_blocks must be >= 1, got ", options.num_blocks));
  }
  if (options.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_size must be >= 1, got ", options.block_size));
  }
  return std::unique_ptr<KvCacheManager>(new KvCacheManager(options));
}

KvCacheManager::KvCacheManager(const KvCacheOptions& options)
    : pool_(options.num_blocks, options.block_size,
            options.enable_prefix_caching) {}

int32_t KvCacheManager::BlocksForTokens(int32_t num_tokens) const {
  ALIBI_CHECK(num_tokens >= 0) << num_tokens;
  return (num_tokens + block_size() - 1) / block_size();
}

uint64_t WindowRoot(int32_t window) {
  return window <= 0 ? BlockPool::kRootNode
                     : (uint64_t{1} << 63) | static_cast<uint64_t>(window);
}

PrefixMatch KvCacheManager::MatchPrefix(absl::Span<const int32_t> tokens,
                                        uint64_t root) const {
  PrefixMatch match;
  if (!prefix_caching_enabled() || tokens.empty()) return match;
  const int32_t bs = block_size();
  match.num_queried_tokens = static_cast<int32_t>(tokens.size());
  // Leave at least the last token to compute.
  const int32_t max_blocks = (match.num_queried_tokens - 1) / bs;
  uint64_t parent = root;
  for (int32_t i = 0; i < max_blocks; ++i) {
    const int32_t block = pool_.Lookup(parent, tokens.subspan(i * bs, bs));
    if (block < 0) break;
    parent = pool_.node(block);
    match.blocks.push_back(block);
    match.nodes.push_back(parent);
  }
  match.num_tokens = static_cast<int32_t>(match.blocks.size()) * bs;
  return match;
}

PrefixMatch KvCacheManager::ShareFrom(const SequenceBlocks& from,
                                      int32_t num_tokens) const {
  PrefixMatch match;
  const int32_t n = std::min(num_tokens / block_size(), from.num_blocks());
  match.blocks.assign(from.blocks_.begin(), from.blocks_.begin() + n);
  match.nodes.assign(
      from.nodes_.begin(),
      from.nodes_.begin() + std::min<size_t>(n, from.nodes_.size()));
  match.num_tokens = n * block_size();
  match.num_queried_tokens = num_tokens;
  return match;
}

bool KvCacheManager::Allocate(SequenceBlocks* seq, int32_t num_tokens,
                              const PrefixMatch* match) {
  int32_t have = seq->end_block();
  int32_t matched_free = 0;
  if (match != nullptr) {
    ALIBI_CHECK(seq->empty()) << "a prefix match applies to an empty table";
    have = static_cast<int32_t>(match->blocks.size());
    for (int32_t block : match->blocks) {
      if (pool_.ref_count(block) == 0) ++matched_free;
    }
  }
  const int32_t needed = std::max(0, BlocksForTokens(num_tokens) - have);
  if (needed + matched_free > pool_.num_free_blocks()) return false;
  if (match != nullptr) {
    for (int32_t block : match->blocks) pool_.Ref(block);
    seq->blocks_ = match->blocks;
    seq->first_block_ = 0;
    seq->nodes_ = match->nodes;
    seq->nodes_first_ = 0;
    if (match->num_queried_tokens > 0) {
      prefix_cache_queries_ += match->num_queried_tokens;
      prefix_cache_hits_ += match->num_tokens;
    }
  }
  pool_.Allocate(needed, &seq->blocks_);
  return true;
}

void KvCacheManager::CacheComputedBlocks(SequenceBlocks* seq,
                                         absl::Span<const int32_t> tokens,
                                         int32_t num_computed_tokens,
                                         uint64_t root) {
  if (!prefix_caching_enabled()) return;
  ALIBI_CHECK(num_computed_tokens >= 0 &&
              static_cast<size_t>(num_computed_tokens) <= tokens.size())
      << num_computed_tokens << " of " << tokens.size();
  const int32_t bs = block_size();
  const int32_t full = std::min(num_computed_tokens / bs, seq->end_block());
  for (int32_t i = seq->nodes_first_ + static_cast<int32_t>(seq->nodes_.size());
       i < full; ++i) {
    // A block released before it was registered breaks the chain.
    if (i < seq->first_block_ || (i > 0 && seq->nodes_.empty())) return;
    const uint64_t parent = i == 0 ? root : seq->nodes_.back();
    seq->nodes_.push_back(pool_.Register(seq->blocks_[i - seq->first_block_],
                                         parent, tokens.subspan(i * bs, bs)));
  }
}

int32_t KvCacheManager::ReleaseBefore(SequenceBlocks* seq,
                                      int32_t first_needed) {
  const int32_t n =
      std::clamp(first_needed - seq->first_block_, 0, seq->num_blocks());
  if (n == 0) return 0;
  for (int32_t i = 0; i < n; ++i) pool_.Release(seq->blocks_[i]);
  seq->blocks_.erase(seq->blocks_.begin(), seq->blocks_.begin() + n);
  seq->first_block_ += n;
  // Keep the node of the last registered block (the next one's parent).
  const int32_t drop =
      std::min<int32_t>(seq->first_block_ - seq->nodes_first_,
                        static_cast<int32_t>(seq->nodes_.size()) - 1);
  if (drop > 0) {
    seq->nodes_.erase(seq->nodes_.begin(), seq->nodes_.begin() + drop);
    seq->nodes_first_ += drop;
  }
  return n;
}

void KvCacheManager::Free(SequenceBlocks* seq) {
  for (auto it = seq->blocks_.rbegin(); it != seq->blocks_.rend(); ++it) {
    pool_.Release(*it);
  }
  seq->blocks_.clear();
  seq->first_block_ = 0;
  seq->nodes_.clear();
  seq->nodes_first_ = 0;
}

KvCacheStats KvCacheManager::Stats() const {
  KvCacheStats s;
  s.num_blocks = pool_.num_blocks();
  s.num_used_blocks = pool_.num_used_blocks();
  s.num_cached_blocks = pool_.num_cached_free_blocks();
  s.num_free_blocks = pool_.num_free_blocks() - s.num_cached_blocks;
  s.usage = static_cast<double>(s.num_used_blocks) / s.num_blocks;
  s.prefix_cache_queries = prefix_cache_queries_;
  s.prefix_cache_hits = prefix_cache_hits_;
  s.num_evictions = pool_.num_evictions();
  return s;
}

int64_t KvBytesPerBlock(int32_t block_size, int32_t num_layers,
                        int32_t num_kv_heads, int32_t head_dim,
                        int32_t dtype_bytes) {
  return int64_t{2} * num_layers * num_kv_heads * block_size * head_dim *
         dtype_bytes;
}

absl::StatusOr<int32_t> NumBlocksForBudget(int64_t budget_bytes,
                                           int64_t bytes_per_block) {
  if (bytes_per_block <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bytes per KV block must be > 0, got ", bytes_per_block));
  }
  const int64_t blocks = std::max<int64_t>(0, budget_bytes) / bytes_per_block;
  if (blocks < 1) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV budget of ", budget_bytes, " bytes holds no block of ",
                     bytes_per_block, " bytes"));
  }
  return static_cast<int32_t>(
      std::min<int64_t>(blocks, std::numeric_limits<int32_t>::max()));
}

}  // namespace alibi
