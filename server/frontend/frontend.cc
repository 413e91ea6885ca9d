#include "server/frontend/frontend.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace alibi::frontend {

// ---------------------------------------------------------------------------
// InferenceCall

InferenceCall::InferenceCall(engine::Engine* engine, TaskPool* executor,
                             const tokenizer::Tokenizer& tokenizer,
                             PreparedRequest prepared,
                             std::function<void()> on_ready)
    : engine_(engine),
      executor_(executor),
      tokenizer_(tokenizer),
      on_ready_(std::move(on_ready)),
      prompt_(prepared.request.prompt),
      client_request_id_(prepared.request.client_request_id),
      share_prompt_logprobs_(prepared.n > 1 && prepared.output.prompt_logprobs),
      request_(std::move(prepared.request)) {
  const int n = std::max(1, prepared.n);
  completions_.reserve(n);
  for (int i = 0; i < n; ++i) {
    completions_.push_back(
        {nullptr, OutputProcessor(tokenizer, prepared.output, ""), false});
  }
}

void InferenceCall::Notify() {
  // One pending task per call: the consumer takes everything new at once.
  if (notify_pending_.exchange(true)) return;
  std::weak_ptr<InferenceCall> weak = weak_from_this();
  executor_->Post([weak] {
    std::shared_ptr<InferenceCall> call = weak.lock();
    if (call == nullptr) return;
    call->notify_pending_.store(false);
    if (call->on_ready_) call->on_ready_();
  });
}

absl::Status InferenceCall::Submit() {
  engine::EngineRequest request;
  std::vector<std::shared_ptr<engine::OutputStream>> streams;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!request_.has_value()) {
      return absl::FailedPreconditionError("the call was submitted already");
    }
    request = std::move(*request_);
    request_.reset();
    std::weak_ptr<InferenceCall> weak = weak_from_this();
    for (Completion& c : completions_) {
      c.stream = std::make_shared<engine::OutputStream>([weak] {
        if (std::shared_ptr<InferenceCall> call = weak.lock()) call->Notify();
      });
      streams.push_back(c.stream);
    }
  }
  const absl::Status status =
      streams.size() == 1
          ? engine_->Submit(std::move(request), std::move(streams[0]))
          : engine_->SubmitGroup(std::move(request), std::move(streams));
  if (status.ok()) submitted_.store(true);
  return status;
}

std::string InferenceCall::id() const {
  if (!submitted_.load()) return "";
  return absl::StrCat(completions_[0].stream->id());
}

bool InferenceCall::ReadyLocked(size_t i) const {
  if (completions_[i].done) return false;
  // Completions after the first start with the prompt's log-probabilities,
  // which only the first computes: they wait until it has all of them.
  return i == 0 || !share_prompt_logprobs_ || prompt_logprobs_complete_;
}

std::optional<CompletionChunk> InferenceCall::Poll() {
  ALIBI_CHECK_NOT_ENGINE_THREAD();
  std::lock_guard<std::mutex> lock(mu_);
  if (!submitted_.load()) return std::nullopt;
  const size_t n = completions_.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (next_ + k) % n;
    if (!ReadyLocked(i)) continue;
    Completion& c = completions_[i];
    std::optional<engine::EngineOutput> output = c.stream->Take();
    if (!output.has_value()) continue;
    next_ = (i + 1) % n;
    if (share_prompt_logprobs_) {
      if (i == 0) {
        prompt_logprobs_.insert(prompt_logprobs_.end(),
                                output->prompt_logprobs.begin(),
                                output->prompt_logprobs.end());
        prompt_logprobs_complete_ =
            output->finished || prompt_logprobs_.size() + 1 >= prompt_.size();
      } else if (output->prompt_logprobs.empty() && !c.processor.started()) {
        output->prompt_logprobs = prompt_logprobs_;
      }
    }
    bool stop_string_hit = false;
    CompletionChunk chunk =
        c.processor.Process(*std::move(output), &stop_string_hit);
    chunk.id = absl::StrCat(completions_[0].stream->id());
    chunk.index = static_cast<int>(i);
    if (stop_string_hit) engine_->Stop(c.stream->id());
    if (chunk.finished) {
      c.done = true;
      ++num_done_;
    }
    return chunk;
  }
  return std::nullopt;
}

bool InferenceCall::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_done_ == static_cast<int>(completions_.size());
}

void InferenceCall::Cancel(absl::Status reason) {
  if (!submitted_.load()) return;
  for (const Completion& c : completions_) {
    engine_->Cancel(c.stream->id(), reason);
  }
}

ScoreResult InferenceCall::ToScoreResult(CompletionChunk all) const {
  ALIBI_CHECK_NOT_ENGINE_THREAD();
  ScoreResult r;
  r.id = std::move(all.id);
  r.token_ids = prompt_;
  r.tokens.reserve(prompt_.size());
  for (int32_t id : prompt_) r.tokens.push_back(TokenTextOf(tokenizer_, id));
  r.token_logprobs = std::move(all.prompt_logprobs);
  for (const LogprobEntry& e : r.token_logprobs) {
    r.sum_logprob += e.chosen.logprob;
  }
  const size_t n = r.token_logprobs.size();
  r.perplexity =
      n > 0 ? std::exp(-r.sum_logprob / static_cast<double>(n)) : 1.0;
  r.usage = all.usage;
  r.timings = all.timings;
  return r;
}

// ---------------------------------------------------------------------------
// Frontend

Frontend::Frontend(engine::Engine* engine,
                   std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
                   FrontendOptions options)
    : engine_(engine),
      input_(std::move(tokenizer), engine->info(), options.limits),
      chat_template_(std::move(options.chat_template)),
      executor_(options.output_threads) {}

Frontend::~Frontend() = default;

std::shared_ptr<InferenceCall> Frontend::MakeCall(
    PreparedRequest prepared, std::function<void()> on_ready) {
  return std::make_shared<InferenceCall>(
      engine_, &executor_, input_.tokenizer(), std::move(prepared),
      std::move(on_ready));
}

absl::StatusOr<std::shared_ptr<InferenceCall>> Frontend::NewCompletion(
    const CompletionParams& params, const FieldNamer& name,
    std::function<void()> on_ready) {
  absl::StatusOr<PreparedRequest> prepared =
      input_.PrepareCompletion(params, name);
  if (!prepared.ok()) return prepared.status();
  return MakeCall(*std::move(prepared), std::move(on_ready));
}

absl::StatusOr<std::shared_ptr<InferenceCall>> Frontend::NewScore(
    const ScoreParams& params, const FieldNamer& name,
    std::function<void()> on_ready) {
  absl::StatusOr<PreparedRequest> prepared = input_.PrepareScore(params, name);
  if (!prepared.ok()) return prepared.status();
  return MakeCall(*std::move(prepared), std::move(on_ready));
}

absl::StatusOr<TokenizeResult> Frontend::Tokenize(
    const std::string& text, const FieldNamer& name) const {
  return input_.Tokenize(text, name);
}

std::string Frontend::TokenText(int32_t id) const {
  return TokenTextOf(input_.tokenizer(), id);
}

absl::StatusOr<std::string> Frontend::ApplyChatTemplate(
    absl::Span<const ChatMessage> messages, bool add_generation_prompt,
    const FieldNamer& name) const {
  if (chat_template_ == nullptr) {
    return absl::FailedPreconditionError(
        "this model has no chat template (tokenizer_config.json has no "
        "chat_template, and the server was started without --chat_template)");
  }
  if (messages.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name("messages"), ": at least one message is needed"));
  }
  absl::StatusOr<std::string> prompt =
      chat_template_->Render(messages, add_generation_prompt);
  if (!prompt.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name("messages"), ": ", prompt.status().message()));
  }
  return prompt;
}

absl::StatusOr<std::string> Frontend::Detokenize(
    absl::Span<const int32_t> token_ids, bool skip_special_tokens,
    const FieldNamer& name) const {
  return input_.Detokenize(token_ids, skip_special_tokens, name);
}

}  // namespace alibi::frontend
