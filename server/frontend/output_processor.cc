#include "server/frontend/output_processor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace alibi::frontend {
namespace {

// Sent text beyond what stop strings need is dropped in pieces this large.
constexpr size_t kTrimBytes = 64 << 10;

bool IsUtf8Continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

}  // namespace

void CompletionChunk::Merge(CompletionChunk&& next) {
  if (id.empty()) id = std::move(next.id);
  index = next.index;
  text += next.text;
  token_ids.insert(token_ids.end(), next.token_ids.begin(),
                   next.token_ids.end());
  for (auto& e : next.logprobs) logprobs.push_back(std::move(e));
  prompt_token_ids.insert(prompt_token_ids.end(), next.prompt_token_ids.begin(),
                          next.prompt_token_ids.end());
  for (auto& e : next.prompt_logprobs) prompt_logprobs.push_back(std::move(e));
  usage = next.usage;
  timings = next.timings;
  if (next.finished) {
    finished = true;
    finish_reason = next.finish_reason;
    stop_reason = std::move(next.stop_reason);
    status = std::move(next.status);
  }
}

OutputProcessor::OutputProcessor(const tokenizer::Tokenizer& tokenizer,
                                 OutputOptions options, std::string id)
    : tokenizer_(tokenizer),
      options_(std::move(options)),
      id_(std::move(id)),
      decoder_(tokenizer, options_.skip_special_tokens) {
  for (const std::string& s : options_.stop) {
    max_stop_len_ = std::max(max_stop_len_, s.size());
  }
}

LogprobEntry OutputProcessor::Entry(const engine::TokenLogprobs& lp) const {
  LogprobEntry e;
  e.chosen = {lp.token, TokenTextOf(tokenizer_, lp.token), lp.logprob};
  e.top.reserve(lp.top.size());
  for (const engine::TopLogprob& t : lp.top) {
    e.top.push_back({t.token, TokenTextOf(tokenizer_, t.token), t.logprob});
  }
  return e;
}

bool OutputProcessor::AppendToken(int32_t token) {
  ++num_tokens_;
  const size_t old_size = text_.size();
  text_ += decoder_.Add(token);
  if (options_.stop.empty() || num_tokens_ < options_.min_tokens ||
      text_.size() == old_size) {
    return false;
  }
  // The earliest occurrence of any stop string that ends in the new text.
  const size_t from =
      old_size >= max_stop_len_ ? old_size - (max_stop_len_ - 1) : 0;
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const std::string& stop : options_.stop) {
    const size_t at = text_.find(stop, from);
    if (at != std::string::npos && at < best) {
      best = at;
      best_stop = &stop;
    }
  }
  if (best_stop == nullptr) return false;
  text_.resize(best +
               (options_.include_stop_str_in_output ? best_stop->size() : 0));
  stop_reason_ = *best_stop;
  return true;
}

void OutputProcessor::Emit(CompletionChunk& chunk, bool all) {
  size_t limit = text_.size();
  if (!all && !options_.stop.empty() && !options_.include_stop_str_in_output) {
    // Hold back what could still become the start of a stop string.
    const size_t hold = max_stop_len_ - 1;
    limit = limit > hold ? limit - hold : 0;
    while (limit > emitted_ && limit < text_.size() &&
           IsUtf8Continuation(text_[limit])) {
      --limit;
    }
  }
  if (limit > emitted_) {
    chunk.text.append(text_, emitted_, limit - emitted_);
    emitted_ = limit;
  }
  // Sent text is needed only as far back as a stop string could start: an
  // endless (sliding-window) generation keeps O(1) text, not all of it.
  const size_t keep = max_stop_len_;
  if (emitted_ > keep + kTrimBytes) {
    const size_t cut = emitted_ - keep;
    text_.erase(0, cut);
    emitted_ -= cut;
  }
}

CompletionChunk OutputProcessor::Process(engine::EngineOutput output,
                                         bool* stop_string_hit) {
  *stop_string_hit = false;
  CompletionChunk chunk;
  if (finished_) return chunk;
  chunk.id = id_;
  if (first_) {
    first_ = false;
    if (options_.echo) {
      chunk.text = options_.echo_text;
      chunk.prompt_token_ids = options_.prompt;
    }
  }
  if (options_.prompt_logprobs) {
    chunk.prompt_logprobs.reserve(output.prompt_logprobs.size());
    for (const engine::TokenLogprobs& lp : output.prompt_logprobs) {
      chunk.prompt_logprobs.push_back(Entry(lp));
    }
  }
  bool stopped = false;
  for (size_t i = 0; i < output.token_ids.size() && !stopped; ++i) {
    const int32_t token = output.token_ids[i];
    chunk.token_ids.push_back(token);
    if (options_.logprobs && i < output.logprobs.size()) {
      chunk.logprobs.push_back(Entry(output.logprobs[i]));
    }
    stopped = AppendToken(token);
  }
  chunk.usage.prompt_tokens = output.num_prompt_tokens;
  chunk.usage.cached_prompt_tokens = output.num_cached_tokens;
  chunk.timings = output.timings;
  if (stopped) {
    // Tokens the engine made after the stop are dropped.
    *stop_string_hit = true;
    Emit(chunk, /*all=*/true);
    finished_ = true;
    chunk.finished = true;
    chunk.finish_reason = FinishReason::kStop;
    chunk.stop_reason = stop_reason_;
    chunk.usage.completion_tokens = num_tokens_;
    return chunk;
  }
  chunk.usage.completion_tokens = output.num_output_tokens;
  if (!output.finished) {
    Emit(chunk, /*all=*/false);
    return chunk;
  }
  // Bytes held back for an incomplete character become U+FFFD, as in
  // Tokenizer::Decode.
  text_ += decoder_.Finish();
  Emit(chunk, /*all=*/true);
  finished_ = true;
  chunk.finished = true;
  chunk.finish_reason = output.finish_reason;
  chunk.status = std::move(output.status);
  if (output.stop_token >= 0)
    chunk.stop_reason = absl::StrCat(output.stop_token);
  return chunk;
}

}  // namespace alibi::frontend
