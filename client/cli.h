// alibi-cli: a command-line client of alibi-serve's public API.
//
//   alibi-cli complete "In the beginning" --max_tokens 32 --temperature 0.8
//   alibi-cli stream --token_ids 1,2,3 --max_tokens 64
//   alibi-cli score --file essay.txt --top_logprobs 3
//   alibi-cli tokenize "Hello world"
//   alibi-cli info --json
//   alibi-cli health            # exit 0 only when SERVING (2 s deadline)
//
// Exit codes: 0 success; 1 the RPC failed (or health is not SERVING);
// 2 usage error (unknown flag, bad value, unreadable file).
//
// Thread-safety: RunCli may run concurrently with itself (no shared state).
#ifndef ALIBI_CLIENT_CLI_H_
#define ALIBI_CLIENT_CLI_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "alibi/v1/inference.pb.h"
#include "client/connection.h"

namespace alibi::client {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRpcError = 1;
inline constexpr int kExitUsage = 2;

// Default deadline of `health` when --deadline_ms is not given: short, as a
// container health check must be quick.
inline constexpr int64_t kHealthDefaultDeadlineMs = 2000;

// A parsed command line.
struct CliInvocation {
  // complete, stream, score, tokenize, info, health; empty with `help` for
  // the general usage.
  std::string command;
  bool help = false;  // --help / -h / `help [command]`
  bool json = false;  // print the response as protobuf JSON
  ConnectionOptions connection;
  v1::CompletionParams completion;  // complete, stream
  v1::ScoreRequest score;           // score
  v1::TokenizeRequest tokenize;     // tokenize
  std::string health_service;       // health ("" = the whole server)
};

// Parses the arguments after the program name. INVALID_ARGUMENT for usage
// errors: an unknown command or flag, a flag that does not apply to the
// command, a malformed value, no input or two inputs; NOT_FOUND for an
// unreadable --file.
absl::StatusOr<CliInvocation> ParseCliArgs(absl::Span<const std::string> args);

// The usage text: general (command "") or of one command.
std::string CliUsage(absl::string_view command);

// Runs alibi-cli with `args` (without the program name), writing results to
// `out` and errors to `err`. Returns the exit code.
int RunCli(absl::Span<const std::string> args, std::ostream& out,
           std::ostream& err);

}  // namespace alibi::client

#endif  // ALIBI_CLIENT_CLI_H_
