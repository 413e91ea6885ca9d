#include "server/http/openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace alibi::http {
namespace {

using Json = nlohmann::ordered_json;

// Deeper JSON than this is refused before parsing (requests are flat; this
// bounds the parser's and the document's memory).
constexpr int kMaxJsonDepth = 32;
// JSON has no infinity: log-probabilities below this are reported as it
// (vLLM does the same).
constexpr float kMinLogprob = -9999.0f;

absl::Status Invalid(absl::string_view param, absl::string_view problem) {
  if (param.empty()) return absl::InvalidArgumentError(problem);
  return absl::InvalidArgumentError(absl::StrCat(param, ": ", problem));
}

std::string Describe(const Json& v) {
  std::string text = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

absl::Status TypeError(absl::string_view param, absl::string_view expected,
                       const Json& got) {
  return Invalid(param,
                 absl::StrCat("must be ", expected, ", got ", Describe(got)));
}

// Whether `body` nests arrays/objects deeper than kMaxJsonDepth (strings
// are skipped).
bool TooDeep(absl::string_view body) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

absl::StatusOr<Json> ParseObject(absl::string_view body) {
  if (absl::StripAsciiWhitespace(body).empty()) {
    return Invalid("", "the request body is empty; send a JSON object");
  }
  if (TooDeep(body)) {
    return Invalid("", absl::StrCat("the JSON body nests deeper than ",
                                    kMaxJsonDepth, " levels"));
  }
  Json json;
  try {
    json = Json::parse(body.begin(), body.end());
  } catch (const Json::exception& e) {
    // nlohmann's messages name the byte offset and what it expected; the
    // parser also refuses strings that are not valid UTF-8.
    return Invalid("", absl::StrCat("the body is not valid JSON: ", e.what()));
  }
  if (!json.is_object()) {
    return Invalid("", absl::StrCat("the body must be a JSON object, got ",
                                    Describe(json)));
  }
  return json;
}

// A member of `obj`, or null when it is absent or JSON null.
const Json* Member(const Json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::optional<std::string>> OptString(const Json& obj,
                                                     const char* name) {
  const Json* v = Member(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) return TypeError(name, "a string", *v);
  return v->get<std::string>();
}

absl::StatusOr<std::optional<bool>> OptBool(const Json& obj, const char* name) {
  const Json* v = Member(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return TypeError(name, "true or false", *v);
  return v->get<bool>();
}

// `value`, with an absent member replaced by `fallback`.
template <typename T>
absl::StatusOr<T> Or(absl::StatusOr<std::optional<T>> value,
                     std::type_identity_t<T> fallback) {
  if (!value.ok()) return value.status();
  return value->value_or(std::move(fallback));
}

absl::StatusOr<std::optional<float>> OptNumber(const Json& obj,
                                               const char* name) {
  const Json* v = Member(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return TypeError(name, "a number", *v);
  return static_cast<float>(v->get<double>());
}

absl::StatusOr<int32_t> ToInt32(const Json& v, absl::string_view param) {
  if (!v.is_number_integer()) return TypeError(param, "an integer", v);
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(INT32_MAX)) {
      return Invalid(param, absl::StrCat("must be at most ", INT32_MAX,
                                         ", got ", Describe(v)));
    }
    return static_cast<int32_t>(v.get<uint64_t>());
  }
  const int64_t x = v.get<int64_t>();
  if (x < INT32_MIN || x > INT32_MAX) {
    return Invalid(param, absl::StrCat("must be between ", INT32_MIN, " and ",
                                       INT32_MAX, ", got ", x));
  }
  return static_cast<int32_t>(x);
}

absl::StatusOr<std::optional<int32_t>> OptInt(const Json& obj,
                                              const char* name) {
  const Json* v = Member(obj, name);
  if (v == nullptr) return std::nullopt;
  ASSIGN_OR_RETURN(int32_t x, ToInt32(*v, name));
  return x;
}

absl::StatusOr<std::vector<int32_t>> IntList(const Json& v,
                                             absl::string_view param) {
  if (!v.is_array()) return TypeError(param, "a list of integers", v);
  std::vector<int32_t> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    ASSIGN_OR_RETURN(int32_t x,
                     ToInt32(v[i], absl::StrCat(param, "[", i, "]")));
    out.push_back(x);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> StringList(const Json& v,
                                                    absl::string_view param) {
  if (!v.is_array()) return TypeError(param, "a list of strings", v);
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) {
      return TypeError(absl::StrCat(param, "[", i, "]"), "a string", v[i]);
    }
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

// An unsupported member: absent, null, or a value that means "off".
absl::Status Unsupported(const Json& obj, const char* name,
                         absl::string_view why) {
  const Json* v = Member(obj, name);
  if (v == nullptr) return absl::OkStatus();
  if ((v->is_string() && v->get<std::string>().empty()) ||
      (v->is_array() && v->empty()) || (v->is_boolean() && !v->get<bool>())) {
    return absl::OkStatus();
  }
  return Invalid(name, why);
}

absl::StatusOr<std::string> Model(const Json& obj) {
  ASSIGN_OR_RETURN(std::optional<std::string> model, OptString(obj, "model"));
  return model.value_or("");
}

// stream and stream_options.include_usage.
absl::Status ParseStreaming(const Json& obj, bool* stream,
                            bool* include_usage) {
  ASSIGN_OR_RETURN(*stream, Or(OptBool(obj, "stream"), false));
  const Json* options = Member(obj, "stream_options");
  if (options == nullptr) return absl::OkStatus();
  if (!options->is_object()) {
    return TypeError("stream_options", "an object", *options);
  }
  if (!*stream) {
    return Invalid("stream_options", "only allowed with \"stream\": true");
  }
  const Json* usage = Member(*options, "include_usage");
  if (usage != nullptr) {
    if (!usage->is_boolean()) {
      return TypeError("stream_options.include_usage", "true or false", *usage);
    }
    *include_usage = usage->get<bool>();
  }
  return absl::OkStatus();
}

// The sampling parameters both endpoints share (OpenAI's and vLLM's).
absl::Status ParseSampling(const Json& obj, frontend::CompletionParams& p) {
  frontend::SamplingOptions& s = p.sampling;
  ASSIGN_OR_RETURN(p.n, Or(OptInt(obj, "n"), 1));
  if (const Json* best_of = Member(obj, "best_of"); best_of != nullptr) {
    ASSIGN_OR_RETURN(int32_t b, ToInt32(*best_of, "best_of"));
    if (b != p.n) {
      return Invalid("best_of", "is not supported (it must equal n)");
    }
  }
  ASSIGN_OR_RETURN(s.temperature, OptNumber(obj, "temperature"));
  ASSIGN_OR_RETURN(s.top_p, OptNumber(obj, "top_p"));
  ASSIGN_OR_RETURN(s.top_k, Or(OptInt(obj, "top_k"), 0));
  if (s.top_k == -1) s.top_k = 0;  // vLLM's "off"
  ASSIGN_OR_RETURN(s.min_p, Or(OptNumber(obj, "min_p"), 0.0f));
  ASSIGN_OR_RETURN(s.repetition_penalty, OptNumber(obj, "repetition_penalty"));
  ASSIGN_OR_RETURN(s.presence_penalty,
                   Or(OptNumber(obj, "presence_penalty"), 0.0f));
  ASSIGN_OR_RETURN(s.frequency_penalty,
                   Or(OptNumber(obj, "frequency_penalty"), 0.0f));
  if (const Json* seed = Member(obj, "seed"); seed != nullptr) {
    if (!seed->is_number_integer())
      return TypeError("seed", "an integer", *seed);
    s.seed = seed->is_number_unsigned()
                 ? seed->get<uint64_t>()
                 : static_cast<uint64_t>(seed->get<int64_t>());
  }
  if (const Json* stop = Member(obj, "stop"); stop != nullptr) {
    if (stop->is_string()) {
      s.stop = {stop->get<std::string>()};
    } else {
      ASSIGN_OR_RETURN(s.stop, StringList(*stop, "stop"));
    }
  }
  if (const Json* ids = Member(obj, "stop_token_ids"); ids != nullptr) {
    ASSIGN_OR_RETURN(s.stop_token_ids, IntList(*ids, "stop_token_ids"));
  }
  ASSIGN_OR_RETURN(s.ignore_eos, Or(OptBool(obj, "ignore_eos"), false));
  ASSIGN_OR_RETURN(s.min_tokens, Or(OptInt(obj, "min_tokens"), 0));
  ASSIGN_OR_RETURN(s.include_stop_str_in_output,
                   Or(OptBool(obj, "include_stop_str_in_output"), false));
  ASSIGN_OR_RETURN(s.skip_special_tokens, OptBool(obj, "skip_special_tokens"));
  if (const Json* bias = Member(obj, "logit_bias"); bias != nullptr) {
    if (!bias->is_object()) {
      return TypeError("logit_bias", "an object of token id: bias", *bias);
    }
    for (const auto& [key, value] : bias->items()) {
      int32_t token = 0;
      if (!absl::SimpleAtoi(key, &token)) {
        return Invalid(
            "logit_bias",
            absl::StrCat("keys must be token ids, got \"", key, "\""));
      }
      const std::string param = absl::StrCat("logit_bias[", key, "]");
      if (!value.is_number()) return TypeError(param, "a number", value);
      s.logit_bias.emplace_back(token, static_cast<float>(value.get<double>()));
    }
    std::sort(s.logit_bias.begin(), s.logit_bias.end());
  }
  if (const Json* allowed = Member(obj, "allowed_token_ids");
      allowed != nullptr) {
    ASSIGN_OR_RETURN(s.allowed_token_ids,
                     IntList(*allowed, "allowed_token_ids"));
    if (s.allowed_token_ids.empty()) {
      return Invalid("allowed_token_ids", "must not be empty");
    }
  }
  if (const Json* bad = Member(obj, "bad_words"); bad != nullptr) {
    ASSIGN_OR_RETURN(s.bad_words, StringList(*bad, "bad_words"));
  }
  ASSIGN_OR_RETURN(p.priority, Or(OptInt(obj, "priority"), 0));
  ASSIGN_OR_RETURN(p.request_id,
                   Or(OptString(obj, "request_id"), std::string()));
  ASSIGN_OR_RETURN(std::optional<std::string> user, OptString(obj, "user"));
  (void)user;  // accepted; identifies the end user for the caller's logs
  return absl::OkStatus();
}

absl::StatusOr<std::vector<frontend::ChatMessage>> ParseMessages(
    const Json& obj) {
  const Json* messages = Member(obj, "messages");
  if (messages == nullptr) return Invalid("messages", "is required");
  if (!messages->is_array()) {
    return TypeError("messages", "a list of messages", *messages);
  }
  if (messages->empty()) return Invalid("messages", "must not be empty");
  std::vector<frontend::ChatMessage> out;
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& m = (*messages)[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return TypeError(at, "an object", m);
    frontend::ChatMessage message;
    const Json* role = Member(m, "role");
    if (role == nullptr || !role->is_string() ||
        role->get<std::string>().empty()) {
      return Invalid(absl::StrCat(at, ".role"), "must be a non-empty string");
    }
    message.role = role->get<std::string>();
    if (const Json* tools = Member(m, "tool_calls");
        tools != nullptr && !tools->empty()) {
      return Invalid(absl::StrCat(at, ".tool_calls"),
                     "tool calls are not supported");
    }
    const Json* content = Member(m, "content");
    if (content == nullptr) {
      // An empty assistant turn, as OpenAI allows.
    } else if (content->is_string()) {
      message.content = content->get<std::string>();
    } else if (content->is_array()) {
      // Text parts, joined by newlines (vLLM).
      std::vector<std::string> parts;
      for (size_t j = 0; j < content->size(); ++j) {
        const Json& part = (*content)[j];
        const std::string part_at = absl::StrCat(at, ".content[", j, "]");
        const Json* type = part.is_object() ? Member(part, "type") : nullptr;
        if (type == nullptr || !type->is_string() ||
            type->get<std::string>() != "text") {
          return Invalid(absl::StrCat(part_at, ".type"),
                         "only \"text\" parts are supported");
        }
        const Json* text = Member(part, "text");
        if (text == nullptr || !text->is_string()) {
          return Invalid(absl::StrCat(part_at, ".text"), "must be a string");
        }
        parts.push_back(text->get<std::string>());
      }
      message.content = absl::StrJoin(parts, "\n");
    } else {
      return TypeError(absl::StrCat(at, ".content"),
                       "a string or a list of text parts", *content);
    }
    out.push_back(std::move(message));
  }
  return out;
}

// OpenAI's finish_reason: "length" or "stop" (EOS, stop strings and ids).
const char* OpenAiFinishReason(FinishReason reason) {
  return reason == FinishReason::kLength || reason == FinishReason::kScored
             ? "length"
             : "stop";
}

float ClampLogprob(float x) {
  return std::isnan(x) || x < kMinLogprob ? kMinLogprob : x;
}

// Unicode code points in `s` (Python's len()).
int CodePoints(absl::string_view s) {
  int n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

Json Bytes(absl::string_view s) {
  Json out = Json::array();
  for (char c : s)
    out.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  return out;
}

void SetFinish(const frontend::CompletionChunk& c, Json& choice) {
  const bool done = c.finished && c.status.ok();
  choice["finish_reason"] =
      done ? Json(OpenAiFinishReason(c.finish_reason)) : Json(nullptr);
  choice["stop_reason"] =
      done && !c.stop_reason.empty() ? Json(c.stop_reason) : Json(nullptr);
}

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

absl::StatusOr<CompletionRequest> ParseCompletionRequest(
    absl::string_view body) {
  ASSIGN_OR_RETURN(Json obj, ParseObject(body));
  CompletionRequest r;
  ASSIGN_OR_RETURN(r.model, Model(obj));
  const Json* prompt = Member(obj, "prompt");
  if (prompt == nullptr) return Invalid("prompt", "is required");
  if (prompt->is_string()) {
    r.prompts.push_back({prompt->get<std::string>(), {}});
  } else if (prompt->is_array()) {
    if (prompt->empty()) return Invalid("prompt", "must not be empty");
    if ((*prompt)[0].is_number()) {  // one prompt of token ids
      frontend::Prompt p;
      ASSIGN_OR_RETURN(p.token_ids, IntList(*prompt, "prompt"));
      r.prompts.push_back(std::move(p));
    } else {  // several prompts, each a string or a list of token ids
      r.prompt_is_list = true;
      for (size_t i = 0; i < prompt->size(); ++i) {
        const Json& item = (*prompt)[i];
        const std::string at = absl::StrCat("prompt[", i, "]");
        frontend::Prompt p;
        if (item.is_string()) {
          p.text = item.get<std::string>();
        } else if (item.is_array()) {
          ASSIGN_OR_RETURN(p.token_ids, IntList(item, at));
        } else {
          return TypeError(at, "a string or a list of token ids", item);
        }
        r.prompts.push_back(std::move(p));
      }
    }
  } else {
    return TypeError("prompt",
                     "a string, a list of token ids, or a list of either",
                     *prompt);
  }
  RETURN_IF_ERROR(Unsupported(obj, "suffix", "is not supported"));
  ASSIGN_OR_RETURN(r.params.max_tokens, OptInt(obj, "max_tokens"));
  ASSIGN_OR_RETURN(r.params.logprobs, OptInt(obj, "logprobs"));
  ASSIGN_OR_RETURN(r.params.echo, Or(OptBool(obj, "echo"), false));
  RETURN_IF_ERROR(ParseSampling(obj, r.params));
  RETURN_IF_ERROR(ParseStreaming(obj, &r.stream, &r.include_usage));
  return r;
}

absl::StatusOr<ChatRequest> ParseChatRequest(absl::string_view body) {
  ASSIGN_OR_RETURN(Json obj, ParseObject(body));
  ChatRequest r;
  ASSIGN_OR_RETURN(r.model, Model(obj));
  ASSIGN_OR_RETURN(r.messages, ParseMessages(obj));
  for (const char* name : {"tools", "functions"}) {
    RETURN_IF_ERROR(Unsupported(obj, name, "tool calling is not supported"));
  }
  for (const char* name : {"tool_choice", "function_call"}) {
    const Json* choice = Member(obj, name);
    if (choice != nullptr &&
        !(choice->is_string() && (choice->get<std::string>() == "none" ||
                                  choice->get<std::string>() == "auto"))) {
      return Invalid(name, "tool calling is not supported");
    }
  }
  if (const Json* format = Member(obj, "response_format"); format != nullptr) {
    const Json* type = format->is_object() ? Member(*format, "type") : nullptr;
    if (type == nullptr || *type != "text") {
      return Invalid("response_format",
                     "only {\"type\": \"text\"} is supported");
    }
  }
  RETURN_IF_ERROR(
      Unsupported(obj, "continue_final_message", "is not supported"));
  ASSIGN_OR_RETURN(r.add_generation_prompt,
                   Or(OptBool(obj, "add_generation_prompt"), true));
  ASSIGN_OR_RETURN(std::optional<int32_t> max_completion,
                   OptInt(obj, "max_completion_tokens"));
  ASSIGN_OR_RETURN(std::optional<int32_t> max_tokens,
                   OptInt(obj, "max_tokens"));
  r.params.max_tokens =
      max_completion.has_value() ? max_completion : max_tokens;
  r.params.max_tokens_fills_context = true;
  ASSIGN_OR_RETURN(r.logprobs, Or(OptBool(obj, "logprobs"), false));
  ASSIGN_OR_RETURN(std::optional<int32_t> top, OptInt(obj, "top_logprobs"));
  if (top.has_value() && !r.logprobs) {
    return Invalid("top_logprobs", "needs \"logprobs\": true");
  }
  if (r.logprobs) r.params.logprobs = top.value_or(0);
  RETURN_IF_ERROR(ParseSampling(obj, r.params));
  RETURN_IF_ERROR(ParseStreaming(obj, &r.stream, &r.include_usage));
  return r;
}

absl::StatusOr<TokenizeRequest> ParseTokenizeRequest(absl::string_view body) {
  ASSIGN_OR_RETURN(Json obj, ParseObject(body));
  TokenizeRequest r;
  ASSIGN_OR_RETURN(r.model, Model(obj));
  ASSIGN_OR_RETURN(r.prompt, OptString(obj, "prompt"));
  if (!r.prompt.has_value()) {
    if (Member(obj, "messages") == nullptr) {
      return Invalid("prompt", "is required (or \"messages\")");
    }
    ASSIGN_OR_RETURN(r.messages, ParseMessages(obj));
    ASSIGN_OR_RETURN(r.add_generation_prompt,
                     Or(OptBool(obj, "add_generation_prompt"), true));
  }
  // add_special_tokens is accepted: these models' tokenizers add none.
  ASSIGN_OR_RETURN(std::optional<bool> special,
                   OptBool(obj, "add_special_tokens"));
  (void)special;
  ASSIGN_OR_RETURN(r.return_token_strs,
                   Or(OptBool(obj, "return_token_strs"), false));
  return r;
}

absl::StatusOr<DetokenizeRequest> ParseDetokenizeRequest(
    absl::string_view body) {
  ASSIGN_OR_RETURN(Json obj, ParseObject(body));
  DetokenizeRequest r;
  ASSIGN_OR_RETURN(r.model, Model(obj));
  const Json* tokens = Member(obj, "tokens");
  if (tokens == nullptr) return Invalid("tokens", "is required");
  ASSIGN_OR_RETURN(r.tokens, IntList(*tokens, "tokens"));
  return r;
}

std::string CompletionFieldName(absl::string_view canonical, int index,
                                bool prompt_is_list) {
  const std::string prompt =
      prompt_is_list ? absl::StrCat("prompt[", index, "]") : "prompt";
  if (canonical == "text" || canonical == "token_ids") return prompt;
  if (absl::StartsWith(canonical, "token_ids[")) {
    return absl::StrCat(prompt, canonical.substr(9));
  }
  if (absl::StartsWith(canonical, "sampling.")) {
    return std::string(canonical.substr(9));
  }
  return std::string(canonical);
}

std::string ChatFieldName(absl::string_view canonical) {
  if (canonical == "text" || canonical == "messages") return "messages";
  if (canonical == "logprobs") return "top_logprobs";
  if (canonical == "max_tokens") return "max_completion_tokens";
  if (absl::StartsWith(canonical, "sampling.")) {
    return std::string(canonical.substr(9));
  }
  return std::string(canonical);
}

std::string ParamOf(absl::string_view message) {
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos || colon == 0) return "";
  const absl::string_view name = message.substr(0, colon);
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '[' &&
        c != ']' && c != ',' && c != '-') {
      return "";
    }
  }
  return std::string(name);
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;  // the client closed the request (nginx's convention)
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

absl::StatusCode StatusCodeOf(int http_status) {
  switch (http_status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 408:
      return absl::StatusCode::kDeadlineExceeded;
    case 413:
    case 431:
      return absl::StatusCode::kResourceExhausted;
    case 501:
    case 505:
      return absl::StatusCode::kUnimplemented;
    case 503:
      return absl::StatusCode::kUnavailable;
    default:
      return http_status < 400 ? absl::StatusCode::kOk
                               : absl::StatusCode::kUnknown;
  }
}

std::string ErrorJson(const absl::Status& status, absl::string_view code) {
  return ErrorBody(HttpStatusOf(status.code()), status.message(),
                   ParamOf(status.message()), code);
}

std::string ErrorBody(int http_status, absl::string_view message,
                      absl::string_view param, absl::string_view code) {
  const char* type = "invalid_request_error";
  switch (http_status) {
    case 401:
      type = "authentication_error";
      break;
    case 403:
      type = "permission_error";
      break;
    case 404:
      type = "not_found_error";
      break;
    case 408:
    case 504:
      type = "timeout_error";
      break;
    case 429:
      type = "rate_limit_error";
      break;
    case 503:
      type = "service_unavailable_error";
      break;
    default:
      if (http_status >= 500) type = "server_error";
  }
  Json error = {{"message", LossyUtf8(message)},
                {"type", type},
                {"param", param.empty() ? Json(nullptr) : Json(param)},
                {"code", code.empty() ? Json(nullptr) : Json(code)}};
  return Dump(Json{{"error", std::move(error)}});
}

std::string CompletionChoice(const frontend::CompletionChunk& c,
                             bool with_logprobs,
                             const std::string& first_prompt_token_text,
                             ChoiceState& state) {
  Json choice = {{"index", state.index}, {"text", c.text}};
  if (with_logprobs) {
    Json tokens = Json::array(), token_logprobs = Json::array(),
         top_logprobs = Json::array(), offsets = Json::array();
    auto add = [&](const std::string& text, const frontend::LogprobEntry* e) {
      tokens.push_back(text);
      offsets.push_back(state.text_offset);
      state.text_offset += CodePoints(text);
      if (e == nullptr) {  // the first prompt token has no log-probability
        token_logprobs.push_back(nullptr);
        top_logprobs.push_back(nullptr);
        return;
      }
      token_logprobs.push_back(ClampLogprob(e->chosen.logprob));
      Json top = Json::object();
      for (const frontend::TokenText& t : e->top) {
        top[t.text] = ClampLogprob(t.logprob);
      }
      top[e->chosen.text] = ClampLogprob(e->chosen.logprob);
      top_logprobs.push_back(std::move(top));
    };
    if (!c.prompt_token_ids.empty() && !c.prompt_logprobs.empty()) {
      add(first_prompt_token_text, nullptr);
    }
    for (const frontend::LogprobEntry& e : c.prompt_logprobs) {
      add(e.chosen.text, &e);
    }
    for (const frontend::LogprobEntry& e : c.logprobs) add(e.chosen.text, &e);
    choice["logprobs"] = {{"tokens", std::move(tokens)},
                          {"token_logprobs", std::move(token_logprobs)},
                          {"top_logprobs", std::move(top_logprobs)},
                          {"text_offset", std::move(offsets)}};
  } else {
    choice["logprobs"] = nullptr;
  }
  SetFinish(c, choice);
  state.started = true;
  return Dump(choice);
}

std::string ChatChoice(const frontend::CompletionChunk& c, bool with_logprobs,
                       bool delta, ChoiceState& state) {
  Json choice = {{"index", state.index}};
  Json message = Json::object();
  if (!delta || !state.started) message["role"] = "assistant";
  message["content"] = c.text;
  choice[delta ? "delta" : "message"] = std::move(message);
  if (with_logprobs) {
    Json content = Json::array();
    for (const frontend::LogprobEntry& e : c.logprobs) {
      Json top = Json::array();
      for (const frontend::TokenText& t : e.top) {
        top.push_back({{"token", t.text},
                       {"logprob", ClampLogprob(t.logprob)},
                       {"bytes", Bytes(t.text)}});
      }
      content.push_back({{"token", e.chosen.text},
                         {"logprob", ClampLogprob(e.chosen.logprob)},
                         {"bytes", Bytes(e.chosen.text)},
                         {"top_logprobs", std::move(top)}});
    }
    choice["logprobs"] = {{"content", std::move(content)}};
  } else {
    choice["logprobs"] = nullptr;
  }
  SetFinish(c, choice);
  state.started = true;
  return Dump(choice);
}

std::string UsageJson(const frontend::Usage& u) {
  return Dump(Json{
      {"prompt_tokens", u.prompt_tokens},
      {"completion_tokens", u.completion_tokens},
      {"total_tokens", u.prompt_tokens + u.completion_tokens},
      {"prompt_tokens_details", {{"cached_tokens", u.cached_prompt_tokens}}}});
}

namespace {

std::string Envelope(const ResponseMeta& meta, const char* object,
                     const std::vector<std::string>& choices) {
  return absl::StrCat("{\"id\":", Dump(Json(meta.id)), ",\"object\":\"", object,
                      "\",\"created\":", meta.created,
                      ",\"model\":", Dump(Json(meta.model)), ",\"choices\":[",
                      absl::StrJoin(choices, ","), "]");
}

}  // namespace

std::string ResponseJson(const ResponseMeta& meta, bool chat,
                         const std::vector<std::string>& choices,
                         const frontend::Usage& usage) {
  return absl::StrCat(
      Envelope(meta, chat ? "chat.completion" : "text_completion", choices),
      ",\"usage\":", UsageJson(usage), "}");
}

std::string StreamChunkJson(const ResponseMeta& meta, bool chat,
                            const std::vector<std::string>& choices,
                            const frontend::Usage* usage) {
  std::string out = Envelope(
      meta, chat ? "chat.completion.chunk" : "text_completion", choices);
  if (usage != nullptr) absl::StrAppend(&out, ",\"usage\":", UsageJson(*usage));
  out += "}";
  return out;
}

}  // namespace alibi::http
