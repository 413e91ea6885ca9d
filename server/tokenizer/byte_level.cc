#include "server/tokenizer/byte_level.h"

#include <array>
#include <cstdint>

#include "common/utf8.h"

namespace alibi::tokenizer::internal {
namespace {

// The largest code point the alphabet uses: 256 + 67 (the 68 bytes outside
// the printable ranges are numbered from U+0100).
constexpr char32_t kMaxAlphabetCodepoint = 0x143;

struct Tables {
  std::array<char32_t, 256> byte_to_cp;
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, kMaxAlphabetCodepoint + 1> cp_to_byte;

  Tables() {
    cp_to_byte.fill(-1);
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
             (b >= 0xAE && b <= 0xFF);
    };
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp = printable(b) ? static_cast<char32_t>(b) : next++;
      byte_to_cp[b] = cp;
      cp_to_byte[cp] = static_cast<int16_t>(b);
      AppendUtf8(cp, &byte_to_utf8[b]);
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

char32_t ByteToCodepoint(unsigned char b) { return GetTables().byte_to_cp[b]; }

int CodepointToByte(char32_t cp) {
  if (cp > kMaxAlphabetCodepoint) return -1;
  return GetTables().cp_to_byte[cp];
}

void AppendByteLevel(absl::string_view bytes, std::string* out) {
  const Tables& t = GetTables();
  for (const char c : bytes) {
    out->append(t.byte_to_utf8[static_cast<unsigned char>(c)]);
  }
}

std::string ByteLevelDecodeToken(absl::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  size_t pos = 0;
  while (pos < token.size()) {
    const int b = CodepointToByte(DecodeUtf8(token, &pos));
    if (b < 0) return std::string(token);
    bytes.push_back(static_cast<char>(b));
  }
  return bytes;
}

}  // namespace alibi::tokenizer::internal
