// A small HTTP/1.1 server core: one epoll event loop thread owns every
// connection (so idle, slow or half-open connections cost a few KB each and
// never hold a thread), request handlers run on a fixed pool of worker
// threads, and responses are written back by the loop (on plaintext
// connections, by the responding thread itself as far as the socket takes
// them at once, sparing a thread hop per streamed event). Used for the
// Prometheus endpoint and the OpenAI-compatible API.
//
// Limits (HttpServerOptions), enforced per connection by the loop:
// - header_timeout: a request's line and header section (and, on a new
//   connection, the TLS handshake) must arrive within this time of its first
//   byte; a new connection must start its first request within it too.
//   Absolute, so a client trickling bytes cannot hold a connection (408).
// - body_timeout: the whole body must arrive within this time of the end of
//   the headers (408).
// - idle_timeout: a keep-alive connection with no request in progress is
//   closed after this long.
// - write_timeout: a response that makes no write progress for this long
//   (the client stopped reading) is abandoned and the connection closed.
// - max_connections: further connections are answered 503 and closed.
// - max_header_bytes / max_body_bytes: 431 / 413.
// Malformed requests get the parser's status (http_parser.h). Statuses the
// core produces carry a body from `error_body` (default: plain text).
//
// A request is handled by calling `handler` on a worker thread with the
// request and a Responder. The handler (or any thread later) answers through
// the Responder: a whole response, or a stream (chunked transfer coding;
// server-sent events ride on it). Requests on one connection are answered in
// order: the next request of a keep-alive connection is read only after the
// previous response is complete.
//
// Thread-safety: Start/Shutdown from one thread; Responder methods from any
// thread. Callbacks (handler, on_close, on_drain) run on the worker threads,
// never on the loop thread, and must not block for long.
#ifndef ALIBI_SERVER_HTTP_SERVER_HTTP_SERVER_H_
#define ALIBI_SERVER_HTTP_SERVER_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/http_server/http_parser.h"

namespace alibi::http_server {

struct TlsOptions {
  // PEM files. With cert and key the server speaks TLS only; with a client CA
  // it also requires and verifies client certificates.
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
};

// Whether the TLS files can serve: both readable, PEM, the key matching the
// certificate, the client CA (if any) usable. INVALID_ARGUMENT naming the
// file and the problem otherwise. (For other servers that take the same
// files, e.g. the gRPC transport, to fail with a clear message.)
absl::Status CheckTlsFiles(const TlsOptions& tls);

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpServerOptions {
  std::string name = "http";  // in log lines
  std::string host = "0.0.0.0";
  int port = 0;  // 0: any free port (see HttpServer::port())
  int max_connections = 1024;
  absl::Duration header_timeout = absl::Seconds(10);
  absl::Duration body_timeout = absl::Seconds(30);
  absl::Duration idle_timeout = absl::Seconds(60);
  absl::Duration write_timeout = absl::Seconds(30);
  size_t max_header_bytes = 16 << 10;
  size_t max_body_bytes = 4 << 20;
  int worker_threads = 2;
  TlsOptions tls;
  // Body and content type of the responses the core itself produces (400,
  // 408, 413, 431, 503, ...), from the status and a message.
  std::function<std::pair<std::string, std::string>(int status,
                                                    absl::string_view message)>
      error_body;
};

// Counters of the connections a server has seen (for tests and logs).
struct HttpServerStats {
  int64_t open_connections = 0;
  int64_t accepted = 0;
  int64_t refused_over_limit = 0;  // answered 503 at max_connections
  int64_t closed_header_timeout = 0;
  int64_t closed_body_timeout = 0;
  int64_t closed_idle = 0;
  int64_t closed_write_timeout = 0;
  int64_t requests = 0;
};

class HttpServer;

// The answer to one request. Thread-safe; shared by the handler, the
// transport code that streams the answer, and the server.
class Responder {
 public:
  ~Responder();
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  // A whole response with Content-Length. Ignored after a response started.
  void Respond(int status, HttpHeaders headers, std::string body);
  // Starts a streamed response (chunked for HTTP/1.1, until close for 1.0).
  // Returns false when the connection is gone or a response started.
  bool StartStream(int status, HttpHeaders headers);
  // Appends to a started stream; false when the connection is gone.
  bool Write(absl::string_view data);
  // Ends the stream (the connection stays usable for the next request).
  void EndStream();

  // Bytes queued for the client and not yet written to the socket.
  size_t pending_bytes() const;
  // Runs `callback` (on a worker thread) whenever output that had to wait
  // for the socket has all been written, so a producer that saw
  // pending_bytes() above its limit can send more. (Output the socket takes
  // at once leaves nothing pending and calls nothing.) Set it once, before
  // the first Write.
  void SetOnDrain(std::function<void()> callback);
  // Runs `callback` (on a worker thread) once if the connection ends before
  // the response is complete: the client went away, a limit closed it, or
  // the server shut down. Runs at once if that already happened.
  void SetOnClose(std::function<void()> callback);
  // Whether the connection ended before the response completed.
  bool closed() const;

 private:
  friend class HttpServer;
  struct State;
  explicit Responder(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

using HttpHandler =
    std::function<void(HttpRequest request, std::shared_ptr<Responder>)>;

class HttpServer {
 public:
  // Binds, listens and starts the loop and worker threads. Errors: bad
  // options or TLS files (INVALID_ARGUMENT), the address cannot be bound
  // (UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      HttpServerOptions options, HttpHandler handler);
  // Shuts down.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const;
  HttpServerStats stats() const;

  // Stops accepting, writes what responses have queued for up to
  // `flush_timeout` (a drained server's last answers reach their clients),
  // then closes every connection (responses in progress see on_close) and
  // joins the threads. Idempotent.
  void Shutdown(absl::Duration flush_timeout = absl::ZeroDuration());

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace alibi::http_server

#endif  // ALIBI_SERVER_HTTP_SERVER_HTTP_SERVER_H_
