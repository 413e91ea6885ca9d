#include "server/rpc/service.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/utf8.h"
#include "server/model/config.h"
#include "server/rpc/status.h"

namespace alibi::rpc {
namespace {

using engine::FinishReason;
using engine::RequestDelta;
using engine::RequestStream;

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void SetDuration(TimePoint from, TimePoint to, google::protobuf::Duration* d) {
  if (from == TimePoint() || to == TimePoint() || to < from) return;
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
  d->set_seconds(ns / 1000000000);
  d->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

void FillTimings(const engine::RequestTimings& t, v1::Timings* out) {
  SetDuration(t.arrival, t.scheduled, out->mutable_queue_time());
  SetDuration(t.arrival, t.first_token, out->mutable_time_to_first_token());
  SetDuration(t.arrival, t.last_token, out->mutable_total_time());
}

void FillUsage(const RequestDelta& d, v1::Usage* usage) {
  usage->set_prompt_tokens(d.prompt_tokens);
  usage->set_completion_tokens(d.completion_tokens);
  usage->set_cached_prompt_tokens(d.cached_prompt_tokens);
}

// The text of one token, always valid UTF-8 (a partial character shows as
// U+FFFD).
std::string TokenText(const tokenizer::Tokenizer& tok, int32_t id) {
  return LossyUtf8(tok.TokenBytes(id));
}

void FillTokenLogprob(const tokenizer::Tokenizer& tok,
                      const engine::TokenLogprobs& in, v1::TokenLogprob* out) {
  out->set_token_id(in.token);
  out->set_token(TokenText(tok, in.token));
  out->set_logprob(in.logprob);
  for (const engine::TopLogprob& top : in.top) {
    v1::TopLogprob* t = out->add_top_logprobs();
    t->set_token_id(top.token);
    t->set_token(TokenText(tok, top.token));
    t->set_logprob(top.logprob);
  }
}

// Compares a presented credential with the expected one in time that does not
// depend on where they differ.
bool SecureEquals(absl::string_view presented, absl::string_view expected) {
  if (presented.size() != expected.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < presented.size(); ++i) {
    diff |= static_cast<unsigned char>(presented[i] ^ expected[i]);
  }
  return diff == 0;
}

// With `echo`, the prompt's text as the response starts with it: the request's
// own text, or its token ids decoded.
std::string EchoText(const v1::CompletionParams& params,
                     const engine::GenerationRequest& request,
                     const tokenizer::Tokenizer& tokenizer) {
  if (!params.echo()) return "";
  if (!params.text().empty()) return params.text();
  return tokenizer.Decode(request.prompt, request.skip_special_tokens);
}

// The status a call that the client abandoned ends with.
absl::Status AbandonedStatus(const grpc::CallbackServerContext& context) {
  if (context.deadline() <= std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("deadline exceeded");
  }
  return absl::CancelledError("cancelled by the client");
}

}  // namespace

// A unary call backed by one engine request: Complete or Score.
//
// Finish() lets gRPC delete the reactor at any time after, so it is always
// the last thing a method does, and it waits until Start() has returned.
class InferenceService::GenerateReactor : public grpc::ServerUnaryReactor {
 public:
  GenerateReactor(InferenceService* service,
                  grpc::CallbackServerContext* context, absl::string_view rpc,
                  engine::Engine* engine)
      : service_(service), context_(context), rpc_(rpc), engine_(engine) {}

  // Submits the validated request. `build` fills the response from the
  // final delta and the request's id (on the engine thread).
  using Builder = std::function<void(RequestDelta&, uint64_t id)>;
  void Start(engine::GenerationRequest request, Builder build) {
    build_ = std::move(build);
    auto stream = engine_->Submit(std::move(request),
                                  [this](RequestStream& s) { OnUpdate(s); });
    std::optional<grpc::Status> finish;
    {
      std::lock_guard<std::mutex> lock(mu_);
      started_ = true;
      if (!stream.ok()) {
        finish = ToGrpcStatus(stream.status());
      } else {
        stream_ = *stream;
        if (cancel_requested_) {
          engine_->Cancel(stream_->id(), AbandonedStatus(*context_));
        }
        finish = deferred_finish_;
      }
    }
    if (finish.has_value()) FinishCall(*finish);
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (stream_ != nullptr) {
      engine_->Cancel(stream_->id(), AbandonedStatus(*context_));
    } else {
      cancel_requested_ = true;
    }
  }

  void OnDone() override {
    service_->CallDone(rpc_, context_->IsCancelled()
                                 ? ToGrpcStatus(AbandonedStatus(*context_))
                                 : status_);
    delete this;
  }

 private:
  void OnUpdate(RequestStream& stream) {
    if (!stream.finished()) return;  // a unary answer needs the whole result
    std::optional<RequestDelta> delta = stream.Take();
    if (!delta.has_value()) return;
    grpc::Status status = ToGrpcStatus(delta->status);
    if (status.ok()) build_(*delta, stream.id());
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!started_) {
        deferred_finish_ = status;
        return;
      }
    }
    FinishCall(status);
  }

  void FinishCall(const grpc::Status& status) {
    status_ = status;
    Finish(status);
  }

  InferenceService* const service_;
  grpc::CallbackServerContext* const context_;
  const std::string rpc_;
  engine::Engine* const engine_;
  Builder build_;
  grpc::Status status_;
  std::mutex mu_;
  bool started_ = false;
  std::optional<grpc::Status> deferred_finish_;
  std::shared_ptr<RequestStream> stream_;
  bool cancel_requested_ = false;
};

// CompleteStream: one message per engine delta, coalesced while a write is in
// flight (so a slow reader holds at most its own output in memory).
//
// Writes are started under the lock; the terminal operations (Finish,
// StartWriteAndFinish), after which gRPC may delete the reactor, are decided
// under the lock and performed after releasing it, as the last thing a
// method does, and never before Start() has returned.
class InferenceService::StreamReactor
    : public grpc::ServerWriteReactor<v1::CompleteStreamResponse> {
 public:
  StreamReactor(InferenceService* service, grpc::CallbackServerContext* context,
                engine::Engine* engine)
      : service_(service), context_(context), engine_(engine) {}

  // `echo_text`: the prompt's text, sent first (with its ids) when echo is on.
  void Start(engine::GenerationRequest request, bool echo,
             std::string echo_text) {
    echo_ = echo;
    echo_text_ = std::move(echo_text);
    if (echo_) echo_ids_ = request.prompt;
    auto stream = engine_->Submit(std::move(request),
                                  [this](RequestStream& s) { OnUpdate(s); });
    Terminal terminal;
    {
      std::lock_guard<std::mutex> lock(mu_);
      started_ = true;
      if (!stream.ok()) {
        terminal = FinishLocked(ToGrpcStatus(stream.status()));
      } else {
        owned_ = *stream;
        stream_ = owned_.get();
        if (cancel_requested_) {
          engine_->Cancel(stream_->id(), AbandonedStatus(*context_));
        }
        terminal = TryWriteLocked();
      }
    }
    Run(terminal);
  }

  // Ends a call whose request was invalid (before Start).
  void Reject(const grpc::Status& status) {
    Terminal terminal;
    {
      std::lock_guard<std::mutex> lock(mu_);
      started_ = true;
      terminal = FinishLocked(status);
    }
    Run(terminal);
  }

  void OnWriteDone(bool ok) override {
    Terminal terminal;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) {  // the client is gone
        broken_ = true;
        engine_->Cancel(stream_->id(), AbandonedStatus(*context_));
      }
      terminal = pending_finish_.has_value() ? FinishLocked(*pending_finish_)
                                             : TryWriteLocked();
    }
    Run(terminal);
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (stream_ != nullptr) {
      engine_->Cancel(stream_->id(), AbandonedStatus(*context_));
    } else {
      cancel_requested_ = true;
    }
  }

  void OnDone() override {
    service_->CallDone("CompleteStream",
                       context_->IsCancelled()
                           ? ToGrpcStatus(AbandonedStatus(*context_))
                           : status_);
    delete this;
  }

 private:
  // A terminal operation to perform after unlocking.
  struct Terminal {
    enum Kind { kNone, kFinish, kWriteAndFinish } kind = kNone;
    grpc::Status status;
  };

  void OnUpdate(RequestStream& stream) {
    Terminal terminal;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stream_ == nullptr) stream_ = &stream;  // Submit has not returned
      terminal = TryWriteLocked();
    }
    Run(terminal);
  }

  void Run(const Terminal& t) {
    if (t.kind == Terminal::kFinish) {
      Finish(t.status);
    } else if (t.kind == Terminal::kWriteAndFinish) {
      StartWriteAndFinish(&response_, grpc::WriteOptions(), t.status);
    }
  }

  Terminal FinishLocked(const grpc::Status& status) {
    if (finished_) return {};
    finished_ = true;
    status_ = status;
    return {Terminal::kFinish, status};
  }

  // Starts the next write if none is in flight and something is new; returns
  // the terminal operation when the stream is over.
  Terminal TryWriteLocked() {
    if (!started_ || writing_ || finished_ || stream_ == nullptr) return {};
    std::optional<RequestDelta> delta = stream_->Take();
    if (!delta.has_value()) return {};
    if (broken_) {  // nobody reads: wait for the engine's final delta
      return delta->finished ? FinishLocked(ToGrpcStatus(delta->status))
                             : Terminal{};
    }
    const tokenizer::Tokenizer& tok = engine_->tokenizer();
    response_.Clear();
    response_.set_id(absl::StrCat(stream_->id()));
    if (first_message_) {
      first_message_ = false;
      if (echo_) {
        response_.set_text(echo_text_);
        response_.mutable_prompt_token_ids()->Add(echo_ids_.begin(),
                                                  echo_ids_.end());
      }
    }
    response_.mutable_text()->append(delta->text);
    response_.mutable_token_ids()->Add(delta->token_ids.begin(),
                                       delta->token_ids.end());
    for (const auto& lp : delta->logprobs) {
      FillTokenLogprob(tok, lp, response_.add_logprobs());
    }
    for (const auto& lp : delta->prompt_logprobs) {
      FillTokenLogprob(tok, lp, response_.add_prompt_logprobs());
    }
    if (!delta->finished) {
      writing_ = true;
      StartWrite(&response_);
      return {};
    }
    const grpc::Status status = ToGrpcStatus(delta->status);
    if (!status.ok()) {
      // Deliver what was generated, then the error.
      const bool has_content = !response_.text().empty() ||
                               response_.token_ids_size() > 0 ||
                               response_.prompt_token_ids_size() > 0 ||
                               response_.prompt_logprobs_size() > 0;
      if (!has_content) return FinishLocked(status);
      pending_finish_ = status;
      writing_ = true;
      StartWrite(&response_);
      return {};
    }
    response_.set_finish_reason(ToProto(delta->finish_reason));
    response_.set_stop_reason(delta->stop_reason);
    FillUsage(*delta, response_.mutable_usage());
    FillTimings(delta->timings, response_.mutable_timings());
    finished_ = true;
    status_ = grpc::Status::OK;
    return {Terminal::kWriteAndFinish, grpc::Status::OK};
  }

  InferenceService* const service_;
  grpc::CallbackServerContext* const context_;
  engine::Engine* const engine_;
  bool echo_ = false;
  std::string echo_text_;
  std::vector<int32_t> echo_ids_;

  std::mutex mu_;
  bool started_ = false;
  std::shared_ptr<RequestStream> owned_;
  RequestStream* stream_ = nullptr;
  v1::CompleteStreamResponse response_;  // the message being written
  bool first_message_ = true;
  bool writing_ = false;
  bool finished_ = false;
  bool broken_ = false;
  bool cancel_requested_ = false;
  std::optional<grpc::Status> pending_finish_;
  grpc::Status status_;
};

// A CompleteStream call refused before it started (auth, loading, draining).
class RejectedStream
    : public grpc::ServerWriteReactor<v1::CompleteStreamResponse> {
 public:
  RejectedStream(metrics::Metrics* metrics, const grpc::Status& status)
      : metrics_(metrics), status_(status) {
    Finish(status);
  }
  void OnDone() override {
    if (metrics_ != nullptr) {
      metrics_->RecordRequest("CompleteStream", static_cast<absl::StatusCode>(
                                                    status_.error_code()));
    }
    delete this;
  }

 private:
  metrics::Metrics* const metrics_;
  const grpc::Status status_;
};

InferenceService::InferenceService(ServiceOptions options,
                                   metrics::Metrics* metrics)
    : options_(std::move(options)), metrics_(metrics) {}

void InferenceService::SetEngine(engine::Engine* engine) {
  engine_.store(engine);
}

void InferenceService::StartDraining() { draining_.store(true); }

bool InferenceService::WaitForIdle(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                           [this] { return in_flight_ == 0; });
}

int InferenceService::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

absl::Status InferenceService::Admit(const grpc::CallbackServerContext& context,
                                     engine::Engine** engine) {
  if (!options_.api_key.empty()) {
    const auto& metadata = context.client_metadata();
    auto it = metadata.find("authorization");
    const std::string expected = absl::StrCat("Bearer ", options_.api_key);
    if (it == metadata.end() ||
        !SecureEquals(absl::string_view(it->second.data(), it->second.size()),
                      expected)) {
      return absl::UnauthenticatedError(
          "missing or wrong bearer token in the `authorization` metadata");
    }
  }
  if (draining_.load()) {
    return absl::UnavailableError("the server is shutting down");
  }
  *engine = engine_.load();
  if (*engine == nullptr) {
    return absl::UnavailableError("the model is still loading");
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++in_flight_;
  return absl::OkStatus();
}

void InferenceService::CallDone(absl::string_view rpc,
                                const grpc::Status& status) {
  if (metrics_ != nullptr) {
    metrics_->RecordRequest(rpc,
                            static_cast<absl::StatusCode>(status.error_code()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_cv_.notify_all();
}

grpc::ServerUnaryReactor* InferenceService::FinishNow(
    grpc::CallbackServerContext* context, absl::string_view rpc,
    const grpc::Status& status, bool admitted) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (admitted) {
    CallDone(rpc, status);
  } else if (metrics_ != nullptr) {
    metrics_->RecordRequest(rpc,
                            static_cast<absl::StatusCode>(status.error_code()));
  }
  reactor->Finish(status);
  return reactor;
}

RequestLimits InferenceService::Limits(const engine::Engine& engine) const {
  RequestLimits limits;
  limits.vocab_size = engine.model_config().vocab_size;
  limits.max_model_len = engine.config().max_model_len;
  limits.max_logprobs = engine.config().max_logprobs;
  return limits;
}

grpc::ServerUnaryReactor* InferenceService::Complete(
    grpc::CallbackServerContext* context, const v1::CompleteRequest* request,
    v1::CompleteResponse* response) {
  engine::Engine* engine = nullptr;
  if (absl::Status s = Admit(*context, &engine); !s.ok()) {
    return FinishNow(context, "Complete", ToGrpcStatus(s), false);
  }
  const v1::CompletionParams& params = request->params();
  auto converted =
      ToGenerationRequest(params, engine->tokenizer(), Limits(*engine));
  if (!converted.ok()) {
    return FinishNow(context, "Complete", ToGrpcStatus(converted.status()),
                     true);
  }
  auto* reactor = new GenerateReactor(this, context, "Complete", engine);
  const bool echo = params.echo();
  const std::string echo_text =
      EchoText(params, *converted, engine->tokenizer());
  std::vector<int32_t> prompt = converted->prompt;
  reactor->Start(std::move(*converted), [response, engine, echo, echo_text,
                                         prompt](RequestDelta& d, uint64_t id) {
    const tokenizer::Tokenizer& tok = engine->tokenizer();
    response->set_id(absl::StrCat(id));
    response->set_text(echo ? echo_text + d.text : d.text);
    response->mutable_token_ids()->Add(d.token_ids.begin(), d.token_ids.end());
    response->set_finish_reason(ToProto(d.finish_reason));
    response->set_stop_reason(d.stop_reason);
    FillUsage(d, response->mutable_usage());
    FillTimings(d.timings, response->mutable_timings());
    for (const auto& lp : d.logprobs) {
      FillTokenLogprob(tok, lp, response->add_logprobs());
    }
    if (echo) {
      response->mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
      for (const auto& lp : d.prompt_logprobs) {
        FillTokenLogprob(tok, lp, response->add_prompt_logprobs());
      }
    }
  });
  return reactor;
}

grpc::ServerWriteReactor<v1::CompleteStreamResponse>*
InferenceService::CompleteStream(grpc::CallbackServerContext* context,
                                 const v1::CompleteStreamRequest* request) {
  engine::Engine* engine = nullptr;
  absl::Status admitted = Admit(*context, &engine);
  if (!admitted.ok())
    return new RejectedStream(metrics_, ToGrpcStatus(admitted));
  auto* reactor = new StreamReactor(this, context, engine);
  const v1::CompletionParams& params = request->params();
  auto converted =
      ToGenerationRequest(params, engine->tokenizer(), Limits(*engine));
  if (!converted.ok()) {
    reactor->Reject(ToGrpcStatus(converted.status()));
    return reactor;
  }
  std::string echo_text = EchoText(params, *converted, engine->tokenizer());
  reactor->Start(std::move(*converted), params.echo(), std::move(echo_text));
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Score(
    grpc::CallbackServerContext* context, const v1::ScoreRequest* request,
    v1::ScoreResponse* response) {
  engine::Engine* engine = nullptr;
  if (absl::Status s = Admit(*context, &engine); !s.ok()) {
    return FinishNow(context, "Score", ToGrpcStatus(s), false);
  }
  auto converted =
      ToScoreRequest(*request, engine->tokenizer(), Limits(*engine));
  if (!converted.ok()) {
    return FinishNow(context, "Score", ToGrpcStatus(converted.status()), true);
  }
  auto* reactor = new GenerateReactor(this, context, "Score", engine);
  std::vector<int32_t> ids = converted->prompt;
  const int top = request->top_logprobs();
  reactor->Start(std::move(*converted), [response, engine, ids, top](
                                            RequestDelta& d, uint64_t id) {
    const tokenizer::Tokenizer& tok = engine->tokenizer();
    response->set_id(absl::StrCat(id));
    response->mutable_token_ids()->Add(ids.begin(), ids.end());
    for (int32_t id : ids) response->add_tokens(TokenText(tok, id));
    double sum = 0.0;
    for (const auto& lp : d.prompt_logprobs) {
      response->add_token_logprobs(lp.logprob);
      sum += lp.logprob;
      if (top > 0) {
        v1::TopLogprobs* alternatives = response->add_top_logprobs();
        for (const engine::TopLogprob& t : lp.top) {
          v1::TopLogprob* out = alternatives->add_top_logprobs();
          out->set_token_id(t.token);
          out->set_token(TokenText(tok, t.token));
          out->set_logprob(t.logprob);
        }
      }
    }
    response->set_sum_logprob(sum);
    const size_t n = d.prompt_logprobs.size();
    response->set_perplexity(n > 0 ? std::exp(-sum / static_cast<double>(n))
                                   : 1.0);
    FillUsage(d, response->mutable_usage());
    FillTimings(d.timings, response->mutable_timings());
  });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(
    grpc::CallbackServerContext* context, const v1::TokenizeRequest* request,
    v1::TokenizeResponse* response) {
  engine::Engine* engine = nullptr;
  if (absl::Status s = Admit(*context, &engine); !s.ok()) {
    return FinishNow(context, "Tokenize", ToGrpcStatus(s), false);
  }
  const tokenizer::Tokenizer& tok = engine->tokenizer();
  if (!IsValidUtf8(request->text())) {
    return FinishNow(
        context, "Tokenize",
        ToGrpcStatus(absl::InvalidArgumentError("text: is not valid UTF-8")),
        true);
  }
  auto ids = tok.Encode(request->text());
  if (!ids.ok()) {
    return FinishNow(context, "Tokenize",
                     ToGrpcStatus(absl::InvalidArgumentError(
                         absl::StrCat("text: ", ids.status().message()))),
                     true);
  }
  response->mutable_token_ids()->Add(ids->begin(), ids->end());
  for (int32_t id : *ids) response->add_tokens(TokenText(tok, id));
  return FinishNow(context, "Tokenize", grpc::Status::OK, true);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(
    grpc::CallbackServerContext* context,
    const v1::GetModelInfoRequest* /*request*/,
    v1::GetModelInfoResponse* response) {
  engine::Engine* engine = nullptr;
  if (absl::Status s = Admit(*context, &engine); !s.ok()) {
    return FinishNow(context, "GetModelInfo", ToGrpcStatus(s), false);
  }
  const model::ModelConfig& c = engine->model_config();
  response->set_model(options_.served_model_name);
  response->set_architecture(c.architecture_name);
  response->set_vocab_size(c.vocab_size);
  response->set_hidden_size(c.hidden_size);
  response->set_num_layers(c.num_layers);
  response->set_num_heads(c.num_heads);
  response->set_num_kv_heads(c.num_kv_heads);
  for (double slope : model::AlibiSlopes(c.num_heads, c.alibi_bias_max)) {
    response->add_alibi_slopes(slope);
  }
  response->set_trained_context_length(c.trained_context_length);
  response->set_max_context_length(engine->config().max_model_len);
  response->set_dtype(std::string(
      kernels::DTypeName(engine->model().backend().weight_dtype())));
  response->set_device(engine->device_name());
  response->set_kv_block_size(engine->config().block_size);
  response->set_kv_num_blocks(engine->config().num_blocks);
  response->set_eos_token_id(c.eos_token_id);
  response->set_bos_token_id(c.bos_token_id);
  response->set_server_version(options_.server_version);
  response->set_max_num_seqs(engine->config().max_num_seqs);
  response->set_max_logprobs(engine->config().max_logprobs);
  return FinishNow(context, "GetModelInfo", grpc::Status::OK, true);
}

}  // namespace alibi::rpc
