#include "server/rpc/convert.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace alibi::rpc {
namespace {

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

void FillUsage(const frontend::Usage& u, v1::Usage* out) {
  out->set_prompt_tokens(u.prompt_tokens);
  out->set_completion_tokens(u.completion_tokens);
  out->set_cached_prompt_tokens(u.cached_prompt_tokens);
}

void FillTop(const frontend::TokenText& in, v1::TopLogprob* out) {
  out->set_token_id(in.token);
  out->set_token(in.text);
  out->set_logprob(in.logprob);
}

void FillTokenLogprob(const frontend::LogprobEntry& in, v1::TokenLogprob* out) {
  out->set_token_id(in.chosen.token);
  out->set_token(in.chosen.text);
  out->set_logprob(in.chosen.logprob);
  for (const frontend::TokenText& top : in.top) {
    FillTop(top, out->add_top_logprobs());
  }
}

frontend::Prompt ToPrompt(const std::string& text,
                          const google::protobuf::RepeatedField<int32_t>& ids) {
  frontend::Prompt p;
  p.text = text;
  p.token_ids.assign(ids.begin(), ids.end());
  return p;
}

// Fields common to both completion response messages.
template <typename Response>
void FillChunk(const frontend::CompletionChunk& c, Response* out) {
  ALIBI_CHECK_NOT_ENGINE_THREAD();
  out->set_id(c.id);
  out->set_text(c.text);
  out->mutable_token_ids()->Add(c.token_ids.begin(), c.token_ids.end());
  for (const auto& lp : c.logprobs) FillTokenLogprob(lp, out->add_logprobs());
  out->mutable_prompt_token_ids()->Add(c.prompt_token_ids.begin(),
                                       c.prompt_token_ids.end());
  for (const auto& lp : c.prompt_logprobs) {
    FillTokenLogprob(lp, out->add_prompt_logprobs());
  }
  if (c.finished && c.status.ok()) {
    out->set_finish_reason(ToProto(c.finish_reason));
    out->set_stop_reason(c.stop_reason);
    FillUsage(c.usage, out->mutable_usage());
    FillTimings(c.timings, out->mutable_timings());
  }
}

void FillCompletion(const frontend::CompletionChunk& c, v1::Completion* out) {
  out->set_index(c.index);
  out->set_text(c.text);
  out->mutable_token_ids()->Add(c.token_ids.begin(), c.token_ids.end());
  out->set_finish_reason(ToProto(c.finish_reason));
  for (const auto& lp : c.logprobs) FillTokenLogprob(lp, out->add_logprobs());
  out->set_stop_reason(c.stop_reason);
  FillUsage(c.usage, out->mutable_usage());
}

}  // namespace

frontend::CompletionParams FromProto(const v1::CompletionParams& p) {
  frontend::CompletionParams out;
  out.prompt = ToPrompt(p.text(), p.token_ids());
  if (p.has_max_tokens()) out.max_tokens = p.max_tokens();
  const v1::SamplingParams& s = p.sampling();
  frontend::SamplingOptions& o = out.sampling;
  if (s.has_temperature()) o.temperature = s.temperature();
  o.top_k = s.top_k();
  if (s.has_top_p()) o.top_p = s.top_p();
  o.min_p = s.min_p();
  if (s.has_repetition_penalty()) o.repetition_penalty = s.repetition_penalty();
  o.presence_penalty = s.presence_penalty();
  o.frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) o.seed = s.seed();
  o.ignore_eos = s.ignore_eos();
  o.stop.assign(s.stop().begin(), s.stop().end());
  o.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  o.min_tokens = s.min_tokens();
  o.include_stop_str_in_output = s.include_stop_str_in_output();
  if (s.has_skip_special_tokens()) {
    o.skip_special_tokens = s.skip_special_tokens();
  }
  o.logit_bias.assign(s.logit_bias().begin(), s.logit_bias().end());
  std::sort(o.logit_bias.begin(), o.logit_bias.end());  // map order varies
  o.allowed_token_ids.assign(s.allowed_token_ids().begin(),
                             s.allowed_token_ids().end());
  o.bad_words.assign(s.bad_words().begin(), s.bad_words().end());
  if (p.has_logprobs()) out.logprobs = p.logprobs();
  out.echo = p.echo();
  out.priority = p.priority();
  out.request_id = p.request_id();
  if (p.has_kv_window()) out.kv_window = p.kv_window();
  out.n = p.n() == 0 ? 1 : p.n();
  return out;
}

frontend::ScoreParams FromProto(const v1::ScoreRequest& r) {
  frontend::ScoreParams out;
  out.input = ToPrompt(r.text(), r.token_ids());
  out.top_logprobs = r.top_logprobs();
  out.priority = r.priority();
  out.request_id = r.request_id();
  if (r.has_kv_window()) out.kv_window = r.kv_window();
  return out;
}

std::string CompletionFieldName(absl::string_view canonical) {
  return absl::StrCat("params.", canonical);
}

std::string ScoreFieldName(absl::string_view canonical) {
  return absl::StrCat("score.", canonical);
}

void ScoreStreamFormatter::Format(const frontend::CompletionChunk& c,
                                  v1::ScoreStreamResponse* out) {
  ALIBI_CHECK_NOT_ENGINE_THREAD();
  out->set_id(c.id);
  out->set_offset(offset_);
  if (offset_ == 0 && first_token_ >= 0) {
    out->set_first_token_id(first_token_);
    first_token_ = -1;
  }
  for (const frontend::LogprobEntry& e : c.prompt_logprobs) {
    out->add_token_logprobs(e.chosen.logprob);
    out->add_token_ids(e.chosen.token);
    sum_ += e.chosen.logprob;
    if (with_top_logprobs_) {
      v1::TopLogprobs* alternatives = out->add_top_logprobs();
      for (const frontend::TokenText& t : e.top) {
        FillTop(t, alternatives->add_top_logprobs());
      }
    }
  }
  offset_ += static_cast<int64_t>(c.prompt_logprobs.size());
  if (c.finished && c.status.ok()) {
    out->set_done(true);
    out->set_sum_logprob(sum_);
    out->set_perplexity(
        offset_ > 0 ? std::exp(-sum_ / static_cast<double>(offset_)) : 1.0);
    out->set_num_tokens(offset_ + 1);
    FillUsage(c.usage, out->mutable_usage());
    FillTimings(c.timings, out->mutable_timings());
  }
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
    case FinishReason::kScored:
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

void ToProto(absl::Span<const frontend::CompletionChunk> all,
             v1::CompleteResponse* out) {
  if (all.empty()) return;
  FillChunk(all[0], out);
  if (all.size() == 1) return;
  frontend::Usage total = all[0].usage;
  for (size_t i = 1; i < all.size(); ++i) {
    total.completion_tokens += all[i].usage.completion_tokens;
  }
  FillUsage(total, out->mutable_usage());
  for (const frontend::CompletionChunk& c : all) {
    FillCompletion(c, out->add_completions());
  }
}

void ToProto(const frontend::CompletionChunk& chunk,
             v1::CompleteStreamResponse* out) {
  FillChunk(chunk, out);
  out->set_index(chunk.index);
}

void ToProto(const frontend::ScoreResult& r, bool with_top_logprobs,
             v1::ScoreResponse* out) {
  ALIBI_CHECK_NOT_ENGINE_THREAD();
  out->set_id(r.id);
  out->mutable_token_ids()->Add(r.token_ids.begin(), r.token_ids.end());
  for (const std::string& t : r.tokens) out->add_tokens(t);
  for (const frontend::LogprobEntry& e : r.token_logprobs) {
    out->add_token_logprobs(e.chosen.logprob);
    if (with_top_logprobs) {
      v1::TopLogprobs* alternatives = out->add_top_logprobs();
      for (const frontend::TokenText& t : e.top) {
        FillTop(t, alternatives->add_top_logprobs());
      }
    }
  }
  out->set_sum_logprob(r.sum_logprob);
  out->set_perplexity(r.perplexity);
  FillUsage(r.usage, out->mutable_usage());
  FillTimings(r.timings, out->mutable_timings());
}

void ToProto(const frontend::TokenizeResult& r, v1::TokenizeResponse* out) {
  out->mutable_token_ids()->Add(r.token_ids.begin(), r.token_ids.end());
  for (const std::string& t : r.tokens) out->add_tokens(t);
}

void ToProto(const engine::EngineInfo& c, const std::string& served_model_name,
             const std::string& server_version, v1::GetModelInfoResponse* out) {
  out->set_model(served_model_name);
  out->set_architecture(c.architecture);
  out->set_vocab_size(c.vocab_size);
  out->set_hidden_size(c.hidden_size);
  out->set_num_layers(c.num_layers);
  out->set_num_heads(c.num_heads);
  out->set_num_kv_heads(c.num_kv_heads);
  for (double slope : c.alibi_slopes) out->add_alibi_slopes(slope);
  out->set_trained_context_length(c.trained_context_length);
  out->set_max_context_length(c.max_model_len);
  out->set_dtype(c.dtype);
  out->set_device(c.device);
  out->set_kv_block_size(c.kv_block_size);
  out->set_kv_num_blocks(c.kv_num_blocks);
  out->set_eos_token_id(c.eos_token_id);
  out->set_bos_token_id(c.bos_token_id);
  out->set_server_version(server_version);
  out->set_max_num_seqs(c.max_num_seqs);
  out->set_max_logprobs(c.max_logprobs);
  out->set_supports_kv_window(true);
  out->set_default_kv_window(c.default_kv_window);
}

}  // namespace alibi::rpc
