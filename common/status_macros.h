// Status propagation macros. Debian's Abseil (20220623) ships no
// RETURN_IF_ERROR / ASSIGN_OR_RETURN, so alibi-serve defines its own.
//
//   RETURN_IF_ERROR(DoThing());
//   ASSIGN_OR_RETURN(auto value, ComputeValue());
//   ASSIGN_OR_RETURN(int n, ParseInt(s), _.SetPrefix("count: "));  // not
//   supported
//
// Thread-safety: macros only; no state.
#ifndef ALIBI_COMMON_STATUS_MACROS_H_
#define ALIBI_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define ALIBI_STATUS_CONCAT_INNER_(a, b) a##b
#define ALIBI_STATUS_CONCAT_(a, b) ALIBI_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function
// if it is not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status alibi_status_ = (expr);         \
    if (!alibi_status_.ok()) return alibi_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise move-assigns the value to `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ALIBI_ASSIGN_OR_RETURN_IMPL_(      \
      ALIBI_STATUS_CONCAT_(alibi_statusor_, __LINE__), lhs, rexpr)

#define ALIBI_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace alibi {

// Returns `status` with `prefix` prepended to its message (same code).
// Used to add context ("tensor h.0.mlp: ") while an error travels up.
inline absl::Status Annotate(const absl::Status& status,
                             absl::string_view prefix) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

}  // namespace alibi

#endif  // ALIBI_COMMON_STATUS_MACROS_H_
