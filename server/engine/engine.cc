// engine.h: the value types, the OutputStream and the engine-thread mark.
#include <utility>

#include "server/engine/engine.h"

namespace alibi::engine {
namespace {

thread_local bool on_engine_thread = false;

}  // namespace

bool OnEngineThread() { return on_engine_thread; }

uint64_t GroupSeed(uint64_t seed, int index) {
  if (index == 0) return seed;
  // SplitMix64 of (seed, index): distinct, well-mixed streams per index.
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(index);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
void MarkEngineThread() { on_engine_thread = true; }

void EngineOutput::Merge(EngineOutput&& next) {
  token_ids.insert(token_ids.end(), next.token_ids.begin(),
                   next.token_ids.end());
  for (auto& lp : next.logprobs) logprobs.push_back(std::move(lp));
  for (auto& lp : next.prompt_logprobs) {
    prompt_logprobs.push_back(std::move(lp));
  }
  num_prompt_tokens = next.num_prompt_tokens;
  num_output_tokens = next.num_output_tokens;
  num_cached_tokens = next.num_cached_tokens;
  timings = next.timings;
  if (next.finished) {
    finished = true;
    finish_reason = next.finish_reason;
    stop_token = next.stop_token;
    status = std::move(next.status);
  }
}

OutputStream::OutputStream(std::function<void()> notify)
    : notify_(std::move(notify)) {}

uint64_t OutputStream::id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return id_;
}

void OutputStream::set_id(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  id_ = id;
}

std::optional<EngineOutput> OutputStream::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<EngineOutput> out = std::move(pending_);
  pending_.reset();
  return out;
}

std::optional<EngineOutput> OutputStream::WaitAndTake(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
               [this] { return pending_.has_value(); });
  std::optional<EngineOutput> out = std::move(pending_);
  pending_.reset();
  return out;
}

bool OutputStream::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

void OutputStream::Publish(EngineOutput output) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;  // nothing follows the final output
    finished_ = output.finished;
    if (pending_.has_value()) {
      pending_->Merge(std::move(output));
    } else {
      pending_ = std::move(output);
    }
  }
  cv_.notify_all();
  if (notify_) notify_();
}

}  // namespace alibi::engine
