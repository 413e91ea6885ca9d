#include "tests/testing/raw_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace alibi::testing {

absl::StatusOr<RawConnection> RawConnection::Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int error = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to port ", port,
                                               ": ", std::strerror(error)));
  }
  return RawConnection(fd);
}

RawConnection::RawConnection(RawConnection&& other) noexcept
    : fd_(other.fd_), buffered_(std::move(other.buffered_)) {
  other.fd_ = -1;
}

RawConnection& RawConnection::operator=(RawConnection&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    buffered_ = std::move(other.buffered_);
    other.fd_ = -1;
  }
  return *this;
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) close(fd_);
}

absl::Status RawConnection::Send(absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("send failed: ", std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string RawConnection::ReadUntil(absl::string_view needle,
                                     absl::Duration timeout) {
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  while (needle.empty() ||
         absl::string_view(buffered_).find(needle) == absl::string_view::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p = {fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buffer[65536];
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    buffered_.append(buffer, static_cast<size_t>(n));
  }
  return buffered_;
}

std::string RawConnection::ReadUntilClose(absl::Duration timeout) {
  return ReadUntil("", timeout);
}

bool RawConnection::ClosedByPeer(absl::Duration timeout) {
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p = {fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buffer[4096];
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n > 0) buffered_.append(buffer, static_cast<size_t>(n));
  }
}

void RawConnection::ShutdownWrite() { shutdown(fd_, SHUT_WR); }

absl::StatusOr<std::string> HttpExchange(int port, absl::string_view bytes,
                                         absl::Duration timeout) {
  absl::StatusOr<RawConnection> c = RawConnection::Connect(port);
  if (!c.ok()) return c.status();
  if (absl::Status s = c->Send(bytes); !s.ok()) return s;
  return c->ReadUntilClose(timeout);
}

std::string HttpResult::Header(absl::string_view name) const {
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (absl::EqualsIgnoreCase(line.substr(0, colon), name)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return "";
}

HttpResult ParseHttpResponse(absl::string_view response) {
  HttpResult r;
  r.status = HttpStatusOf(response);
  const size_t end = response.find("\r\n\r\n");
  if (end == absl::string_view::npos) return r;
  r.head = std::string(response.substr(0, end));
  absl::string_view body = response.substr(end + 4);
  if (!absl::StrContains(absl::AsciiStrToLower(r.head),
                         "transfer-encoding: chunked")) {
    r.body = std::string(body);
    return r;
  }
  while (true) {
    const size_t line_end = body.find("\r\n");
    if (line_end == absl::string_view::npos) break;
    size_t size = 0;
    if (!absl::SimpleHexAtoi(body.substr(0, line_end), &size) || size == 0 ||
        body.size() < line_end + 2 + size) {
      break;
    }
    absl::StrAppend(&r.body, body.substr(line_end + 2, size));
    body.remove_prefix(std::min(body.size(), line_end + 2 + size + 2));
  }
  return r;
}

absl::StatusOr<HttpResult> HttpCall(
    int port, absl::string_view method, absl::string_view path,
    absl::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    absl::Duration timeout) {
  std::string request = absl::StrCat(method, " ", path,
                                     " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     "Connection: close\r\n");
  for (const auto& [name, value] : headers) {
    absl::StrAppend(&request, name, ": ", value, "\r\n");
  }
  if (!body.empty() || method == "POST") {
    absl::StrAppend(&request,
                    "Content-Type: application/json\r\n"
                    "Content-Length: ",
                    body.size(), "\r\n");
  }
  absl::StrAppend(&request, "\r\n", body);
  absl::StatusOr<std::string> response = HttpExchange(port, request, timeout);
  if (!response.ok()) return response.status();
  HttpResult r = ParseHttpResponse(*response);
  if (r.status == 0) {
    return absl::UnavailableError(
        absl::StrCat("no HTTP response: \"", response->substr(0, 200), "\""));
  }
  return r;
}

std::vector<std::string> SseData(absl::string_view body) {
  std::vector<std::string> out;
  for (absl::string_view event : absl::StrSplit(body, "\n\n")) {
    if (absl::ConsumePrefix(&event, "data: ")) out.emplace_back(event);
  }
  return out;
}

int HttpStatusOf(absl::string_view response) {
  if (response.size() < 12 || response.substr(0, 7) != "HTTP/1.") return 0;
  int status = 0;
  if (!absl::SimpleAtoi(response.substr(9, 3), &status)) return 0;
  return status;
}

std::string HttpBodyOf(absl::string_view response) {
  const size_t end = response.find("\r\n\r\n");
  if (end == absl::string_view::npos) return "";
  return std::string(response.substr(end + 4));
}

}  // namespace alibi::testing
