// Minimal logging and invariant checks (Debian's Abseil has no absl/log).
//
//   ALIBI_LOG(INFO) << "loaded " << n << " tensors";
//   ALIBI_CHECK(ptr != nullptr) << "context";   // aborts with the message
//
// A CHECK failure is a bug in alibi-serve, never a reaction to user input:
// bad input is answered with an absl::Status.
//
// Thread-safety: each statement writes one whole line to stderr under a lock.
#ifndef ALIBI_COMMON_LOGGING_H_
#define ALIBI_COMMON_LOGGING_H_

#include <sstream>

#include "absl/strings/string_view.h"

namespace alibi {

enum class LogSeverity {
  kDebug = 0,
  kInfo = 1,
  kWarning = 2,
  kError = 3,
  kFatal = 4
};

// Messages below this severity are dropped. Default kInfo; the server sets it
// from --log_level.
void SetMinLogSeverity(LogSeverity severity);
LogSeverity MinLogSeverity();

namespace internal {

class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();  // writes the line; aborts for kFatal
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

// Swallows the stream expression when a message is disabled.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace internal
}  // namespace alibi

#define ALIBI_LOG_SEVERITY_DEBUG ::alibi::LogSeverity::kDebug
#define ALIBI_LOG_SEVERITY_INFO ::alibi::LogSeverity::kInfo
#define ALIBI_LOG_SEVERITY_WARNING ::alibi::LogSeverity::kWarning
#define ALIBI_LOG_SEVERITY_ERROR ::alibi::LogSeverity::kError
#define ALIBI_LOG_SEVERITY_FATAL ::alibi::LogSeverity::kFatal

#define ALIBI_LOG(severity)                                              \
  (ALIBI_LOG_SEVERITY_##severity < ::alibi::MinLogSeverity())            \
      ? (void)0                                                          \
      : ::alibi::internal::LogVoidify() &                                \
            ::alibi::internal::LogMessage(ALIBI_LOG_SEVERITY_##severity, \
                                          __FILE__, __LINE__)            \
                .stream()

#define ALIBI_CHECK(cond)                                                  \
  (cond) ? (void)0                                                         \
         : ::alibi::internal::LogVoidify() &                               \
               ::alibi::internal::LogMessage(::alibi::LogSeverity::kFatal, \
                                             __FILE__, __LINE__)           \
                       .stream()                                           \
                   << "Check failed: " #cond " "

#define ALIBI_CHECK_OK(expr)                                      \
  do {                                                            \
    const ::absl::Status alibi_check_status_ = (expr);            \
    ALIBI_CHECK(alibi_check_status_.ok()) << alibi_check_status_; \
  } while (0)

#endif  // ALIBI_COMMON_LOGGING_H_
