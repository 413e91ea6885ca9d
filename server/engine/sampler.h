// Token sampling and log-probabilities on one row of logits (host, fp32).
//
// Processing order (vLLM V1's sampler):
//   1. allowed_token_ids: every other token gets -inf;
//   2. bans get -inf: the last token of each bad word whose other tokens end
//      the output so far, and the tokens that may not end the sequence yet
//      (min_tokens). Bans that would leave no token possible are lifted;
//   3. logit_bias is added;
//   4. penalties: repetition (prompt + output tokens: positive logits
//      divided by it, negative ones multiplied), frequency (minus count in
//      output), presence (minus once if in output);
//   5. temperature 0: greedy argmax (lowest id wins ties); otherwise
//      softmax(logits / temperature), then min_p (drop p < min_p * p_max),
//      top_k, top_p (smallest prefix of the sorted distribution reaching
//      top_p), renormalise, draw one uniform from the request's own RNG.
// Returned log-probabilities are those of the model's raw distribution
// (log_softmax of the unprocessed logits), as vLLM reports by default.
//
// A request's SamplerState carries its RNG: one draw per sampled token, so a
// seeded request produces the same tokens whatever else shares its batch.
//
// Thread-safety: functions are pure apart from the SamplerState passed in;
// a SamplerState belongs to one request.
#ifndef ALIBI_SERVER_ENGINE_SAMPLER_H_
#define ALIBI_SERVER_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/types/span.h"
#include "kernels/backend.h"
#include "server/engine/engine.h"

namespace alibi::engine {

// Per-request sampling state: the RNG and token counts for penalties.
class SamplerState {
 public:
  // `seed` none: seeded from std::random_device.
  SamplerState(const SamplingParams& options, absl::Span<const int32_t> prompt);

  const SamplingParams& options() const { return options_; }
  // Records a generated token (for the penalties).
  void AddOutputToken(int32_t token);
  double NextUniform();  // in [0, 1)
                         // The seed of device sampling's draws: options().seed,
                         // or a random one;
  // NextDraw numbers them (one per sampled token).
  uint64_t seed() const { return seed_; }
  uint64_t NextDraw() { return draws_++; }

  // Distinct output tokens with their counts, in order of first appearance.
  absl::Span<const std::pair<int32_t, int32_t>> output_counts() const {
    return counts_;
  }
  // Distinct tokens of the prompt and output, in order of first appearance
  // (kept only with a repetition penalty).
  absl::Span<const int32_t> seen_tokens() const { return seen_list_; }
  // The output so far (kept only when a bad word has several tokens).
  const std::vector<int32_t>& output_tokens() const { return output_; }
  // Scratch for SampleToken: logits it banned this step, with their values,
  // and the bad words' bans.
  std::vector<std::pair<int32_t, float>>& banned_scratch() { return banned_; }
  std::vector<int32_t>& bad_word_scratch() { return bad_words_; }

 private:
  void See(int32_t token);

  SamplingParams options_;
  uint64_t seed_;
  uint64_t draws_ = 0;
  std::mt19937_64 rng_;
  absl::flat_hash_set<int32_t> seen_;
  std::vector<int32_t> seen_list_;
  absl::flat_hash_map<int32_t, size_t> count_at_;  // token -> index in counts_
  std::vector<std::pair<int32_t, int32_t>> counts_;
  bool keep_output_ = false;
  std::vector<int32_t> output_;
  std::vector<std::pair<int32_t, float>> banned_;
  std::vector<int32_t> bad_words_;
};

// Appends the tokens the bad words ban after the output so far (step 2).
void AppendBadWordBans(const SamplerState& state, std::vector<int32_t>* out);

// The request's next draw as a row for Backend::Sample (the same rules run
// on the device): its knobs, lists, seed and draw number. The bad words'
// bans are appended to `bans` (e.g. the min_tokens bans), which must outlive
// the row; row, target and top_n are left to the caller.
kernels::SampleRow DeviceSampleRow(SamplerState& state,
                                   std::vector<int32_t>& bans);

// Chooses the next token from `logits` ([vocab]). `banned` tokens (e.g. EOS
// before min_tokens) are never chosen unless every token is banned (step 2
// above). `scratch` avoids per-call allocations.
int32_t SampleToken(absl::Span<const float> logits, SamplerState& state,
                    absl::Span<const int32_t> banned,
                    std::vector<float>& scratch);

// log_softmax of `logits` at `token`, and the `top_n` most likely tokens
// (best first, lowest id first among equals).
struct LogprobResult {
  float logprob = 0.0f;
  std::vector<TopLogprob> top;
};
LogprobResult ComputeLogprobs(absl::Span<const float> logits, int32_t token,
                              int top_n);

}  // namespace alibi::engine

#endif  // ALIBI_SERVER_ENGINE_SAMPLER_H_
