#include "server/tokenizer/unicode.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace alibi::tokenizer::internal {

bool IsWhiteSpace(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool IsWordChar(char32_t cp) {
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') ||
           (cp >= 'A' && cp <= 'Z') || cp == '_';
  }
  if (cp == 0x200C || cp == 0x200D) return true;  // Join_Control
  // Other_Alphabetic symbols (circled / squared / negative letters).
  if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
      (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189)) {
    return true;
  }
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

bool AssignedAfterUnicode9(char32_t cp) {
  struct Range {
    char32_t lo;
    char32_t hi;
  };
  static constexpr Range kRanges[] = {
#include "server/tokenizer/unicode9_table.inc"
  };
  const Range* it = std::upper_bound(
      std::begin(kRanges), std::end(kRanges), cp,
      [](char32_t value, const Range& r) { return value < r.lo; });
  return it != std::begin(kRanges) && cp <= std::prev(it)->hi;
}

namespace {

// Appends the NFC of `s` by libutf8proc (current Unicode data).
absl::Status AppendUtf8procNfc(absl::string_view s, std::string* out) {
  if (s.empty()) return absl::OkStatus();
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(
      reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
      static_cast<utf8proc_ssize_t>(s.size()), &mapped,
      static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("NFC normalization failed: ", utf8proc_errmsg(n)));
  }
  out->append(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
  std::free(mapped);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> NfcNormalize(absl::string_view s) {
  // Nothing below U+0300 changes under NFC or combines with what precedes
  // it, so text made only of such characters (lead bytes < 0xCC) is already
  // in NFC.
  bool trivial = true;
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0xCC) {
      trivial = false;
      break;
    }
  }
  if (trivial) return std::string(s);
  // A character the library's Unicode 9.0 tables do not know is a starter
  // that neither decomposes nor composes: nothing reorders or composes
  // across it, so the text is normalized piecewise between such characters,
  // which are kept as they are.
  std::string out;
  out.reserve(s.size());
  size_t segment = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    const auto lead = static_cast<unsigned char>(s[pos]);
    if (lead < 0xCC) {
      pos += Utf8CharLength(lead);
      continue;
    }
    const size_t start = pos;
    if (!AssignedAfterUnicode9(DecodeUtf8(s, &pos))) continue;
    RETURN_IF_ERROR(
        AppendUtf8procNfc(s.substr(segment, start - segment), &out));
    out.append(s.data() + start, pos - start);
    segment = pos;
  }
  RETURN_IF_ERROR(AppendUtf8procNfc(s.substr(segment), &out));
  return out;
}

}  // namespace alibi::tokenizer::internal
