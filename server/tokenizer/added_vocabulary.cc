#include "server/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "server/tokenizer/unicode.h"

namespace alibi::tokenizer::internal {
namespace {

// The last character of `s` (valid UTF-8, non-empty).
char32_t LastChar(absl::string_view s) {
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
    --start;
  }
  return DecodeUtf8(s, &start);
}

// regex `\w$` on the prefix before a match.
bool EndsWithWord(absl::string_view s) {
  return !s.empty() && IsWordChar(LastChar(s));
}

// regex `^\w` on the suffix after a match.
bool StartsWithWord(absl::string_view s) {
  if (s.empty()) return false;
  size_t pos = 0;
  return IsWordChar(DecodeUtf8(s, &pos));
}

// Start of the trailing whitespace run of `s` (regex `\s*$`).
size_t SpaceLeftmostAtEnd(absl::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
      --start;
    }
    size_t pos = start;
    if (!IsWhiteSpace(DecodeUtf8(s, &pos))) break;
    end = start;
  }
  return end;
}

// Length of the leading whitespace run of `s` (regex `^\s*`).
size_t SpaceRightmostAtStart(absl::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    if (!IsWhiteSpace(DecodeUtf8(s, &next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

LeftmostLongestMatcher::LeftmostLongestMatcher(
    const std::vector<std::string>& patterns) {
  nodes_.emplace_back();  // root
  for (int p = 0; p < static_cast<int>(patterns.size()); ++p) {
    const std::string& pattern = patterns[p];
    if (pattern.empty()) continue;
    int32_t node = 0;
    for (const char c : pattern) {
      const auto byte = static_cast<unsigned char>(c);
      auto [it, inserted] =
          edges_.try_emplace(Key(node, byte), static_cast<int32_t>(0));
      if (inserted) {
        it->second = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
      }
      node = it->second;
    }
    if (nodes_[node].pattern < 0) nodes_[node].pattern = p;
    first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  }
}

bool LeftmostLongestMatcher::Next(absl::string_view text, size_t from,
                                  Match* match) const {
  if (empty()) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t start = from; start < text.size(); ++start) {
    if (!first_byte_[p[start]]) continue;
    int32_t node = 0;
    int best_pattern = -1;
    size_t best_end = 0;
    for (size_t i = start; i < text.size(); ++i) {
      const auto it = edges_.find(Key(node, p[i]));
      if (it == edges_.end()) break;
      node = it->second;
      if (nodes_[node].pattern >= 0) {
        best_pattern = nodes_[node].pattern;
        best_end = i + 1;
      }
    }
    if (best_pattern >= 0) {
      *match = {start, best_end, best_pattern};
      return true;
    }
  }
  return false;
}

absl::StatusOr<AddedVocabulary> AddedVocabulary::Create(
    std::vector<AddedToken> tokens,
    const std::function<absl::StatusOr<std::string>(absl::string_view)>&
        normalize) {
  AddedVocabulary vocab;
  // One entry per content (the library keys its maps by content): a repeated
  // content keeps its first id and takes the later flags.
  absl::flat_hash_map<std::string, size_t> by_content;
  for (AddedToken& token : tokens) {
    if (token.content.empty()) continue;  // ignored by the library too
    auto [it, inserted] =
        by_content.try_emplace(token.content, vocab.tokens_.size());
    if (inserted) {
      vocab.tokens_.push_back(std::move(token));
    } else {
      AddedToken& existing = vocab.tokens_[it->second];
      const bool special = existing.special || token.special;
      const int32_t id = existing.id;
      existing = std::move(token);
      existing.id = id;
      existing.special = special;
    }
  }
  // Matching order: special tokens, then the others (ties only matter for
  // identical contents, which the dedup above already merged).
  std::vector<int> order;
  for (int i = 0; i < static_cast<int>(vocab.tokens_.size()); ++i) {
    if (vocab.tokens_[i].special) order.push_back(i);
  }
  for (int i = 0; i < static_cast<int>(vocab.tokens_.size()); ++i) {
    if (!vocab.tokens_[i].special) order.push_back(i);
  }
  std::vector<std::string> raw_patterns;
  std::vector<std::string> normalized_patterns;
  for (const int i : order) {
    const AddedToken& token = vocab.tokens_[i];
    if (token.normalized) {
      ASSIGN_OR_RETURN(std::string pattern, normalize(token.content));
      normalized_patterns.push_back(std::move(pattern));
      vocab.normalized_index_.push_back(i);
    } else {
      raw_patterns.push_back(token.content);
      vocab.raw_index_.push_back(i);
    }
  }
  vocab.raw_matcher_ = LeftmostLongestMatcher(raw_patterns);
  vocab.normalized_matcher_ = LeftmostLongestMatcher(normalized_patterns);
  return vocab;
}

void AddedVocabulary::Split(absl::string_view text,
                            const LeftmostLongestMatcher& matcher,
                            const std::vector<int>& token_index,
                            std::vector<Piece>* out) const {
  auto emit = [&](size_t start, size_t end, int32_t id) {
    // The library drops empty pieces (tokens included) after each split.
    if (start >= end) return;
    out->push_back({std::string(text.substr(start, end - start)), id});
  };
  if (text.empty()) return;
  size_t start_offset = 0;
  size_t from = 0;
  LeftmostLongestMatcher::Match match;
  while (matcher.Next(text, from, &match)) {
    from = match.end;  // the automaton resumes after the raw match
    const AddedToken& token = tokens_[token_index[match.pattern]];
    size_t start = match.start;
    size_t stop = match.end;
    if (token.single_word) {
      const bool start_space =
          start == 0 || !EndsWithWord(text.substr(0, start));
      const bool stop_space =
          stop == text.size() || !StartsWithWord(text.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) {
      start = std::max(SpaceLeftmostAtEnd(text.substr(0, start)), start_offset);
    }
    if (token.rstrip) stop += SpaceRightmostAtStart(text.substr(stop));
    if (start_offset < start) emit(start_offset, start, -1);
    // An earlier rstrip may have swallowed the start of this match; the
    // library then emits an overlapping slice (or panics when start > stop).
    emit(start, stop, token.id);
    start_offset = stop;
  }
  if (start_offset < text.size()) emit(start_offset, text.size(), -1);
}

}  // namespace alibi::tokenizer::internal
