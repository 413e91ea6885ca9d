// How alibi-cli and alibi-bench reach a server: the address, TLS (server
// authentication, or mutual TLS with a client certificate), the API key sent
// as `authorization: Bearer <key>` metadata, and a per-call deadline.
//
//   ConnectionOptions options;  // filled by AddConnectionFlags + Parse
//   ASSIGN_OR_RETURN(Connection connection, Connection::Create(options));
//   auto stub = v1::InferenceService::NewStub(connection.channel());
//   grpc::ClientContext context;
//   connection.Configure(&context);  // metadata + deadline
//
// Thread-safety: a Connection is immutable after Create; Configure() and
// channel() may be called from any thread.
#ifndef ALIBI_CLIENT_CONNECTION_H_
#define ALIBI_CLIENT_CONNECTION_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/flags.h"

namespace alibi::client {

inline constexpr char kDefaultAddress[] = "localhost:50051";

struct ConnectionOptions {
  std::string address = kDefaultAddress;
  // TLS. Any of tls_ca / tls_cert / tls_key / tls_server_name implies tls.
  bool tls = false;
  std::string tls_ca;           // PEM roots; empty: the system's roots
  std::string tls_cert;         // PEM client certificate chain (mTLS)
  std::string tls_key;          // PEM client private key (mTLS)
  std::string tls_server_name;  // expected name in the server certificate
  // Bearer token: the key itself, or a file holding it (whitespace trimmed).
  std::string api_key;
  std::string api_key_file;
  // Per-call deadline in milliseconds; 0 means none.
  int64_t deadline_ms = 0;
};

// The names of the flags AddConnectionFlags registers.
const std::vector<std::string>& ConnectionFlagNames();

// Registers --address, --deadline_ms, --tls, --tls_ca, --tls_cert, --tls_key,
// --tls_server_name, --api_key and --api_key_file.
void AddConnectionFlags(FlagSet& flags, ConnectionOptions* options);

class Connection {
 public:
  // Reads the TLS and key files and creates `num_channels` channels (distinct
  // TCP connections, for load generation past one HTTP/2 connection's
  // stream limit). INVALID_ARGUMENT for inconsistent options (a certificate
  // without its key, both --api_key and --api_key_file), NOT_FOUND for a
  // file that cannot be read. Channels connect lazily, so an unreachable
  // server is only seen at the first call.
  static absl::StatusOr<Connection> Create(const ConnectionOptions& options,
                                           int num_channels = 1);

  const std::string& address() const { return address_; }
  // Channel i % num_channels().
  std::shared_ptr<grpc::Channel> channel(size_t i = 0) const {
    return channels_[i % channels_.size()];
  }
  size_t num_channels() const { return channels_.size(); }
  bool has_api_key() const { return !bearer_.empty(); }
  // "Bearer <key>", or empty without a key (for HTTP clients).
  const std::string& authorization() const { return bearer_; }

  // Adds the authorization metadata and the deadline (counted from now).
  void Configure(grpc::ClientContext* context) const;
  // The same with an explicit deadline in milliseconds (0: none).
  void Configure(grpc::ClientContext* context, int64_t deadline_ms) const;

 private:
  std::string address_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::string bearer_;  // "Bearer <key>" or empty
  int64_t deadline_ms_ = 0;
};

}  // namespace alibi::client

#endif  // ALIBI_CLIENT_CONNECTION_H_
