#include "tests/testing/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/raw_socket.h"

namespace alibi::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// fork + exec with stdout and stderr sent to `log_path`.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv,
                            const std::string& log_path) {
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (log_fd < 0) return absl::InternalError("cannot open " + log_path);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    setpgid(0, 0);
    execv(args[0], args.data());
    _exit(127);
  }
  close(log_fd);
  return pid;
}

}  // namespace

std::string ServerBinary() {
  return std::string(ALIBI_BINARY_DIR) + "/server/alibi-server";
}

std::string FixtureModel(const std::string& name) {
  return std::string(ALIBI_TEST_DATA_DIR) + "/models/" + name;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const ServerOptions& options) {
  std::unique_ptr<ServerProcess> server(new ServerProcess);
  server->credentials_ = options.credentials != nullptr
                             ? options.credentials
                             : grpc::InsecureChannelCredentials();
  char dir_template[] = "/tmp/alibi-server-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError("mkdtemp failed");
  }
  server->dir_ = dir_template;
  server->log_path_ = server->dir_ + "/server.log";
  const std::string port_file = server->dir_ + "/ports.json";
  std::vector<std::string> argv = {ServerBinary(),
                                   "--model=" + options.model_dir,
                                   "--port=0",
                                   "--host=127.0.0.1",
                                   "--metrics_host=127.0.0.1",
                                   "--metrics_port=0",
                                   "--http_host=127.0.0.1",
                                   "--http_port=0",
                                   "--num_threads=2",
                                   "--kv_blocks=512",
                                   "--port_file=" + port_file};
  argv.insert(argv.end(), options.flags.begin(), options.flags.end());
  auto pid = Spawn(argv, server->log_path_);
  if (!pid.ok()) return pid.status();
  server->pid_ = *pid;

  const auto deadline = std::chrono::steady_clock::now() +
                        absl::ToChronoNanoseconds(options.start_timeout);
  auto fail = [&](const std::string& why) {
    return absl::UnavailableError(
        absl::StrCat(why, "\n--- server log ---\n", server->ReadLog()));
  };
  while (!std::filesystem::exists(port_file)) {
    int status = 0;
    if (waitpid(server->pid_, &status, WNOHANG) == server->pid_) {
      server->pid_ = -1;
      return fail("the server exited during start-up");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return fail("the server did not write its port file in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const nlohmann::json ports = nlohmann::json::parse(ReadFile(port_file));
  server->port_ = ports["port"];
  server->metrics_port_ = ports["metrics_port"];
  server->http_port_ = ports["http_port"];
  auto channel = server->Channel();
  while (true) {
    absl::StatusOr<bool> serving = CheckHealth(*channel);
    if (serving.ok() && *serving) break;
    if (std::chrono::steady_clock::now() > deadline) {
      return fail("the server did not become SERVING in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return server;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& model_dir, std::vector<std::string> flags) {
  ServerOptions options;
  options.model_dir = model_dir;
  options.flags = std::move(flags);
  return Start(options);
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

std::string ServerProcess::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::string ServerProcess::ReadLog() const { return ReadFile(log_path_); }

std::shared_ptr<grpc::Channel> ServerProcess::Channel() const {
  return grpc::CreateChannel(address(), credentials_);
}

absl::StatusOr<int> ServerProcess::WaitExit(absl::Duration timeout) {
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError("the server is still running");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

absl::StatusOr<int> ServerProcess::Stop(int signal, absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  kill(pid_, signal);
  absl::StatusOr<int> code = WaitExit(timeout);
  if (!code.ok()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  return code;
}

absl::StatusOr<std::string> ServerProcess::ScrapeMetrics() const {
  return HttpGet(metrics_port_, "/metrics");
}

absl::StatusOr<bool> CheckHealth(grpc::Channel& channel,
                                 const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      std::shared_ptr<grpc::Channel>(&channel, [](grpc::Channel*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  char path[] = "/tmp/alibi-cmd-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return absl::InternalError("mkstemp failed");
  close(fd);
  auto pid = Spawn(argv, path);
  if (!pid.ok()) return pid.status();
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  CommandResult result;
  while (true) {
    int status = 0;
    if (waitpid(*pid, &status, WNOHANG) == *pid) {
      result.exit_code =
          WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(*pid, SIGKILL);
      waitpid(*pid, nullptr, 0);
      result.output = ReadFile(path);
      std::filesystem::remove(path);
      return absl::DeadlineExceededError(
          absl::StrCat(argv[0], " timed out; output:\n", result.output));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  result.output = ReadFile(path);
  std::filesystem::remove(path);
  return result;
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  absl::StatusOr<std::string> response = HttpExchange(
      port,
      absl::StrCat("GET ", path,
                   " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
      absl::Seconds(30));
  if (!response.ok()) return response.status();
  if (HttpStatusOf(*response) != 200) {
    return absl::UnavailableError("bad HTTP response: " +
                                  response->substr(0, 200));
  }
  return HttpBodyOf(*response);
}

double SumSeries(const std::string& metrics_text,
                 const std::vector<std::string>& label_matchers) {
  double sum = 0.0;
  for (absl::string_view line : absl::StrSplit(metrics_text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    const absl::string_view series = line.substr(0, space);
    bool all = true;
    for (const std::string& m : label_matchers) {
      if (!absl::StrContains(series, m)) {
        all = false;
        break;
      }
    }
    if (!all) continue;
    // The series name must be exactly the first matcher's name part.
    const std::string& name = label_matchers.front();
    if (!absl::StartsWith(series, name)) continue;
    sum += std::strtod(std::string(line.substr(space + 1)).c_str(), nullptr);
  }
  return sum;
}

}  // namespace alibi::testing
