#include "server/frontend/input_processor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace alibi::frontend {
namespace {

absl::Status Invalid(const FieldNamer& name, absl::string_view field,
                     absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(name(field), ": ", problem));
}

absl::Status CheckFinite(const FieldNamer& name, absl::string_view field,
                         float value) {
  if (!std::isfinite(value)) {
    return Invalid(name, field, absl::StrCat("must be finite, got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(const FieldNamer& name, absl::string_view field,
                        float value, float lo, float hi, bool lo_open) {
  RETURN_IF_ERROR(CheckFinite(name, field, value));
  if (value > hi || value < lo || (lo_open && value == lo)) {
    return Invalid(name, field,
                   absl::StrCat("must be in ", lo_open ? "(" : "[", lo, ", ",
                                hi, "], got ", value));
  }
  return absl::OkStatus();
}

// A list field holds at most `limit` entries (`what`: e.g. "stop strings").
absl::Status CheckCount(const FieldNamer& name, absl::string_view field,
                        size_t count, int limit, absl::string_view what) {
  if (count > static_cast<size_t>(limit)) {
    return Invalid(name, field,
                   absl::StrCat("at most ", limit, " ", what, ", got ", count));
  }
  return absl::OkStatus();
}

// A string entry of a list: at most `max_bytes` bytes of valid UTF-8.
absl::Status CheckEntryText(const FieldNamer& name, absl::string_view field,
                            absl::string_view text, int max_bytes) {
  if (text.size() > static_cast<size_t>(max_bytes)) {
    return Invalid(name, field,
                   absl::StrCat("longer than ", max_bytes, " bytes"));
  }
  if (!IsValidUtf8(text)) return Invalid(name, field, "is not valid UTF-8");
  return absl::OkStatus();
}

}  // namespace

std::string TokenTextOf(const tokenizer::Tokenizer& tokenizer, int32_t id) {
  return LossyUtf8(tokenizer.TokenBytes(id));
}

InputProcessor::InputProcessor(
    std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
    const engine::EngineInfo& info, InputLimits limits)
    : tokenizer_(std::move(tokenizer)),
      vocab_size_(info.vocab_size),
      max_model_len_(info.max_model_len),
      max_logprobs_(info.max_logprobs),
      default_kv_window_(info.default_kv_window),
      limits_(limits) {}

absl::StatusOr<std::vector<int32_t>> InputProcessor::PromptTokens(
    const Prompt& prompt, const FieldNamer& name) const {
  if (!prompt.text.empty() && !prompt.token_ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name("text"), ", ", name("token_ids"),
                     ": set exactly one of text and token_ids, not both"));
  }
  if (prompt.text.empty() && prompt.token_ids.empty()) {
    return Invalid(name, "text", "the prompt is empty (set text or token_ids)");
  }
  if (!prompt.token_ids.empty()) {
    RETURN_IF_ERROR(CheckTokenIds(prompt.token_ids, name, "token_ids"));
    return prompt.token_ids;
  }
  if (!IsValidUtf8(prompt.text)) {
    return Invalid(name, "text", "is not valid UTF-8");
  }
  absl::StatusOr<std::vector<int32_t>> encoded =
      tokenizer_->Encode(prompt.text);
  if (!encoded.ok()) return Invalid(name, "text", encoded.status().message());
  if (encoded->empty()) return Invalid(name, "text", "encodes to no tokens");
  return encoded;
}

absl::Status InputProcessor::ConvertSampling(const SamplingOptions& s,
                                             const FieldNamer& name,
                                             PreparedRequest& out) const {
  engine::SamplingParams& o = out.request.sampling;
  if (s.temperature.has_value()) {
    RETURN_IF_ERROR(CheckFinite(name, "sampling.temperature", *s.temperature));
    if (*s.temperature < 0) {
      return Invalid(name, "sampling.temperature",
                     absl::StrCat("must be >= 0, got ", *s.temperature));
    }
    o.temperature = *s.temperature;
  }
  if (s.top_k < 0) {
    return Invalid(name, "sampling.top_k",
                   absl::StrCat("must be >= 0 (0 disables), got ", s.top_k));
  }
  o.top_k = s.top_k;
  if (s.top_p.has_value()) {
    RETURN_IF_ERROR(
        CheckRange(name, "sampling.top_p", *s.top_p, 0.0f, 1.0f, true));
    o.top_p = *s.top_p;
  }
  RETURN_IF_ERROR(
      CheckRange(name, "sampling.min_p", s.min_p, 0.0f, 1.0f, false));
  o.min_p = s.min_p;
  if (s.repetition_penalty.has_value()) {
    RETURN_IF_ERROR(CheckRange(name, "sampling.repetition_penalty",
                               *s.repetition_penalty, 0.0f, 10.0f, true));
    o.repetition_penalty = *s.repetition_penalty;
  }
  RETURN_IF_ERROR(CheckRange(name, "sampling.presence_penalty",
                             s.presence_penalty, -2.0f, 2.0f, false));
  o.presence_penalty = s.presence_penalty;
  RETURN_IF_ERROR(CheckRange(name, "sampling.frequency_penalty",
                             s.frequency_penalty, -2.0f, 2.0f, false));
  o.frequency_penalty = s.frequency_penalty;
  o.seed = s.seed;

  out.request.ignore_eos = s.ignore_eos;
  RETURN_IF_ERROR(CheckCount(name, "sampling.stop", s.stop.size(),
                             limits_.max_stop_strings, "stop strings"));
  for (size_t i = 0; i < s.stop.size(); ++i) {
    const std::string field = absl::StrCat("sampling.stop[", i, "]");
    const std::string& stop = s.stop[i];
    if (stop.empty()) return Invalid(name, field, "must not be empty");
    RETURN_IF_ERROR(
        CheckEntryText(name, field, stop, limits_.max_stop_string_bytes));
    out.output.stop.push_back(stop);
  }
  RETURN_IF_ERROR(CheckCount(name, "sampling.stop_token_ids",
                             s.stop_token_ids.size(),
                             limits_.max_stop_token_ids, "ids"));
  RETURN_IF_ERROR(
      CheckTokenIds(s.stop_token_ids, name, "sampling.stop_token_ids"));
  out.request.stop_token_ids = s.stop_token_ids;
  if (s.min_tokens < 0) {
    return Invalid(name, "sampling.min_tokens",
                   absl::StrCat("must be >= 0, got ", s.min_tokens));
  }
  out.request.min_tokens = s.min_tokens;
  out.output.min_tokens = s.min_tokens;
  out.output.include_stop_str_in_output = s.include_stop_str_in_output;
  out.output.skip_special_tokens = s.skip_special_tokens.value_or(true);
  return ConvertTokenConstraints(s, name, o);
}

absl::Status InputProcessor::CheckTokenId(int32_t id, const FieldNamer& name,
                                          absl::string_view field) const {
  if (id < 0 || id >= vocab_size_) {
    return Invalid(
        name, field,
        absl::StrCat(id, " is outside the vocabulary [0, ", vocab_size_, ")"));
  }
  return absl::OkStatus();
}

absl::Status InputProcessor::CheckTokenIds(absl::Span<const int32_t> ids,
                                           const FieldNamer& name,
                                           absl::string_view field) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    RETURN_IF_ERROR(
        CheckTokenId(ids[i], name, absl::StrCat(field, "[", i, "]")));
  }
  return absl::OkStatus();
}

absl::Status InputProcessor::ConvertTokenConstraints(
    const SamplingOptions& s, const FieldNamer& name,
    engine::SamplingParams& out) const {
  RETURN_IF_ERROR(CheckCount(name, "sampling.logit_bias", s.logit_bias.size(),
                             limits_.max_logit_bias, "entries"));
  for (const auto& [token, bias] : s.logit_bias) {
    const std::string field = absl::StrCat("sampling.logit_bias[", token, "]");
    RETURN_IF_ERROR(CheckTokenId(token, name, field));
    RETURN_IF_ERROR(CheckRange(name, field, bias, -100.0f, 100.0f, false));
  }
  out.logit_bias = s.logit_bias;
  RETURN_IF_ERROR(
      CheckTokenIds(s.allowed_token_ids, name, "sampling.allowed_token_ids"));
  out.allowed_token_ids = s.allowed_token_ids;
  RETURN_IF_ERROR(CheckCount(name, "sampling.bad_words", s.bad_words.size(),
                             limits_.max_bad_words, "words"));
  for (size_t i = 0; i < s.bad_words.size(); ++i) {
    const std::string field = absl::StrCat("sampling.bad_words[", i, "]");
    const std::string& word = s.bad_words[i];
    RETURN_IF_ERROR(
        CheckEntryText(name, field, word, limits_.max_bad_word_bytes));
    const absl::string_view stripped = absl::StripLeadingAsciiWhitespace(word);
    if (stripped.empty()) return Invalid(name, field, "must not be blank");
    // At the start of the text and after a space (vLLM): both encodings.
    for (const std::string& variant :
         {std::string(stripped), absl::StrCat(" ", stripped)}) {
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(variant);
      if (!ids.ok()) return Invalid(name, field, ids.status().message());
      if (ids->empty()) return Invalid(name, field, "encodes to no tokens");
      if (std::find(out.bad_words.begin(), out.bad_words.end(), *ids) ==
          out.bad_words.end()) {
        out.bad_words.push_back(*std::move(ids));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> InputProcessor::Window(const std::optional<int>& kv_window,
                                           const FieldNamer& name) const {
  if (!kv_window.has_value()) return default_kv_window_;
  if (*kv_window < 0 || *kv_window > max_model_len_) {
    return Invalid(name, "kv_window",
                   absl::StrCat("must be in [0, ", max_model_len_,
                                "] (0: off; the KV pool holds ", max_model_len_,
                                " tokens), got ", *kv_window));
  }
  return *kv_window;
}

absl::Status InputProcessor::PrepareCommon(const std::string& request_id,
                                           const std::optional<int>& kv_window,
                                           const Prompt& prompt,
                                           const FieldNamer& name,
                                           engine::EngineRequest& r) const {
  if (static_cast<int>(request_id.size()) > limits_.max_request_id_bytes) {
    return Invalid(
        name, "request_id",
        absl::StrCat("longer than ", limits_.max_request_id_bytes, " bytes"));
  }
  if (!IsValidUtf8(request_id)) {
    return Invalid(name, "request_id", "is not valid UTF-8");
  }
  r.client_request_id = request_id;
  ASSIGN_OR_RETURN(r.kv_window, Window(kv_window, name));
  ASSIGN_OR_RETURN(r.prompt, PromptTokens(prompt, name));
  return absl::OkStatus();
}

absl::StatusOr<PreparedRequest> InputProcessor::PrepareCompletion(
    const CompletionParams& params, const FieldNamer& name) const {
  PreparedRequest out;
  engine::EngineRequest& r = out.request;
  RETURN_IF_ERROR(PrepareCommon(params.request_id, params.kv_window,
                                params.prompt, name, r));
  const int prompt_len = static_cast<int>(r.prompt.size());
  // A windowed request holds O(kv_window) memory: only positions cap it.
  const int room = r.kv_window > 0
                       ? std::numeric_limits<int32_t>::max() - prompt_len
                       : max_model_len_ - prompt_len;
  if (room <= 0) {
    return Invalid(
        name, params.prompt.token_ids.empty() ? "text" : "token_ids",
        absl::StrCat("the prompt has ", prompt_len,
                     " tokens; the maximum context length is ", max_model_len_,
                     " including at least one generated token"));
  }
  if (params.max_tokens.has_value()) {
    if (*params.max_tokens < 1) {
      return Invalid(name, "max_tokens",
                     absl::StrCat("must be >= 1, got ", *params.max_tokens));
    }
    if (*params.max_tokens > room) {
      return Invalid(
          name, "max_tokens",
          absl::StrCat("the prompt (", prompt_len, " tokens) + max_tokens (",
                       *params.max_tokens,
                       ") exceeds the maximum context length ",
                       prompt_len + room,
                       r.kv_window > 0 ? "" : " (a kv_window lifts it)"));
    }
    r.max_tokens = *params.max_tokens;
  } else {
    r.max_tokens = params.max_tokens_fills_context
                       ? room
                       : std::min(limits_.default_max_tokens, room);
  }
  RETURN_IF_ERROR(ConvertSampling(params.sampling, name, out));
  if (r.min_tokens > r.max_tokens) {
    return Invalid(name, "sampling.min_tokens",
                   absl::StrCat("must be <= max_tokens (", r.max_tokens,
                                "), got ", r.min_tokens));
  }
  if (params.logprobs.has_value()) {
    if (*params.logprobs < 0 || *params.logprobs > max_logprobs_) {
      return Invalid(name, "logprobs",
                     absl::StrCat("must be in [0, ", max_logprobs_, "], got ",
                                  *params.logprobs));
    }
    r.logprobs = *params.logprobs;
    out.output.logprobs = true;
    if (params.echo) {
      r.prompt_logprobs = true;
      r.prompt_top_logprobs = *params.logprobs;
      out.output.prompt_logprobs = true;
    }
  }
  r.priority = params.priority;
  if (params.n < 1 || params.n > limits_.max_n) {
    return Invalid(
        name, "n",
        absl::StrCat("must be in [1, ", limits_.max_n, "], got ", params.n));
  }
  out.n = params.n;
  if (params.echo) {
    out.output.echo = true;
    out.output.prompt = r.prompt;
    out.output.echo_text =
        !params.prompt.text.empty()
            ? params.prompt.text
            : tokenizer_->Decode(r.prompt, out.output.skip_special_tokens);
  }
  return out;
}

absl::StatusOr<PreparedRequest> InputProcessor::PrepareScore(
    const ScoreParams& params, const FieldNamer& name) const {
  PreparedRequest out;
  engine::EngineRequest& r = out.request;
  RETURN_IF_ERROR(PrepareCommon(params.request_id, params.kv_window,
                                params.input, name, r));
  const int n = static_cast<int>(r.prompt.size());
  const char* field = params.input.token_ids.empty() ? "text" : "token_ids";
  if (n < 2) {
    return Invalid(name, field,
                   absl::StrCat("scoring needs at least 2 tokens, got ", n));
  }
  if (r.kv_window == 0 && n > max_model_len_) {
    return Invalid(
        name, field,
        absl::StrCat("the input has ", n,
                     " tokens; the maximum context length is ", max_model_len_,
                     " (a kv_window scores any length)"));
  }
  if (params.top_logprobs < 0 || params.top_logprobs > max_logprobs_) {
    return Invalid(name, "top_logprobs",
                   absl::StrCat("must be in [0, ", max_logprobs_, "], got ",
                                params.top_logprobs));
  }
  r.generate = false;
  r.max_tokens = 0;
  r.prompt_logprobs = true;
  r.prompt_top_logprobs = params.top_logprobs;
  r.priority = params.priority;
  out.output.prompt_logprobs = true;
  out.output.prompt = r.prompt;
  return out;
}

absl::StatusOr<std::string> InputProcessor::Detokenize(
    absl::Span<const int32_t> token_ids, bool skip_special_tokens,
    const FieldNamer& name) const {
  RETURN_IF_ERROR(CheckTokenIds(token_ids, name, "token_ids"));
  return tokenizer_->Decode(token_ids, skip_special_tokens);
}

absl::StatusOr<TokenizeResult> InputProcessor::Tokenize(
    const std::string& text, const FieldNamer& name) const {
  if (!IsValidUtf8(text)) return Invalid(name, "text", "is not valid UTF-8");
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text);
  if (!ids.ok()) return Invalid(name, "text", ids.status().message());
  TokenizeResult result;
  result.token_ids = *std::move(ids);
  result.tokens.reserve(result.token_ids.size());
  for (int32_t id : result.token_ids) {
    result.tokens.push_back(TokenTextOf(*tokenizer_, id));
  }
  return result;
}

}  // namespace alibi::frontend
