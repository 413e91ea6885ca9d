#include "client/bench/workload.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/bench/arrivals.h"
#include "common/enum_names.h"

namespace alibi::client::bench {
namespace {

bool IsSpace(char c) {
  return absl::ascii_isspace(static_cast<unsigned char>(c));
}

constexpr const char* kWorkloadKindNames[] = {"random", "corpus", "score"};
static_assert(std::size(kWorkloadKindNames) == EnumCount(WorkloadKind::kScore));

}  // namespace

absl::StatusOr<WorkloadKind> ParseWorkloadKind(absl::string_view name) {
  std::optional<WorkloadKind> kind =
      EnumFromName<WorkloadKind>(name, kWorkloadKindNames);
  if (kind.has_value()) return *kind;
  return absl::InvalidArgumentError(absl::StrCat(
      "--workload: expected random, corpus or score, got \"", name, "\""));
}

const char* WorkloadKindName(WorkloadKind kind) {
  return EnumName(kind, kWorkloadKindNames, "random");
}

std::pair<int, int> LengthRange(int len, double range_ratio, int min_len) {
  int lo = static_cast<int>(std::floor(len * (1.0 - range_ratio)));
  int hi = static_cast<int>(std::floor(len * (1.0 + range_ratio)));
  lo = std::max(lo, min_len);
  hi = std::max(hi, lo);
  return {lo, hi};
}

std::string CutCorpus(absl::string_view corpus, size_t start,
                      size_t target_chars) {
  if (corpus.empty()) return "";
  start = std::min(start, corpus.size() - 1);
  size_t begin = 0;
  if (start > 0) {
    begin = start;
    while (begin < corpus.size() && !IsSpace(corpus[begin])) ++begin;
    // No word boundary after `start`: begin at the top instead.
    if (begin == corpus.size()) begin = 0;
  }
  while (begin < corpus.size() && IsSpace(corpus[begin])) ++begin;
  size_t end = std::min(corpus.size(), begin + target_chars);
  while (end < corpus.size() && !IsSpace(corpus[end])) ++end;
  return std::string(
      absl::StripAsciiWhitespace(corpus.substr(begin, end - begin)));
}

absl::StatusOr<std::vector<WorkloadRequest>> MakeWorkload(
    const WorkloadOptions& o) {
  if (o.num_requests < 0) {
    return absl::InvalidArgumentError("num_requests must be >= 0");
  }
  if (!(o.range_ratio >= 0 && o.range_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--range_ratio: must be in [0, 1), got ", o.range_ratio));
  }
  const bool score = o.kind == WorkloadKind::kScore;
  const int min_input = score ? 2 : 1;
  if (o.input_len < min_input) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--input_len: must be >= ", min_input, ", got ", o.input_len));
  }
  if (!score && o.output_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--output_len: must be >= 1, got ", o.output_len));
  }
  const bool use_corpus =
      o.kind == WorkloadKind::kCorpus || (score && !o.corpus.empty());
  if (o.kind == WorkloadKind::kCorpus &&
      absl::StripAsciiWhitespace(o.corpus).empty()) {
    return absl::InvalidArgumentError(
        "--workload corpus needs --corpus PATH (a non-empty text file)");
  }
  if (!use_corpus && o.vocab_size < 1) {
    return absl::InvalidArgumentError("random token ids need a vocabulary");
  }
  if (use_corpus && !(o.chars_per_token > 0)) {
    return absl::InvalidArgumentError("chars_per_token must be > 0");
  }

  const auto [in_lo, in_hi] =
      LengthRange(o.input_len, o.range_ratio, min_input);
  const auto [out_lo, out_hi] = LengthRange(o.output_len, o.range_ratio, 1);
  if (use_corpus) {
    const size_t need =
        static_cast<size_t>(std::ceil(in_hi * o.chars_per_token));
    if (o.corpus.size() < 2 * need) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--corpus: ", o.corpus.size(), " bytes is too short for prompts of ",
          in_hi, " tokens (about ", need, " bytes each; need at least ",
          2 * need, ")"));
    }
  }

  Rng rng(o.seed);
  std::vector<WorkloadRequest> requests;
  requests.reserve(static_cast<size_t>(o.num_requests));
  for (int64_t i = 0; i < o.num_requests; ++i) {
    WorkloadRequest r;
    r.input_len = static_cast<int>(rng.UniformInt(in_lo, in_hi));
    r.max_tokens = score ? 0 : static_cast<int>(rng.UniformInt(out_lo, out_hi));
    if (use_corpus) {
      const size_t chars = static_cast<size_t>(
          std::max(1.0, std::round(r.input_len * o.chars_per_token)));
      const size_t max_start = o.corpus.size() - chars;
      r.text = CutCorpus(o.corpus,
                         static_cast<size_t>(rng.UniformInt(
                             0, static_cast<int64_t>(max_start))),
                         chars);
    } else {
      r.token_ids.reserve(static_cast<size_t>(r.input_len));
      for (int j = 0; j < r.input_len; ++j) {
        r.token_ids.push_back(
            static_cast<int32_t>(rng.UniformInt(0, o.vocab_size - 1)));
      }
    }
    requests.push_back(std::move(r));
  }
  return requests;
}

}  // namespace alibi::client::bench
