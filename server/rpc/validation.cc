#include "server/rpc/validation.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace alibi::rpc {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

// The prompt of a request that carries `text` or `token_ids`: exactly one.
absl::StatusOr<std::vector<int32_t>> PromptTokens(
    absl::string_view prefix, const std::string& text,
    const google::protobuf::RepeatedField<int32_t>& ids,
    const tokenizer::Tokenizer& tokenizer, const RequestLimits& limits) {
  const std::string text_field = absl::StrCat(prefix, "text");
  const std::string ids_field = absl::StrCat(prefix, "token_ids");
  if (!text.empty() && !ids.empty()) {
    return Invalid(absl::StrCat(text_field, ", ", ids_field),
                   "set exactly one of text and token_ids, not both");
  }
  if (text.empty() && ids.empty()) {
    return Invalid(text_field, "the prompt is empty (set text or token_ids)");
  }
  if (!ids.empty()) {
    for (int i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= limits.vocab_size) {
        return Invalid(absl::StrCat(ids_field, "[", i, "]"),
                       absl::StrCat(ids[i], " is outside the vocabulary [0, ",
                                    limits.vocab_size, ")"));
      }
    }
    return std::vector<int32_t>(ids.begin(), ids.end());
  }
  if (!IsValidUtf8(text)) return Invalid(text_field, "is not valid UTF-8");
  absl::StatusOr<std::vector<int32_t>> encoded = tokenizer.Encode(text);
  if (!encoded.ok()) return Invalid(text_field, encoded.status().message());
  if (encoded->empty()) return Invalid(text_field, "encodes to no tokens");
  return encoded;
}

absl::Status CheckFinite(absl::string_view field, float value) {
  if (!std::isfinite(value)) {
    return Invalid(field, absl::StrCat("must be finite, got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(absl::string_view field, float value, float lo,
                        float hi, bool lo_open) {
  RETURN_IF_ERROR(CheckFinite(field, value));
  if (value > hi || value < lo || (lo_open && value == lo)) {
    return Invalid(field, absl::StrCat("must be in ", lo_open ? "(" : "[", lo,
                                       ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckRequestId(absl::string_view field, const std::string& id,
                            const RequestLimits& limits) {
  if (static_cast<int>(id.size()) > limits.max_request_id_bytes) {
    return Invalid(field, absl::StrCat("longer than ",
                                       limits.max_request_id_bytes, " bytes"));
  }
  if (!IsValidUtf8(id)) return Invalid(field, "is not valid UTF-8");
  return absl::OkStatus();
}

absl::Status ConvertSampling(const v1::SamplingParams& s,
                             const RequestLimits& limits,
                             engine::GenerationRequest& out) {
  engine::SamplingOptions& o = out.sampling;
  if (s.has_temperature()) {
    RETURN_IF_ERROR(
        CheckFinite("params.sampling.temperature", s.temperature()));
    if (s.temperature() < 0) {
      return Invalid("params.sampling.temperature",
                     absl::StrCat("must be >= 0, got ", s.temperature()));
    }
    o.temperature = s.temperature();
  }
  if (s.top_k() < 0) {
    return Invalid("params.sampling.top_k",
                   absl::StrCat("must be >= 0 (0 disables), got ", s.top_k()));
  }
  o.top_k = s.top_k();
  if (s.has_top_p()) {
    RETURN_IF_ERROR(
        CheckRange("params.sampling.top_p", s.top_p(), 0.0f, 1.0f, true));
    o.top_p = s.top_p();
  }
  RETURN_IF_ERROR(
      CheckRange("params.sampling.min_p", s.min_p(), 0.0f, 1.0f, false));
  o.min_p = s.min_p();
  if (s.has_repetition_penalty()) {
    RETURN_IF_ERROR(CheckRange("params.sampling.repetition_penalty",
                               s.repetition_penalty(), 0.0f, 10.0f, true));
    o.repetition_penalty = s.repetition_penalty();
  }
  RETURN_IF_ERROR(CheckRange("params.sampling.presence_penalty",
                             s.presence_penalty(), -2.0f, 2.0f, false));
  o.presence_penalty = s.presence_penalty();
  RETURN_IF_ERROR(CheckRange("params.sampling.frequency_penalty",
                             s.frequency_penalty(), -2.0f, 2.0f, false));
  o.frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) o.seed = s.seed();

  out.ignore_eos = s.ignore_eos();
  if (s.stop_size() > limits.max_stop_strings) {
    return Invalid("params.sampling.stop",
                   absl::StrCat("at most ", limits.max_stop_strings,
                                " stop strings, got ", s.stop_size()));
  }
  for (int i = 0; i < s.stop_size(); ++i) {
    const std::string field = absl::StrCat("params.sampling.stop[", i, "]");
    const std::string& stop = s.stop(i);
    if (stop.empty()) return Invalid(field, "must not be empty");
    if (static_cast<int>(stop.size()) > limits.max_stop_string_bytes) {
      return Invalid(
          field,
          absl::StrCat("longer than ", limits.max_stop_string_bytes, " bytes"));
    }
    if (!IsValidUtf8(stop)) return Invalid(field, "is not valid UTF-8");
    out.stop.push_back(stop);
  }
  if (s.stop_token_ids_size() > limits.max_stop_token_ids) {
    return Invalid("params.sampling.stop_token_ids",
                   absl::StrCat("at most ", limits.max_stop_token_ids,
                                " ids, got ", s.stop_token_ids_size()));
  }
  for (int i = 0; i < s.stop_token_ids_size(); ++i) {
    const int32_t id = s.stop_token_ids(i);
    if (id < 0 || id >= limits.vocab_size) {
      return Invalid(absl::StrCat("params.sampling.stop_token_ids[", i, "]"),
                     absl::StrCat(id, " is outside the vocabulary [0, ",
                                  limits.vocab_size, ")"));
    }
    out.stop_token_ids.push_back(id);
  }
  if (s.min_tokens() < 0) {
    return Invalid("params.sampling.min_tokens",
                   absl::StrCat("must be >= 0, got ", s.min_tokens()));
  }
  out.min_tokens = s.min_tokens();
  out.include_stop_str_in_output = s.include_stop_str_in_output();
  out.skip_special_tokens =
      s.has_skip_special_tokens() ? s.skip_special_tokens() : true;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<engine::GenerationRequest> ToGenerationRequest(
    const v1::CompletionParams& params, const tokenizer::Tokenizer& tokenizer,
    const RequestLimits& limits) {
  engine::GenerationRequest out;
  RETURN_IF_ERROR(
      CheckRequestId("params.request_id", params.request_id(), limits));
  out.client_request_id = params.request_id();
  ASSIGN_OR_RETURN(out.prompt,
                   PromptTokens("params.", params.text(), params.token_ids(),
                                tokenizer, limits));
  const int prompt_len = static_cast<int>(out.prompt.size());
  const int room = limits.max_model_len - prompt_len;
  if (room <= 0) {
    return Invalid(
        params.token_ids().empty() ? "params.text" : "params.token_ids",
        absl::StrCat("the prompt has ", prompt_len,
                     " tokens; the maximum context length is ",
                     limits.max_model_len,
                     " including at least one generated token"));
  }
  if (params.has_max_tokens()) {
    if (params.max_tokens() < 1) {
      return Invalid("params.max_tokens",
                     absl::StrCat("must be >= 1, got ", params.max_tokens()));
    }
    if (params.max_tokens() > room) {
      return Invalid(
          "params.max_tokens",
          absl::StrCat("the prompt (", prompt_len, " tokens) + max_tokens (",
                       params.max_tokens(),
                       ") exceeds the maximum context length ",
                       limits.max_model_len));
    }
    out.max_tokens = params.max_tokens();
  } else {
    out.max_tokens = std::min(limits.default_max_tokens, room);
  }
  RETURN_IF_ERROR(ConvertSampling(params.sampling(), limits, out));
  if (out.min_tokens > out.max_tokens) {
    return Invalid("params.sampling.min_tokens",
                   absl::StrCat("must be <= max_tokens (", out.max_tokens,
                                "), got ", out.min_tokens));
  }
  if (params.has_logprobs()) {
    if (params.logprobs() < 0 || params.logprobs() > limits.max_logprobs) {
      return Invalid("params.logprobs",
                     absl::StrCat("must be in [0, ", limits.max_logprobs,
                                  "], got ", params.logprobs()));
    }
    out.logprobs = params.logprobs();
    if (params.echo()) {
      out.prompt_logprobs = true;
      out.prompt_top_logprobs = params.logprobs();
    }
  }
  out.priority = params.priority();
  return out;
}

absl::StatusOr<engine::GenerationRequest> ToScoreRequest(
    const v1::ScoreRequest& request, const tokenizer::Tokenizer& tokenizer,
    const RequestLimits& limits) {
  engine::GenerationRequest out;
  RETURN_IF_ERROR(CheckRequestId("request_id", request.request_id(), limits));
  out.client_request_id = request.request_id();
  ASSIGN_OR_RETURN(
      out.prompt,
      PromptTokens("", request.text(), request.token_ids(), tokenizer, limits));
  const int n = static_cast<int>(out.prompt.size());
  const char* field = request.token_ids().empty() ? "text" : "token_ids";
  if (n < 2) {
    return Invalid(field,
                   absl::StrCat("scoring needs at least 2 tokens, got ", n));
  }
  if (n > limits.max_model_len) {
    return Invalid(field, absl::StrCat("the input has ", n,
                                       " tokens; the maximum context length "
                                       "is ",
                                       limits.max_model_len));
  }
  if (request.top_logprobs() < 0 ||
      request.top_logprobs() > limits.max_logprobs) {
    return Invalid("top_logprobs",
                   absl::StrCat("must be in [0, ", limits.max_logprobs,
                                "], got ", request.top_logprobs()));
  }
  out.generate = false;
  out.max_tokens = 0;
  out.prompt_logprobs = true;
  out.prompt_top_logprobs = request.top_logprobs();
  out.priority = request.priority();
  return out;
}

}  // namespace alibi::rpc
