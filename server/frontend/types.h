// The frontend's transport-neutral request and response types: what the gRPC
// and HTTP transports parse their wire formats into, and what they format
// back out. Validation, tokenization, detokenization and stop strings happen
// between these types and the engine's (input_processor.h,
// output_processor.h), never in a transport.
//
// Thread-safety: plain values.
#ifndef ALIBI_SERVER_FRONTEND_TYPES_H_
#define ALIBI_SERVER_FRONTEND_TYPES_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/finish_reason.h"
#include "server/engine/engine.h"

namespace alibi::frontend {

// A prompt or scoring input: `text` or `token_ids`, exactly one.
struct Prompt {
  std::string text;
  std::vector<int32_t> token_ids;
};

// Sampling parameters as a client sends them: unset optionals take vLLM's
// defaults.
struct SamplingOptions {
  std::optional<float> temperature;  // unset: 1.0
  int top_k = 0;
  std::optional<float> top_p;  // unset: 1.0
  float min_p = 0.0f;
  std::optional<float> repetition_penalty;  // unset: 1.0
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::optional<uint64_t> seed;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  int min_tokens = 0;
  bool include_stop_str_in_output = false;
  std::optional<bool> skip_special_tokens;  // unset: true
  // Token id -> bias added to its logit, each in [-100, 100].
  std::vector<std::pair<int32_t, float>> logit_bias;
  // Only these tokens may be generated; empty: any.
  std::vector<int32_t> allowed_token_ids;
  // Words (text) never to generate; tokenized with and without a leading
  // space, as vLLM does.
  std::vector<std::string> bad_words;
};

struct CompletionParams {
  Prompt prompt;
  std::optional<int> max_tokens;  // unset: 16 (or what fits)
  // Unset max_tokens means all the room the context leaves (chat), not 16.
  bool max_tokens_fills_context = false;
  SamplingOptions sampling;
  std::optional<int> logprobs;  // per generated token, with this many top
  bool echo = false;
  int priority = 0;
  std::string request_id;
  std::optional<int> kv_window;  // unset: the server's default
  // Completions of the prompt (OpenAI's `n`): they share the prompt's KV
  // blocks, and completion i of a seeded request has its own seed stream.
  int n = 1;
};

struct ScoreParams {
  Prompt input;
  int top_logprobs = 0;
  int priority = 0;
  std::string request_id;
  std::optional<int> kv_window;  // unset: the server's default
};

// Maps a field's canonical name (its path inside CompletionParams or
// ScoreParams as the gRPC API spells it, e.g. "sampling.top_p", "text",
// "stop_token_ids") to the name a transport's clients know
// ("params.sampling.top_p", "top_p"). Validation messages start with it.
using FieldNamer = std::function<std::string(absl::string_view canonical)>;
// The identity FieldNamer.
inline std::string SameName(absl::string_view canonical) {
  return std::string(canonical);
}

// One alternative, or the chosen token, with its text (partial UTF-8 shown
// lossily).
struct TokenText {
  int32_t token = 0;
  std::string text;
  float logprob = 0.0f;
};

struct LogprobEntry {
  TokenText chosen;
  std::vector<TokenText> top;  // best first
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;
};

// What is new in a request's response since the previous chunk. The first
// chunk carries the echo (with `echo`); the last one is `finished` and
// carries the finish reason, usage and timings.
struct CompletionChunk {
  std::string id;    // the server's request id
  int index = 0;     // which completion of the request (0 .. n-1)
  std::string text;  // new text, complete UTF-8
  std::vector<int32_t> token_ids;
  std::vector<LogprobEntry> logprobs;  // per new token, when asked
  // With echo: the prompt (first chunk only).
  std::vector<int32_t> prompt_token_ids;
  // Prompt log-probabilities (echo with logprobs, scoring): entry i is for
  // prompt token i + 1 (in order across chunks).
  std::vector<LogprobEntry> prompt_logprobs;

  bool finished = false;
  FinishReason finish_reason = FinishReason::kLength;
  std::string stop_reason;  // the stop string, or the stop token id
  absl::Status status;      // not OK: the request failed or was cancelled
  Usage usage;
  engine::RequestTimings timings;

  // Appends `next` (a later chunk of the same completion).
  void Merge(CompletionChunk&& next);
  bool has_content() const {
    return !text.empty() || !token_ids.empty() || !prompt_token_ids.empty() ||
           !prompt_logprobs.empty() || !logprobs.empty();
  }
};

// A scoring request's result.
struct ScoreResult {
  std::string id;
  std::vector<int32_t> token_ids;   // n
  std::vector<std::string> tokens;  // n token texts
  // n - 1 entries: entry i = log p(token_ids[i+1] | token_ids[0..i]), with
  // `top` alternatives when asked.
  std::vector<LogprobEntry> token_logprobs;
  double sum_logprob = 0.0;
  double perplexity = 1.0;  // exp(-sum / (n - 1))
  Usage usage;
  engine::RequestTimings timings;
};

struct TokenizeResult {
  std::vector<int32_t> token_ids;
  std::vector<std::string> tokens;  // text of each token
};

}  // namespace alibi::frontend

#endif  // ALIBI_SERVER_FRONTEND_TYPES_H_
