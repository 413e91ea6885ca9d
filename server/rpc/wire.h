// Request bytes -> messages and messages -> response bytes for the gRPC
// transport's raw methods. Parsing never fails silently: a string field with
// invalid UTF-8 is INVALID_ARGUMENT naming the field ("params.sampling.
// stop[1]: is not valid UTF-8"), other undecodable bytes are
// INVALID_ARGUMENT naming the message type. (With gRPC's own deserializer,
// both became UNIMPLEMENTED with an empty message plus a library ERROR log
// line per request.)
//
// Thread-safety: thread-safe.
#ifndef ALIBI_SERVER_RPC_WIRE_H_
#define ALIBI_SERVER_RPC_WIRE_H_

#include <grpcpp/support/byte_buffer.h>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace alibi::rpc {

// Parses `buffer` into `out` (a generated message of alibi.v1).
absl::Status ParseRequest(const grpc::ByteBuffer& buffer,
                          google::protobuf::Message* out);

// Serializes `message` into `out`.
void SerializeResponse(const google::protobuf::Message& message,
                       grpc::ByteBuffer* out);

// Routes protobuf's own log lines to the server's log, dropping the
// "invalid UTF-8" error protobuf writes for each such request (clients could
// otherwise grow the log at will; ParseRequest reports it to the client).
void InstallProtobufLogFilter();

}  // namespace alibi::rpc

#endif  // ALIBI_SERVER_RPC_WIRE_H_
