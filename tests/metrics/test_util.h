// Helpers for the metrics tests: a plain-socket HTTP GET on loopback, free
// ports, a small parser for the Prometheus text format, child processes, and
// the local Prometheus config generated from the shipped one.
//
// Thread-safety: free functions without shared state; a ListeningSocket is
// owned by one thread.
#ifndef ALIBI_TESTS_METRICS_TEST_UTIL_H_
#define ALIBI_TESTS_METRICS_TEST_UTIL_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace alibi::metrics::test_util {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// GET http://127.0.0.1:<port><path_and_query> with HTTP/1.0 (no chunking);
// reads until the server closes. UNAVAILABLE when nothing listens.
absl::StatusOr<HttpResponse> HttpGet(int port, absl::string_view path_and_query,
                                     absl::Duration timeout = absl::Seconds(5));

// Percent-encodes `s` for a URL query value.
std::string UrlEncode(absl::string_view s);

// A TCP socket bound to 127.0.0.1 on a kernel-chosen port and listening, so
// no one else can bind that port while it lives.
class ListeningSocket {
 public:
  ListeningSocket();
  ~ListeningSocket();
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;
  int port() const { return port_; }  // 0 if socket setup failed

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port that was free a moment ago (bound then closed): for servers that
// must be told their port, such as Prometheus.
int PickFreePort();

// One sample line of the text format.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct ParsedText {
  std::map<std::string, std::string> types;  // "# TYPE name type"
  std::vector<Sample> samples;
};

// Parses the Prometheus text exposition format; INVALID_ARGUMENT on a line it
// cannot read.
absl::StatusOr<ParsedText> ParseText(absl::string_view text);

// The samples named `name` whose labels include all of `labels`.
std::vector<Sample> Find(const ParsedText& parsed, absl::string_view name,
                         const std::map<std::string, std::string>& labels = {});

absl::StatusOr<std::string> ReadFile(const std::string& path);
absl::Status WriteFile(const std::string& path, absl::string_view contents);

// The full path of executable `name` on $PATH, or "" when there is none.
std::string FindInPath(absl::string_view name);

// A config for a local Prometheus, generated from the shipped
// deploy/prometheus/prometheus.yml text: target "alibi-server:9464" becomes
// "127.0.0.1:<target_port>" and "scrape_interval: 5s" becomes
// `scrape_interval`. FAILED_PRECONDITION unless each occurs exactly once.
absl::StatusOr<std::string> LocalPrometheusConfig(
    absl::string_view shipped, int target_port,
    absl::string_view scrape_interval);

// A child process (fork + exec) with stdout and stderr sent to a log file.
// It gets SIGKILL if this process dies first, and the destructor stops it, so
// no child outlives a test, even a failing one.
class Subprocess {
 public:
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv, const std::string& log_path);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  int pid() const { return pid_; }
  // True until the child has exited (reaps it when it has).
  bool Running();
  // Waits up to `timeout` for the child to exit on its own; its exit code,
  // or DEADLINE_EXCEEDED (still running), or INTERNAL (killed by a signal).
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // SIGTERM, then SIGKILL after `grace`; the exit code if it exited by itself
  // after SIGTERM, otherwise an error saying how it ended.
  absl::StatusOr<int> Stop(absl::Duration grace = absl::Seconds(20));
  // The tail of the log, for failure messages.
  std::string LogTail(size_t max_bytes = 4000) const;

 private:
  Subprocess(int pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}
  int pid_;
  std::string log_path_;
  bool exited_ = false;
  int wait_status_ = 0;
};

// Runs argv to completion (at most `timeout`); its exit code and output.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         const std::string& log_path,
                                         absl::Duration timeout);

}  // namespace alibi::metrics::test_util

#endif  // ALIBI_TESTS_METRICS_TEST_UTIL_H_
