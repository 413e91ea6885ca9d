#include "server/tokenizer/pre_tokenizer.h"

#include <algorithm>

#include "common/status_macros.h"
#include "server/tokenizer/byte_level.h"
#include "server/tokenizer/unicode.h"

namespace alibi::tokenizer::internal {
namespace {

using Range = std::pair<size_t, size_t>;

struct Flagged {
  Range range;
  bool flag;  // is_match before the behaviour, should_remove after
};

}  // namespace

absl::Status Normalizer::Apply(std::string* text) const {
  for (const Kind kind : steps_) {
    switch (kind) {
      case Kind::kNfc: {
        ASSIGN_OR_RETURN(*text, NfcNormalize(*text));
        break;
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Range>> SplitRanges(absl::string_view text,
                                               const Regex& regex,
                                               SplitBehavior behavior,
                                               bool invert) {
  // Pattern::find_matches for a regex: matches and the gaps between them,
  // covering the whole text.
  std::vector<Flagged> found;
  if (text.empty()) {
    found.push_back({{0, 0}, false});
  } else {
    std::vector<Range> matches;
    RETURN_IF_ERROR(regex.FindAll(text, &matches));
    size_t prev = 0;
    for (const auto& [start, end] : matches) {
      if (prev != start) found.push_back({{prev, start}, false});
      found.push_back({{start, end}, true});
      prev = end;
    }
    if (prev != text.size()) found.push_back({{prev, text.size()}, false});
  }
  if (invert) {
    for (Flagged& f : found) f.flag = !f.flag;
  }

  std::vector<Flagged> splits;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Flagged& f : found) splits.push_back({f.range, false});
      break;
    case SplitBehavior::kRemoved:
      splits = found;
      break;
    case SplitBehavior::kContiguous:
    case SplitBehavior::kMergedWithPrevious: {
      // Contiguous: a run of matches (or of non-matches) is one piece;
      // merged with previous: a match joins the piece before it.
      const bool contiguous = behavior == SplitBehavior::kContiguous;
      bool previous_match = false;
      for (const Flagged& f : found) {
        const bool merge =
            contiguous ? f.flag == previous_match : f.flag && !previous_match;
        if (merge && !splits.empty()) {
          splits.back().range.second = f.range.second;
        } else {
          splits.push_back({f.range, false});
        }
        previous_match = f.flag;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = found.rbegin(); it != found.rend(); ++it) {
        if (it->flag && !previous_match && !splits.empty()) {
          splits.back().range.first = it->range.first;
        } else {
          splits.push_back({it->range, false});
        }
        previous_match = it->flag;
      }
      std::reverse(splits.begin(), splits.end());
      break;
    }
  }
  std::vector<Range> ranges;
  ranges.reserve(splits.size());
  for (const Flagged& f : splits) {
    if (!f.flag) ranges.push_back(f.range);
  }
  return ranges;
}

absl::Status ByteLevelStep::Apply(absl::string_view piece,
                                  std::vector<std::string>* out) const {
  std::string with_prefix;
  absl::string_view text = piece;
  if (add_prefix_space_ && (piece.empty() || piece.front() != ' ')) {
    with_prefix.reserve(piece.size() + 1);
    with_prefix.push_back(' ');
    with_prefix.append(piece.data(), piece.size());
    text = with_prefix;
  }
  if (regex_ == nullptr) {
    if (!text.empty()) {
      std::string mapped;
      mapped.reserve(text.size() * 2);
      AppendByteLevel(text, &mapped);
      out->push_back(std::move(mapped));
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(const std::vector<Range> ranges,
                   SplitRanges(text, *regex_, SplitBehavior::kIsolated,
                               /*invert=*/false));
  for (const auto& [start, end] : ranges) {
    if (start >= end) continue;
    std::string mapped;
    mapped.reserve((end - start) * 2);
    AppendByteLevel(text.substr(start, end - start), &mapped);
    out->push_back(std::move(mapped));
  }
  return absl::OkStatus();
}

absl::Status SplitStep::Apply(absl::string_view piece,
                              std::vector<std::string>* out) const {
  ASSIGN_OR_RETURN(const std::vector<Range> ranges,
                   SplitRanges(piece, *regex_, behavior_, invert_));
  for (const auto& [start, end] : ranges) {
    if (start >= end) continue;
    out->emplace_back(piece.substr(start, end - start));
  }
  return absl::OkStatus();
}

}  // namespace alibi::tokenizer::internal
