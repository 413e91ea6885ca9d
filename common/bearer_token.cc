#include "common/bearer_token.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace alibi {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

bool BearerTokenMatches(absl::string_view authorization,
                        absl::string_view token) {
  constexpr absl::string_view kScheme = "bearer ";
  if (token.empty() || authorization.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()),
                              kScheme)) {
    return false;
  }
  return ConstantTimeEquals(
      absl::StripAsciiWhitespace(authorization.substr(kScheme.size())), token);
}

}  // namespace alibi
