// Human-readable gRPC errors for the command-line tools:
//
//   error: INVALID_ARGUMENT: params.sampling.top_p: must be in (0, 1], got 1.5
//
// followed, for codes where the cause is usually on the caller's side of the
// wire (UNAVAILABLE, DEADLINE_EXCEEDED, UNAUTHENTICATED, ...), by a line
// starting with "hint: ".
//
// Thread-safety: pure functions.
#ifndef ALIBI_CLIENT_STATUS_FORMAT_H_
#define ALIBI_CLIENT_STATUS_FORMAT_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/strings/string_view.h"
#include "alibi/v1/inference.pb.h"

namespace alibi::client {

// The canonical upper-case name of a code ("OK", "INVALID_ARGUMENT"), as in
// the server's alibi_requests_total{code} label; "UNKNOWN" when out of range.
std::string StatusCodeName(grpc::StatusCode code);

// "length", "stop", "eos", "cancelled", "error"; "unspecified" for 0.
std::string FinishReasonName(v1::FinishReason reason);

// "error: CODE: message" (or "error: CODE" when the message is empty), plus
// "\nhint: ..." for some codes. `address` is the server the call went to.
std::string FormatRpcError(const grpc::Status& status,
                           absl::string_view address);

}  // namespace alibi::client

#endif  // ALIBI_CLIENT_STATUS_FORMAT_H_
