// The BPE model of the `tokenizers` library: a word (one pre-tokenized
// piece) is split into characters, each looked up in the vocabulary (unknown
// ones become unk_token, or vanish when there is none), then merged pair by
// pair in merge-rank order with the library's exact priority-queue
// procedure.
//
// Thread-safety: immutable after construction except for the word cache,
// which is sharded and mutex-guarded; Tokenize is const and may be called
// from any number of threads at once.
#ifndef ALIBI_SERVER_TOKENIZER_BPE_MODEL_H_
#define ALIBI_SERVER_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alibi::tokenizer::internal {

// Caches the ids of short words. Bounded: a shard that fills up is cleared.
class WordCache {
 public:
  // Words at least this long are not cached (same bound as the library).
  static constexpr size_t kMaxWordBytes = 256;

  bool Lookup(absl::string_view word, std::vector<int32_t>* ids) const;
  void Insert(absl::string_view word, const std::vector<int32_t>& ids) const;

 private:
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxEntriesPerShard = 4096;

  // std::mutex rather than absl::Mutex: Debian's Abseil is a prebuilt
  // library ThreadSanitizer cannot see into, so its locks would show up as
  // races in a TSan build.
  struct Shard {
    mutable std::mutex mu;
    mutable absl::flat_hash_map<std::string, std::vector<int32_t>> map;
  };
  const Shard& ShardFor(absl::string_view word) const;

  std::array<Shard, kShards> shards_;
};

class BpeModel {
 public:
  struct Options {
    std::optional<std::string> unk_token;
    bool fuse_unk = false;
    bool ignore_merges = false;
  };

  // `merges` in rank order. Errors when a merge names a token (or produces
  // one) that is not in `vocab`.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      absl::flat_hash_map<std::string, int32_t> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges,
      Options options);

  // Appends the ids of `word` (valid UTF-8). Errors only when an unknown
  // character meets an unk_token that is not in the vocabulary.
  absl::Status Tokenize(absl::string_view word,
                        std::vector<int32_t>* ids) const;

  const absl::flat_hash_map<std::string, int32_t>& vocab() const {
    return vocab_;
  }

 private:
  struct MergeValue {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
           static_cast<uint32_t>(b);
  }

  BpeModel() = default;
  absl::Status MergeWord(absl::string_view word,
                         std::vector<int32_t>* ids) const;
  int32_t CharId(absl::string_view word, size_t pos, size_t len) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  absl::flat_hash_map<uint64_t, MergeValue> merges_;
  // Vocabulary id of each single code point below kDirectChars (-1: none);
  // covers the whole byte-level alphabet.
  static constexpr char32_t kDirectChars = 0x800;
  std::vector<int32_t> char_ids_;
  Options options_;
  std::optional<int32_t> unk_id_;  // set when unk_token is in the vocab
  WordCache cache_;
};

}  // namespace alibi::tokenizer::internal

#endif  // ALIBI_SERVER_TOKENIZER_BPE_MODEL_H_
