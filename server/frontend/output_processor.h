// The output side of the frontend: per request, turns the engine's token ids
// and log-probabilities into response chunks: incremental detokenization
// (complete UTF-8 only), stop strings (held back while they could still
// match; the request ends at the first match), token texts for
// log-probabilities, the echo, usage and the finish reason. Runs on the
// consumers' threads, never on the engine thread.
//
// Thread-safety: an OutputProcessor belongs to one request and is used by one
// thread at a time.
#ifndef ALIBI_SERVER_FRONTEND_OUTPUT_PROCESSOR_H_
#define ALIBI_SERVER_FRONTEND_OUTPUT_PROCESSOR_H_

#include <string>

#include "server/engine/engine.h"
#include "server/frontend/input_processor.h"
#include "server/frontend/types.h"
#include "server/tokenizer/tokenizer.h"

namespace alibi::frontend {

class OutputProcessor {
 public:
  // `tokenizer` must outlive the processor.
  OutputProcessor(const tokenizer::Tokenizer& tokenizer, OutputOptions options,
                  std::string id);

  // The chunk for `output` (the engine's next output). When a stop string
  // matched, the chunk is the final one and `*stop_string_hit` is set: the
  // caller must end the engine request (Engine::Stop); later outputs are
  // ignored. After a finished chunk, Process returns empty chunks.
  CompletionChunk Process(engine::EngineOutput output, bool* stop_string_hit);

  bool finished() const { return finished_; }
  // Whether Process has been called.
  bool started() const { return !first_; }

 private:
  // Appends one generated token's text; true when a stop string matched.
  bool AppendToken(int32_t token);
  LogprobEntry Entry(const engine::TokenLogprobs& lp) const;
  // Moves text that can no longer become part of a stop string to `chunk`.
  void Emit(CompletionChunk& chunk, bool all);

  const tokenizer::Tokenizer& tokenizer_;
  const OutputOptions options_;
  const std::string id_;
  tokenizer::IncrementalDecoder decoder_;
  size_t max_stop_len_ = 0;
  // Generated text not yet dropped (cut at a stop string): what is not sent
  // yet, and enough sent text to match a stop string across deltas.
  std::string text_;
  size_t emitted_ = 0;  // bytes of text_ already sent
  int num_tokens_ = 0;  // generated tokens consumed
  bool first_ = true;
  bool finished_ = false;
  std::string stop_reason_;
};

}  // namespace alibi::frontend

#endif  // ALIBI_SERVER_FRONTEND_OUTPUT_PROCESSOR_H_
