// libFuzzer target for alibi::tokenizer. For arbitrary bytes it checks, on
// the BLOOM-style and GPT-NeoX fixture tokenizers:
// - Encode accepts exactly the valid UTF-8 inputs (INVALID_ARGUMENT else);
// - the ids of a valid text are known ids, and decoding them gives the text
//   back (exactly for BLOOM, which has no normalizer; up to NFC for NeoX);
// - Decode of arbitrary id sequences (unknown ids included) is valid UTF-8;
// - IncrementalDecoder deltas are valid UTF-8 and concatenate to Decode.
// Short inputs are also tried as a tokenizer.json (FromJson must fail
// cleanly or give a working tokenizer) and as an Oniguruma pattern (the
// translation and PCRE2 must fail cleanly or give in-bounds, ordered
// matches on character boundaries).
// Any violation aborts, which libFuzzer (or the replay test) reports.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/utf8.h"
#include "server/tokenizer/regex.h"
#include "server/tokenizer/tokenizer.h"
#include "server/tokenizer/unicode.h"

namespace {

using ::alibi::tokenizer::IncrementalDecoder;
using ::alibi::tokenizer::Tokenizer;
namespace internal = ::alibi::tokenizer::internal;

#define FUZZ_CHECK(cond)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                  \
      std::abort();                                                         \
    }                                                                       \
  } while (0)

const Tokenizer& Load(const char* relative) {
  const std::string path = std::string(ALIBI_TEST_DATA_DIR) + "/" + relative;
  auto tokenizer = Tokenizer::FromFile(path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "cannot load %s: %s\n", path.c_str(),
                 std::string(tokenizer.status().message()).c_str());
    std::abort();
  }
  return *tokenizer->release();  // lives for the whole process
}

std::string Nfc(absl::string_view text) {
  auto nfc = internal::NfcNormalize(text);
  FUZZ_CHECK(nfc.ok());
  return *std::move(nfc);
}

void CheckStreaming(const Tokenizer& t, const std::vector<int32_t>& ids,
                    bool skip_special) {
  const std::string whole = t.Decode(ids, skip_special);
  FUZZ_CHECK(alibi::IsValidUtf8(whole));
  IncrementalDecoder decoder(t, skip_special);
  std::string streamed;
  for (const int32_t id : ids) {
    const std::string delta = decoder.Add(id);
    FUZZ_CHECK(alibi::IsValidUtf8(delta));
    streamed += delta;
  }
  const std::string tail = decoder.Finish();
  FUZZ_CHECK(alibi::IsValidUtf8(tail));
  FUZZ_CHECK(streamed + tail == whole);
}

void CheckText(const Tokenizer& t, absl::string_view bytes, bool normalizes) {
  const bool valid = alibi::IsValidUtf8(bytes);
  const auto rejected = t.Encode(bytes);
  FUZZ_CHECK(rejected.ok() == valid);
  if (!rejected.ok()) {
    FUZZ_CHECK(rejected.status().code() == absl::StatusCode::kInvalidArgument);
  }
  // Go on with a valid text either way.
  const std::string text = valid ? std::string(bytes) : alibi::LossyUtf8(bytes);
  const auto ids = t.Encode(text);
  FUZZ_CHECK(ids.ok());
  for (const int32_t id : *ids) {
    FUZZ_CHECK(id >= 0 && id < t.vocab_size());
    FUZZ_CHECK(t.IdToToken(id).has_value());
  }
  const std::string decoded = t.Decode(*ids, /*skip_special_tokens=*/false);
  if (normalizes) {
    FUZZ_CHECK(Nfc(decoded) == Nfc(text));
  } else {
    FUZZ_CHECK(decoded == text);
  }
  CheckStreaming(t, *ids, /*skip_special=*/false);
  CheckStreaming(t, *ids, /*skip_special=*/true);
}

// Reads the input as little-endian 24-bit values spread over a range a bit
// wider than the vocabulary, so unknown and negative ids occur too.
void CheckIds(const Tokenizer& t, const uint8_t* data, size_t size) {
  std::vector<int32_t> ids;
  const int32_t span = t.vocab_size() + 16;
  for (size_t i = 0; i + 2 < size; i += 3) {
    const uint32_t raw = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16);
    ids.push_back(static_cast<int32_t>(raw % static_cast<uint32_t>(span)) - 8);
  }
  for (const int32_t id : ids) {
    const auto token = t.IdToToken(id);
    if (token.has_value()) FUZZ_CHECK(t.TokenToId(*token).has_value());
  }
  CheckStreaming(t, ids, /*skip_special=*/false);
  CheckStreaming(t, ids, /*skip_special=*/true);
}

void CheckMatches(const internal::Regex& regex, absl::string_view text) {
  std::vector<std::pair<size_t, size_t>> matches;
  if (!regex.FindAll(text, &matches).ok()) return;  // a PCRE2 limit
  size_t previous_end = 0;
  auto boundary = [&](size_t pos) {
    return pos == text.size() ||
           (static_cast<unsigned char>(text[pos]) & 0xC0) != 0x80;
  };
  for (const auto& [start, end] : matches) {
    FUZZ_CHECK(start <= end && end <= text.size());
    FUZZ_CHECK(start >= previous_end);
    FUZZ_CHECK(boundary(start) && boundary(end));
    previous_end = end;
  }
}

void CheckRegex(absl::string_view pattern) {
  auto regex = internal::Regex::CompileOniguruma(pattern);
  if (!regex.ok()) {
    FUZZ_CHECK(regex.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  CheckMatches(**regex, "Hello world's (test)|x, \u00e9t\u00e9 123 \n\n ");
  if (alibi::IsValidUtf8(pattern)) CheckMatches(**regex, pattern);
}

void CheckTokenizerJson(absl::string_view json) {
  auto tokenizer = Tokenizer::FromJson(json);
  if (!tokenizer.ok()) return;
  const Tokenizer& t = **tokenizer;
  for (const absl::string_view text :
       {absl::string_view("Hello world!"), json}) {
    const auto ids = t.Encode(text);
    if (!ids.ok()) continue;
    for (const int32_t id : *ids) FUZZ_CHECK(id >= 0 && id < t.vocab_size());
    CheckStreaming(t, *ids, /*skip_special=*/false);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tokenizer& bloom = Load("models/tiny-bloom/tokenizer.json");
  static const Tokenizer& neox = Load("models/tiny-mpt/tokenizer.json");
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckText(bloom, bytes, /*normalizes=*/false);
  CheckText(neox, bytes, /*normalizes=*/true);
  CheckIds(bloom, data, size);
  CheckIds(neox, data, size);
  if (size <= 4096) CheckTokenizerJson(bytes);
  if (size <= 512) CheckRegex(bytes);
  return 0;
}
