#include "server/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/byte_level.h"
#include "server/tokenizer/regex.h"
#include "server/tokenizer/unicode.h"

namespace alibi::tokenizer::internal {

using Json = nlohmann::json;

namespace {

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

absl::Status NotSupported(absl::string_view where, absl::string_view type,
                          absl::string_view supported) {
  return absl::InvalidArgumentError(
      absl::StrCat(where, ".type \"", type,
                   "\" is not supported (supported: ", supported, ")"));
}

// obj[key] as a bool; `fallback` when absent or null.
absl::StatusOr<bool> GetBool(const Json& obj, const char* key, bool fallback,
                             absl::string_view where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    return Invalid(absl::StrCat(where, ".", key), "expected a boolean");
  }
  return it->get<bool>();
}

// obj[key] as a string; nullopt when absent or null.
absl::StatusOr<std::optional<std::string>> GetOptionalString(
    const Json& obj, const char* key, absl::string_view where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    return Invalid(absl::StrCat(where, ".", key), "expected a string");
  }
  return it->get<std::string>();
}

// Calls parse(item, where) for each item of a Sequence step's `key` array.
template <typename Parse>
absl::Status ForEachInSequence(const Json& sequence, absl::string_view where,
                               const char* key, Parse&& parse) {
  const auto list = sequence.find(key);
  if (list == sequence.end() || !list->is_array()) {
    return Invalid(where, absl::StrCat("Sequence needs a \"", key, "\" array"));
  }
  for (size_t i = 0; i < list->size(); ++i) {
    RETURN_IF_ERROR(
        parse((*list)[i], absl::StrCat(where, ".", key, "[", i, "]")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GetType(const Json& obj, absl::string_view where) {
  if (!obj.is_object()) return Invalid(where, "expected an object or null");
  ASSIGN_OR_RETURN(std::optional<std::string> type,
                   GetOptionalString(obj, "type", where));
  if (!type.has_value()) return Invalid(where, "missing \"type\"");
  return *type;
}

absl::StatusOr<int32_t> GetId(const Json& value, absl::string_view where) {
  if (!value.is_number_integer()) return Invalid(where, "expected an integer");
  const int64_t id = value.get<int64_t>();
  if (id < 0 || id >= kMaxTokenId) {
    return Invalid(
        where, absl::StrCat("id ", id, " is outside [0, ", kMaxTokenId, ")"));
  }
  return static_cast<int32_t>(id);
}

}  // namespace

// Builds a BpeTokenizer from the parsed JSON document. nlohmann-json may
// throw on type mismatches the explicit checks miss; Parse() catches those.
class TokenizerJsonParser {
 public:
  absl::StatusOr<std::unique_ptr<Tokenizer>> Build(const Json& root) {
    if (!root.is_object()) return Invalid("tokenizer.json", "not an object");
    tok_.reset(new BpeTokenizer());

    // Normalizer first: added tokens with normalized=true are matched in
    // their normalized form.
    std::vector<Normalizer::Kind> steps;
    if (const auto it = root.find("normalizer"); it != root.end()) {
      RETURN_IF_ERROR(ParseNormalizer(*it, "normalizer", &steps));
    }
    tok_->normalizer_ = Normalizer(std::move(steps));

    if (const auto it = root.find("pre_tokenizer"); it != root.end()) {
      RETURN_IF_ERROR(ParsePreTokenizer(*it, "pre_tokenizer"));
    }
    const auto model = root.find("model");
    if (model == root.end()) return Invalid("tokenizer.json", "no \"model\"");
    RETURN_IF_ERROR(ParseModel(*model));
    const auto decoder = root.find("decoder");
    if (decoder == root.end() || decoder->is_null()) {
      return Invalid("decoder", "null is not supported (expected ByteLevel)");
    }
    ASSIGN_OR_RETURN(const std::string decoder_type,
                     GetType(*decoder, "decoder"));
    if (decoder_type != "ByteLevel") {
      return NotSupported("decoder", decoder_type, "ByteLevel");
    }
    if (const auto it = root.find("added_tokens"); it != root.end()) {
      RETURN_IF_ERROR(ParseAddedTokens(*it));
    } else {
      RETURN_IF_ERROR(ParseAddedTokens(Json::array()));
    }
    // truncation, padding and post_processor do not apply to
    // encode(add_special_tokens=False) without truncation requested by the
    // caller: they are deliberately ignored.
    BuildIdTables();
    return std::unique_ptr<Tokenizer>(std::move(tok_));
  }

 private:
  absl::Status ParseNormalizer(const Json& j, const std::string& where,
                               std::vector<Normalizer::Kind>* steps) {
    if (j.is_null()) return absl::OkStatus();
    ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
    if (type == "NFC") {
      steps->push_back(Normalizer::Kind::kNfc);
      return absl::OkStatus();
    }
    if (type == "Sequence") {
      return ForEachInSequence(j, where, "normalizers",
                               [&](const Json& item, const std::string& at) {
                                 return ParseNormalizer(item, at, steps);
                               });
    }
    return NotSupported(where, type, "NFC, Sequence");
  }

  absl::Status ParsePreTokenizer(const Json& j, const std::string& where) {
    if (j.is_null()) return absl::OkStatus();
    ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
    if (type == "Sequence") {
      return ForEachInSequence(j, where, "pretokenizers",
                               [&](const Json& item, const std::string& at) {
                                 return ParsePreTokenizer(item, at);
                               });
    }
    if (type == "ByteLevel") {
      ASSIGN_OR_RETURN(const bool add_prefix_space,
                       GetBool(j, "add_prefix_space", true, where));
      ASSIGN_OR_RETURN(const bool use_regex,
                       GetBool(j, "use_regex", true, where));
      std::unique_ptr<Regex> regex;
      if (use_regex) {
        ASSIGN_OR_RETURN(regex, Regex::CompileOniguruma(kGpt2Pattern));
      }
      tok_->pre_tokenizers_.push_back(
          std::make_unique<ByteLevelStep>(add_prefix_space, std::move(regex)));
      return absl::OkStatus();
    }
    if (type == "Split") {
      const auto pattern = j.find("pattern");
      if (pattern == j.end() || !pattern->is_object()) {
        return Invalid(where, "Split needs a \"pattern\" object");
      }
      std::unique_ptr<Regex> regex;
      if (const auto s = pattern->find("String");
          s != pattern->end() && s->is_string()) {
        ASSIGN_OR_RETURN(regex,
                         Regex::Compile(EscapeLiteral(s->get<std::string>())));
      } else if (const auto r = pattern->find("Regex");
                 r != pattern->end() && r->is_string()) {
        auto compiled = Regex::CompileOniguruma(r->get<std::string>());
        if (!compiled.ok()) {
          return Annotate(compiled.status(), absl::StrCat(where, ".pattern: "));
        }
        regex = *std::move(compiled);
      } else {
        return Invalid(absl::StrCat(where, ".pattern"),
                       "expected {\"String\": ...} or {\"Regex\": ...}");
      }
      ASSIGN_OR_RETURN(std::optional<std::string> behavior_name,
                       GetOptionalString(j, "behavior", where));
      SplitBehavior behavior;
      const std::string name = behavior_name.value_or("");
      if (name == "Isolated") {
        behavior = SplitBehavior::kIsolated;
      } else if (name == "Removed") {
        behavior = SplitBehavior::kRemoved;
      } else if (name == "MergedWithPrevious") {
        behavior = SplitBehavior::kMergedWithPrevious;
      } else if (name == "MergedWithNext") {
        behavior = SplitBehavior::kMergedWithNext;
      } else if (name == "Contiguous") {
        behavior = SplitBehavior::kContiguous;
      } else {
        return Invalid(absl::StrCat(where, ".behavior"),
                       absl::StrCat("\"", name, "\" is not supported"));
      }
      ASSIGN_OR_RETURN(const bool invert, GetBool(j, "invert", false, where));
      tok_->pre_tokenizers_.push_back(
          std::make_unique<SplitStep>(std::move(regex), behavior, invert));
      return absl::OkStatus();
    }
    return NotSupported(where, type, "ByteLevel, Split, Sequence");
  }

  absl::Status ParseModel(const Json& m) {
    const std::string where = "model";
    if (!m.is_object()) return Invalid(where, "expected an object");
    ASSIGN_OR_RETURN(std::optional<std::string> type,
                     GetOptionalString(m, "type", where));
    if (type.has_value() && *type != "BPE") {
      return NotSupported(where, *type, "BPE");
    }
    if (!type.has_value() && !m.contains("merges")) {
      return Invalid(where, "no \"type\" and no \"merges\": not a BPE model");
    }
    if (const auto it = m.find("dropout"); it != m.end() && !it->is_null()) {
      if (!it->is_number() || it->get<double>() != 0.0) {
        return Invalid("model.dropout", "BPE dropout is not supported");
      }
    }
    ASSIGN_OR_RETURN(const bool byte_fallback,
                     GetBool(m, "byte_fallback", false, where));
    if (byte_fallback) {
      return Invalid("model.byte_fallback", "true is not supported");
    }
    for (const char* key :
         {"continuing_subword_prefix", "end_of_word_suffix"}) {
      ASSIGN_OR_RETURN(std::optional<std::string> affix,
                       GetOptionalString(m, key, where));
      if (affix.has_value() && !affix->empty()) {
        return Invalid(absl::StrCat(where, ".", key),
                       absl::StrCat("\"", *affix, "\" is not supported"));
      }
    }
    BpeModel::Options options;
    ASSIGN_OR_RETURN(options.unk_token,
                     GetOptionalString(m, "unk_token", where));
    ASSIGN_OR_RETURN(options.fuse_unk, GetBool(m, "fuse_unk", false, where));
    ASSIGN_OR_RETURN(options.ignore_merges,
                     GetBool(m, "ignore_merges", false, where));

    const auto vocab_json = m.find("vocab");
    if (vocab_json == m.end() || !vocab_json->is_object()) {
      return Invalid("model.vocab", "expected an object");
    }
    absl::flat_hash_map<std::string, int32_t> vocab;
    vocab.reserve(vocab_json->size());
    for (const auto& [token, value] : vocab_json->items()) {
      ASSIGN_OR_RETURN(
          const int32_t id,
          GetId(value, absl::StrCat("model.vocab[\"", token, "\"]")));
      vocab.emplace(token, id);
      // The first string seen for an id names it (document order).
      if (vocab_names_.size() <= static_cast<size_t>(id)) {
        vocab_names_.resize(id + 1);
      }
      if (!vocab_names_[id].has_value()) vocab_names_[id] = token;
    }

    const auto merges_json = m.find("merges");
    std::vector<std::pair<std::string, std::string>> merges;
    if (merges_json != m.end() && !merges_json->is_null()) {
      if (!merges_json->is_array()) {
        return Invalid("model.merges", "expected an array");
      }
      merges.reserve(merges_json->size());
      size_t rank = 0;
      for (const Json& merge : *merges_json) {
        const std::string at = absl::StrCat("model.merges[", rank, "]");
        if (merge.is_string()) {
          const std::string line = merge.get<std::string>();
          if (line.rfind("#version", 0) == 0) continue;  // skipped, no rank
          const size_t space = line.find(' ');
          if (space == std::string::npos ||
              line.find(' ', space + 1) != std::string::npos) {
            return Invalid(at, absl::StrCat("\"", line,
                                            "\" is not two tokens "
                                            "separated by one space"));
          }
          merges.emplace_back(line.substr(0, space), line.substr(space + 1));
        } else if (merge.is_array() && merge.size() == 2 &&
                   merge[0].is_string() && merge[1].is_string()) {
          merges.emplace_back(merge[0].get<std::string>(),
                              merge[1].get<std::string>());
        } else {
          return Invalid(at, "expected \"a b\" or [\"a\", \"b\"]");
        }
        ++rank;
      }
    }
    ASSIGN_OR_RETURN(tok_->model_, BpeModel::Create(std::move(vocab), merges,
                                                    std::move(options)));
    return absl::OkStatus();
  }

  absl::Status ParseAddedTokens(const Json& list) {
    if (!list.is_array() && !list.is_null()) {
      return Invalid("added_tokens", "expected an array");
    }
    std::vector<AddedToken> tokens;
    if (list.is_array()) {
      for (size_t i = 0; i < list.size(); ++i) {
        const Json& t = list[i];
        const std::string where = absl::StrCat("added_tokens[", i, "]");
        if (!t.is_object()) return Invalid(where, "expected an object");
        AddedToken token;
        ASSIGN_OR_RETURN(std::optional<std::string> content,
                         GetOptionalString(t, "content", where));
        if (!content.has_value()) return Invalid(where, "missing \"content\"");
        token.content = *std::move(content);
        const auto id = t.find("id");
        if (id == t.end()) return Invalid(where, "missing \"id\"");
        ASSIGN_OR_RETURN(token.id, GetId(*id, absl::StrCat(where, ".id")));
        // The library keeps the vocabulary's id for a content it already
        // has; the serialized id is what it assigns otherwise.
        const auto& vocab = tok_->model_->vocab();
        if (const auto it = vocab.find(token.content); it != vocab.end()) {
          token.id = it->second;
        }
        ASSIGN_OR_RETURN(token.single_word,
                         GetBool(t, "single_word", false, where));
        ASSIGN_OR_RETURN(token.lstrip, GetBool(t, "lstrip", false, where));
        ASSIGN_OR_RETURN(token.rstrip, GetBool(t, "rstrip", false, where));
        ASSIGN_OR_RETURN(token.normalized,
                         GetBool(t, "normalized", true, where));
        ASSIGN_OR_RETURN(token.special, GetBool(t, "special", false, where));
        tokens.push_back(std::move(token));
      }
    }
    const Normalizer& normalizer = tok_->normalizer_;
    ASSIGN_OR_RETURN(
        tok_->added_,
        AddedVocabulary::Create(
            std::move(tokens),
            [&normalizer](absl::string_view s) -> absl::StatusOr<std::string> {
              std::string text(s);
              RETURN_IF_ERROR(normalizer.Apply(&text));
              return text;
            }));
    return absl::OkStatus();
  }

  void BuildIdTables() {
    BpeTokenizer& t = *tok_;
    size_t size = vocab_names_.size();
    for (const AddedToken& token : t.added_.tokens()) {
      size = std::max(size, static_cast<size_t>(token.id) + 1);
    }
    t.id_to_token_.assign(size, std::string());
    t.known_.assign(size, false);
    for (size_t id = 0; id < vocab_names_.size(); ++id) {
      if (vocab_names_[id].has_value()) {
        t.id_to_token_[id] = *vocab_names_[id];
        t.known_[id] = true;
      }
    }
    absl::flat_hash_set<std::string> special_contents;
    for (const AddedToken& token : t.added_.tokens()) {
      t.id_to_token_[token.id] = token.content;
      t.known_[token.id] = true;
      t.added_by_content_.emplace(token.content, token.id);
      if (token.special) special_contents.insert(token.content);
    }
    t.token_bytes_.assign(size, std::string());
    t.special_.assign(size, false);
    for (size_t id = 0; id < size; ++id) {
      if (!t.known_[id]) continue;
      t.token_bytes_[id] = ByteLevelDecodeToken(t.id_to_token_[id]);
      t.special_[id] = special_contents.contains(t.id_to_token_[id]);
    }
  }

  std::unique_ptr<BpeTokenizer> tok_;
  std::vector<std::optional<std::string>> vocab_names_;
};

absl::StatusOr<std::unique_ptr<Tokenizer>> BpeTokenizer::Parse(
    absl::string_view json_text) {
  try {
    const Json root = Json::parse(json_text.begin(), json_text.end());
    return TokenizerJsonParser().Build(root);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("tokenizer.json: ", e.what()));
  }
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(
    absl::string_view text) const {
  if (const size_t bad = FirstInvalidUtf8(text); bad != text.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "text is not valid UTF-8 (first invalid byte at offset ", bad, ")"));
  }
  // 1. Added tokens that match the raw text.
  std::vector<Piece> raw;
  added_.SplitRaw(text, &raw);
  // 2. Normalize the other pieces, then match the normalized added tokens.
  std::vector<Piece> pieces;
  pieces.reserve(raw.size());
  for (Piece& piece : raw) {
    if (piece.id >= 0) {
      pieces.push_back(std::move(piece));
      continue;
    }
    RETURN_IF_ERROR(normalizer_.Apply(&piece.text));
    added_.SplitNormalized(piece.text, &pieces);
  }
  // 3. Pre-tokenizer steps, on the pieces that are not added tokens.
  std::vector<std::string> parts;
  for (const auto& step : pre_tokenizers_) {
    std::vector<Piece> next;
    next.reserve(pieces.size());
    for (Piece& piece : pieces) {
      if (piece.id >= 0) {
        next.push_back(std::move(piece));
        continue;
      }
      parts.clear();
      RETURN_IF_ERROR(step->Apply(piece.text, &parts));
      for (std::string& part : parts) next.push_back({std::move(part), -1});
    }
    pieces = std::move(next);
  }
  // 4. The model.
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  for (const Piece& piece : pieces) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
    } else {
      RETURN_IF_ERROR(model_->Tokenize(piece.text, &ids));
    }
  }
  return ids;
}

std::string BpeTokenizer::Decode(absl::Span<const int32_t> ids,
                                 bool skip_special_tokens) const {
  std::string bytes;
  for (const int32_t id : ids) {
    if (!Known(id) || (skip_special_tokens && special_[id])) continue;
    bytes += token_bytes_[id];
  }
  return LossyUtf8(bytes);
}

std::string BpeTokenizer::TokenBytes(int32_t id) const {
  return Known(id) ? token_bytes_[id] : std::string();
}

std::optional<std::string> BpeTokenizer::IdToToken(int32_t id) const {
  if (!Known(id)) return std::nullopt;
  return id_to_token_[id];
}

std::optional<int32_t> BpeTokenizer::TokenToId(absl::string_view token) const {
  if (const auto it = added_by_content_.find(token);
      it != added_by_content_.end()) {
    return it->second;
  }
  const auto& vocab = model_->vocab();
  if (const auto it = vocab.find(token); it != vocab.end()) return it->second;
  return std::nullopt;
}

bool BpeTokenizer::IsSpecial(int32_t id) const {
  return Known(id) && special_[id];
}

}  // namespace alibi::tokenizer::internal
