#include "client/bench/runner.h"

#include <grpcpp/client_context.h>
#include <grpcpp/support/client_callback.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "alibi/v1/inference.grpc.pb.h"
#include "client/bench/load.h"
#include "client/status_format.h"

namespace alibi::client::bench {
namespace {

// One CompleteStream call; deletes itself when done.
class StreamCall final
    : public grpc::ClientReadReactor<v1::CompleteStreamResponse> {
 public:
  StreamCall(LoadState* state, size_t index, int64_t prompt_len,
             v1::InferenceService::Stub* stub, const Connection& connection,
             int64_t deadline_ms, v1::CompleteStreamRequest request)
      : state_(state),
        index_(index),
        prompt_len_(prompt_len),
        request_(std::move(request)),
        start_s_(state->Now()),
        timeline_(start_s_) {
    connection.Configure(&context_, deadline_ms);
    stub->async()->CompleteStream(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // end of stream; OnDone follows
    timeline_.OnMessage(state_->Now(), response_.token_ids_size());
    if (response_.has_usage()) prompt_len_ = response_.usage().prompt_tokens();
    if (response_.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finish_reason_ = FinishReasonName(response_.finish_reason());
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    RequestResult r;
    r.end_s = state_->Now();
    r.start_s = start_s_;
    r.ok = status.ok();
    r.code = StatusCodeName(status.error_code());
    r.error = status.error_message();
    timeline_.Fill(&r);
    r.prompt_tokens = prompt_len_;
    r.finish_reason = finish_reason_;
    state_->Finish(index_, std::move(r));
    delete this;
  }

 private:
  LoadState* state_;
  size_t index_;
  int64_t prompt_len_;
  grpc::ClientContext context_;
  v1::CompleteStreamRequest request_;
  v1::CompleteStreamResponse response_;
  double start_s_;
  TokenTimeline timeline_;
  std::string finish_reason_;
};

// One Score call; deleted by its completion callback.
struct ScoreCall {
  grpc::ClientContext context;
  v1::ScoreRequest request;
  v1::ScoreResponse response;
  double start_s = 0;
};

void StartScore(LoadState* state, size_t index,
                v1::InferenceService::Stub* stub, const Connection& connection,
                int64_t deadline_ms, v1::ScoreRequest request) {
  auto* call = new ScoreCall;
  call->request = std::move(request);
  connection.Configure(&call->context, deadline_ms);
  call->start_s = state->Now();
  stub->async()->Score(&call->context, &call->request, &call->response,
                       [state, index, call](grpc::Status status) {
                         RequestResult r;
                         r.end_s = state->Now();
                         r.start_s = call->start_s;
                         r.ok = status.ok();
                         r.code = StatusCodeName(status.error_code());
                         r.error = status.error_message();
                         r.prompt_tokens =
                             call->response.has_usage()
                                 ? call->response.usage().prompt_tokens()
                                 : call->response.token_ids_size();
                         state->Finish(index, std::move(r));
                         delete call;
                       });
}

}  // namespace

RunResult RunLoad(const Connection& connection,
                  absl::Span<const WorkloadRequest> workload,
                  absl::Span<const double> arrival_s,
                  const RunOptions& options) {
  std::vector<std::unique_ptr<v1::InferenceService::Stub>> stubs;
  for (size_t i = 0; i < connection.num_channels(); ++i) {
    stubs.push_back(v1::InferenceService::NewStub(connection.channel(i)));
  }
  return DriveLoad(
      workload.size(), arrival_s, options, [&](LoadState& state, size_t i) {
        const WorkloadRequest& w = workload[i];
        v1::InferenceService::Stub* stub = stubs[i % stubs.size()].get();
        const std::string id = absl::StrCat(options.request_id_prefix, i);
        if (options.score) {
          v1::ScoreRequest request;
          if (w.token_ids.empty()) {
            request.set_text(w.text);
          } else {
            request.mutable_token_ids()->Add(w.token_ids.begin(),
                                             w.token_ids.end());
          }
          request.set_top_logprobs(options.score_top_logprobs);
          request.set_request_id(id);
          StartScore(&state, i, stub, connection, options.deadline_ms,
                     std::move(request));
          return;
        }
        v1::CompleteStreamRequest request;
        v1::CompletionParams* p = request.mutable_params();
        if (w.token_ids.empty()) {
          p->set_text(w.text);
        } else {
          p->mutable_token_ids()->Add(w.token_ids.begin(), w.token_ids.end());
        }
        p->set_max_tokens(w.max_tokens);
        *p->mutable_sampling() = options.sampling;
        // One seed per request: equal prompts still sample independently.
        if (options.sampling.has_seed()) {
          p->mutable_sampling()->set_seed(options.sampling.seed() + i);
        }
        p->set_request_id(id);
        // Deletes itself in OnDone.
        new StreamCall(&state, i, static_cast<int64_t>(w.token_ids.size()),
                       stub, connection, options.deadline_ms,
                       std::move(request));
      });
}

}  // namespace alibi::client::bench
