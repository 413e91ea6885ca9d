#include "client/connection.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace alibi::client {
namespace {

absl::StatusOr<std::string> ReadFileForFlag(absl::string_view flag,
                                            const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("--", flag, ": cannot read ", path));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace

const std::vector<std::string>& ConnectionFlagNames() {
  static const auto* const kNames = new std::vector<std::string>{
      "address", "deadline_ms",     "tls",     "tls_ca",      "tls_cert",
      "tls_key", "tls_server_name", "api_key", "api_key_file"};
  return *kNames;
}

void AddConnectionFlags(FlagSet& flags, ConnectionOptions* options) {
  flags.Add("address", &options->address,
            "server host:port (default localhost:50051)");
  flags.Add("deadline_ms", &options->deadline_ms,
            "per-call deadline in milliseconds (0: none)");
  flags.Add("tls", &options->tls, "connect with TLS");
  flags.Add("tls_ca", &options->tls_ca,
            "PEM file of root certificates (default: system roots)");
  flags.Add("tls_cert", &options->tls_cert,
            "PEM client certificate chain for mutual TLS");
  flags.Add("tls_key", &options->tls_key,
            "PEM client private key for mutual TLS");
  flags.Add("tls_server_name", &options->tls_server_name,
            "server name to verify in its certificate");
  flags.Add("api_key", &options->api_key,
            "API key, sent as 'authorization: Bearer <key>'");
  flags.Add("api_key_file", &options->api_key_file,
            "file holding the API key (whitespace trimmed)");
}

absl::StatusOr<Connection> Connection::Create(const ConnectionOptions& options,
                                              int num_channels) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("--address: empty");
  }
  if (num_channels < 1) {
    return absl::InvalidArgumentError("need at least one channel");
  }
  if (options.deadline_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--deadline_ms: must be >= 0, got ", options.deadline_ms));
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key go together (mutual TLS needs both)");
  }
  if (!options.api_key.empty() && !options.api_key_file.empty()) {
    return absl::InvalidArgumentError(
        "set --api_key or --api_key_file, not both");
  }

  Connection connection;
  connection.address_ = options.address;
  connection.deadline_ms_ = options.deadline_ms;

  std::string key = options.api_key;
  if (!options.api_key_file.empty()) {
    ASSIGN_OR_RETURN(key,
                     ReadFileForFlag("api_key_file", options.api_key_file));
    key = std::string(absl::StripAsciiWhitespace(key));
    if (key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--api_key_file: ", options.api_key_file, " is empty"));
    }
  }
  if (!key.empty()) connection.bearer_ = absl::StrCat("Bearer ", key);

  const bool tls = options.tls || !options.tls_ca.empty() ||
                   !options.tls_cert.empty() ||
                   !options.tls_server_name.empty();
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_root_certs,
                       ReadFileForFlag("tls_ca", options.tls_ca));
    }
    if (!options.tls_cert.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                       ReadFileForFlag("tls_cert", options.tls_cert));
      ASSIGN_OR_RETURN(ssl.pem_private_key,
                       ReadFileForFlag("tls_key", options.tls_key));
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }

  for (int i = 0; i < num_channels; ++i) {
    grpc::ChannelArguments args;
    // Score responses for long inputs with alternatives exceed gRPC's 4 MiB
    // default.
    args.SetMaxReceiveMessageSize(256 << 20);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
    // A distinct argument per channel keeps gRPC from sharing one
    // subchannel (one TCP connection) between them.
    args.SetInt("alibi.channel_index", i);
    connection.channels_.push_back(
        grpc::CreateCustomChannel(options.address, credentials, args));
  }
  return connection;
}

void Connection::Configure(grpc::ClientContext* context) const {
  Configure(context, deadline_ms_);
}

void Connection::Configure(grpc::ClientContext* context,
                           int64_t deadline_ms) const {
  if (!bearer_.empty()) context->AddMetadata("authorization", bearer_);
  if (deadline_ms > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(deadline_ms));
  }
}

}  // namespace alibi::client
