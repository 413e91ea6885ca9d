// The GPT-2 byte-level alphabet (`bytes_to_unicode`): every byte maps to one
// printable code point, so arbitrary bytes become a string BPE can work on.
//
// Thread-safety: immutable tables, initialised on first use (thread-safe).
#ifndef ALIBI_SERVER_TOKENIZER_BYTE_LEVEL_H_
#define ALIBI_SERVER_TOKENIZER_BYTE_LEVEL_H_

#include <string>

#include "absl/strings/string_view.h"

namespace alibi::tokenizer::internal {

// The code point byte `b` is shown as (e.g. 0x20 -> U+0120 'Ġ').
char32_t ByteToCodepoint(unsigned char b);

// The byte shown by code point `cp`, or -1 if `cp` is not in the alphabet.
int CodepointToByte(char32_t cp);

// Appends the byte-level form of `bytes` (each byte -> its code point, UTF-8
// encoded) to `out`.
void AppendByteLevel(absl::string_view bytes, std::string* out);

// Decodes one token string like the ByteLevel decoder of the `tokenizers`
// library: if every character of `token` is in the alphabet, the bytes they
// stand for; otherwise `token`'s own UTF-8 bytes. `token` must be valid UTF-8.
std::string ByteLevelDecodeToken(absl::string_view token);

}  // namespace alibi::tokenizer::internal

#endif  // ALIBI_SERVER_TOKENIZER_BYTE_LEVEL_H_
