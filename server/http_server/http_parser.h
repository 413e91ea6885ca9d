// An incremental HTTP/1.1 request parser (RFC 9112) with hard limits, for the
// server core in http_server.h. Bytes go in as they arrive; the parser says
// when a whole request (request line, headers, body) is there, or which
// status a malformed or oversized request gets.
//
// What it accepts: HTTP/1.0 and HTTP/1.1; origin-form targets ("/path?q"),
// plus "*" and absolute-form; bodies by Content-Length or chunked transfer
// coding (trailers skipped). What it refuses, with the status a server
// answers: malformed syntax, obsolete line folding, whitespace before a
// header colon, conflicting Content-Length values, Content-Length together
// with Transfer-Encoding (request smuggling) -> 400; a header section over
// the limit -> 431; a body over the limit -> 413; a transfer coding other
// than chunked -> 501; another HTTP version -> 505.
//
// Thread-safety: not thread-safe; one parser per connection.
#ifndef ALIBI_SERVER_HTTP_SERVER_HTTP_PARSER_H_
#define ALIBI_SERVER_HTTP_SERVER_HTTP_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace alibi::http_server {

struct HttpRequest {
  std::string method;  // as sent, e.g. "GET"
  std::string target;  // the raw request-target, e.g. "/v1/models?x=1"
  std::string path;    // target without the query, percent-decoding not done
  std::string query;   // after '?', or empty
  int version_minor = 1;  // HTTP/1.<minor>
  // Header fields in order; names lower-cased, values trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Filled by the server: the peer's address ("127.0.0.1:53422").
  std::string peer;

  // The first value of header `name` (lower case), or nullptr.
  const std::string* Header(absl::string_view name) const;
  // How many fields named `name` the request has.
  int HeaderCount(absl::string_view name) const;
  // Whether the client asked to close the connection after this request
  // (HTTP/1.0 without keep-alive, or `Connection: close`).
  bool WantsClose() const;
};

struct HttpParserLimits {
  size_t max_header_bytes = 16 << 10;  // request line + header fields
  size_t max_body_bytes = 4 << 20;     // decoded body
};

class HttpParser {
 public:
  enum class State {
    kIdle,     // no byte of a request yet
    kHeaders,  // inside the request line or header fields
    kBody,     // headers complete, body incomplete
    kDone,     // a whole request is ready (TakeRequest)
    kError,    // malformed; see error_status() / error_message()
  };

  explicit HttpParser(HttpParserLimits limits) : limits_(limits) {}

  // Consumes bytes from `data`; returns how many it used. Stops after a whole
  // request (state kDone; the rest is the next request's, feed it after
  // TakeRequest) or at an error (kError).
  size_t Feed(absl::string_view data);

  State state() const { return state_; }
  // After the headers of a request that sent `Expect: 100-continue`, until
  // the body is complete: the client waits for an interim 100 response.
  bool expects_continue() const { return expects_continue_; }
  // kError: the status to answer with and why.
  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

  // kDone: the request; the parser is ready for the next one.
  HttpRequest TakeRequest();

 private:
  size_t FeedHeaders(absl::string_view data);
  size_t FeedBody(absl::string_view data);
  size_t FeedChunked(absl::string_view data);
  // Parses the complete header section in `head_` (without the final CRLF).
  void ParseHead();
  void Fail(int status, std::string message);

  const HttpParserLimits limits_;
  State state_ = State::kIdle;
  std::string head_;  // the header section so far
  HttpRequest request_;
  bool chunked_ = false;
  uint64_t body_remaining_ = 0;  // Content-Length left to read
  // Chunked decoding.
  enum class ChunkState { kSize, kData, kDataCrlf, kTrailers };
  ChunkState chunk_state_ = ChunkState::kSize;
  std::string chunk_line_;  // a chunk-size line or a trailer line so far
  uint64_t chunk_remaining_ = 0;
  bool chunk_cr_ = false;  // a CR after chunk data was seen
  bool expects_continue_ = false;
  int error_status_ = 0;
  std::string error_message_;
};

// The standard reason phrase of `status` ("Not Found"), or "Unknown".
absl::string_view ReasonPhrase(int status);

}  // namespace alibi::http_server

#endif  // ALIBI_SERVER_HTTP_SERVER_HTTP_PARSER_H_
