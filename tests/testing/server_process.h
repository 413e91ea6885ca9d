// Runs the real alibi-server binary for end-to-end tests: free ports (the
// server binds port 0 for gRPC, metrics and the HTTP API, and reports them
// through --port_file), waits until the gRPC health check says SERVING, and
// stops it with a signal. The server's log goes to a file, printed when a
// start fails.
//
// Thread-safety: a ServerProcess is used from one test thread.
#ifndef ALIBI_TESTS_TESTING_SERVER_PROCESS_H_
#define ALIBI_TESTS_TESTING_SERVER_PROCESS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace alibi::testing {

struct ServerOptions {
  // A directory under tests/data/models or any model directory.
  std::string model_dir;
  // More flags, e.g. "--max_num_seqs=4".
  std::vector<std::string> flags;
  absl::Duration start_timeout = absl::Seconds(60);
  // How to reach the server (TLS servers need SSL credentials); default
  // plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

class ServerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const ServerOptions& options);
  // A plaintext server on `model_dir` with extra `flags`.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& model_dir, std::vector<std::string> flags = {});
  // Kills the server if it still runs.
  ~ServerProcess();

  // "127.0.0.1:<port>".
  std::string address() const;
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  // The OpenAI-compatible HTTP API's port.
  int http_port() const { return http_port_; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;

  // A channel to the server with the credentials it was started with.
  std::shared_ptr<grpc::Channel> Channel() const;

  // Sends `signal` (SIGTERM by default) and waits up to `timeout` for the
  // process to exit. Returns its exit code (128 + signal if killed by one);
  // DEADLINE_EXCEEDED if it is still running (then it is killed).
    absl::StatusOr<int> Stop(int signal, absl::Duration timeout);
  // Waits up to `timeout` for the process to exit by itself (after a signal
  // sent with kill()); the same results as Stop().
  absl::StatusOr<int> WaitExit(absl::Duration timeout);

  // The body of GET /metrics.
  absl::StatusOr<std::string> ScrapeMetrics() const;

 private:
    ServerProcess() = default;

  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  int http_port_ = 0;
  std::string log_path_;
  std::string dir_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
};

// The path of the alibi-server binary of this build.
std::string ServerBinary();
// tests/data/models/<name>.
std::string FixtureModel(const std::string& name);

// gRPC health Check for `service` ("" or "alibi.v1.InferenceService"):
// SERVING -> true, NOT_SERVING -> false, RPC failure -> its status.
absl::StatusOr<bool> CheckHealth(grpc::Channel& channel,
                                 const std::string& service = "");

// Runs `argv` to completion; returns exit code and captured stdout+stderr.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout);

// Plain HTTP GET of http://127.0.0.1:<port><path>; returns the body.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

// The value of one series in Prometheus text (exact series name with its
// labels as printed, e.g. `alibi_requests_total{model="m",code="OK",...}`),
// or the sum of every series whose name and labels contain all of
// `label_matchers` (e.g. {"alibi_requests_total{", "rpc=\"Score\""}).
double SumSeries(const std::string& metrics_text,
                 const std::vector<std::string>& label_matchers);

}  // namespace alibi::testing

#endif  // ALIBI_TESTS_TESTING_SERVER_PROCESS_H_
