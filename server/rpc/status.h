// The one place where absl::Status becomes grpc::Status. Codes map one to
// one; the message is kept.
//
// Thread-safety: pure functions.
#ifndef ALIBI_SERVER_RPC_STATUS_H_
#define ALIBI_SERVER_RPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace alibi::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace alibi::rpc

#endif  // ALIBI_SERVER_RPC_STATUS_H_
