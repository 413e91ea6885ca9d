// The OpenAI-compatible HTTP API on the event-loop HTTP core
// (server/http_server): POST /v1/completions, POST /v1/chat/completions,
// GET /v1/models[/<id>], GET /health, GET /version, POST /tokenize and
// POST /detokenize (vLLM's shapes). The transport is thin: JSON is parsed
// into the frontend's types (openai_protocol.h), the frontend validates,
// tokenizes and runs the request, and its chunks are formatted back, whole
// or as server-sent events.
//
// Admission is the gRPC service's: a bearer token on every route but
// /health and /version (`--api_key_file`), 503 while the model loads and
// while the server drains. Errors are OpenAI error objects with the status
// of their cause (openai_protocol.h, HttpStatusOf): 400 naming the
// parameter, 401, 404 (unknown route or model), 405, 429 (queue full), 503.
// A client that disconnects (or stops reading past the core's write
// timeout) cancels its request: the engine frees its KV blocks within one
// step.
//
// Metrics: every request but /health, /version and /metrics is counted in
// alibi_requests_total{rpc, code}, with `rpc` the route ("/v1/completions",
// "/v1/chat/completions", "/v1/models", "/tokenize", "/detokenize"),
// "unmatched" for unknown routes and "unparsed" for requests the HTTP core
// refused before routing (malformed, too large or too slow: see
// CoreErrorBody); `code` is the canonical status code name of the outcome
// (OK, INVALID_ARGUMENT, UNAUTHENTICATED, NOT_FOUND, RESOURCE_EXHAUSTED,
// UNAVAILABLE, CANCELLED for a client that went away, ...), the vocabulary
// of the gRPC series, so one query covers both transports.
//
// Thread-safety: every method is thread-safe. Handle runs on the HTTP
// core's worker threads; output handling on the frontend's output threads.
#ifndef ALIBI_SERVER_HTTP_OPENAI_API_H_
#define ALIBI_SERVER_HTTP_OPENAI_API_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/frontend/admission.h"
#include "server/frontend/frontend.h"
#include "server/http_server/http_server.h"
#include "server/metrics/metrics.h"

namespace alibi::http {

struct OpenAiApiOptions {
  // The model name clients send and /v1/models lists.
  std::string served_model_name;
  // Bearer token required on every route but /health and /version; empty:
  // no authentication.
  std::string api_key;
  std::string server_version;
  // /health answers 503 while the engine makes no progress with work
  // pending for this long.
  absl::Duration stall_timeout = absl::Seconds(60);
  // A stream stops taking output from the engine while this much is queued
  // for a slow client (the engine merges what it generates meanwhile).
  size_t max_pending_bytes = 256 << 10;
};

class OpenAiApi {
 public:
  // `metrics` may be null; it must outlive the API.
  OpenAiApi(OpenAiApiOptions options, metrics::Metrics* metrics);
  ~OpenAiApi();

  // The model is loaded: serve it through `frontend` (which must outlive
  // every request).
  void SetFrontend(frontend::Frontend* frontend);
  // New requests get 503 from now on (and /health); requests in flight
  // continue.
  void StartDraining();
  // Waits until no request is in flight or `timeout` passes; true when idle.
  bool WaitForIdle(absl::Duration timeout);
  int in_flight() const;

  // Serves one request (an http_server::HttpHandler).
  void Handle(http_server::HttpRequest request,
              std::shared_ptr<http_server::Responder> responder);
  // For HttpServerOptions::error_body: the OpenAI error object of a status
  // the HTTP core produced itself (400, 408, 413, 431, 503, ...), counted
  // as rpc="unparsed".
  std::pair<std::string, std::string> CoreErrorBody(int status,
                                                    absl::string_view message);

  // The `rpc` label values of the routes (their OK series start at 0).
  static std::vector<std::string> MetricRoutes();

  class Exchange;  // a completion in flight (openai_api.cc)

 private:
  struct Route;
  // Answers with an error object for `status`, counting it under `label`.
  void Fail(http_server::Responder& responder, absl::string_view label,
            const absl::Status& status, bool admitted,
            absl::string_view code = "", http_server::HttpHeaders headers = {});
  // The answer alone: ErrorJson(status, code) with its HTTP status, plus
  // Retry-After on 429 and 503.
  void RespondError(http_server::Responder& responder,
                    const absl::Status& status, absl::string_view code = "",
                    http_server::HttpHeaders headers = {});
  void Reply(http_server::Responder& responder, absl::string_view label,
             std::string json, bool admitted);
  // A request ends: Record counts it (before its last bytes are written, so
  // a client holding the answer finds it in /metrics), then Leave gives back
  // its in-flight slot if it was admitted (after them, so a drain waits for
  // the answer).
  void Record(absl::string_view label, absl::StatusCode code);
  void Leave(bool admitted);
  bool Authorized(const http_server::HttpRequest& request) const;
  // NOT_FOUND unless `model` is empty or the served model's name.
  absl::Status CheckModel(const std::string& model) const;
  // A parsed request naming a model this server serves; otherwise answers
  // the error (counted under `label`) and returns nullopt.
  template <typename Request>
  std::optional<Request> Parsed(absl::StatusOr<Request> request,
                                http_server::Responder& responder,
                                absl::string_view label);
  std::string NewId(absl::string_view prefix, const std::string& call_id);

  void Health(http_server::Responder& responder) const;
  void Models(const http_server::HttpRequest& request,
              http_server::Responder& responder);
  void Completions(const http_server::HttpRequest& request,
                   std::shared_ptr<http_server::Responder> responder);
  void ChatCompletions(const http_server::HttpRequest& request,
                       std::shared_ptr<http_server::Responder> responder);
  void Tokenize(const http_server::HttpRequest& request,
                http_server::Responder& responder);
  void Detokenize(const http_server::HttpRequest& request,
                  http_server::Responder& responder);

  const OpenAiApiOptions options_;
  metrics::Metrics* const metrics_;
  const int64_t created_;    // the server's start, for /v1/models
  const std::string nonce_;  // makes response ids unique across restarts
  frontend::Admission admission_;
};

}  // namespace alibi::http

#endif  // ALIBI_SERVER_HTTP_OPENAI_API_H_
