// A Hugging Face `tokenizer.json` BPE tokenizer (byte-level), producing the
// same ids as the Hugging Face `tokenizers` library for the pipelines ALiBi
// models use:
// - added / special tokens matched before anything else (leftmost-longest;
//   lstrip / rstrip / single_word / normalized honoured like the library),
// - normalizer: none, NFC, or a Sequence of those,
// - pre-tokenizer: ByteLevel (GPT-2 regex when use_regex), Split (regex or
//   string pattern, any behaviour, invert), or a Sequence of those, e.g.
//   BLOOM's Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)];
//   Oniguruma regexes are translated to PCRE2 (nested classes flattened),
// - model: BPE with merges as "a b" strings or ["a", "b"] pairs, unk_token,
//   fuse_unk, ignore_merges (no dropout, byte_fallback or affixes),
// - decoder: ByteLevel (lossy UTF-8, like the library's decode).
// Anything else is refused by FromJson with INVALID_ARGUMENT naming the
// component. post_processor, truncation and padding are ignored: Encode is
// `encode(text, add_special_tokens=False)` without truncation.
//
// Thread-safety: a Tokenizer is immutable after construction (its BPE word
// cache is internally synchronised); Encode and Decode may be called from
// any number of threads at once. IncrementalDecoder is single-threaded (one
// per request).
#ifndef ALIBI_SERVER_TOKENIZER_TOKENIZER_H_
#define ALIBI_SERVER_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace alibi::tokenizer {

class Tokenizer {
 public:
  // Parses tokenizer.json text. Errors name the unsupported component
  // (e.g. "pre_tokenizer.type \"Metaspace\" is not supported").
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(
      absl::string_view json_text);
  // Reads and parses a tokenizer.json file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(
      const std::string& path);

  virtual ~Tokenizer() = default;

  // Encodes `text` like `tokenizer.encode(text, add_special_tokens=False)`.
  // Invalid UTF-8 in `text` is an INVALID_ARGUMENT error.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const = 0;

  // Decodes like `tokenizer.decode(ids, skip_special_tokens=...)`: the
  // concatenated bytes of the tokens, invalid UTF-8 replaced by U+FFFD.
  // Ids outside the vocabulary contribute nothing.
  virtual std::string Decode(absl::Span<const int32_t> ids,
                             bool skip_special_tokens) const = 0;

  // The bytes token `id` stands for, as the ByteLevel decoder sees it (the
  // token string mapped back to bytes when every character is in the
  // byte-level alphabet, else its own UTF-8; this covers added tokens).
  // Empty for unknown ids. May be a partial UTF-8 sequence.
  virtual std::string TokenBytes(int32_t id) const = 0;

  // The vocabulary string of `id` (e.g. "Ġworld"), if any.
  virtual std::optional<std::string> IdToToken(int32_t id) const = 0;
  virtual std::optional<int32_t> TokenToId(absl::string_view token) const = 0;

  // Whether `id` is an added token marked special (e.g. "</s>").
  virtual bool IsSpecial(int32_t id) const = 0;

  // One more than the largest id the tokenizer knows.
  virtual int vocab_size() const = 0;
};

// Turns a stream of token ids into text deltas for streaming: each delta is
// complete UTF-8; bytes of a character split across tokens are held back
// until the character is complete. The concatenation of every Add() result
// and Finish() equals Tokenizer::Decode of all the ids.
class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens);

  // Appends one token; returns the text that became complete.
  std::string Add(int32_t id);
  // Returns what is still held back (invalid or incomplete bytes become
  // U+FFFD, as in Decode).
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // bytes not yet emitted (an incomplete character)
};

}  // namespace alibi::tokenizer

#endif  // ALIBI_SERVER_TOKENIZER_TOKENIZER_H_
