// Helpers for the client end-to-end tests: run alibi-cli, alibi-bench or the
// Python example as a child process with separate stdout and stderr.
//
// Thread-safety: free functions without shared state.
#ifndef ALIBI_TESTS_CLIENT_E2E_UTIL_H_
#define ALIBI_TESTS_CLIENT_E2E_UTIL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace alibi::client::testing {

struct ToolResult {
  int exit_code = -1;  // 128 + signal when killed by one
  std::string out;     // stdout
  std::string err;     // stderr
  double seconds = 0;  // wall time from fork to exit
};

// Runs argv (argv[0] an absolute path) with stdin from `stdin_path` (empty:
// /dev/null). DEADLINE_EXCEEDED (with the output so far) when it runs past
// `timeout`; it is killed then.
absl::StatusOr<ToolResult> RunTool(const std::vector<std::string>& argv,
                                   absl::Duration timeout,
                                   const std::string& stdin_path = "");

// The binaries of this build.
std::string CliBinary();
std::string BenchBinary();

// A TCP socket listening on 127.0.0.1 that never accepts: connections hang
// in the backlog, so RPCs to it run into their deadline.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }  // 0 when setup failed

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace alibi::client::testing

#endif  // ALIBI_TESTS_CLIENT_E2E_UTIL_H_
