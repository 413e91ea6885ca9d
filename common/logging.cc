#include "common/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/enum_names.h"

namespace alibi {
namespace {

std::atomic<int> g_min_severity{static_cast<int>(LogSeverity::kInfo)};

std::mutex& OutputMutex() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}

char SeverityLetter(LogSeverity s) {
  constexpr char kLetters[] = {'D', 'I', 'W', 'E', 'F'};
  static_assert(std::size(kLetters) == EnumCount(LogSeverity::kFatal));
  return EnumName(s, kLetters, '?');
}

absl::string_view Basename(absl::string_view path) {
  size_t slash = path.find_last_of('/');
  return slash == absl::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

void SetMinLogSeverity(LogSeverity severity) {
  g_min_severity.store(static_cast<int>(severity));
}

LogSeverity MinLogSeverity() {
  return static_cast<LogSeverity>(g_min_severity.load());
}

namespace internal {

LogMessage::LogMessage(LogSeverity severity, const char* file, int line)
    : severity_(severity) {
  stream_ << SeverityLetter(severity) << ' '
          << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                              absl::UTCTimeZone())
          << ' ' << Basename(file) << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  {
    std::lock_guard<std::mutex> lock(OutputMutex());
    std::fputs(stream_.str().c_str(), stderr);
    std::fflush(stderr);
  }
  if (severity_ == LogSeverity::kFatal) std::abort();
}

}  // namespace internal
}  // namespace alibi
