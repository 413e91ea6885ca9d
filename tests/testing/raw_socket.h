// Raw TCP clients for end-to-end tests of the HTTP ports: connections that
// send exactly the bytes a test wants (malformed requests, partial headers,
// nothing at all) and read whatever comes back.
//
// Thread-safety: a RawConnection is used from one thread.
#ifndef ALIBI_TESTS_TESTING_RAW_SOCKET_H_
#define ALIBI_TESTS_TESTING_RAW_SOCKET_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace alibi::testing {

class RawConnection {
 public:
  // Connects to 127.0.0.1:`port`.
  static absl::StatusOr<RawConnection> Connect(int port);
  RawConnection(RawConnection&& other) noexcept;
  RawConnection& operator=(RawConnection&& other) noexcept;
  ~RawConnection();

  absl::Status Send(absl::string_view bytes);
  // Reads until the peer closes or `timeout` passes; returns what arrived.
  std::string ReadUntilClose(absl::Duration timeout);
  // Reads until `needle` has arrived (returns everything read so far), the
  // peer closes, or `timeout` passes.
  std::string ReadUntil(absl::string_view needle, absl::Duration timeout);
  // Whether the peer has closed the connection (waits up to `timeout`).
  bool ClosedByPeer(absl::Duration timeout);
  // Half-closes the sending side.
  void ShutdownWrite();
  int fd() const { return fd_; }

 private:
  explicit RawConnection(int fd) : fd_(fd) {}
  int fd_ = -1;
  std::string buffered_;
};

// Sends `bytes` on a new connection and returns everything the server sends
// back until it closes the connection (or `timeout`).
absl::StatusOr<std::string> HttpExchange(int port, absl::string_view bytes,
                                         absl::Duration timeout);

// One whole HTTP/1.1 exchange on a fresh connection (Connection: close).
struct HttpResult {
  int status = 0;
  std::string head;  // status line and header fields
  std::string body;  // chunked coding decoded
  // The value of header `name` (case-insensitive), or "".
  std::string Header(absl::string_view name) const;
};
absl::StatusOr<HttpResult> HttpCall(
    int port, absl::string_view method, absl::string_view path,
    absl::string_view body = "",
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    absl::Duration timeout = absl::Seconds(120));
// Splits a parsed response: HttpCall's fields from everything the server
// sent on a connection that carried one response.
HttpResult ParseHttpResponse(absl::string_view response);
// The `data:` payloads of server-sent events, in order.
std::vector<std::string> SseData(absl::string_view body);

// The status code of the first HTTP response in `response` (0 if none).
int HttpStatusOf(absl::string_view response);
// The body of the first HTTP response in `response` (after the header
// section; chunked coding not decoded).
std::string HttpBodyOf(absl::string_view response);

}  // namespace alibi::testing

#endif  // ALIBI_TESTS_TESTING_RAW_SOCKET_H_
