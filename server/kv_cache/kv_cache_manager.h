// KvCacheManager: per-sequence block tables over a BlockPool, with prefix
// caching (vLLM V1 KVCacheManager semantics). Host bookkeeping only: it owns
// no KV memory and launches nothing; the engine maps a sequence position to
// a pool slot as block_table[pos / block_size] * block_size +
// pos % block_size.
//
// Life of a sequence:
//   SequenceBlocks seq;                        // empty table
//   PrefixMatch m = kv.MatchPrefix(tokens);    // cached full blocks, if any
//   kv.Allocate(&seq, m.num_tokens + n, &m);   // shares m, adds new blocks
//   ... KV for positions [m.num_tokens, m.num_tokens + n) is computed ...
//   kv.CacheComputedBlocks(&seq, tokens, m.num_tokens + n);
//   kv.Allocate(&seq, more_tokens);            // grows the table
//   kv.Free(&seq);                             // finished or preempted
//
// Prefix caching: a full block is identified by its token ids and the exact
// prefix before it (see block_pool.h: exact match, no silent collisions).
// MatchPrefix never returns the whole sequence: the hit is capped at
// num_tokens - 1 tokens (rounded down to full blocks) so that at least the
// last token is computed and produces logits. Blocks released by every
// holder stay cached (evictable, LRU) until allocation needs their id.
//
// Metrics semantics (vLLM): prefix-cache queries and hits are counted in
// tokens, once per committed match (Allocate with a PrefixMatch): a request
// that waits several steps before it fits is counted once; a preempted
// request is counted again when it is readmitted. Usage = used / total
// blocks, where "used" means held by a live sequence; cached-only blocks are
// free, so usage is 0 when idle.
//
// Thread-safety: not thread-safe. The engine thread owns the manager (through
// the scheduler) and is its only user.
#ifndef ALIBI_SERVER_KV_CACHE_KV_CACHE_MANAGER_H_
#define ALIBI_SERVER_KV_CACHE_KV_CACHE_MANAGER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/kv_cache/block_pool.h"

namespace alibi {

struct KvCacheOptions {
  int32_t num_blocks = 0;
  int32_t block_size = 16;
  bool enable_prefix_caching = true;
};

// Gauges and counters for metrics. Blocks: used + cached + free ==
// num_blocks.
struct KvCacheStats {
  int32_t num_blocks = 0;
  int32_t num_used_blocks = 0;        // held by live sequences
  int32_t num_cached_blocks = 0;      // free, but holding a reusable prefix
  int32_t num_free_blocks = 0;        // free and empty
  double usage = 0.0;                 // num_used_blocks / num_blocks
  uint64_t prefix_cache_queries = 0;  // tokens looked up
  uint64_t prefix_cache_hits = 0;     // tokens found
  uint64_t num_evictions = 0;         // cached blocks reallocated
};

// The blocks one sequence holds, in sequence order. Logical block b holds the
// sequence's token slots [b * block_size, (b + 1) * block_size). A sliding
// window releases leading blocks: the live ones are logical blocks
// [first_block(), end_block()). Owned by the caller (the scheduler's
// request); changed only through KvCacheManager.
class SequenceBlocks {
 public:
  SequenceBlocks() = default;
  SequenceBlocks(SequenceBlocks&&) = default;
  SequenceBlocks& operator=(SequenceBlocks&&) = default;
  SequenceBlocks(const SequenceBlocks&) = delete;
  SequenceBlocks& operator=(const SequenceBlocks&) = delete;

  // Live blocks, in logical order from first_block().
  const std::vector<int32_t>& block_ids() const { return blocks_; }
  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  int32_t first_block() const { return first_block_; }
  int32_t end_block() const { return first_block_ + num_blocks(); }
  bool empty() const { return blocks_.empty(); }

 private:
  friend class KvCacheManager;
  std::vector<int32_t> blocks_;
  int32_t first_block_ = 0;
  // Prefix-cache nodes of logical blocks [nodes_first_, nodes_first_ +
  // nodes_.size()): the leading full blocks whose content has been
  // registered or matched. After a release, only the last one is kept (the
  // parent of the next registration).
  std::vector<uint64_t> nodes_;
  int32_t nodes_first_ = 0;
};

// Result of MatchPrefix: the cached blocks of the longest matching prefix.
// Valid until the next non-const call on the manager.
struct PrefixMatch {
  std::vector<int32_t> blocks;
  std::vector<uint64_t> nodes;
  int32_t num_tokens = 0;          // blocks.size() * block_size
  int32_t num_queried_tokens = 0;  // tokens looked up (0: no lookup done)
};

class KvCacheManager {
 public:
  // InvalidArgument unless num_blocks >= 1 and block_size >= 1.
  static absl::StatusOr<std::unique_ptr<KvCacheManager>> Create(
      const KvCacheOptions& options);

  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  int32_t num_blocks() const { return pool_.num_blocks(); }
  int32_t block_size() const { return pool_.block_size(); }
  bool prefix_caching_enabled() const { return pool_.prefix_caching_enabled(); }

  // Blocks needed to hold `num_tokens` token slots.
  int32_t BlocksForTokens(int32_t num_tokens) const;

  // Blocks Allocate could hand out now (free, including evictable cached).
  int32_t num_allocatable_blocks() const { return pool_.num_free_blocks(); }

  // Longest cached prefix of full blocks of `tokens`, at most
  // tokens.size() - 1 tokens, among blocks registered under `root` (a
  // namespace: KV computed with different attention, e.g. another sliding
  // window, never matches). Empty (with num_queried_tokens 0) when prefix
  // caching is off. Changes nothing.
  PrefixMatch MatchPrefix(absl::Span<const int32_t> tokens,
                          uint64_t root = BlockPool::kRootNode) const;

  // The first `num_tokens / block_size` blocks of `from` as a match another
  // sequence can start from (Allocate shares them): a fork of the same
  // prompt. Counted like a prefix-cache hit of those tokens. Empty when
  // `from` released any of them.
  PrefixMatch ShareFrom(const SequenceBlocks& from, int32_t num_tokens) const;

  // Makes `seq` hold enough blocks for its token slots up to `num_tokens`
  // (logical blocks up to ceil(num_tokens / block_size); released leading
  // blocks stay released).
  // With `match` (only for an empty `seq`), the matched blocks are shared
  // first and the match is counted in the prefix-cache stats. Returns false,
  // changing nothing, when the pool cannot supply the new blocks (the matched
  // blocks that are free count against the supply).
  bool Allocate(SequenceBlocks* seq, int32_t num_tokens,
                const PrefixMatch* match = nullptr);

  // Registers in the prefix cache, under `root`, the full blocks of `seq`
  // whose KV is now computed: those within tokens[0, num_computed_tokens).
  // `tokens` is the sequence's token ids (at least num_computed_tokens of
  // them). No-op when prefix caching is off.
  void CacheComputedBlocks(SequenceBlocks* seq,
                           absl::Span<const int32_t> tokens,
                           int32_t num_computed_tokens,
                           uint64_t root = BlockPool::kRootNode);

  // Releases `seq`'s logical blocks before `first_needed` (a sliding window
  // left them); returns how many were released. A block shared with another
  // holder stays for it (reference counts).
  int32_t ReleaseBefore(SequenceBlocks* seq, int32_t first_needed);

  // Releases all of `seq`'s blocks (last block first, so a sequence's tail is
  // evicted before its prefix) and empties it.
  void Free(SequenceBlocks* seq);

  KvCacheStats Stats() const;

  // Read-only view of the pool, for tests and invariant checks.
  const BlockPool& pool() const { return pool_; }

 private:
  explicit KvCacheManager(const KvCacheOptions& options);

  BlockPool pool_;
  uint64_t prefix_cache_queries_ = 0;
  uint64_t prefix_cache_hits_ = 0;
};

// The prefix-cache namespace of KV computed with a sliding window of
// `window` tokens (0: full attention, BlockPool::kRootNode). Node ids the
// pool hands out never reach these values.
uint64_t WindowRoot(int32_t window);

// Bytes of KV one block takes across all layers (keys and values):
// 2 * num_layers * num_kv_heads * block_size * head_dim * dtype_bytes.
int64_t KvBytesPerBlock(int32_t block_size, int32_t num_layers,
                        int32_t num_kv_heads, int32_t head_dim,
                        int32_t dtype_bytes);

// How many whole blocks of `bytes_per_block` fit in `budget_bytes` (capped at
// INT32_MAX). InvalidArgument for bytes_per_block <= 0; ResourceExhausted
// when not even one block fits.
absl::StatusOr<int32_t> NumBlocksForBudget(int64_t budget_bytes,
                                           int64_t bytes_per_block);

}  // namespace alibi

#endif  // ALIBI_SERVER_KV_CACHE_KV_CACHE_MANAGER_H_
