// Regular expressions for pre-tokenizers: Oniguruma patterns (what the
// `tokenizers` library compiles) translated to PCRE2 and matched with the
// same iteration rules as the `onig` crate's find_iter.
//
// Thread-safety: a compiled Regex is immutable; FindAll may be called from
// any number of threads at once (each call uses its own match data).
#ifndef ALIBI_SERVER_TOKENIZER_REGEX_H_
#define ALIBI_SERVER_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct pcre2_real_code_8;

namespace alibi::tokenizer::internal {

// Rewrites an Oniguruma (Ruby syntax) pattern into an equivalent PCRE2 one:
// - nested character classes `[a[bc]]` (a union) are flattened to `[abc]`;
//   negated nested classes and `&&` intersections are refused;
// - `\s`/`\S` become Oniguruma's Unicode whitespace set, `\w`/`\W` its
//   word set (Letter|Mark|Number|Connector_Punctuation), `\h`/`\H` hex
//   digits, `\v` the vertical tab, `\uHHHH` a code point;
// - the Ruby option `(?m)` (dot matches newline) becomes PCRE2's `(?s)`.
absl::StatusOr<std::string> TranslateOnigurumaPattern(absl::string_view onig);

// A PCRE2 pattern matching `literal` exactly.
std::string EscapeLiteral(absl::string_view literal);

class Regex {
 public:
  // Compiles a PCRE2 pattern (UTF and UCP mode; `^`/`$` match at line
  // boundaries like Oniguruma's; JIT when available).
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(
      absl::string_view pcre2_pattern);
  // Translates an Oniguruma pattern (see above) and compiles it.
  static absl::StatusOr<std::unique_ptr<Regex>> CompileOniguruma(
      absl::string_view onig_pattern);

  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  // Appends the [start, end) byte ranges of the successive matches in valid
  // UTF-8 `text`, iterating like the `onig` crate's FindMatches (an empty
  // match right after a non-empty one is skipped). Errors come only from
  // PCRE2 resource limits.
  absl::Status FindAll(absl::string_view text,
                       std::vector<std::pair<size_t, size_t>>* matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex(pcre2_real_code_8* code, std::string pattern)
      : code_(code), pattern_(std::move(pattern)) {}

  pcre2_real_code_8* code_;
  std::string pattern_;
};

}  // namespace alibi::tokenizer::internal

#endif  // ALIBI_SERVER_TOKENIZER_REGEX_H_
