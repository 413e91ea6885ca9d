// UTF-8 helpers: strict validation, code point iteration, and lossy decoding
// with the same replacement rule as Rust's String::from_utf8_lossy (one U+FFFD
// per maximal invalid subpart).
//
// Thread-safety: stateless functions.
#ifndef ALIBI_COMMON_UTF8_H_
#define ALIBI_COMMON_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace alibi {

// Byte offset of the first byte that is not part of valid UTF-8 (strict: no
// overlong forms, no surrogates, nothing above U+10FFFF), or s.size() when
// the whole of `s` is valid.
size_t FirstInvalidUtf8(absl::string_view s);
inline bool IsValidUtf8(absl::string_view s) {
  return FirstInvalidUtf8(s) == s.size();
}

// Decodes the code point at s[*pos] of VALID UTF-8 and advances *pos past it.
char32_t DecodeUtf8(absl::string_view s, size_t* pos);

// Length in bytes of the character whose lead byte is `lead` in valid UTF-8.
inline int Utf8CharLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Appends the UTF-8 encoding of `cp` (a Unicode scalar value) to `out`.
void AppendUtf8(char32_t cp, std::string* out);

// Decodes `bytes` replacing every maximal invalid subpart (and a truncated
// sequence at the end) by U+FFFD, exactly like Rust's from_utf8_lossy.
std::string LossyUtf8(absl::string_view bytes);
void AppendLossyUtf8(absl::string_view bytes, std::string* out);

// Offset where a trailing sequence starts that is incomplete but could still
// become valid with more bytes (e.g. the first two bytes of a 3-byte
// character); s.size() when there is none.
size_t IncompleteUtf8TailStart(absl::string_view s);

}  // namespace alibi

#endif  // ALIBI_COMMON_UTF8_H_
