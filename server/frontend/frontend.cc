#include "server/frontend/frontend.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace alibi::frontend {

// ---------------------------------------------------------------------------
// OutputExecutor

OutputExecutor::OutputExecutor(int num_threads) {
  for (int i = 0; i < std::max(1, num_threads); ++i) {
    threads_.emplace_back([this] { Run(); });
  }
}

OutputExecutor::~OutputExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void OutputExecutor::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void OutputExecutor::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
    if (tasks_.empty()) return;
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

// ---------------------------------------------------------------------------
// InferenceCall

InferenceCall::InferenceCall(engine::Engine* engine, OutputExecutor* executor,
                             const tokenizer::Tokenizer& tokenizer,
                             PreparedRequest prepared,
                             std::function<void()> on_ready)
    : engine_(engine),
      executor_(executor),
      tokenizer_(tokenizer),
      on_ready_(std::move(on_ready)),
      prompt_(prepared.request.prompt),
      client_request_id_(prepared.request.client_request_id),
      request_(std::move(prepared.request)),
      processor_(tokenizer, std::move(prepared.output), "") {}

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
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!request_.has_value()) {
      return absl::FailedPreconditionError("the call was submitted already");
    }
    request = std::move(*request_);
    request_.reset();
    std::weak_ptr<InferenceCall> weak = weak_from_this();
    stream_ = std::make_shared<engine::OutputStream>([weak] {
      if (std::shared_ptr<InferenceCall> call = weak.lock()) call->Notify();
    });
  }
  const absl::Status status = engine_->Submit(std::move(request), stream_);
  if (status.ok()) submitted_.store(true);
  return status;
}

std::string InferenceCall::id() const {
  if (!submitted_.load()) return "";
  return absl::StrCat(stream_->id());
}

std::optional<CompletionChunk> InferenceCall::Poll() {
  ALIBI_CHECK_NOT_ENGINE_THREAD();
  std::lock_guard<std::mutex> lock(mu_);
  if (done_ || !submitted_.load()) return std::nullopt;
  std::optional<engine::EngineOutput> output = stream_->Take();
  if (!output.has_value()) return std::nullopt;
  bool stop_string_hit = false;
  CompletionChunk chunk =
      processor_.Process(*std::move(output), &stop_string_hit);
  chunk.id = absl::StrCat(stream_->id());
  if (stop_string_hit) engine_->Stop(stream_->id());
  done_ = chunk.finished;
  return chunk;
}

void InferenceCall::Cancel(absl::Status reason) {
  if (!submitted_.load()) return;
  engine_->Cancel(stream_->id(), std::move(reason));
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

}  // namespace alibi::frontend
