// The requests alibi-bench sends.
//
// - random: prompts of random token ids (sent as `token_ids`, so the input
//   length is exact), lengths uniform in [len*(1-r), len*(1+r)] as in vLLM's
//   benchmark_serving random dataset; max_tokens likewise from output_len.
// - corpus: prompts cut from a text file at word boundaries, about
//   input_len tokens long (chars_per_token, measured by alibi-bench with one
//   Tokenize call, turns token lengths into characters); max_tokens as above.
// - score: inputs of at least 2 tokens for the Score RPC: random token ids,
//   or text cut from the corpus when one is given.
//
// Thread-safety: pure functions.
#ifndef ALIBI_CLIENT_BENCH_WORKLOAD_H_
#define ALIBI_CLIENT_BENCH_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alibi::client::bench {

enum class WorkloadKind { kRandom, kCorpus, kScore };

// "random", "corpus", "score"; INVALID_ARGUMENT otherwise.
absl::StatusOr<WorkloadKind> ParseWorkloadKind(absl::string_view name);
const char* WorkloadKindName(WorkloadKind kind);

struct WorkloadOptions {
  WorkloadKind kind = WorkloadKind::kRandom;
  int64_t num_requests = 0;
  int input_len = 0;
  int output_len = 0;
  double range_ratio = 0;  // in [0, 1)
  uint64_t seed = 0;
  int vocab_size = 0;          // random token ids are in [0, vocab_size)
  std::string corpus;          // the corpus text (corpus; optional for score)
  double chars_per_token = 4;  // for cutting the corpus
};

struct WorkloadRequest {
  // Exactly one of text and token_ids is set.
  std::string text;
  std::vector<int32_t> token_ids;
  int input_len = 0;   // target prompt length in tokens
  int max_tokens = 0;  // 0 for score
};

// The length range vLLM's random dataset draws from:
// [floor(len * (1 - r)), floor(len * (1 + r))], the low end at least
// `min_len`.
std::pair<int, int> LengthRange(int len, double range_ratio, int min_len = 1);

// Cuts about `target_chars` bytes from `corpus` starting near `start`: begins
// after the first whitespace at or after `start` (or at 0), ends at the
// first whitespace at or after begin + target_chars (or the corpus end), so
// words and UTF-8 sequences stay whole; surrounding whitespace is trimmed.
std::string CutCorpus(absl::string_view corpus, size_t start,
                      size_t target_chars);

// num_requests requests; deterministic for a seed. INVALID_ARGUMENT for bad
// options (lengths < 1, a score input < 2, range_ratio outside [0, 1), no
// vocabulary for random ids, a corpus missing or too short).
absl::StatusOr<std::vector<WorkloadRequest>> MakeWorkload(
    const WorkloadOptions& options);

}  // namespace alibi::client::bench

#endif  // ALIBI_CLIENT_BENCH_WORKLOAD_H_
