#include "client/bench/http_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace alibi::client::bench {
namespace {

// Reads what the socket has (at least one byte) into `buffer`; 0 at EOF.
absl::StatusOr<size_t> ReadSome(int fd, std::string* buffer) {
  char chunk[16384];
  while (true) {
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n >= 0) {
      buffer->append(chunk, static_cast<size_t>(n));
      return static_cast<size_t>(n);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::DeadlineExceededError("the server did not answer in time");
    }
    return absl::UnavailableError(
        absl::StrCat("reading the response: ", std::strerror(errno)));
  }
}

absl::Status SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("sending the request: ", std::strerror(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Splits decoded body bytes into server-sent events.
class EventSplitter {
 public:
  explicit EventSplitter(const HttpClient::EventHandler* on_event)
      : on_event_(on_event) {}
  void Add(absl::string_view bytes) {
    pending_.append(bytes.data(), bytes.size());
    size_t end;
    while ((end = pending_.find("\n\n")) != std::string::npos) {
      absl::string_view event(pending_.data(), end);
      for (absl::string_view line : absl::StrSplit(event, '\n')) {
        if (absl::ConsumePrefix(&line, "data: ") ||
            absl::ConsumePrefix(&line, "data:")) {
          (*on_event_)(line);
        }
      }
      pending_.erase(0, end + 2);
    }
  }

 private:
  const HttpClient::EventHandler* on_event_;
  std::string pending_;
};

}  // namespace

HttpClient::HttpClient(std::string address, std::string authorization,
                       int64_t timeout_ms)
    : address_(std::move(address)),
      authorization_(std::move(authorization)),
      timeout_ms_(timeout_ms) {}

HttpClient::~HttpClient() {
  for (int fd : idle_) close(fd);
}

absl::StatusOr<int> HttpClient::Connect() {
  const size_t colon = address_.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address_, "\" is not host:port"));
  }
  std::string host = address_.substr(0, colon);
  if (host.size() > 2 && host.front() == '[')
    host = host.substr(1, host.size() - 2);
  const std::string port = address_.substr(colon + 1);
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", address_));
  }
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      error = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", address_, ": ", error));
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (timeout_ms_ > 0) {
    timeval tv = {static_cast<time_t>(timeout_ms_ / 1000),
                  static_cast<suseconds_t>(timeout_ms_ % 1000 * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  return fd;
}

int HttpClient::TakeIdle() {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.empty()) return -1;
  const int fd = idle_.back();
  idle_.pop_back();
  return fd;
}

void HttpClient::GiveBack(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(fd);
}

absl::StatusOr<HttpClient::Response> HttpClient::Call(absl::string_view method,
                                                      absl::string_view path,
                                                      absl::string_view body) {
  return Exchange(method, path, body, nullptr);
}

absl::StatusOr<HttpClient::Response> HttpClient::Stream(
    absl::string_view path, absl::string_view body,
    const EventHandler& on_event) {
  return Exchange("POST", path, body, &on_event);
}

absl::StatusOr<HttpClient::Response> HttpClient::Exchange(
    absl::string_view method, absl::string_view path, absl::string_view body,
    const EventHandler* on_event) {
  std::string request = absl::StrCat(
      method, " ", path, " HTTP/1.1\r\nHost: ", address_,
      "\r\nAccept: ", on_event ? "text/event-stream" : "*/*", "\r\n");
  if (!authorization_.empty()) {
    absl::StrAppend(&request, "Authorization: ", authorization_, "\r\n");
  }
  if (method == "POST") {
    absl::StrAppend(&request,
                    "Content-Type: application/json\r\n"
                    "Content-Length: ",
                    body.size(), "\r\n");
  }
  absl::StrAppend(&request, "\r\n", body);

  // A pooled connection the server closed meanwhile fails before any byte
  // of a response: then once more on a fresh one.
  for (int attempt = 0;; ++attempt) {
    int fd = attempt == 0 ? TakeIdle() : -1;
    const bool reused = fd >= 0;
    if (!reused) {
      absl::StatusOr<int> connected = Connect();
      if (!connected.ok()) return connected.status();
      fd = *connected;
    }
    auto fail = [&](absl::Status s) {
      close(fd);
      return s;
    };
    std::string in;
    absl::Status sent = SendAll(fd, request);
    size_t head_end = std::string::npos;
    while (sent.ok() && (head_end = in.find("\r\n\r\n")) == std::string::npos) {
      absl::StatusOr<size_t> n = ReadSome(fd, &in);
      if (!n.ok()) {
        sent = n.status();
      } else if (*n == 0) {
        sent = absl::UnavailableError("the server closed the connection");
      }
    }
    if (!sent.ok()) {
      close(fd);
      if (reused && in.empty() && !absl::IsDeadlineExceeded(sent)) continue;
      return sent;
    }
    // Status line and the headers that matter.
    Response response;
    const absl::string_view head(in.data(), head_end);
    if (!absl::StartsWith(head, "HTTP/1.") || head.size() < 12 ||
        !absl::SimpleAtoi(head.substr(9, 3), &response.status)) {
      return fail(absl::UnavailableError("not an HTTP response"));
    }
    bool chunked = false;
    bool keep_alive = true;
    int64_t length = -1;
    for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      const std::string name = absl::AsciiStrToLower(line.substr(0, colon));
      const std::string value = absl::AsciiStrToLower(
          absl::StripAsciiWhitespace(line.substr(colon + 1)));
      if (name == "transfer-encoding") chunked = value == "chunked";
      if (name == "connection" && value == "close") keep_alive = false;
      if (name == "content-length" && !absl::SimpleAtoi(value, &length)) {
        return fail(absl::UnavailableError("bad Content-Length"));
      }
    }
    std::string rest = in.substr(head_end + 4);
    const bool events = on_event != nullptr && response.status == 200;
    EventSplitter splitter(on_event);
    auto deliver = [&](absl::string_view bytes) {
      if (events) {
        splitter.Add(bytes);
      } else {
        response.body.append(bytes.data(), bytes.size());
      }
    };
    auto more = [&]() -> absl::Status {
      absl::StatusOr<size_t> n = ReadSome(fd, &rest);
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::UnavailableError("the response was cut short");
      return absl::OkStatus();
    };
    if (chunked) {
      while (true) {
        size_t line_end;
        while ((line_end = rest.find("\r\n")) == std::string::npos) {
          if (absl::Status s = more(); !s.ok()) return fail(s);
        }
        size_t size = 0;
        if (!absl::SimpleHexAtoi(rest.substr(0, line_end), &size)) {
          return fail(absl::UnavailableError("bad chunk size"));
        }
        while (rest.size() < line_end + 2 + size + 2) {
          if (absl::Status s = more(); !s.ok()) return fail(s);
        }
        deliver(absl::string_view(rest).substr(line_end + 2, size));
        rest.erase(0, line_end + 2 + size + 2);
        if (size == 0) break;  // (no trailers from this server)
      }
    } else if (length >= 0) {
      while (static_cast<int64_t>(rest.size()) < length) {
        if (absl::Status s = more(); !s.ok()) return fail(s);
      }
      deliver(absl::string_view(rest).substr(0, static_cast<size_t>(length)));
    } else {
      keep_alive = false;  // the body ends with the connection
      while (true) {
        absl::StatusOr<size_t> n = ReadSome(fd, &rest);
        if (!n.ok()) return fail(n.status());
        if (*n == 0) break;
      }
      deliver(rest);
    }
    if (keep_alive) {
      GiveBack(fd);
    } else {
      close(fd);
    }
    return response;
  }
}

}  // namespace alibi::client::bench
