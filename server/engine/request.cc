#include "server/engine/request.h"

#include <chrono>
#include <utility>

namespace alibi::engine {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "unknown";
}

void RequestDelta::Merge(RequestDelta&& next) {
  token_ids.insert(token_ids.end(), next.token_ids.begin(),
                   next.token_ids.end());
  text += next.text;
  for (auto& lp : next.logprobs) logprobs.push_back(std::move(lp));
  for (auto& lp : next.prompt_logprobs)
    prompt_logprobs.push_back(std::move(lp));
  if (next.finished) {
    finished = true;
    finish_reason = next.finish_reason;
    stop_reason = std::move(next.stop_reason);
    status = std::move(next.status);
    prompt_tokens = next.prompt_tokens;
    completion_tokens = next.completion_tokens;
    cached_prompt_tokens = next.cached_prompt_tokens;
    timings = next.timings;
  }
}

RequestStream::RequestStream(uint64_t id, UpdateCallback on_update)
    : id_(id), on_update_(std::move(on_update)) {}

std::optional<RequestDelta> RequestStream::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<RequestDelta> out = std::move(pending_);
  pending_.reset();
  return out;
}

std::optional<RequestDelta> RequestStream::WaitAndTake(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
               [this] { return pending_.has_value(); });
  std::optional<RequestDelta> out = std::move(pending_);
  pending_.reset();
  return out;
}

bool RequestStream::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

void RequestStream::Publish(RequestDelta delta) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;  // nothing follows the final delta
    finished_ = delta.finished;
    if (pending_.has_value()) {
      pending_->Merge(std::move(delta));
    } else {
      pending_ = std::move(delta);
    }
  }
  cv_.notify_all();
  if (on_update_) on_update_(*this);
}

}  // namespace alibi::engine
