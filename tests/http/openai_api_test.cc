// The OpenAI API's admission without a model (in process, no engine): while
// the model loads every route but /version answers 503 with an OpenAI error
// object saying so, and after StartDraining, that the server is shutting
// down; refused requests are counted as UNAVAILABLE.
#include "server/http/openai_api.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/http_server/http_server.h"
#include "server/metrics/metrics.h"
#include "tests/testing/raw_socket.h"

namespace alibi::http {
namespace {

using testing::HttpCall;
using testing::HttpResult;

class OpenAiApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics::MetricsOptions metrics_options;
    metrics_options.rpc_names = OpenAiApi::MetricRoutes();
    metrics_ = std::make_unique<metrics::Metrics>(metrics_options);
    OpenAiApiOptions options;
    options.served_model_name = "m";
    api_ = std::make_unique<OpenAiApi>(options, metrics_.get());
    http_server::HttpServerOptions server_options;
    server_options.host = "127.0.0.1";
    server_options.port = 0;
    auto server = http_server::HttpServer::Start(
        server_options, [api = api_.get()](
                            http_server::HttpRequest request,
                            std::shared_ptr<http_server::Responder> r) {
          api->Handle(std::move(request), std::move(r));
        });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  HttpResult Call(const std::string& method, const std::string& path,
                  const std::string& body = "") {
    auto result = HttpCall(server_->port(), method, path, body,
                           {{"Content-Type", "application/json"}},
                           absl::Seconds(10));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : HttpResult{};
  }

  void ExpectUnavailable(const HttpResult& r, const std::string& why) {
    EXPECT_EQ(r.status, 503) << r.head << r.body;
    EXPECT_EQ(r.Header("Retry-After"), "1");
    const auto body = nlohmann::json::parse(r.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r.body;
    EXPECT_NE(body["error"]["message"].get<std::string>().find(why),
              std::string::npos)
        << r.body;
  }

  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<OpenAiApi> api_;
  std::unique_ptr<http_server::HttpServer> server_;
};

TEST_F(OpenAiApiTest, LoadingAnswers503OnEveryRouteButVersion) {
  const std::string body = R"({"model": "m", "prompt": "x"})";
  ExpectUnavailable(Call("POST", "/v1/completions", body), "still loading");
  ExpectUnavailable(Call("POST", "/v1/chat/completions", body),
                    "still loading");
  ExpectUnavailable(Call("GET", "/v1/models"), "still loading");
  ExpectUnavailable(Call("POST", "/tokenize", R"({"prompt": "x"})"),
                    "still loading");
  ExpectUnavailable(Call("GET", "/health"), "still loading");
  EXPECT_EQ(Call("GET", "/version").status, 200);
  EXPECT_EQ(api_->in_flight(), 0);
  // alibi_requests_total{rpc="/v1/completions", code="UNAVAILABLE"} 1
  const std::string text = metrics_->SerializeText();
  bool counted = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    counted |= absl::StartsWith(line, "alibi_requests_total{") &&
               absl::StrContains(line, "rpc=\"/v1/completions\"") &&
               absl::StrContains(line, "code=\"UNAVAILABLE\"") &&
               absl::EndsWith(line, " 1");
  }
  EXPECT_TRUE(counted) << text;
}

TEST_F(OpenAiApiTest, DrainingAnswers503) {
  api_->StartDraining();
  ExpectUnavailable(Call("POST", "/v1/completions", R"({"prompt": "x"})"),
                    "shutting down");
  ExpectUnavailable(Call("GET", "/health"), "still loading");
  EXPECT_TRUE(api_->WaitForIdle(absl::ZeroDuration()));
}

}  // namespace
}  // namespace alibi::http
