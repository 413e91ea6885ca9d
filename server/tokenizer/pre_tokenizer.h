// Normalizer and pre-tokenizer steps of the `tokenizers` pipeline, with the
// library's semantics:
// - Normalizer: a sequence of NFC steps (or none).
// - ByteLevel: optional prefix space, optional GPT-2 regex split (Isolated),
//   then every byte mapped to the byte-level alphabet.
// - Split: regex (or literal) pattern, optional invert, any of the five
//   delimiter behaviours.
// A Sequence pre-tokenizer is a list of steps applied in order.
//
// Thread-safety: immutable after construction; Apply is const and may be
// called from any number of threads at once.
#ifndef ALIBI_SERVER_TOKENIZER_PRE_TOKENIZER_H_
#define ALIBI_SERVER_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/tokenizer/regex.h"

namespace alibi::tokenizer::internal {

// The GPT-2 pattern ByteLevel splits with when `use_regex` is true.
inline constexpr absl::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"
    "|\\s+(?!\\S)|\\s+";

class Normalizer {
 public:
  enum class Kind { kNfc };

  explicit Normalizer(std::vector<Kind> steps) : steps_(std::move(steps)) {}

  bool empty() const { return steps_.empty(); }
  // Normalizes valid UTF-8 `text` in place.
  absl::Status Apply(std::string* text) const;

 private:
  std::vector<Kind> steps_;
};

enum class SplitBehavior {
  kRemoved,
  kIsolated,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous,
};

// Splits `text` at the matches of `regex` (flags flipped when `invert`) and
// returns the [start, end) ranges to keep, per `behavior`, in order. Empty
// ranges may be present; callers drop them.
absl::StatusOr<std::vector<std::pair<size_t, size_t>>> SplitRanges(
    absl::string_view text, const Regex& regex, SplitBehavior behavior,
    bool invert);

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  // Replaces the non-empty, valid UTF-8 `piece` by its sub-pieces, appended
  // to `out` (empty sub-pieces are dropped, as the library does).
  virtual absl::Status Apply(absl::string_view piece,
                             std::vector<std::string>* out) const = 0;
};

class ByteLevelStep final : public PreTokenizerStep {
 public:
  // `regex` is null when use_regex is false.
  ByteLevelStep(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  absl::Status Apply(absl::string_view piece,
                     std::vector<std::string>* out) const override;

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class SplitStep final : public PreTokenizerStep {
 public:
  SplitStep(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}

  absl::Status Apply(absl::string_view piece,
                     std::vector<std::string>* out) const override;

 private:
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

}  // namespace alibi::tokenizer::internal

#endif  // ALIBI_SERVER_TOKENIZER_PRE_TOKENIZER_H_
