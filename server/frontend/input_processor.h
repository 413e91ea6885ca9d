// The input side of the frontend: the one place requests are validated and
// tokenized. It turns transport-neutral CompletionParams / ScoreParams into
// an engine request plus the options the output processor needs. Errors are
// INVALID_ARGUMENT with a message that starts with the field's name as the
// transport's clients know it (FieldNamer), e.g.
// "params.sampling.top_p: must be in (0, 1], got 1.5".
//
// Thread-safety: immutable after construction; every method may be called
// from any number of threads (the tokenizer is thread-safe).
#ifndef ALIBI_SERVER_FRONTEND_INPUT_PROCESSOR_H_
#define ALIBI_SERVER_FRONTEND_INPUT_PROCESSOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/engine/engine.h"
#include "server/frontend/types.h"
#include "server/tokenizer/tokenizer.h"

namespace alibi::frontend {

// Request-size limits beyond what EngineInfo gives.
struct InputLimits {
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
  int max_stop_token_ids = 256;
  int max_request_id_bytes = 256;
  int default_max_tokens = 16;
  int max_n = 128;            // completions per request
  int max_logit_bias = 1024;  // entries
  int max_bad_words = 64;
  int max_bad_word_bytes = 256;
};

// What the output processor needs to turn engine outputs into responses.
struct OutputOptions {
  std::vector<std::string> stop;  // stop strings
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  int min_tokens = 0;     // stop strings are ignored before this many tokens
  bool logprobs = false;  // token texts for generated-token logprobs
  bool prompt_logprobs = false;
  bool echo = false;
  std::string echo_text;  // the prompt's text, with echo
  std::vector<int32_t> prompt;
};

struct PreparedRequest {
  engine::EngineRequest request;
  OutputOptions output;
  int n = 1;  // completions of the request (SubmitGroup when > 1)
};

class InputProcessor {
 public:
  InputProcessor(std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
                 const engine::EngineInfo& info, InputLimits limits = {});

  absl::StatusOr<PreparedRequest> PrepareCompletion(
      const CompletionParams& params, const FieldNamer& name) const;
  absl::StatusOr<PreparedRequest> PrepareScore(const ScoreParams& params,
                                               const FieldNamer& name) const;
  absl::StatusOr<TokenizeResult> Tokenize(const std::string& text,
                                          const FieldNamer& name) const;
  // The text of `token_ids` (each in the vocabulary; canonical field name
  // "token_ids").
  absl::StatusOr<std::string> Detokenize(absl::Span<const int32_t> token_ids,
                                         bool skip_special_tokens,
                                         const FieldNamer& name) const;

  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  const std::shared_ptr<const tokenizer::Tokenizer>& shared_tokenizer() const {
    return tokenizer_;
  }

 private:
  absl::StatusOr<std::vector<int32_t>> PromptTokens(
      const Prompt& prompt, const FieldNamer& name) const;
  absl::Status ConvertSampling(const SamplingOptions& s, const FieldNamer& name,
                               PreparedRequest& out) const;
  // The request's sliding window (its own, else the server's default).
  absl::StatusOr<int> Window(const std::optional<int>& kv_window,
                             const FieldNamer& name) const;
  // What every request has: the caller's request_id, the window and the
  // prompt's tokens, checked and copied into `r`.
  absl::Status PrepareCommon(const std::string& request_id,
                             const std::optional<int>& kv_window,
                             const Prompt& prompt, const FieldNamer& name,
                             engine::EngineRequest& r) const;
  // logit_bias, allowed_token_ids and bad_words.
  absl::Status ConvertTokenConstraints(const SamplingOptions& s,
                                       const FieldNamer& name,
                                       engine::SamplingParams& out) const;
  absl::Status CheckTokenId(int32_t id, const FieldNamer& name,
                            absl::string_view field) const;
  // Each of ids is a token id; an error names `field`[i].
  absl::Status CheckTokenIds(absl::Span<const int32_t> ids,
                             const FieldNamer& name,
                             absl::string_view field) const;

  const std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;
  const int vocab_size_;
  const int max_model_len_;
  const int max_logprobs_;
  const int default_kv_window_;
  const InputLimits limits_;
};

// The text of token `id`, always valid UTF-8 (a partial character shows as
// U+FFFD).
std::string TokenTextOf(const tokenizer::Tokenizer& tokenizer, int32_t id);

}  // namespace alibi::frontend

#endif  // ALIBI_SERVER_FRONTEND_INPUT_PROCESSOR_H_
