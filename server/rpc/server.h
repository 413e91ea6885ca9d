// The gRPC server around InferenceService: listening port (plaintext or TLS,
// optional client-certificate verification), the standard health service
// ("" and "alibi.v1.InferenceService"), server reflection, a watchdog that
// reports NOT_SERVING while the engine makes no progress with work pending,
// and graceful draining.
//
// Thread-safety: Start/SetEngine/Drain are called by one thread (main); the
// server itself is thread-safe.
#ifndef ALIBI_SERVER_RPC_SERVER_H_
#define ALIBI_SERVER_RPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/frontend/frontend.h"
#include "server/metrics/metrics.h"
#include "server/rpc/service.h"

namespace alibi::rpc {

struct ServerOptions {
  std::string host = "0.0.0.0";
  int port = 50051;  // 0: any free port (see RpcServer::port())
  // PEM files. With cert and key the server speaks TLS; with a client CA it
  // also requires and verifies client certificates (mTLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Engine stalled (work pending, no progress) this long: NOT_SERVING.
  absl::Duration stall_timeout = absl::Seconds(60);
  // Server reflection (grpc.reflection.v1alpha). It cannot check bearer
  // tokens, so main.cc turns it off by default when an API key is set.
  bool enable_reflection = true;
  // Connection limits (HTTP/2). A connection must finish its handshake
  // (TLS included) within `handshake_timeout`; one with no call in progress
  // for `max_connection_idle` is closed (GOAWAY); every connection is told
  // to go after `max_connection_age` (calls in flight get
  // `max_connection_age_grace`; 0: never); at most `max_concurrent_streams`
  // calls per connection; keepalive pings every `keepalive_time` find dead
  // peers (`keepalive_timeout` to answer); gRPC's buffers stay within
  // `memory_limit_bytes` (0: unlimited).
  absl::Duration handshake_timeout = absl::Seconds(10);
  absl::Duration max_connection_idle = absl::Minutes(5);
  absl::Duration max_connection_age = absl::Hours(24);
  absl::Duration max_connection_age_grace = absl::Hours(1);
  int max_concurrent_streams = 256;
  absl::Duration keepalive_time = absl::Minutes(1);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  int64_t memory_limit_bytes = int64_t{1} << 30;
  ServiceOptions service;
};

class RpcServer {
 public:
  // Binds and starts serving; health is NOT_SERVING and InferenceService
  // answers UNAVAILABLE until SetEngine. `metrics` may be null.
  static absl::StatusOr<std::unique_ptr<RpcServer>> Start(
      const ServerOptions& options, metrics::Metrics* metrics);
  ~RpcServer();

  int port() const { return port_; }

  // The model is ready: serve it through `frontend` (which must outlive the
  // server) and report SERVING.
  void SetFrontend(frontend::Frontend* frontend);

  // The first half of Drain: NOT_SERVING, new calls get UNAVAILABLE.
  void StartDraining();
  // Graceful shutdown: StartDraining, calls in flight get up to `grace` to
  // finish, then the engine ends what is left (UNAVAILABLE) and the server
  // stops.
  void Drain(absl::Duration grace);

 private:
  RpcServer(const ServerOptions& options, metrics::Metrics* metrics);
  void SetServing(bool serving);
  void Watchdog();

  const ServerOptions options_;
  InferenceService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::atomic<frontend::Frontend*> frontend_{nullptr};

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool serving_ = false;
  std::thread watchdog_;
};

}  // namespace alibi::rpc

#endif  // ALIBI_SERVER_RPC_SERVER_H_
