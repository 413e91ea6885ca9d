// Added tokens (`added_tokens` in tokenizer.json), extracted from the input
// before normalization and pre-tokenization exactly like the `tokenizers`
// library's AddedVocabulary:
// 1. tokens with normalized=false are matched on the raw text,
// 2. the remaining pieces are normalized, then tokens with normalized=true
//    are matched (against their normalized content) on those pieces.
// Matching is leftmost-longest and non-overlapping (Aho-Corasick
// LeftmostLongest), then single_word / lstrip / rstrip are applied.
//
// Thread-safety: immutable after construction; const methods may be called
// from any number of threads at once.
#ifndef ALIBI_SERVER_TOKENIZER_ADDED_VOCABULARY_H_
#define ALIBI_SERVER_TOKENIZER_ADDED_VOCABULARY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alibi::tokenizer::internal {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// A piece of the input on its way through the pipeline: either text still
// to be processed (id < 0) or an added token already recognised.
struct Piece {
  std::string text;
  int32_t id = -1;
};

// Leftmost-longest multi-pattern matcher over bytes (a trie scanned from
// each candidate start; patterns are short).
class LeftmostLongestMatcher {
 public:
  struct Match {
    size_t start;
    size_t end;
    int pattern;  // index into the patterns given to the constructor
  };

  LeftmostLongestMatcher() = default;
  // Empty patterns are ignored.
  explicit LeftmostLongestMatcher(const std::vector<std::string>& patterns);

  // The leftmost-longest match starting at or after `from`, if any.
  bool Next(absl::string_view text, size_t from, Match* match) const;

  bool empty() const { return nodes_.size() <= 1; }

 private:
  struct Node {
    int pattern = -1;  // pattern ending here (lowest index wins)
  };
  static uint64_t Key(int32_t node, unsigned char byte) {
    return (static_cast<uint64_t>(node) << 8) | byte;
  }

  std::vector<Node> nodes_;
  absl::flat_hash_map<uint64_t, int32_t> edges_;
  bool first_byte_[256] = {};
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `tokens` in tokenizer.json order; `normalize` maps a normalized=true
  // token's content to the form it is matched in (NFC or identity).
  static absl::StatusOr<AddedVocabulary> Create(
      std::vector<AddedToken> tokens,
      const std::function<absl::StatusOr<std::string>(absl::string_view)>&
          normalize);

  const std::vector<AddedToken>& tokens() const { return tokens_; }

  // Step 1: splits `text` (raw input) on the normalized=false tokens.
  void SplitRaw(absl::string_view text, std::vector<Piece>* out) const {
    Split(text, raw_matcher_, raw_index_, out);
  }
  // Step 2: splits an already normalized piece on the normalized=true tokens.
  void SplitNormalized(absl::string_view text, std::vector<Piece>* out) const {
    Split(text, normalized_matcher_, normalized_index_, out);
  }

 private:
  void Split(absl::string_view text, const LeftmostLongestMatcher& matcher,
             const std::vector<int>& token_index,
             std::vector<Piece>* out) const;

  std::vector<AddedToken> tokens_;
  LeftmostLongestMatcher raw_matcher_;
  std::vector<int> raw_index_;  // matcher pattern -> index in tokens_
  LeftmostLongestMatcher normalized_matcher_;
  std::vector<int> normalized_index_;
};

}  // namespace alibi::tokenizer::internal

#endif  // ALIBI_SERVER_TOKENIZER_ADDED_VOCABULARY_H_
