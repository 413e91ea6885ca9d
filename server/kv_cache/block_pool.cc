#include "server/kv_cache/block_pool.h"

#include <algorithm>
#include <tuple>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace alibi {

namespace {

uint64_t DefaultKey(uint64_t parent, absl::Span<const int32_t> tokens) {
  return absl::Hash<std::tuple<uint64_t, absl::Span<const int32_t>>>()(
      std::make_tuple(parent, tokens));
}

}  // namespace

BlockPool::BlockPool(int32_t num_blocks, int32_t block_size,
                     bool enable_prefix_caching, KeyFunction key_function)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      enable_prefix_caching_(enable_prefix_caching),
      key_function_(key_function != nullptr ? key_function : &DefaultKey) {
  ALIBI_CHECK(num_blocks > 0) << num_blocks;
  ALIBI_CHECK(block_size > 0) << block_size;
  ref_count_.assign(num_blocks, 0);
  prev_.resize(num_blocks + 1);
  next_.resize(num_blocks + 1);
  // All blocks free, in id order: 0 is allocated first.
  const int32_t sentinel = num_blocks_;
  for (int32_t b = 0; b <= num_blocks_; ++b) {
    prev_[b] = b == 0 ? sentinel : b - 1;
    next_[b] = b == num_blocks_ ? 0 : b + 1;
  }
  num_free_ = num_blocks_;
  if (enable_prefix_caching_) {
    node_.assign(num_blocks, kRootNode);
    parent_.assign(num_blocks, kRootNode);
    key_.assign(num_blocks, 0);
    tokens_.assign(static_cast<size_t>(num_blocks) * block_size, 0);
    registry_.reserve(num_blocks);
  }
}

int32_t BlockPool::ref_count(int32_t block) const {
  ALIBI_CHECK(block >= 0 && block < num_blocks_) << block;
  return ref_count_[block];
}

bool BlockPool::is_registered(int32_t block) const {
  return node(block) != kRootNode;
}

uint64_t BlockPool::node(int32_t block) const {
  ALIBI_CHECK(block >= 0 && block < num_blocks_) << block;
  return enable_prefix_caching_ ? node_[block] : kRootNode;
}

void BlockPool::Unlink(int32_t block) {
  next_[prev_[block]] = next_[block];
  prev_[next_[block]] = prev_[block];
  prev_[block] = next_[block] = kNone;
}

void BlockPool::InsertAfter(int32_t block, int32_t prev) {
  const int32_t next = next_[prev];
  prev_[block] = prev;
  next_[block] = next;
  prev_[next] = block;
  next_[prev] = block;
}

void BlockPool::PushFront(int32_t block) { InsertAfter(block, num_blocks_); }

void BlockPool::PushBack(int32_t block) {
  InsertAfter(block, prev_[num_blocks_]);
}

void BlockPool::Evict(int32_t block) {
  auto it = registry_.find(key_[block]);
  ALIBI_CHECK(it != registry_.end() && it->second == block) << block;
  registry_.erase(it);
  node_[block] = kRootNode;
  parent_[block] = kRootNode;
  ++num_evictions_;
}

void BlockPool::Allocate(int32_t n, std::vector<int32_t>* out) {
  ALIBI_CHECK(n >= 0 && n <= num_free_) << n << " > " << num_free_;
  const int32_t sentinel = num_blocks_;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t block = next_[sentinel];
    Unlink(block);
    --num_free_;
    if (enable_prefix_caching_ && node_[block] != kRootNode) {
      --num_cached_free_;
      Evict(block);
    }
    ref_count_[block] = 1;
    out->push_back(block);
  }
}

void BlockPool::Ref(int32_t block) {
  ALIBI_CHECK(block >= 0 && block < num_blocks_) << block;
  if (ref_count_[block] == 0) {
    Unlink(block);
    --num_free_;
    if (is_registered(block)) --num_cached_free_;
  }
  ++ref_count_[block];
}

void BlockPool::Release(int32_t block) {
  ALIBI_CHECK(block >= 0 && block < num_blocks_) << block;
  ALIBI_CHECK(ref_count_[block] > 0) << "double release of block " << block;
  if (--ref_count_[block] > 0) return;
  ++num_free_;
  if (is_registered(block)) {
    ++num_cached_free_;
    PushBack(block);
  } else {
    PushFront(block);
  }
}

bool BlockPool::SameContent(int32_t block, uint64_t parent,
                            absl::Span<const int32_t> tokens) const {
  if (parent_[block] != parent) return false;
  const int32_t* stored =
      tokens_.data() + static_cast<size_t>(block) * block_size_;
  return std::equal(tokens.begin(), tokens.end(), stored);
}

int32_t BlockPool::Lookup(uint64_t parent,
                          absl::Span<const int32_t> tokens) const {
  ALIBI_CHECK(enable_prefix_caching_);
  ALIBI_CHECK(static_cast<int32_t>(tokens.size()) == block_size_)
      << tokens.size();
  auto it = registry_.find(key_function_(parent, tokens));
  if (it == registry_.end() || !SameContent(it->second, parent, tokens)) {
    return kNone;
  }
  return it->second;
}

uint64_t BlockPool::Register(int32_t block, uint64_t parent,
                             absl::Span<const int32_t> tokens) {
  ALIBI_CHECK(enable_prefix_caching_);
  ALIBI_CHECK(static_cast<int32_t>(tokens.size()) == block_size_)
      << tokens.size();
  ALIBI_CHECK(ref_count(block) > 0) << "registering free block " << block;
  ALIBI_CHECK(node_[block] == kRootNode)
      << "block " << block << " already registered";
  const uint64_t key = key_function_(parent, tokens);
  auto [it, inserted] = registry_.try_emplace(key, block);
  if (!inserted) {
    if (SameContent(it->second, parent, tokens)) return node_[it->second];
    return next_node_++;  // collision: leave unregistered, unique node
  }
  node_[block] = next_node_++;
  parent_[block] = parent;
  key_[block] = key;
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<size_t>(block) * block_size_);
  return node_[block];
}

absl::Status BlockPool::Validate() const {
  // Walk the free list: every member has ref 0, order is
  // [unregistered...][registered...], and its length matches the counters.
  const int32_t sentinel = num_blocks_;
  std::vector<bool> in_list(num_blocks_, false);
  int32_t count = 0;
  int32_t cached = 0;
  bool seen_registered = false;
  for (int32_t b = next_[sentinel]; b != sentinel; b = next_[b]) {
    if (b < 0 || b >= num_blocks_ || in_list[b] || count > num_blocks_) {
      return absl::InternalError(absl::StrCat("free list corrupt at ", b));
    }
    if (prev_[next_[b]] != b) {
      return absl::InternalError(absl::StrCat("free list links at ", b));
    }
    in_list[b] = true;
    ++count;
    if (ref_count_[b] != 0) {
      return absl::InternalError(
          absl::StrCat("block ", b, " is free with ref ", ref_count_[b]));
    }
    if (is_registered(b)) {
      ++cached;
      seen_registered = true;
    } else if (seen_registered) {
      return absl::InternalError(
          absl::StrCat("empty block ", b, " after cached blocks"));
    }
  }
  if (count != num_free_ || cached != num_cached_free_) {
    return absl::InternalError(absl::StrCat(
        "free list has ", count, " (", cached, " cached), counters say ",
        num_free_, " (", num_cached_free_, ")"));
  }
  for (int32_t b = 0; b < num_blocks_; ++b) {
    if (ref_count_[b] < 0) {
      return absl::InternalError(absl::StrCat("block ", b, " ref < 0"));
    }
    if (ref_count_[b] == 0 && !in_list[b]) {
      return absl::InternalError(absl::StrCat("block ", b, " lost"));
    }
  }
  if (enable_prefix_caching_) {
    int32_t registered = 0;
    for (int32_t b = 0; b < num_blocks_; ++b) {
      if (node_[b] == kRootNode) continue;
      ++registered;
      auto it = registry_.find(key_[b]);
      if (it == registry_.end() || it->second != b) {
        return absl::InternalError(
            absl::StrCat("registered block ", b, " missing from registry"));
      }
    }
    if (registered != static_cast<int32_t>(registry_.size())) {
      return absl::InternalError(absl::StrCat("registry has ", registry_.size(),
                                              " entries, ", registered,
                                              " blocks registered"));
    }
  }
  return absl::OkStatus();
}

}  // namespace alibi
