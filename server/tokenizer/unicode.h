// Unicode character properties and normalization used by the tokenizer
// (backed by libutf8proc).
//
// Thread-safety: stateless functions.
#ifndef ALIBI_SERVER_TOKENIZER_UNICODE_H_
#define ALIBI_SERVER_TOKENIZER_UNICODE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alibi::tokenizer::internal {

// The Unicode White_Space property (Rust's char::is_whitespace, the regex
// crate's \s, and Oniguruma's Unicode \s all agree on this set).
bool IsWhiteSpace(char32_t cp);

// Rust regex's Unicode \w: Alphabetic, Mark, Decimal_Number,
// Connector_Punctuation, Join_Control.
bool IsWordChar(char32_t cp);

// Whether `cp` was assigned after Unicode 9.0 (per libutf8proc's data).
bool AssignedAfterUnicode9(char32_t cp);

// NFC of valid UTF-8 `s` exactly as the `tokenizers` library computes it:
// its normalization tables (unicode-normalization-alignments) are Unicode
// 9.0, so a character assigned later is treated as unassigned: it keeps
// its place, decomposes and composes with nothing, and nothing reorders
// across it. Everything else is standard NFC (stable since 9.0 by the
// Unicode normalization stability policy).
absl::StatusOr<std::string> NfcNormalize(absl::string_view s);

}  // namespace alibi::tokenizer::internal

#endif  // ALIBI_SERVER_TOKENIZER_UNICODE_H_
