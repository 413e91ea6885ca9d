// OpenAI's HTTP API as JSON <-> the frontend's types: the parsing and
// formatting half of the HTTP transport (server/http/openai_server.h serves
// it). Request bodies become CompletionParams (no validation beyond JSON
// types here: the frontend's input processor validates every value once);
// response chunks become OpenAI's response and server-sent-event objects.
//
// Errors are INVALID_ARGUMENT with messages that start with the parameter's
// name as OpenAI clients know it ("temperature: must be a number, got
// \"hot\""), so the error object's `param` can be filled from them
// (ParamOf).
//
// Thread-safety: pure functions.
#ifndef ALIBI_SERVER_HTTP_OPENAI_PROTOCOL_H_
#define ALIBI_SERVER_HTTP_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/frontend/chat_template.h"
#include "server/frontend/types.h"

namespace alibi::http {

// POST /v1/completions.
struct CompletionRequest {
  std::string model;  // empty when not given
  // The prompts (a string, a list of token ids, or a list of either): each
  // is one frontend call of params.n completions.
  std::vector<frontend::Prompt> prompts;
  bool prompt_is_list = false;        // several prompts were given as a list
  frontend::CompletionParams params;  // without the prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};
absl::StatusOr<CompletionRequest> ParseCompletionRequest(
    absl::string_view body);

// POST /v1/chat/completions.
struct ChatRequest {
  std::string model;
  std::vector<frontend::ChatMessage> messages;
  bool add_generation_prompt = true;
  frontend::CompletionParams params;  // params.logprobs from top_logprobs
  bool logprobs = false;              // chat's boolean `logprobs`
  bool stream = false;
  bool include_usage = false;
};
absl::StatusOr<ChatRequest> ParseChatRequest(absl::string_view body);

// POST /tokenize (vLLM): a prompt, or chat messages.
struct TokenizeRequest {
  std::string model;
  std::optional<std::string> prompt;
  std::vector<frontend::ChatMessage> messages;  // when no prompt
  bool add_generation_prompt = true;
  bool return_token_strs = false;
};
absl::StatusOr<TokenizeRequest> ParseTokenizeRequest(absl::string_view body);

// POST /detokenize (vLLM).
struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};
absl::StatusOr<DetokenizeRequest> ParseDetokenizeRequest(
    absl::string_view body);

// The name OpenAI clients know for a frontend field of prompt `index` of
// `num_prompts` ("sampling.top_p" -> "top_p", "text" -> "prompt",
// "token_ids[3]" -> "prompt[1][3]" for the second of several prompts).
std::string CompletionFieldName(absl::string_view canonical, int index,
                                bool prompt_is_list);
// The same for chat ("text" -> "messages", "logprobs" -> "top_logprobs").
std::string ChatFieldName(absl::string_view canonical);

// `param` of an error whose message starts with "name: " (see above), or
// empty.
std::string ParamOf(absl::string_view message);

// The HTTP status for an error status of the frontend or engine.
int HttpStatusOf(absl::StatusCode code);
// The status code an HTTP status the server core produced stands for (for
// the metrics' `code` label).
absl::StatusCode StatusCodeOf(int http_status);

// {"error": {"message", "type", "param", "code"}}.
std::string ErrorBody(int http_status, absl::string_view message,
                      absl::string_view param = "",
                      absl::string_view code = "");
// ErrorBody of a frontend or engine error: its HTTP status (HttpStatusOf),
// message, and the field the message names (ParamOf) as param.
std::string ErrorJson(const absl::Status& status, absl::string_view code = "");

// What every response object of one request carries.
struct ResponseMeta {
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};

// One choice's state across a request's chunks.
struct ChoiceState {
  int index = 0;         // the OpenAI choice index
  int text_offset = 0;   // code points of text before the next token
  bool started = false;  // a chunk of it was sent (chat: the role)
};

// Legacy completions: one choice of a chunk, as a JSON object text
// ({"index", "text", "logprobs", "finish_reason", "stop_reason"}).
// `first_prompt_token_text` is the text of prompt token 0 (echo with
// logprobs: it has no log-probability).
std::string CompletionChoice(const frontend::CompletionChunk& chunk,
                             bool with_logprobs,
                             const std::string& first_prompt_token_text,
                             ChoiceState& state);
// Chat: a choice of a whole response ({"index", "message", "logprobs",
// "finish_reason"}) or of a stream chunk ({"index", "delta", ...}).
std::string ChatChoice(const frontend::CompletionChunk& chunk,
                       bool with_logprobs, bool delta, ChoiceState& state);

// {"prompt_tokens", "completion_tokens", "total_tokens",
//  "prompt_tokens_details": {"cached_tokens"}}.
std::string UsageJson(const frontend::Usage& usage);

// A whole response: `choices` are JSON objects from the functions above.
std::string ResponseJson(const ResponseMeta& meta, bool chat,
                         const std::vector<std::string>& choices,
                         const frontend::Usage& usage);
// One server-sent event's JSON: a chunk with `choices`, and the usage when
// `usage` is set (the last event of stream_options.include_usage).
std::string StreamChunkJson(const ResponseMeta& meta, bool chat,
                            const std::vector<std::string>& choices,
                            const frontend::Usage* usage);

}  // namespace alibi::http

#endif  // ALIBI_SERVER_HTTP_OPENAI_PROTOCOL_H_
