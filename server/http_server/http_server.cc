#include "server/http_server/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/task_pool.h"

namespace alibi::http_server {
namespace {

constexpr size_t kReadChunk = 64 << 10;
constexpr auto kSweepPeriod = std::chrono::milliseconds(100);
// After an error response the connection is closed once it is written; a
// client that does not read it is dropped after this long.
constexpr auto kLingerAfterError = std::chrono::seconds(2);

std::string SslErrorString() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof(buffer));
    if (!out.empty()) out += "; ";
    out += buffer;
  }
  return out.empty() ? "unknown TLS error" : out;
}

std::string PeerName(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = {0};
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
    return absl::StrCat(host, ":", port);
  }
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
    return absl::StrCat("[", host, "]:", port);
  }
  return "unknown";
}

std::pair<std::string, std::string> PlainErrorBody(int status,
                                                   absl::string_view message) {
  return {"text/plain; charset=utf-8",
          absl::StrCat(status, " ", ReasonPhrase(status), ": ", message, "\n")};
}

// Loads the certificate chain, the key (checked against the certificate)
// and, with a client CA, client verification into `ctx`. Errors name the
// file and what is wrong with it.
absl::Status LoadTls(SSL_CTX* ctx, const TlsOptions& tls) {
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs a certificate and a key");
  }
  if (access(tls.cert_file.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate \"", tls.cert_file,
                     "\" cannot be read: ", std::strerror(errno)));
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate \"", tls.cert_file,
                     "\" is not a PEM certificate chain: ", SslErrorString()));
  }
  FILE* key_file = fopen(tls.key_file.c_str(), "r");
  if (key_file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key \"", tls.key_file,
                     "\" cannot be read: ", std::strerror(errno)));
  }
  EVP_PKEY* key = PEM_read_PrivateKey(key_file, nullptr, nullptr, nullptr);
  fclose(key_file);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key \"", tls.key_file,
                     "\" is not a PEM private key: ", SslErrorString()));
  }
  const bool key_ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 &&
                      SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(key);
  if (!key_ok) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS key \"", tls.key_file, "\" does not match the certificate \"",
        tls.cert_file, "\""));
  }
  if (!tls.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, tls.client_ca_file.c_str(),
                                      nullptr) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS client CA \"", tls.client_ca_file,
                       "\" cannot be used: ", SslErrorString()));
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       nullptr);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTlsFiles(const TlsOptions& tls) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError(SslErrorString());
  absl::Status status = LoadTls(ctx, tls);
  SSL_CTX_free(ctx);
  return status;
}

// What a connection shares with the Responders of its requests: the output
// buffer and the state of the response in progress. Guarded by `mu`.
struct Responder::State {
  std::mutex mu;
  HttpServer::Impl* server = nullptr;  // null once the connection is gone
  uint64_t conn_id = 0;
  std::string out;  // bytes to write; out[0, out_offset) are written
  size_t out_offset = 0;
  bool dirty = false;   // queued in the server's wake list
  bool closed = false;  // the connection ended

  // The response to request number `seq` of the connection.
  enum class Phase { kNone, kStreaming, kComplete };
  uint64_t seq = 0;
  Phase phase = Phase::kNone;
  int version_minor = 1;
  bool head = false;         // HEAD: no body
  bool close_after = false;  // close the connection after this response
  bool chunked = false;
  std::function<void()> on_drain;
  std::function<void()> on_close;
  bool close_fired = false;
  // A plaintext connection's socket (-1 with TLS, whose SSL object only the
  // loop may use, and once closed): responders write to it themselves.
  int fd = -1;

  size_t pending() const { return out.size() - out_offset; }

  // Writes what is queued straight to a plaintext socket from the
  // responder's thread, sparing the hop through the loop while the client
  // keeps up (what is left, the loop writes when the socket allows). True
  // when nothing is left queued. With `mu` held.
  bool SendNow() {
    if (fd < 0 || closed) return false;
    while (out_offset < out.size()) {
      const ssize_t n =
          send(fd, out.data() + out_offset, out.size() - out_offset,
               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) return false;  // full, or broken: the loop finds out
      out_offset += static_cast<size_t>(n);
    }
    out.clear();
    out_offset = 0;
    return true;
  }
};

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, HttpHandler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        workers_(std::max(1, options_.worker_threads)) {
    if (!options_.error_body) options_.error_body = PlainErrorBody;
  }
  ~Impl() { Shutdown(absl::ZeroDuration()); }

  absl::Status Listen();
  void StartLoop() { loop_ = std::thread([this] { Loop(); }); }
  void Shutdown(absl::Duration flush_timeout);
  int port() const { return port_; }
  HttpServerStats stats() const {
    std::lock_guard<std::mutex> lock(stats_mu_);
    return stats_;
  }

  // From Responders (any thread), with the connection's state locked: the
  // loop should look at connection `id`.
  void Wake(Responder::State& state) {
    if (state.dirty) return;
    state.dirty = true;
    {
      std::lock_guard<std::mutex> lock(wake_mu_);
      woken_.push_back(state.conn_id);
    }
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof(one));
  }
  void Post(std::function<void()> task) { workers_.Post(std::move(task)); }

 private:
  enum class ConnState {
    kWaiting,   // no byte of the next request yet
    kHeaders,   // reading a request's header section
    kBody,      // reading its body
    kHandling,  // the request is with the handler; its response is pending
    kClosing,   // an error response is being written, then close
  };
  struct Conn {
    uint64_t id = 0;
    int fd = -1;
    SSL* ssl = nullptr;
    bool handshake_done = false;
    std::string peer;
    ConnState state = ConnState::kWaiting;
    bool first_request = true;
    TimePoint deadline;  // for kWaiting/kHeaders/kBody/kClosing
    // Since when queued output has made no progress (TimePoint() when none
    // is queued or it just moved).
    TimePoint write_stalled_since;
    std::string in;  // bytes read, not yet parsed
    bool read_eof = false;
    bool reading_paused = false;
    bool want_write = false;  // EPOLLOUT registered
    bool tls_read_needs_write = false;
    bool sent_continue = false;
    uint32_t events = 0;  // registered epoll events
    HttpParser parser;
    std::shared_ptr<Responder::State> shared;
    explicit Conn(HttpParserLimits limits) : parser(limits) {}
  };

  void Loop();
  // Whether any connection has output not yet written.
  bool AnyPendingOutput() const;
  void Accept();
  void OnEvent(Conn& c, uint32_t events);
  // Reads what the socket has; false when the connection was closed.
  bool ReadInput(Conn& c);
  // Parses buffered input while no request is in flight; false if closed.
  bool Process(Conn& c);
  // Writes queued output; false when the connection was closed.
  bool Flush(Conn& c);
  void Dispatch(Conn& c, HttpRequest request);
  // Queues an error response of the core and closes after writing it.
  void FailRequest(Conn& c, int status, absl::string_view message);
  void UpdateEvents(Conn& c);
  void Close(Conn& c, int64_t HttpServerStats::*counter = nullptr);
  void Sweep(TimePoint now);
  void Count(int64_t HttpServerStats::*counter, int64_t delta = 1) {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.*counter += delta;
  }
  ssize_t RawRead(Conn& c, char* buffer, size_t size, bool* fatal);
  ssize_t RawWrite(Conn& c, const char* data, size_t size, bool* fatal);

  HttpServerOptions options_;
  HttpHandler handler_;
  TaskPool workers_;
  SSL_CTX* ssl_ctx_ = nullptr;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  int port_ = 0;
  std::thread loop_;
  std::atomic<bool> stopping_{false};
  // Set before stopping_: until when a stopping loop keeps writing.
  TimePoint flush_until_;
  std::once_flag shutdown_once_;

  // Loop-thread state.
  absl::flat_hash_map<uint64_t, std::unique_ptr<Conn>> conns_;
  uint64_t next_id_ = 1;
  TimePoint accept_paused_until_;

  std::mutex wake_mu_;
  std::vector<uint64_t> woken_;

  mutable std::mutex stats_mu_;
  HttpServerStats stats_;
};

// ---------------------------------------------------------------------------
// Responder

Responder::Responder(std::shared_ptr<State> state) : state_(std::move(state)) {}

Responder::~Responder() = default;

namespace {

std::string Head(int status, const HttpHeaders& headers, bool close,
                 int version_minor) {
  std::string head = absl::StrCat("HTTP/1.", version_minor, " ", status, " ",
                                  ReasonPhrase(status), "\r\n");
  for (const auto& [name, value] : headers) {
    absl::StrAppend(&head, name, ": ", value, "\r\n");
  }
  if (close) {
    head += "Connection: close\r\n";
  } else if (version_minor == 0) {
    head += "Connection: keep-alive\r\n";
  }
  return head;
}

}  // namespace

void Responder::Respond(int status, HttpHeaders headers, std::string body) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& s = *state_;
  if (s.closed || s.phase != State::Phase::kNone || s.server == nullptr) return;
  std::string head = Head(status, headers, s.close_after, s.version_minor);
  absl::StrAppend(&head, "Content-Length: ", body.size(), "\r\n\r\n");
  s.out += head;
  if (!s.head) s.out += body;
  s.phase = State::Phase::kComplete;
  s.SendNow();
  s.server->Wake(s);  // the loop moves on to the next request
}

bool Responder::StartStream(int status, HttpHeaders headers) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& s = *state_;
  if (s.closed || s.phase != State::Phase::kNone || s.server == nullptr) {
    return false;
  }
  // HTTP/1.0 has no chunked coding: the stream ends with the connection.
  if (s.version_minor == 0) s.close_after = true;
  s.chunked = !s.close_after || s.version_minor >= 1;
  std::string head = Head(status, headers, s.close_after, s.version_minor);
  if (s.chunked) head += "Transfer-Encoding: chunked\r\n";
  head += "\r\n";
  s.out += head;
  s.phase = State::Phase::kStreaming;
  if (!s.SendNow()) s.server->Wake(s);
  return true;
}

bool Responder::Write(absl::string_view data) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& s = *state_;
  if (s.closed || s.phase != State::Phase::kStreaming || s.server == nullptr) {
    return false;
  }
  if (data.empty() || s.head) return true;
  if (s.chunked) {
    absl::StrAppend(&s.out, absl::Hex(data.size()), "\r\n", data, "\r\n");
  } else {
    s.out.append(data.data(), data.size());
  }
  if (!s.SendNow()) s.server->Wake(s);
  return true;
}

void Responder::EndStream() {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& s = *state_;
  if (s.closed || s.phase != State::Phase::kStreaming || s.server == nullptr) {
    return;
  }
  if (s.chunked && !s.head) s.out += "0\r\n\r\n";
  s.phase = State::Phase::kComplete;
  s.SendNow();
  s.server->Wake(s);  // the loop moves on to the next request
}

size_t Responder::pending_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->pending();
}

void Responder::SetOnDrain(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->on_drain = std::move(callback);
}

void Responder::SetOnClose(std::function<void()> callback) {
  std::function<void()> run_now;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->closed && state_->phase != State::Phase::kComplete) {
      if (!state_->close_fired) {
        state_->close_fired = true;
        run_now = std::move(callback);
      }
    } else {
      state_->on_close = std::move(callback);
    }
  }
  if (run_now) run_now();
}

bool Responder::closed() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->closed;
}

// ---------------------------------------------------------------------------
// HttpServer::Impl

absl::Status HttpServer::Impl::Listen() {
  if (options_.port < 0 || options_.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.name, " port out of range: ", options_.port));
  }
  if (options_.max_connections < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.name, ": max_connections must be >= 1, got ",
                     options_.max_connections));
  }
  const TlsOptions& tls = options_.tls;
  if (!tls.cert_file.empty() || !tls.key_file.empty() ||
      !tls.client_ca_file.empty()) {
    if (tls.cert_file.empty() || tls.key_file.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options_.name, ": TLS needs a certificate and a key"));
    }
    ssl_ctx_ = SSL_CTX_new(TLS_server_method());
    if (ssl_ctx_ == nullptr) {
      return absl::InternalError(SslErrorString());
    }
    SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
    SSL_CTX_set_mode(ssl_ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (absl::Status s = LoadTls(ssl_ctx_, tls); !s.ok()) return s;
  }

  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string host = options_.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = absl::StrCat(options_.port);
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.name, ": bad address \"", options_.host,
                     "\": ", gai_strerror(rc)));
  }
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd =
        socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               a->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
      error = std::strerror(errno);
      close(fd);
      continue;
    }
    sockaddr_storage bound = {};
    socklen_t len = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = bound.ss_family == AF_INET6
                ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    listen_fd_ = fd;
    break;
  }
  freeaddrinfo(found);
  if (listen_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat(options_.name, ": cannot listen on ", options_.host, ":",
                     options_.port, ": ", error));
  }
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || event_fd_ < 0) {
    return absl::InternalError(
        absl::StrCat(options_.name, ": epoll: ", std::strerror(errno)));
  }
  epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // the listening socket
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.u64 = UINT64_MAX;  // the wake-up eventfd
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev);
  return absl::OkStatus();
}

void HttpServer::Impl::Shutdown(absl::Duration flush_timeout) {
  std::call_once(shutdown_once_, [this, flush_timeout] {
    flush_until_ = Now() + absl::ToChronoNanoseconds(flush_timeout);
    stopping_.store(true);
    if (event_fd_ >= 0) {
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof(one));
    }
    if (loop_.joinable()) loop_.join();
    // The loop closed every connection on its way out.
    workers_.Stop();
    if (listen_fd_ >= 0) close(listen_fd_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
    if (event_fd_ >= 0) close(event_fd_);
    if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
  });
}

bool HttpServer::Impl::AnyPendingOutput() const {
  for (const auto& [id, conn] : conns_) {
    std::lock_guard<std::mutex> lock(conn->shared->mu);
    if (conn->shared->pending() > 0) return true;
  }
  return false;
}

void HttpServer::Impl::Loop() {
  std::vector<epoll_event> events(256);
  TimePoint next_sweep = Now() + kSweepPeriod;
  bool accepting = true;
  while (true) {
    if (stopping_.load()) {
      if (accepting) {  // no new connections while the last bytes go out
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        accepting = false;
      }
      if (Now() >= flush_until_ || !AnyPendingOutput()) break;
    }
    const int n =
        epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                   accepting ? 100 : 10);
    for (int i = 0; i < n; ++i) {
      const uint64_t key = events[i].data.u64;
      if (key == 0) {
        if (accepting) Accept();
      } else if (key == UINT64_MAX) {
        uint64_t count;
        [[maybe_unused]] ssize_t r = read(event_fd_, &count, sizeof(count));
      } else if (auto it = conns_.find(key); it != conns_.end()) {
        OnEvent(*it->second, events[i].events);
      }
    }
    std::vector<uint64_t> woken;
    {
      std::lock_guard<std::mutex> lock(wake_mu_);
      woken.swap(woken_);
    }
    for (uint64_t id : woken) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      Conn& c = *it->second;
      {
        std::lock_guard<std::mutex> lock(c.shared->mu);
        c.shared->dirty = false;
      }
      Flush(c);
    }
    const TimePoint now = Now();
    if (now >= next_sweep) {
      Sweep(now);
      next_sweep = now + kSweepPeriod;
    }
    if (accepting && accept_paused_until_ != TimePoint() &&
        now >= accept_paused_until_) {
      accept_paused_until_ = TimePoint();
      epoll_event ev = {};
      ev.events = EPOLLIN;
      ev.data.u64 = 0;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    }
  }
  // Shutting down: every connection ends.
  std::vector<uint64_t> ids;
  for (const auto& [id, conn] : conns_) ids.push_back(id);
  for (uint64_t id : ids) Close(*conns_.at(id));
}

void HttpServer::Impl::Accept() {
  while (true) {
    sockaddr_storage addr = {};
    socklen_t len = sizeof(addr);
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        // Out of descriptors: stop accepting for a moment rather than spin.
        ALIBI_LOG(WARNING) << options_.name
                           << ": accept: " << std::strerror(errno)
                           << "; pausing accepts for 100 ms";
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        accept_paused_until_ = Now() + std::chrono::milliseconds(100);
      }
      return;
    }
    Count(&HttpServerStats::accepted);
    if (static_cast<int>(conns_.size()) >= options_.max_connections) {
      Count(&HttpServerStats::refused_over_limit);
      if (ssl_ctx_ == nullptr) {
        const auto [type, body] =
            options_.error_body(503, "too many connections; retry later");
        const std::string response = absl::StrCat(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: ", type,
            "\r\nContent-Length: ", body.size(),
            "\r\nConnection: close\r\nRetry-After: 1\r\n\r\n", body);
        [[maybe_unused]] ssize_t w =
            send(fd, response.data(), response.size(), MSG_NOSIGNAL);
      }
      close(fd);
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto conn = std::make_unique<Conn>(
        HttpParserLimits{options_.max_header_bytes, options_.max_body_bytes});
    Conn& c = *conn;
    c.id = next_id_++;
    c.fd = fd;
    c.peer = PeerName(addr);
    c.deadline = Now() + absl::ToChronoNanoseconds(options_.header_timeout);
    c.shared = std::make_shared<Responder::State>();
    c.shared->server = this;
    c.shared->conn_id = c.id;
    c.shared->fd = ssl_ctx_ == nullptr ? fd : -1;
    if (ssl_ctx_ != nullptr) {
      c.ssl = SSL_new(ssl_ctx_);
      SSL_set_fd(c.ssl, fd);
      SSL_set_accept_state(c.ssl);
    }
    epoll_event ev = {};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = c.id;
    c.events = ev.events;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    conns_.emplace(c.id, std::move(conn));
    Count(&HttpServerStats::open_connections);
  }
}

ssize_t HttpServer::Impl::RawRead(Conn& c, char* buffer, size_t size,
                                  bool* fatal) {
  *fatal = false;
  if (c.ssl == nullptr) {
    const ssize_t n = recv(c.fd, buffer, size, 0);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      *fatal = true;
    }
    return n;
  }
  c.tls_read_needs_write = false;
  const int n = SSL_read(c.ssl, buffer, static_cast<int>(size));
  if (n > 0) {
    c.handshake_done = true;
    return n;
  }
  switch (SSL_get_error(c.ssl, n)) {
    case SSL_ERROR_WANT_READ:
      return -1;
    case SSL_ERROR_WANT_WRITE:
      c.tls_read_needs_write = true;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    default:
      ERR_clear_error();
      *fatal = true;
      return -1;
  }
}

ssize_t HttpServer::Impl::RawWrite(Conn& c, const char* data, size_t size,
                                   bool* fatal) {
  *fatal = false;
  if (c.ssl == nullptr) {
    const ssize_t n = send(c.fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      *fatal = true;
    }
    return n;
  }
  const int n = SSL_write(c.ssl, data, static_cast<int>(size));
  if (n > 0) return n;
  switch (SSL_get_error(c.ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return -1;
    default:
      ERR_clear_error();
      *fatal = true;
      return -1;
  }
}

void HttpServer::Impl::OnEvent(Conn& c, uint32_t events) {
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    if (!ReadInput(c)) return;
    if (!Process(c)) return;
  }
  if (events & EPOLLOUT) {
    if (c.tls_read_needs_write) {
      if (!ReadInput(c) || !Process(c)) return;
    }
    Flush(c);
  }
}

bool HttpServer::Impl::ReadInput(Conn& c) {
  if (c.reading_paused || c.read_eof) {
    // Still learn about a peer that went away.
    char probe;
    const ssize_t n = recv(c.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      Close(c);
      return false;
    }
    return true;
  }
  char buffer[kReadChunk];
  while (true) {
    bool fatal = false;
    const ssize_t n = RawRead(c, buffer, sizeof(buffer), &fatal);
    if (n > 0) {
      c.in.append(buffer, static_cast<size_t>(n));
      // While a request is with its handler, buffer at most one more
      // request's worth (pipelining); then stop reading until it is done.
      if (c.state == ConnState::kHandling || c.state == ConnState::kClosing) {
        if (c.in.size() > options_.max_header_bytes) {
          c.reading_paused = true;
          UpdateEvents(c);
          return true;
        }
      }
      continue;
    }
    if (n == 0) {
      c.read_eof = true;
      // The peer will send nothing more: a request in progress cannot
      // complete, and one with the handler has lost its reader.
      if (c.state == ConnState::kClosing && c.shared->pending() > 0) {
        UpdateEvents(c);
        return true;
      }
      Close(c);
      return false;
    }
    if (fatal) {
      Close(c);
      return false;
    }
    UpdateEvents(c);
    return true;
  }
}

bool HttpServer::Impl::Process(Conn& c) {
  while (c.state != ConnState::kHandling && c.state != ConnState::kClosing &&
         !c.in.empty()) {
    const bool was_waiting = c.parser.state() == HttpParser::State::kIdle;
    const size_t used = c.parser.Feed(c.in);
    c.in.erase(0, used);
    const HttpParser::State ps = c.parser.state();
    if (ps == HttpParser::State::kError) {
      FailRequest(c, c.parser.error_status(), c.parser.error_message());
      return Flush(c);
    }
    if (was_waiting && ps != HttpParser::State::kIdle) {
      c.state = ConnState::kHeaders;
      // A new connection's first header section is due header_timeout after
      // the accept (set then); later ones, after their first byte.
      if (!c.first_request) {
        c.deadline = Now() + absl::ToChronoNanoseconds(options_.header_timeout);
      }
    }
    if (ps == HttpParser::State::kBody && c.state == ConnState::kHeaders) {
      c.state = ConnState::kBody;
      c.deadline = Now() + absl::ToChronoNanoseconds(options_.body_timeout);
      if (c.parser.expects_continue() && !c.sent_continue) {
        c.sent_continue = true;
        std::lock_guard<std::mutex> lock(c.shared->mu);
        c.shared->out += "HTTP/1.1 100 Continue\r\n\r\n";
      }
    }
    if (ps == HttpParser::State::kDone) {
      c.sent_continue = false;
      Dispatch(c, c.parser.TakeRequest());
      break;
    }
    if (used == 0) break;
  }
  return Flush(c);
}

void HttpServer::Impl::Dispatch(Conn& c, HttpRequest request) {
  Count(&HttpServerStats::requests);
  request.peer = c.peer;
  c.state = ConnState::kHandling;
  c.first_request = false;
  std::shared_ptr<Responder::State> s = c.shared;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    ++s->seq;
    s->phase = Responder::State::Phase::kNone;
    s->version_minor = request.version_minor;
    s->head = request.method == "HEAD";
    s->close_after = request.WantsClose() || stopping_.load();
    s->chunked = false;
    s->on_drain = nullptr;
    s->on_close = nullptr;
    s->close_fired = false;
  }
  auto responder = std::shared_ptr<Responder>(new Responder(s));
  workers_.Post([this, request = std::move(request),
                 responder = std::move(responder)]() mutable {
    handler_(std::move(request), std::move(responder));
  });
}

void HttpServer::Impl::FailRequest(Conn& c, int status,
                                   absl::string_view message) {
  const auto [type, body] = options_.error_body(status, message);
  {
    std::lock_guard<std::mutex> lock(c.shared->mu);
    Responder::State& s = *c.shared;
    ++s.seq;  // any Responder of an earlier request is stale now
    s.phase = Responder::State::Phase::kComplete;
    s.close_after = true;
    absl::StrAppend(&s.out, "HTTP/1.1 ", status, " ", ReasonPhrase(status),
                    "\r\nContent-Type: ", type,
                    "\r\nContent-Length: ", body.size(),
                    "\r\nConnection: close\r\n\r\n", body);
  }
  c.state = ConnState::kClosing;
  c.deadline = Now() + kLingerAfterError;
  c.in.clear();
  c.reading_paused = true;
}

bool HttpServer::Impl::Flush(Conn& c) {
  Responder::State& s = *c.shared;
  std::function<void()> drained;
  bool complete = false;
  bool close_after = false;
  bool broken = false;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    bool progress = false;
    while (s.out_offset < s.out.size()) {
      const ssize_t n = RawWrite(c, s.out.data() + s.out_offset,
                                 s.out.size() - s.out_offset, &broken);
      if (n <= 0) break;
      s.out_offset += static_cast<size_t>(n);
      progress = true;
    }
    if (s.out_offset < s.out.size()) {
      if (progress || c.write_stalled_since == TimePoint()) {
        c.write_stalled_since = Now();
      }
    } else {
      c.write_stalled_since = TimePoint();
    }
    if (s.out_offset == s.out.size()) {
      s.out.clear();
      s.out_offset = 0;
      if (s.phase == Responder::State::Phase::kComplete) {
        complete = true;
        close_after = s.close_after;
      } else if (s.phase == Responder::State::Phase::kStreaming && progress &&
                 s.on_drain) {
        drained = s.on_drain;
      }
    }
  }
  if (broken) {
    Close(c);
    return false;
  }
  if (drained) workers_.Post(std::move(drained));
  if (complete &&
      (c.state == ConnState::kHandling || c.state == ConnState::kClosing)) {
    if (close_after || c.state == ConnState::kClosing || c.read_eof) {
      Close(c);
      return false;
    }
    // Ready for the next request on this connection.
    {
      std::lock_guard<std::mutex> lock(s.mu);
      s.phase = Responder::State::Phase::kNone;
      s.on_drain = nullptr;
      s.on_close = nullptr;
      ++s.seq;
    }
    c.state = ConnState::kWaiting;
    c.deadline = Now() + absl::ToChronoNanoseconds(options_.idle_timeout);
    c.reading_paused = false;
    UpdateEvents(c);
    if (!c.in.empty()) return Process(c);
    // Input that arrived while paused is still in the socket.
    return ReadInput(c) && Process(c);
  }
  UpdateEvents(c);
  return true;
}

void HttpServer::Impl::UpdateEvents(Conn& c) {
  uint32_t events = EPOLLRDHUP;
  if (!c.reading_paused && !c.read_eof) events |= EPOLLIN;
  bool pending;
  {
    std::lock_guard<std::mutex> lock(c.shared->mu);
    pending = c.shared->pending() > 0;
  }
  if (pending || c.tls_read_needs_write) events |= EPOLLOUT;
  if (events == c.events) return;
  c.events = events;
  epoll_event ev = {};
  ev.events = events;
  ev.data.u64 = c.id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void HttpServer::Impl::Close(Conn& c, int64_t HttpServerStats::*counter) {
  std::function<void()> on_close;
  {
    std::lock_guard<std::mutex> lock(c.shared->mu);
    Responder::State& s = *c.shared;
    s.closed = true;
    s.server = nullptr;
    s.fd = -1;
    if (c.state == ConnState::kHandling &&
        s.phase != Responder::State::Phase::kComplete && !s.close_fired &&
        s.on_close) {
      s.close_fired = true;
      on_close = std::move(s.on_close);
    }
    s.on_drain = nullptr;
  }
  // Counted before on_close runs: whoever it notifies sees the stats.
  if (counter != nullptr) Count(counter);
  Count(&HttpServerStats::open_connections, -1);
  if (on_close) workers_.Post(std::move(on_close));
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  if (c.ssl != nullptr) SSL_free(c.ssl);
  close(c.fd);
  conns_.erase(c.id);  // destroys `c`
}

void HttpServer::Impl::Sweep(TimePoint now) {
  const auto write_timeout = absl::ToChronoNanoseconds(options_.write_timeout);
  enum class Expiry { kHeaders, kBody, kIdle, kWrite, kLinger };
  std::vector<std::pair<uint64_t, Expiry>> expired;
  for (const auto& [id, conn] : conns_) {
    const Conn& c = *conn;
    size_t pending;
    {
      std::lock_guard<std::mutex> lock(c.shared->mu);
      pending = c.shared->pending();
    }
    if (pending > 0 && c.write_stalled_since != TimePoint() &&
        now - c.write_stalled_since > write_timeout) {
      expired.emplace_back(id, Expiry::kWrite);
    } else if (c.state != ConnState::kHandling && now >= c.deadline) {
      switch (c.state) {
        case ConnState::kWaiting:
          expired.emplace_back(
              id, c.first_request ? Expiry::kHeaders : Expiry::kIdle);
          break;
        case ConnState::kHeaders:
          expired.emplace_back(id, Expiry::kHeaders);
          break;
        case ConnState::kBody:
          expired.emplace_back(id, Expiry::kBody);
          break;
        case ConnState::kClosing:
          expired.emplace_back(id, Expiry::kLinger);
          break;
        case ConnState::kHandling:
          break;
      }
    }
  }
  for (const auto& [id, expiry] : expired) {
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;
    Conn& c = *it->second;
    switch (expiry) {
      case Expiry::kHeaders:
        Count(&HttpServerStats::closed_header_timeout);
        // A client that sent part of a request hears why; one that sent
        // nothing (or has not finished its TLS handshake) is just closed.
        if (c.state == ConnState::kHeaders &&
            (c.ssl == nullptr || c.handshake_done)) {
          FailRequest(
              c, 408,
              absl::StrCat("the request header section did not "
                           "arrive within ",
                           absl::FormatDuration(options_.header_timeout)));
          Flush(c);
        } else {
          Close(c);
        }
        break;
      case Expiry::kBody:
        Count(&HttpServerStats::closed_body_timeout);
        FailRequest(c, 408,
                    absl::StrCat("the request body did not arrive within ",
                                 absl::FormatDuration(options_.body_timeout)));
        Flush(c);
        break;
      case Expiry::kIdle:
        Close(c, &HttpServerStats::closed_idle);
        break;
      case Expiry::kWrite:
        Close(c, &HttpServerStats::closed_write_timeout);
        break;
      case Expiry::kLinger:
        Close(c);
        break;
    }
  }
}

// ---------------------------------------------------------------------------
// HttpServer

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    HttpServerOptions options, HttpHandler handler) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  if (absl::Status s = impl->Listen(); !s.ok()) return s;
  impl->StartLoop();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

int HttpServer::port() const { return impl_->port(); }

HttpServerStats HttpServer::stats() const { return impl_->stats(); }

void HttpServer::Shutdown(absl::Duration flush_timeout) {
  impl_->Shutdown(flush_timeout);
}

}  // namespace alibi::http_server
