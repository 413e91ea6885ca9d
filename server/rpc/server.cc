#include "server/rpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/frontend/admission.h"
#include "server/http_server/http_server.h"
#include "server/rpc/wire.h"

namespace alibi::rpc {
namespace {

constexpr char kServiceName[] = "alibi.v1.InferenceService";
constexpr auto kWatchdogPeriod = std::chrono::milliseconds(500);

// Removes the reflection plugin, which linking grpc++_reflection registers
// for every server at static initialization.
class WithoutReflection : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    std::erase_if(*plugins, [](const auto& plugin) {
      return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(
                 plugin.get()) != nullptr;
    });
  }
};

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read \"", path, "\""));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(
    const ServerOptions& o) {
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) {
    if (!o.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls_cert and --tls_key");
  }
  // gRPC itself only says it cannot listen; name the file and the problem.
  RETURN_IF_ERROR(http_server::CheckTlsFiles(
      {o.tls_cert_file, o.tls_key_file, o.tls_client_ca_file}));
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  auto key = ReadFile(o.tls_key_file, "tls_key");
  if (!key.ok()) return key.status();
  auto cert = ReadFile(o.tls_cert_file, "tls_cert");
  if (!cert.ok()) return cert.status();
  pair.private_key = *key;
  pair.cert_chain = *cert;
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!o.tls_client_ca_file.empty()) {
    auto ca = ReadFile(o.tls_client_ca_file, "tls_client_ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

RpcServer::RpcServer(const ServerOptions& options, metrics::Metrics* metrics)
    : options_(options), service_(options.service, metrics) {}

absl::StatusOr<std::unique_ptr<RpcServer>> RpcServer::Start(
    const ServerOptions& options, metrics::Metrics* metrics) {
  auto credentials = Credentials(options);
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<RpcServer> server(new RpcServer(options, metrics));
  InstallProtobufLogFilter();
  grpc::EnableDefaultHealthCheckService(true);
  if (options.enable_reflection) {
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  }
  grpc::ServerBuilder builder;
  if (!options.enable_reflection) {
    builder.SetOption(std::make_unique<WithoutReflection>());
  }
  auto ms = [](absl::Duration d) {
    return static_cast<int>(
        std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
  };
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             ms(options.handshake_timeout));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             ms(options.max_connection_idle));
  if (options.max_connection_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               ms(options.max_connection_age));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               ms(options.max_connection_age_grace));
  }
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             options.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             ms(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             ms(options.keepalive_timeout));
  // Let idle connections be probed without client calls.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  if (options.memory_limit_bytes > 0) {
    grpc::ResourceQuota quota("alibi-grpc");
    quota.Resize(static_cast<size_t>(options.memory_limit_bytes));
    builder.SetResourceQuota(quota);
  }
  const std::string address = absl::StrCat(
      options.host.find(':') != std::string::npos ? "[" + options.host + "]"
                                                  : options.host,
      ":", options.port);
  builder.AddListeningPort(address, *credentials, &server->port_);
  builder.RegisterService(&server->service_);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address,
                     " (in use, or not an address of this host?)"));
  }
  server->SetServing(false);
  server->watchdog_ = std::thread([s = server.get()] { s->Watchdog(); });
  ALIBI_LOG(INFO) << "gRPC listening on " << options.host << ":"
                  << server->port_
                  << (options.tls_cert_file.empty() ? "" : " (TLS)");
  return server;
}

RpcServer::~RpcServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
}

void RpcServer::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", serving);
  health->SetServingStatus(kServiceName, serving);
}

void RpcServer::SetFrontend(frontend::Frontend* frontend) {
  service_.SetFrontend(frontend);
  frontend_.store(frontend);
  std::lock_guard<std::mutex> lock(mu_);
  serving_ = true;
  SetServing(true);
}

void RpcServer::Watchdog() {
  std::unique_lock<std::mutex> lock(mu_);
  bool healthy = true;
  while (!stopping_) {
    cv_.wait_for(lock, kWatchdogPeriod);
    frontend::Frontend* frontend = frontend_.load();
    if (stopping_ || !serving_ || frontend == nullptr) continue;
        const bool stalled =
        frontend::EngineStalled(*frontend, options_.stall_timeout);
    if (stalled == healthy) {
      healthy = !stalled;
      if (stalled) {
        ALIBI_LOG(ERROR) << "engine made no progress for "
                         << absl::FormatDuration(options_.stall_timeout)
                         << " with work pending: health NOT_SERVING";
      } else {
        ALIBI_LOG(INFO) << "engine progressing again: health SERVING";
      }
      SetServing(healthy);
    }
  }
}

void RpcServer::StartDraining() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    serving_ = false;
    SetServing(false);
  }
  service_.StartDraining();
}

void RpcServer::Drain(absl::Duration grace) {
  StartDraining();
  const int in_flight = service_.in_flight();
  ALIBI_LOG(INFO) << "draining: " << in_flight << " calls in flight, up to "
                  << absl::FormatDuration(grace);
  if (!service_.WaitForIdle(grace)) {
    ALIBI_LOG(WARNING) << "drain time over with " << service_.in_flight()
                       << " calls in flight: ending them (UNAVAILABLE)";
  }
  if (frontend::Frontend* frontend = frontend_.load(); frontend != nullptr) {
    frontend->engine().Shutdown(
        absl::UnavailableError("the server is shutting down"));
  }
  // Lets the reactors deliver their final status, then stops listening.
  service_.WaitForIdle(absl::Milliseconds(500));
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(200));
}

}  // namespace alibi::rpc
