// A small blocking HTTP/1.1 client (plaintext) for alibi-bench's OpenAI
// backend: keep-alive connections from a pool (as the OpenAI SDKs keep
// them), whole responses, and server-sent events handed over as they
// arrive.
//
// Thread-safety: an HttpClient is thread-safe; each call uses its own
// connection from the pool.
#ifndef ALIBI_CLIENT_BENCH_HTTP_CLIENT_H_
#define ALIBI_CLIENT_BENCH_HTTP_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alibi::client::bench {

class HttpClient {
 public:
  struct Response {
    int status = 0;
    std::string body;  // the whole body; for streams, only when not 200
  };
  // The `data:` payload of one server-sent event.
  using EventHandler = std::function<void(absl::string_view data)>;

  // `address` is host:port; `authorization` an Authorization header value
  // or empty; `timeout_ms` (0: none) bounds every wait for the server.
  HttpClient(std::string address, std::string authorization,
             int64_t timeout_ms = 0);
  ~HttpClient();

  // GET or POST `path`; UNAVAILABLE when the server cannot be reached or
  // the connection breaks, DEADLINE_EXCEEDED on the timeout.
  absl::StatusOr<Response> Call(absl::string_view method,
                                absl::string_view path, absl::string_view body);
  // POST `path` expecting an event stream: `on_event` runs for every event
  // of a 200 response as it arrives.
  absl::StatusOr<Response> Stream(absl::string_view path,
                                  absl::string_view body,
                                  const EventHandler& on_event);

  const std::string& address() const { return address_; }

 private:
  absl::StatusOr<Response> Exchange(absl::string_view method,
                                    absl::string_view path,
                                    absl::string_view body,
                                    const EventHandler* on_event);
  absl::StatusOr<int> Connect();
  int TakeIdle();
  void GiveBack(int fd);

  const std::string address_;
  const std::string authorization_;
  const int64_t timeout_ms_;
  std::mutex mu_;
  std::vector<int> idle_;  // keep-alive connections
};

}  // namespace alibi::client::bench

#endif  // ALIBI_CLIENT_BENCH_HTTP_CLIENT_H_
