#include "common/utf8.h"

#include <cstdint>

namespace alibi {
namespace {

enum class SeqStatus { kValid, kInvalid, kTruncated };

struct SeqInfo {
  size_t length;  // bytes of the sequence (valid) or of the invalid subpart
  SeqStatus status;
};

// Classifies the sequence starting at p[0] (avail >= 1 bytes available),
// following the Unicode "maximal subpart" rule used by Rust's Utf8Chunks.
SeqInfo Inspect(const unsigned char* p, size_t avail) {
  const unsigned char lead = p[0];
  if (lead < 0x80) return {1, SeqStatus::kValid};
  size_t need;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 2;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 3;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return {1, SeqStatus::kInvalid};
  }
  for (size_t i = 1; i <= need; ++i) {
    if (i >= avail) return {i, SeqStatus::kTruncated};
    const unsigned char c = p[i];
    const unsigned char l = i == 1 ? lo : 0x80;
    const unsigned char h = i == 1 ? hi : 0xBF;
    if (c < l || c > h) return {i, SeqStatus::kInvalid};
  }
  return {need + 1, SeqStatus::kValid};
}

constexpr char kReplacement[] = "\xEF\xBF\xBD";

}  // namespace

size_t FirstInvalidUtf8(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t word;
      __builtin_memcpy(&word, p + i, 8);
      if (word & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const SeqInfo info = Inspect(p + i, n - i);
    if (info.status != SeqStatus::kValid) return i;
    i += info.length;
  }
  return n;
}

char32_t DecodeUtf8(absl::string_view s, size_t* pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + *pos;
  const unsigned char lead = p[0];
  if (lead < 0x80) {
    *pos += 1;
    return lead;
  }
  if (lead < 0xE0) {
    *pos += 2;
    return (static_cast<char32_t>(lead & 0x1F) << 6) | (p[1] & 0x3F);
  }
  if (lead < 0xF0) {
    *pos += 3;
    return (static_cast<char32_t>(lead & 0x0F) << 12) |
           (static_cast<char32_t>(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  }
  *pos += 4;
  return (static_cast<char32_t>(lead & 0x07) << 18) |
         (static_cast<char32_t>(p[1] & 0x3F) << 12) |
         (static_cast<char32_t>(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

void AppendLossyUtf8(absl::string_view bytes, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  size_t valid_start = 0;  // start of the current run of valid bytes
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const SeqInfo info = Inspect(p + i, n - i);
    if (info.status == SeqStatus::kValid) {
      i += info.length;
      continue;
    }
    out->append(bytes.data() + valid_start, i - valid_start);
    out->append(kReplacement, 3);
    i += info.length;
    valid_start = i;
  }
  out->append(bytes.data() + valid_start, n - valid_start);
}

std::string LossyUtf8(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  AppendLossyUtf8(bytes, &out);
  return out;
}

size_t IncompleteUtf8TailStart(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  // Scans from the start so that sequence boundaries are exactly those
  // AppendLossyUtf8 sees; callers keep `s` short (pending bytes only).
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const SeqInfo info = Inspect(p + i, n - i);
    if (info.status == SeqStatus::kTruncated) return i;
    i += info.length;
  }
  return n;
}

}  // namespace alibi
