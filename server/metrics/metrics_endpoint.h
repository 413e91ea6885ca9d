// The Prometheus scrape endpoint: `GET /metrics` (and HEAD) answers the
// registry in the text exposition format (version 0.0.4); other paths get
// 404 and other methods 405. Served by the event-loop HTTP core
// (server/http_server), so idle or half-open connections neither hold a
// thread nor delay a scrape, and every limit there applies.
//
// Thread-safety: Start from one thread; the endpoint serves from its own
// threads. `metrics` must outlive the endpoint.
#ifndef ALIBI_SERVER_METRICS_METRICS_ENDPOINT_H_
#define ALIBI_SERVER_METRICS_METRICS_ENDPOINT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/http_server/http_server.h"
#include "server/metrics/metrics.h"

namespace alibi::metrics {

// Answers `request` if it is for /metrics: true when it was handled (200,
// 405), false when the path is another one (for servers that mount it beside
// other routes).
bool ServeMetricsRequest(const Metrics& metrics,
                         const http_server::HttpRequest& request,
                         http_server::Responder& responder);

class MetricsEndpoint {
 public:
  // Listens on `options.host`:`options.port` (0: any free port); the
  // options' limits apply (http_server.h). UNAVAILABLE when the port is
  // taken, INVALID_ARGUMENT for a bad address or port.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const Metrics* metrics, http_server::HttpServerOptions options);

  int port() const { return server_->port(); }
  http_server::HttpServerStats stats() const { return server_->stats(); }

 private:
  explicit MetricsEndpoint(std::unique_ptr<http_server::HttpServer> server)
      : server_(std::move(server)) {}
  std::unique_ptr<http_server::HttpServer> server_;
};

}  // namespace alibi::metrics

#endif  // ALIBI_SERVER_METRICS_METRICS_ENDPOINT_H_
