// The frontend: what a transport (rpc/, http/) calls to serve a request. It
// validates and tokenizes (InputProcessor), submits to the engine, and turns
// the engine's outputs into response chunks (OutputProcessor) on its own
// output threads, so the engine thread never detokenizes or builds a
// response.
//
//   auto call = frontend.NewCompletion(params, namer, [&] { /* poll */ });
//   if (!call.ok()) ...                        // INVALID_ARGUMENT
//   RETURN_IF_ERROR((*call)->Submit());         // queue full, draining
//   ... on_ready: while (auto chunk = call->Poll()) write(*chunk);
//   ... client gone: call->Cancel(absl::CancelledError(...));
//
// on_ready runs on an output thread (never the engine thread) each time the
// engine published something for the call, never before Submit() was
// called; it should Poll and write, or remember to Poll when the transport
// is ready to write again (back-pressure: the engine merges what the
// consumer has not taken, so a slow reader costs only its own output).
//
// Thread-safety: Frontend and InferenceCall are thread-safe.
#ifndef ALIBI_SERVER_FRONTEND_FRONTEND_H_
#define ALIBI_SERVER_FRONTEND_FRONTEND_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/task_pool.h"
#include "server/engine/engine.h"
#include "server/frontend/chat_template.h"
#include "server/frontend/input_processor.h"
#include "server/frontend/output_processor.h"
#include "server/frontend/types.h"
#include "server/tokenizer/tokenizer.h"

namespace alibi::frontend {

// One request in flight: one completion, or n completions of one prompt
// (CompletionParams::n) that the engine runs as a group sharing the
// prompt's KV blocks.
class InferenceCall : public std::enable_shared_from_this<InferenceCall> {
 public:
  // Queues the request in the engine (n completions: Engine::SubmitGroup,
  // all or none). Errors: RESOURCE_EXHAUSTED (queue full), UNAVAILABLE
  // (shutting down). Call once.
  absl::Status Submit();

  // What is new for one of the completions since the last Poll (its
  // `index`), or nullopt when nothing is. A chunk that ends completion i is
  // `finished`; once every completion's final chunk was returned, done() is
  // true and Poll always returns nullopt. With echo and logprobs, the
  // prompt's log-probabilities (computed once, by completion 0) are in the
  // first chunk of every completion.
  std::optional<CompletionChunk> Poll();
  // Every completion's final chunk has been returned by Poll.
  bool done() const;

  // Ends the request early (client cancel, deadline, disconnect): the engine
  // frees its KV blocks within one step; the final chunks carry `reason`.
  void Cancel(absl::Status reason);

  // The server's id of the request ("" before Submit): the engine id of its
  // first completion.
  std::string id() const;
  int n() const { return static_cast<int>(completions_.size()); }
  // The request's token ids (the prompt, or the scoring input).
  const std::vector<int32_t>& prompt() const { return prompt_; }
  // The caller's request id ("" when none was given).
  const std::string& client_request_id() const { return client_request_id_; }

  // A scoring call's result from all of its chunks merged.
  ScoreResult ToScoreResult(CompletionChunk all) const;

  InferenceCall(engine::Engine* engine, TaskPool* executor,
                const tokenizer::Tokenizer& tokenizer, PreparedRequest prepared,
                std::function<void()> on_ready);

 private:
  struct Completion {
    std::shared_ptr<engine::OutputStream> stream;
    OutputProcessor processor;
    bool done = false;
  };
  void Notify();
  // Whether completion `i` may be polled now (see Poll); with mu_ held.
  bool ReadyLocked(size_t i) const;

  engine::Engine* const engine_;
  TaskPool* const executor_;
  const tokenizer::Tokenizer& tokenizer_;
  const std::function<void()> on_ready_;
  const std::vector<int32_t> prompt_;
  const std::string client_request_id_;
  // Completions other than the first get the prompt's log-probabilities
  // from the first.
  const bool share_prompt_logprobs_;
  std::atomic<bool> notify_pending_{false};
  std::atomic<bool> submitted_{false};

  mutable std::mutex mu_;                         // guards what follows
  std::optional<engine::EngineRequest> request_;  // until Submit
  std::vector<Completion> completions_;
  size_t next_ = 0;  // where the next Poll starts looking (round robin)
  int num_done_ = 0;
  std::vector<engine::TokenLogprobs> prompt_logprobs_;  // completion 0's
  bool prompt_logprobs_complete_ = false;
};

struct FrontendOptions {
  InputLimits limits;
  int output_threads = 2;
  // The model's chat template; null: the model has none.
  std::shared_ptr<const ChatTemplate> chat_template;
};

class Frontend {
 public:
  // `engine` must outlive the frontend.
  Frontend(engine::Engine* engine,
           std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
           FrontendOptions options = {});
  ~Frontend();

  // Validates and tokenizes a completion (INVALID_ARGUMENT naming the field
  // through `name`); the call is not submitted yet.
  absl::StatusOr<std::shared_ptr<InferenceCall>> NewCompletion(
      const CompletionParams& params, const FieldNamer& name,
      std::function<void()> on_ready);
  // The same for scoring.
  absl::StatusOr<std::shared_ptr<InferenceCall>> NewScore(
      const ScoreParams& params, const FieldNamer& name,
      std::function<void()> on_ready);
  absl::StatusOr<TokenizeResult> Tokenize(const std::string& text,
                                          const FieldNamer& name) const;
  absl::StatusOr<std::string> Detokenize(absl::Span<const int32_t> token_ids,
                                         bool skip_special_tokens,
                                         const FieldNamer& name) const;
  // The text of one token (TokenTextOf).
  std::string TokenText(int32_t id) const;
  // The prompt text for chat `messages` (canonical field name "messages").
  // FAILED_PRECONDITION when the model has no chat template,
  // INVALID_ARGUMENT when the template refuses the messages.
  absl::StatusOr<std::string> ApplyChatTemplate(
      absl::Span<const ChatMessage> messages, bool add_generation_prompt,
      const FieldNamer& name) const;
  bool has_chat_template() const { return chat_template_ != nullptr; }

  const engine::EngineInfo& info() const { return engine_->info(); }
  engine::Engine& engine() const { return *engine_; }
  const tokenizer::Tokenizer& tokenizer() const { return input_.tokenizer(); }

 private:
  std::shared_ptr<InferenceCall> MakeCall(PreparedRequest prepared,
                                          std::function<void()> on_ready);

  engine::Engine* const engine_;
  const InputProcessor input_;
  const std::shared_ptr<const ChatTemplate> chat_template_;
  TaskPool executor_;
};

}  // namespace alibi::frontend

#endif  // ALIBI_SERVER_FRONTEND_FRONTEND_H_
