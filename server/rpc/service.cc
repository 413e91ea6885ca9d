#include "server/rpc/service.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/bearer_token.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/rpc/convert.h"
#include "server/rpc/status.h"
#include "server/rpc/wire.h"

namespace alibi::rpc {
namespace {

// The status a call that the client abandoned ends with.
//
// A client whose deadline expires resets the stream itself, and its reset
// can arrive a little before the server's copy of the deadline passes (the
// deadline travels as a relative timeout): a cancel this close to the
// deadline is the deadline.
absl::Status AbandonedStatus(const grpc::CallbackServerContext& context) {
  constexpr auto kDeadlineSlack = std::chrono::milliseconds(250);
  if (context.deadline() <= std::chrono::system_clock::now() + kDeadlineSlack) {
    return absl::DeadlineExceededError("deadline exceeded");
  }
  return absl::CancelledError("cancelled by the client");
}

// Checks `authorization: Bearer <key>` (RFC 6750: the scheme is
// case-insensitive); exactly one such header is accepted.
absl::Status CheckBearer(const grpc::CallbackServerContext& context,
                         absl::string_view key) {
  const auto& metadata = context.client_metadata();
  const auto [begin, end] = metadata.equal_range("authorization");
  const auto count = std::distance(begin, end);
  if (count != 1) {
    return absl::UnauthenticatedError(
        count == 0 ? "missing bearer token: send `authorization: Bearer <key>`"
                   : "more than one `authorization` header");
  }
  const absl::string_view value(begin->second.data(), begin->second.size());
  if (!BearerTokenMatches(value, key)) {
    return absl::UnauthenticatedError(
        "wrong bearer token in the `authorization` header");
  }
  return absl::OkStatus();
}

// Lets a call's output notifications reach its reactor only while the
// reactor exists: OnDone() detaches it before the reactor is deleted.
template <typename Reactor>
struct ReactorLink {
  std::mutex mu;
  Reactor* reactor = nullptr;

  static std::function<void()> Notifier(std::shared_ptr<ReactorLink> link) {
    return [link] {
      std::lock_guard<std::mutex> lock(link->mu);
      if (link->reactor != nullptr) link->reactor->OnReady();
    };
  }
  void Detach() {
    std::lock_guard<std::mutex> lock(mu);
    reactor = nullptr;
  }
};

}  // namespace

// What the unary and the streaming reactors share: the link through which
// the call's output notifications reach the reactor while it exists, the
// client's cancellation (before or after Start), and the bookkeeping once
// gRPC is done with the call. `Derived` has OnReady().
template <typename GrpcReactor, typename Derived>
class InferenceService::CallReactor : public GrpcReactor {
 public:
  using Link = ReactorLink<Derived>;

  // The call's output notifier: it reaches this reactor until OnDone(). (The
  // link learns the reactor here, not in the constructor, where `this` is
  // not yet a Derived.)
  std::function<void()> Notifier() {
    {
      std::lock_guard<std::mutex> lock(link_->mu);
      link_->reactor = static_cast<Derived*>(this);
    }
    return Link::Notifier(link_);
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_ && call_ != nullptr) {
      call_->Cancel(AbandonedStatus(*context_));
    } else {
      cancel_requested_ = true;
    }
  }

  void OnDone() override {
    link_->Detach();
    service_->CallDone(rpc_, call_.get(),
                       context_->IsCancelled()
                           ? ToGrpcStatus(AbandonedStatus(*context_))
                           : status_);
    delete this;
  }

 protected:
  CallReactor(InferenceService* service, grpc::CallbackServerContext* context,
              absl::string_view rpc)
      : service_(service),
        context_(context),
        rpc_(rpc),
        link_(std::make_shared<Link>()) {}

  InferenceService* const service_;
  grpc::CallbackServerContext* const context_;
  const std::string rpc_;
  const std::shared_ptr<Link> link_;
  std::mutex mu_;
  bool started_ = false;
  bool cancel_requested_ = false;
  std::shared_ptr<frontend::InferenceCall> call_;
  grpc::Status status_;
};

// A unary call backed by one frontend call: Complete or Score. The response
// is built on a frontend output thread once the last chunk arrived.
//
// Finish() lets gRPC delete the reactor at any time after, so it is always
// the last thing a method does, and never before Start() has returned.
class InferenceService::UnaryReactor
    : public CallReactor<grpc::ServerUnaryReactor, UnaryReactor> {
 public:
  // Fills the response from the call's completions, each with every chunk
  // merged (all[i] is completion i).
  using Builder =
      std::function<void(frontend::InferenceCall& call,
                         std::vector<frontend::CompletionChunk> all)>;

  UnaryReactor(InferenceService* service, grpc::CallbackServerContext* context,
               absl::string_view rpc)
      : CallReactor(service, context, rpc) {}

  // Submits `call`; `build` fills the response when it is complete.
  void Start(std::shared_ptr<frontend::InferenceCall> call, Builder build) {
    call_ = std::move(call);
    build_ = std::move(build);
    all_.resize(call_->n());
    // Once started, an output thread may finish the call and gRPC delete
    // this reactor: nothing below the lock touches a member.
    const std::shared_ptr<Link> link = link_;
    const absl::Status submitted = call_->Submit();
    bool ready = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      started_ = true;
      if (submitted.ok() && cancel_requested_) {
        call_->Cancel(AbandonedStatus(*context_));
      }
      ready = ready_pending_;
    }
    if (!submitted.ok()) {
      FinishCall(ToGrpcStatus(submitted));
      return;
    }
    if (ready) Link::Notifier(link)();
  }

  // On a frontend output thread, with the link held.
  void OnReady() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!started_) {
        ready_pending_ = true;
        return;
      }
      if (finishing_) return;
      while (std::optional<frontend::CompletionChunk> c = call_->Poll()) {
        if (!c->status.ok() && status_.ok()) {
          // One completion failed: the others are of no use.
          status_ = ToGrpcStatus(c->status);
          call_->Cancel(c->status);
        }
        all_[c->index].Merge(*std::move(c));
      }
      if (!call_->done()) return;
      finishing_ = true;
    }
    const grpc::Status status = status_;
    if (status.ok()) build_(*call_, std::move(all_));
    FinishCall(status);
  }

 private:
  void FinishCall(const grpc::Status& status) {
    status_ = status;
    Finish(status);
  }

  Builder build_;
  bool ready_pending_ = false;
  bool finishing_ = false;
  std::vector<frontend::CompletionChunk> all_;
};

// A server-streaming call (CompleteStream, ScoreStream): one message per
// chunk, polled when no write is in flight (what the engine publishes
// meanwhile is merged, so a slow reader holds at most its own output in
// memory). `format` turns a chunk into the message (the final one included).
//
// Writes are started under the lock; the terminal operations (Finish,
// StartWriteAndFinish), after which gRPC may delete the reactor, are decided
// under the lock and performed after releasing it, as the last thing a
// method does, and never before Start() has returned.
template <typename Response>
class InferenceService::StreamReactor
    : public CallReactor<grpc::ServerWriteReactor<grpc::ByteBuffer>,
                         StreamReactor<Response>> {
  using Base = CallReactor<grpc::ServerWriteReactor<grpc::ByteBuffer>,
                           StreamReactor<Response>>;
  using Base::call_;
  using Base::cancel_requested_;
  using Base::context_;
  using Base::mu_;
  using Base::started_;
  using Base::status_;

 public:
  using Format = std::function<void(frontend::CompletionChunk&, Response*)>;

  StreamReactor(InferenceService* service, grpc::CallbackServerContext* context,
                absl::string_view rpc, Format format)
      : Base(service, context, rpc), format_(std::move(format)) {}

  void Start(std::shared_ptr<frontend::InferenceCall> call) {
    call_ = std::move(call);
    const absl::Status submitted = call_->Submit();
    Terminal terminal;
    {
      std::lock_guard<std::mutex> lock(mu_);
      started_ = true;
      if (!submitted.ok()) {
        terminal = FinishLocked(ToGrpcStatus(submitted));
      } else {
        if (cancel_requested_) call_->Cancel(AbandonedStatus(*context_));
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

  // On a frontend output thread, with the link held.
  void OnReady() {
    Terminal terminal;
    {
      std::lock_guard<std::mutex> lock(mu_);
      terminal = TryWriteLocked();
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
        call_->Cancel(AbandonedStatus(*context_));
      }
      terminal = pending_finish_.has_value() ? FinishLocked(*pending_finish_)
                                             : TryWriteLocked();
    }
    Run(terminal);
  }

 private:
  // A terminal operation to perform after unlocking.
  struct Terminal {
    enum Kind { kNone, kFinish, kWriteAndFinish } kind = kNone;
    grpc::Status status;
  };

  void Run(const Terminal& t) {
    if (t.kind == Terminal::kFinish) {
      this->Finish(t.status);
    } else if (t.kind == Terminal::kWriteAndFinish) {
      this->StartWriteAndFinish(&buffer_, grpc::WriteOptions(), t.status);
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
    if (!started_ || writing_ || finished_ || call_ == nullptr) return {};
    std::optional<frontend::CompletionChunk> chunk = call_->Poll();
    if (!chunk.has_value()) return {};
    if (broken_) {  // nobody reads: wait for the final chunks
      while (!call_->done()) {
        chunk = call_->Poll();
        if (!chunk.has_value()) return {};
      }
      return FinishLocked(ToGrpcStatus(chunk->status));
    }
    response_.Clear();
    format_(*chunk, &response_);
    SerializeResponse(response_, &buffer_);
    const grpc::Status status = ToGrpcStatus(chunk->status);
    if (!status.ok()) {
      call_->Cancel(chunk->status);  // the other completions, if any
      // Deliver what was generated, then the error.
      if (!chunk->has_content()) return FinishLocked(status);
      pending_finish_ = status;
      writing_ = true;
      this->StartWrite(&buffer_);
      return {};
    }
    if (!chunk->finished || !call_->done()) {
      writing_ = true;
      this->StartWrite(&buffer_);
      return {};
    }
    finished_ = true;
    status_ = grpc::Status::OK;
    return {Terminal::kWriteAndFinish, grpc::Status::OK};
  }

  const Format format_;  // called under mu_
  Response response_;        // the message being written
  grpc::ByteBuffer buffer_;  // ... as bytes
  bool writing_ = false;
  bool finished_ = false;
  bool broken_ = false;
  std::optional<grpc::Status> pending_finish_;
};

// A streaming call refused before it started (auth, loading, draining).
class RejectedStream : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  RejectedStream(metrics::Metrics* metrics, absl::string_view rpc,
                 const grpc::Status& status)
      : metrics_(metrics), rpc_(rpc), status_(status) {
    this->Finish(status);
  }
  void OnDone() override {
    if (metrics_ != nullptr) {
      metrics_->RecordRequest(
          rpc_, static_cast<absl::StatusCode>(status_.error_code()));
    }
    delete this;
  }

 private:
  metrics::Metrics* const metrics_;
  const std::string rpc_;
  const grpc::Status status_;
};

InferenceService::InferenceService(ServiceOptions options,
                                   metrics::Metrics* metrics)
    : options_(std::move(options)), metrics_(metrics) {}

void InferenceService::SetFrontend(frontend::Frontend* frontend) {
  admission_.SetFrontend(frontend);
}

void InferenceService::StartDraining() { admission_.StartDraining(); }

bool InferenceService::WaitForIdle(absl::Duration timeout) {
  return admission_.WaitForIdle(timeout);
}

int InferenceService::in_flight() const { return admission_.in_flight(); }

absl::Status InferenceService::Admit(const grpc::CallbackServerContext& context,
                                     frontend::Frontend** frontend) {
  if (!options_.api_key.empty()) {
    RETURN_IF_ERROR(CheckBearer(context, options_.api_key));
  }
  ASSIGN_OR_RETURN(*frontend, admission_.Enter());
  return absl::OkStatus();
}

void InferenceService::CallDone(absl::string_view rpc,
                                const frontend::InferenceCall* call,
                                const grpc::Status& status) {
  if (call != nullptr && options_.log_requests) {
    // The caller's id in quotes, escaped: it cannot forge log lines.
    ALIBI_LOG(INFO) << rpc << " id=" << call->id() << " request_id=\""
                    << absl::CEscape(call->client_request_id()) << "\" code="
                    << metrics::Metrics::CodeName(
                           static_cast<absl::StatusCode>(status.error_code()));
  }
  if (metrics_ != nullptr) {
    metrics_->RecordRequest(rpc,
                            static_cast<absl::StatusCode>(status.error_code()));
  }
  admission_.Exit();
}

grpc::ServerUnaryReactor* InferenceService::FinishNow(
    grpc::CallbackServerContext* context, absl::string_view rpc,
    const grpc::Status& status, bool admitted) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (admitted) {
    CallDone(rpc, nullptr, status);
  } else if (metrics_ != nullptr) {
    metrics_->RecordRequest(rpc,
                            static_cast<absl::StatusCode>(status.error_code()));
  }
  reactor->Finish(status);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Complete(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* response) {
  frontend::Frontend* frontend = nullptr;
  if (absl::Status s = Admit(*context, &frontend); !s.ok()) {
    return FinishNow(context, "Complete", ToGrpcStatus(s), false);
  }
  v1::CompleteRequest request;
  if (absl::Status s = ParseRequest(*bytes, &request); !s.ok()) {
    return FinishNow(context, "Complete", ToGrpcStatus(s), true);
  }
  auto* reactor = new UnaryReactor(this, context, "Complete");
  auto call = frontend->NewCompletion(FromProto(request.params()),
                                      CompletionFieldName, reactor->Notifier());
  if (!call.ok()) {
    delete reactor;
    return FinishNow(context, "Complete", ToGrpcStatus(call.status()), true);
  }
  reactor->Start(*std::move(call),
                 [response](frontend::InferenceCall&,
                            std::vector<frontend::CompletionChunk> all) {
                   v1::CompleteResponse r;
                   ToProto(all, &r);
                   SerializeResponse(r, response);
                 });
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::CompleteStream(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes) {
  using Response = v1::CompleteStreamResponse;
  frontend::Frontend* frontend = nullptr;
  absl::Status admitted = Admit(*context, &frontend);
  if (!admitted.ok()) {
    return new RejectedStream(metrics_, "CompleteStream",
                              ToGrpcStatus(admitted));
  }
  auto* reactor =
      new StreamReactor<Response>(this, context, "CompleteStream",
                                  [](frontend::CompletionChunk& chunk,
                                     Response* out) { ToProto(chunk, out); });
  v1::CompleteStreamRequest request;
  if (absl::Status s = ParseRequest(*bytes, &request); !s.ok()) {
    reactor->Reject(ToGrpcStatus(s));
    return reactor;
  }
  auto call = frontend->NewCompletion(FromProto(request.params()),
                                      CompletionFieldName, reactor->Notifier());
  if (!call.ok()) {
    reactor->Reject(ToGrpcStatus(call.status()));
    return reactor;
  }
  reactor->Start(*std::move(call));
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Score(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* response) {
  frontend::Frontend* frontend = nullptr;
  if (absl::Status s = Admit(*context, &frontend); !s.ok()) {
    return FinishNow(context, "Score", ToGrpcStatus(s), false);
  }
  v1::ScoreRequest request;
  if (absl::Status s = ParseRequest(*bytes, &request); !s.ok()) {
    return FinishNow(context, "Score", ToGrpcStatus(s), true);
  }
  auto* reactor = new UnaryReactor(this, context, "Score");
  auto call = frontend->NewScore(FromProto(request), frontend::SameName,
                                 reactor->Notifier());
  if (!call.ok()) {
    delete reactor;
    return FinishNow(context, "Score", ToGrpcStatus(call.status()), true);
  }
  const bool top = request.top_logprobs() > 0;
  reactor->Start(*std::move(call),
                 [response, top](frontend::InferenceCall& call,
                                 std::vector<frontend::CompletionChunk> all) {
                   v1::ScoreResponse r;
                   ToProto(call.ToScoreResult(std::move(all[0])), top, &r);
                   SerializeResponse(r, response);
                 });
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::ScoreStream(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes) {
  using Response = v1::ScoreStreamResponse;
  frontend::Frontend* frontend = nullptr;
  absl::Status admitted = Admit(*context, &frontend);
  if (!admitted.ok()) {
    return new RejectedStream(metrics_, "ScoreStream", ToGrpcStatus(admitted));
  }
  v1::ScoreStreamRequest request;
  const absl::Status parsed = ParseRequest(*bytes, &request);
  auto formatter = std::make_shared<ScoreStreamFormatter>(
      request.score().top_logprobs() > 0);
  auto* reactor = new StreamReactor<Response>(
      this, context, "ScoreStream",
      [formatter](frontend::CompletionChunk& chunk, Response* out) {
        formatter->Format(chunk, out);
      });
  if (!parsed.ok()) {
    reactor->Reject(ToGrpcStatus(parsed));
    return reactor;
  }
  auto call = frontend->NewScore(FromProto(request.score()), ScoreFieldName,
                                 reactor->Notifier());
  if (!call.ok()) {
    reactor->Reject(ToGrpcStatus(call.status()));
    return reactor;
  }
  formatter->set_first_token((*call)->prompt().front());
  reactor->Start(*std::move(call));
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* response) {
  frontend::Frontend* frontend = nullptr;
  if (absl::Status s = Admit(*context, &frontend); !s.ok()) {
    return FinishNow(context, "Tokenize", ToGrpcStatus(s), false);
  }
  v1::TokenizeRequest request;
  if (absl::Status s = ParseRequest(*bytes, &request); !s.ok()) {
    return FinishNow(context, "Tokenize", ToGrpcStatus(s), true);
  }
  auto result = frontend->Tokenize(request.text(), frontend::SameName);
  if (!result.ok()) {
    return FinishNow(context, "Tokenize", ToGrpcStatus(result.status()), true);
  }
  v1::TokenizeResponse r;
  ToProto(*result, &r);
  SerializeResponse(r, response);
  return FinishNow(context, "Tokenize", grpc::Status::OK, true);
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* response) {
  frontend::Frontend* frontend = nullptr;
  if (absl::Status s = Admit(*context, &frontend); !s.ok()) {
    return FinishNow(context, "Detokenize", ToGrpcStatus(s), false);
  }
  v1::DetokenizeRequest request;
  if (absl::Status s = ParseRequest(*bytes, &request); !s.ok()) {
    return FinishNow(context, "Detokenize", ToGrpcStatus(s), true);
  }
  const std::vector<int32_t> ids(request.token_ids().begin(),
                                 request.token_ids().end());
  auto text = frontend->Detokenize(
      ids, !request.has_skip_special_tokens() || request.skip_special_tokens(),
      frontend::SameName);
  if (!text.ok()) {
    return FinishNow(context, "Detokenize", ToGrpcStatus(text.status()), true);
  }
  v1::DetokenizeResponse r;
  r.set_text(*std::move(text));
  SerializeResponse(r, response);
  return FinishNow(context, "Detokenize", grpc::Status::OK, true);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* response) {
  frontend::Frontend* frontend = nullptr;
  if (absl::Status s = Admit(*context, &frontend); !s.ok()) {
    return FinishNow(context, "GetModelInfo", ToGrpcStatus(s), false);
  }
  v1::GetModelInfoRequest request;
  if (absl::Status s = ParseRequest(*bytes, &request); !s.ok()) {
    return FinishNow(context, "GetModelInfo", ToGrpcStatus(s), true);
  }
  v1::GetModelInfoResponse r;
  ToProto(frontend->info(), options_.served_model_name, options_.server_version,
          &r);
  SerializeResponse(r, response);
  return FinishNow(context, "GetModelInfo", grpc::Status::OK, true);
}

}  // namespace alibi::rpc
