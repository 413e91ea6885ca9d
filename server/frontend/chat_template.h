// Chat templates: turns chat messages into a model's prompt text with the
// Jinja2 template a Hugging Face model ships in tokenizer_config.json
// (`chat_template`), as transformers' apply_chat_template does.
//
// The templates are Jinja2 programs; this is a small interpreter of the
// subset that chat templates use, with the environment transformers gives
// them (trim_blocks, lstrip_blocks; `messages`, `add_generation_prompt`,
// `bos_token`, `eos_token`, `raise_exception`). It is safe by construction:
// no attribute of a value other than dictionary keys and a fixed list of
// string methods is reachable, and evaluation has step and output limits.
//
// Supported: text, {{ expr }}, {% if/elif/else/endif %}, {% for x in expr %}
// (with `loop.index`, `index0`, `revindex`, `revindex0`, `first`, `last`,
// `length`, and {% else %}), {% set name = expr %} and {% set ns.attr = expr
// %} with namespace(), comments, whitespace control (`{%-`, `-%}`, ...).
// Expressions: string, number, boolean, none, list and dict literals,
// variables, `a.b`, `a[b]`, slices `a[x:y]`, + - * / // % ~, comparisons,
// `in`, `not in`, and/or/not, `x if c else y`, tests (`is defined`, `is
// none`, `is string`, ...), filters (trim, length, upper, lower, default,
// join, replace, first, last, tojson, string, int, list, reverse,
// capitalize) and string methods (strip, lstrip, rstrip, upper, lower,
// startswith, endswith, split, replace, title). Anything else is refused
// when the template is loaded, naming the construct and its line.
//
// Thread-safety: a ChatTemplate is immutable after Create; Render may be
// called from any number of threads.
#ifndef ALIBI_SERVER_FRONTEND_CHAT_TEMPLATE_H_
#define ALIBI_SERVER_FRONTEND_CHAT_TEMPLATE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace alibi::frontend {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", ...
  std::string content;  // text
};

class ChatTemplate {
 public:
  // Parses `source` (Jinja2 text). INVALID_ARGUMENT, naming the line, for
  // syntax errors and constructs outside the subset.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Create(
      const std::string& source, std::string bos_token = "",
      std::string eos_token = "");
  ~ChatTemplate();

  // The prompt for `messages`; with `add_generation_prompt`, ending with
  // the text that starts the assistant's turn. INVALID_ARGUMENT when the
  // template raises an error on these messages (raise_exception) or an
  // evaluation limit is hit.
  absl::StatusOr<std::string> Render(absl::Span<const ChatMessage> messages,
                                     bool add_generation_prompt) const;

  struct Program;  // the parsed template (chat_template.cc)

 private:
  ChatTemplate(std::unique_ptr<Program> program, std::string bos_token,
               std::string eos_token);
  std::unique_ptr<Program> program_;
  const std::string bos_token_;
  const std::string eos_token_;
};

// The chat template for the model in `model_dir`: `override_template` if
// not empty (a file holding the template, or the template text itself when
// it contains "{{" or "{%"), else tokenizer_config.json's `chat_template`
// (a string, or a list of {name, template} of which "default" is used),
// with its `bos_token` and `eos_token`. nullptr when the model has none.
absl::StatusOr<std::unique_ptr<ChatTemplate>> LoadChatTemplate(
    const std::string& model_dir, const std::string& override_template);

}  // namespace alibi::frontend

#endif  // ALIBI_SERVER_FRONTEND_CHAT_TEMPLATE_H_
