// BlockPool: host-side bookkeeping for a paged KV pool of `num_blocks`
// blocks with integer ids [0, num_blocks). It owns no KV memory; it decides
// which block id holds what.
//
// Each block has a reference count (how many live sequences hold it). A block
// whose count is 0 is "free" and sits in one intrusive free list:
//
//   head -> [free blocks that cache nothing] -> [cached blocks, LRU first]
//                                                                  <- tail
//
// Allocation pops from the head, so empty blocks are used before any cached
// content is evicted, and among cached blocks the least recently released
// one goes first. Releasing a block whose content is registered in the
// prefix cache appends it at the tail (most recently used); releasing an
// unregistered block pushes it at the head.
//
// Prefix cache registry: a full block can be registered under
// (parent node, its block_size token ids), where the parent node identifies
// the exact prefix before it (0 for the first block of a sequence). Each
// registration gets a fresh node id, never reused, so a node id names one
// exact token prefix. Lookups are exact: the 64-bit table key (absl::Hash of
// parent node and tokens) only selects a candidate, whose stored parent node
// and token ids are then compared. A key collision therefore costs a cache
// miss, never a wrong hit. The price is a host copy of each registered
// block's token ids (block_size * 4 bytes per block, allocated only when
// prefix caching is on).
//
// A registered block keeps its registration while it is held and while it is
// free; it loses it only when allocation evicts it. If the block of a prefix
// is evicted, registrations that chain from its node become unreachable;
// they stay evictable and leave with LRU order.
//
// Thread-safety: not thread-safe. Owned and used by the engine thread only.
#ifndef ALIBI_SERVER_KV_CACHE_BLOCK_POOL_H_
#define ALIBI_SERVER_KV_CACHE_BLOCK_POOL_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"

namespace alibi {

class BlockPool {
 public:
  // Node id of the empty prefix: the parent of a sequence's first block.
  static constexpr uint64_t kRootNode = 0;

  // The registry's 64-bit key of (parent node, block tokens). Any function
  // is correct (keys only pick candidates); tests pass a degenerate one to
  // force collisions.
  using KeyFunction = uint64_t (*)(uint64_t parent,
                                   absl::Span<const int32_t> tokens);

  // `num_blocks` >= 1, `block_size` >= 1 (checked). With
  // `enable_prefix_caching` false, Register() must not be called.
  // `key_function` null: absl::Hash of (parent, tokens).
  BlockPool(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching,
            KeyFunction key_function = nullptr);

  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  bool prefix_caching_enabled() const { return enable_prefix_caching_; }

  // Blocks with reference count 0 (including cached ones).
  int32_t num_free_blocks() const { return num_free_; }
  // Free blocks whose content is registered (reusable until evicted).
  int32_t num_cached_free_blocks() const { return num_cached_free_; }
  // Blocks held by at least one sequence.
  int32_t num_used_blocks() const { return num_blocks_ - num_free_; }
  // Cache evictions so far (a registered block reallocated to new content).
  uint64_t num_evictions() const { return num_evictions_; }

  int32_t ref_count(int32_t block) const;
  // Whether the block's content is registered in the prefix cache.
  bool is_registered(int32_t block) const;

  // Pops `n` blocks from the head of the free list, evicting their
  // registrations, sets their reference counts to 1 and appends their ids to
  // `out`. Requires n <= num_free_blocks() (checked).
  void Allocate(int32_t n, std::vector<int32_t>* out);

  // Takes one more reference on `block`; a free block leaves the free list.
  void Ref(int32_t block);

  // Drops one reference; at 0 the block returns to the free list (tail when
  // registered, head otherwise). Requires ref_count(block) > 0 (checked).
  void Release(int32_t block);

  // Returns the registered block holding exactly `tokens` (block_size ids)
  // after the prefix `parent`, or -1. Does not change reference counts.
  int32_t Lookup(uint64_t parent, absl::Span<const int32_t> tokens) const;

  // The node id of a registered block (kRootNode when unregistered).
  uint64_t node(int32_t block) const;

  // Registers the content of held, unregistered `block`: `tokens` (block_size
  // ids) after the prefix `parent`. Returns the node id that now names this
  // prefix: the block's new node, or the node of an already registered block
  // with the same content (then `block` stays unregistered: the content is
  // cached once). On a key collision with different content the block stays
  // unregistered and gets a fresh, unreachable node id.
  uint64_t Register(int32_t block, uint64_t parent,
                    absl::Span<const int32_t> tokens);

  // Checks every internal invariant (free list vs reference counts, counters,
  // registry); O(num_blocks). For tests and debugging.
  absl::Status Validate() const;

 private:
  static constexpr int32_t kNone = -1;

  bool SameContent(int32_t block, uint64_t parent,
                   absl::Span<const int32_t> tokens) const;
  // The free list is circular through the sentinel num_blocks_.
  void Unlink(int32_t block);
  void InsertAfter(int32_t block, int32_t prev);
  void PushFront(int32_t block);
  void PushBack(int32_t block);
  void Evict(int32_t block);

  const int32_t num_blocks_;
  const int32_t block_size_;
  const bool enable_prefix_caching_;
  const KeyFunction key_function_;

  std::vector<int32_t> ref_count_;
  // Doubly linked free list; index num_blocks_ is the sentinel.
  std::vector<int32_t> prev_;
  std::vector<int32_t> next_;
  int32_t num_free_ = 0;
  int32_t num_cached_free_ = 0;
  uint64_t num_evictions_ = 0;

  // Registry (only sized when prefix caching is enabled).
  std::vector<uint64_t> node_;    // kRootNode when unregistered
  std::vector<uint64_t> parent_;  // parent node of a registered block
  std::vector<uint64_t> key_;     // its key in `registry_`
  std::vector<int32_t> tokens_;   // [num_blocks * block_size]
  absl::flat_hash_map<uint64_t, int32_t> registry_;
  uint64_t next_node_ = kRootNode + 1;
};

}  // namespace alibi

#endif  // ALIBI_SERVER_KV_CACHE_BLOCK_POOL_H_
