// Bearer-token checks (RFC 6750) for the transports: the scheme is matched
// case-insensitively, and the token is compared in time that does not
// depend on where it differs from the expected one.
//
// Thread-safety: stateless functions.
#ifndef ALIBI_COMMON_BEARER_TOKEN_H_
#define ALIBI_COMMON_BEARER_TOKEN_H_

#include "absl/strings/string_view.h"

namespace alibi {

// Whether `a` and `b` are equal, in time that depends only on their sizes.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// Whether the value of an `authorization` header, "Bearer <token>" (any
// case of the scheme, spaces around the token ignored), carries `token`.
bool BearerTokenMatches(absl::string_view authorization,
                        absl::string_view token);

}  // namespace alibi

#endif  // ALIBI_COMMON_BEARER_TOKEN_H_
