#include "server/metrics/metrics_endpoint.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace alibi::metrics {

bool ServeMetricsRequest(const Metrics& metrics,
                         const http_server::HttpRequest& request,
                         http_server::Responder& responder) {
  if (request.path != "/metrics") return false;
  if (request.method != "GET" && request.method != "HEAD") {
    responder.Respond(405,
                      {{"Allow", "GET, HEAD"},
                       {"Content-Type", "text/plain; charset=utf-8"}},
                      absl::StrCat("405 Method Not Allowed: ", request.method,
                                   " /metrics (use GET)\n"));
    return true;
  }
  responder.Respond(200,
                    {{"Content-Type", "text/plain; version=0.0.4; "
                                      "charset=utf-8"}},
                    metrics.SerializeText());
  return true;
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const Metrics* metrics, http_server::HttpServerOptions options) {
  if (options.host.empty()) {
    return absl::InvalidArgumentError("metrics endpoint: empty bind address");
  }
  auto server = http_server::HttpServer::Start(
      std::move(options), [metrics](http_server::HttpRequest request,
                                    std::shared_ptr<http_server::Responder> r) {
        if (ServeMetricsRequest(*metrics, request, *r)) return;
        r->Respond(404, {{"Content-Type", "text/plain; charset=utf-8"}},
                   absl::StrCat("404 Not Found: ", request.path,
                                " (metrics are at /metrics)\n"));
      });
  if (!server.ok()) return server.status();
  return std::unique_ptr<MetricsEndpoint>(
      new MetricsEndpoint(*std::move(server)));
}

}  // namespace alibi::metrics
