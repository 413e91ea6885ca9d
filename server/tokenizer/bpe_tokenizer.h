// The concrete Tokenizer built from a tokenizer.json: added vocabulary,
// normalizer, pre-tokenizer steps, BPE model and ByteLevel decoder (see
// tokenizer.h for the supported subset and the contracts).
//
// Thread-safety: immutable after construction (the BPE word cache is
// internally synchronised); every method may be called concurrently.
#ifndef ALIBI_SERVER_TOKENIZER_BPE_TOKENIZER_H_
#define ALIBI_SERVER_TOKENIZER_BPE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "server/tokenizer/added_vocabulary.h"
#include "server/tokenizer/bpe_model.h"
#include "server/tokenizer/pre_tokenizer.h"
#include "server/tokenizer/tokenizer.h"

namespace alibi::tokenizer::internal {

// Ids must lie in [0, kMaxTokenId): tables are indexed by id, so a bogus
// huge id must not make them huge. Real vocabularies stay far below this.
inline constexpr int32_t kMaxTokenId = 1 << 21;

class BpeTokenizer final : public Tokenizer {
 public:
  // Parses tokenizer.json text; never throws.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Parse(
      absl::string_view json_text);

  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const override;
  std::string Decode(absl::Span<const int32_t> ids,
                     bool skip_special_tokens) const override;
  std::string TokenBytes(int32_t id) const override;
  std::optional<std::string> IdToToken(int32_t id) const override;
  std::optional<int32_t> TokenToId(absl::string_view token) const override;
  bool IsSpecial(int32_t id) const override;
  int vocab_size() const override {
    return static_cast<int>(id_to_token_.size());
  }

 private:
  friend class TokenizerJsonParser;
  BpeTokenizer() : normalizer_({}) {}

  bool Known(int32_t id) const {
    return id >= 0 && id < vocab_size() && known_[id];
  }

  Normalizer normalizer_;
  AddedVocabulary added_;
  std::vector<std::unique_ptr<PreTokenizerStep>> pre_tokenizers_;
  std::unique_ptr<BpeModel> model_;

  // Indexed by id, size = largest id + 1.
  std::vector<std::string> id_to_token_;  // added content, else vocab string
  std::vector<std::string> token_bytes_;  // ByteLevel-decoded token
  std::vector<bool> known_;
  std::vector<bool> special_;  // content is a special added token
  absl::flat_hash_map<std::string, int32_t> added_by_content_;
};

}  // namespace alibi::tokenizer::internal

#endif  // ALIBI_SERVER_TOKENIZER_BPE_TOKENIZER_H_
