// A real Prometheus (Debian's `prometheus`, 2.42) scrapes the library's
// exposer, using a config generated from deploy/prometheus/prometheus.yml;
// the values recorded come back through the HTTP query API, and every PromQL
// expression of the Grafana dashboard evaluates to data. Skips when the
// prometheus binary is not installed.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/metrics/metrics.h"
#include "server/metrics/metrics_endpoint.h"
#include "tests/metrics/dashboard_util.h"
#include "tests/metrics/test_util.h"

namespace alibi::metrics {
namespace {

using test_util::HttpGet;
using test_util::Subprocess;

constexpr char kModel[] = "bloom-e2e";

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "alibi_prometheus_XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs an instant query against Prometheus; the parsed "data" object.
absl::StatusOr<nlohmann::json> Query(int port, const std::string& promql) {
  absl::StatusOr<test_util::HttpResponse> response =
      HttpGet(port, "/api/v1/query?query=" + test_util::UrlEncode(promql));
  if (!response.ok()) return response.status();
  nlohmann::json json = nlohmann::json::parse(response->body, nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded() || json.value("status", "") != "success") {
    return absl::InvalidArgumentError(absl::StrCat(
        "query '", promql, "': HTTP ", response->status, ": ", response->body));
  }
  return json["data"];
}

// The single-series result of `promql`, or NOT_FOUND while there is none.
absl::StatusOr<nlohmann::json> QueryOne(int port, const std::string& promql) {
  absl::StatusOr<nlohmann::json> data = Query(port, promql);
  if (!data.ok()) return data.status();
  const nlohmann::json& result = (*data)["result"];
  if (!result.is_array() || result.empty()) {
    return absl::NotFoundError(absl::StrCat("no series yet for ", promql));
  }
  if (result.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(promql, " gave ", result.size(), " series"));
  }
  return result[0];
}

double SampleValue(const nlohmann::json& series) {
  return std::stod(series["value"][1].get<std::string>());
}

class PrometheusE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = test_util::FindInPath("prometheus");
    if (binary_.empty()) {
      GTEST_SKIP() << "the prometheus binary is not installed (Debian package "
                      "`prometheus`, see scripts/setup.sh): not run";
    }
    ASSERT_FALSE(dir_.path().empty());

    MetricsOptions options;
    options.model = {.model = kModel,
                     .architecture = "mpt",
                     .dtype = "bf16",
                     .device = "cpu",
                     .version = "0.1.0-e2e"};
    options.rpc_names = {"Complete", "CompleteStream"};
    metrics_ = std::make_unique<Metrics>(options);
    Record();
    http_server::HttpServerOptions endpoint_options;
    endpoint_options.host = "127.0.0.1";
    auto endpoint = MetricsEndpoint::Start(metrics_.get(), endpoint_options);
    ASSERT_TRUE(endpoint.ok()) << endpoint.status();
    endpoint_ = *std::move(endpoint);

    absl::StatusOr<std::string> shipped = test_util::ReadFile(
        std::string(ALIBI_SOURCE_DIR) + "/deploy/prometheus/prometheus.yml");
    ASSERT_TRUE(shipped.ok()) << shipped.status();
    absl::StatusOr<std::string> config = test_util::LocalPrometheusConfig(
        *shipped, endpoint_->port(), "1s");
    ASSERT_TRUE(config.ok()) << config.status();
    const std::string config_path = dir_.path() + "/prometheus.yml";
    ASSERT_TRUE(test_util::WriteFile(config_path, *config).ok());

    port_ = test_util::PickFreePort();
    ASSERT_GT(port_, 0);
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(
        {binary_, "--config.file=" + config_path,
         "--storage.tsdb.path=" + dir_.path() + "/data",
         absl::StrCat("--web.listen-address=127.0.0.1:", port_)},
        dir_.path() + "/prometheus.log");
    ASSERT_TRUE(process.ok()) << process.status();
    prometheus_ = *std::move(process);
  }

  void TearDown() override {
    if (prometheus_ == nullptr) return;
    // A clean shutdown: SIGTERM, exit code 0, nothing left running.
    const int pid = prometheus_->pid();
    absl::StatusOr<int> code = prometheus_->Stop(absl::Seconds(20));
    EXPECT_TRUE(code.ok()) << code.status() << "\n" << prometheus_->LogTail();
    if (code.ok()) {
      EXPECT_EQ(*code, 0) << prometheus_->LogTail();
    }
    EXPECT_NE(kill(pid, 0), 0) << "prometheus pid " << pid << " still exists";
    prometheus_.reset();
  }

  // Values chosen so that every check below is exact.
  void Record() {
    metrics_->AddPromptTokens(1234);
    metrics_->AddGenerationTokens(567);
    for (int i = 0; i < 3; ++i) {
      metrics_->RecordRequest("Complete", absl::StatusCode::kOk);
    }
    metrics_->RecordRequest("Score", absl::StatusCode::kInvalidArgument);
    metrics_->RecordFinished("stop");
    // TTFT: one each in (0.02, 0.04], (0.04, 0.06], (0.06, 0.08]: the median
    // interpolates to exactly 0.05.
    metrics_->ObserveTimeToFirstToken(0.03);
    metrics_->ObserveTimeToFirstToken(0.05);
    metrics_->ObserveTimeToFirstToken(0.07);
    metrics_->ObserveInterTokenLatencies({0.02, 0.02, 0.03});
    metrics_->ObserveE2eLatency(2.0);
    metrics_->ObserveQueueTime(0.004);
    metrics_->ObserveStep(0.012, 300);
    metrics_->AddPreemptions(1);
    metrics_->AddPrefixCache(64, 16);
    metrics_->SetRequests(3, 2);
    metrics_->SetKvCacheBlocks(25, 25, 50);
    metrics_->SetDeviceMemory(1 << 30, 4LL << 30);
  }

  // Polls `promql` until `done` accepts its single series or `timeout`.
  template <typename Pred>
  absl::StatusOr<nlohmann::json> WaitFor(const std::string& promql, Pred done,
                                         absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::Status last = absl::OkStatus();
    while (absl::Now() < deadline) {
      if (!prometheus_->Running()) {
        return absl::InternalError(
            absl::StrCat("prometheus exited early:\n", prometheus_->LogTail()));
      }
      absl::StatusOr<nlohmann::json> series = QueryOne(port_, promql);
      if (series.ok() && done(*series)) return series;
      last = series.ok() ? absl::OkStatus() : series.status();
      absl::SleepFor(absl::Milliseconds(250));
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "waited ", absl::FormatDuration(timeout), " for ", promql,
        "; last: ", last.ToString(), "\n", prometheus_->LogTail()));
  }

  std::string binary_;
  TempDir dir_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<MetricsEndpoint> endpoint_;
  int port_ = 0;
  std::unique_ptr<Subprocess> prometheus_;
};

TEST_F(PrometheusE2eTest, ScrapesRecordedValuesAndEvaluatesTheDashboard) {
  const auto any = [](const nlohmann::json&) { return true; };
  absl::StatusOr<nlohmann::json> tokens =
      WaitFor("alibi_prompt_tokens_total", any, absl::Seconds(60));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(SampleValue(*tokens), 1234);
  EXPECT_EQ((*tokens)["metric"].value("job", ""), "alibi-serve");
  EXPECT_EQ((*tokens)["metric"].value("model", ""), kModel);
  EXPECT_EQ((*tokens)["metric"].value("instance", ""),
            absl::StrCat("127.0.0.1:", endpoint_->port()));

  absl::StatusOr<nlohmann::json> up =
      QueryOne(port_, "up{job=\"alibi-serve\"}");
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(SampleValue(*up), 1);

  struct Check {
    std::string promql;
    double value;
  };
  const std::vector<Check> checks = {
      {"alibi_generation_tokens_total", 567},
      {"alibi_requests_total{rpc=\"Complete\",code=\"OK\"}", 3},
      {"alibi_requests_total{rpc=\"Score\",code=\"INVALID_ARGUMENT\"}", 1},
      {"alibi_request_finished_total{finish_reason=\"stop\"}", 1},
      {"alibi_time_to_first_token_seconds_count", 3},
      {"histogram_quantile(0.5, alibi_time_to_first_token_seconds_bucket)",
       0.05},
      {"alibi_inter_token_latency_seconds_count", 3},
      {"alibi_batch_tokens_sum", 300},
      {"alibi_kv_cache_usage_ratio", 0.25},
      {"alibi_kv_cache_blocks{state=\"free\"}", 50},
      {"alibi_device_memory_total_bytes", 4294967296.0},
      {"alibi_num_requests_waiting", 2},
      {"alibi_model_info{architecture=\"mpt\",dtype=\"bf16\"}", 1},
  };
  for (const Check& check : checks) {
    absl::StatusOr<nlohmann::json> series = QueryOne(port_, check.promql);
    ASSERT_TRUE(series.ok()) << series.status();
    EXPECT_NEAR(SampleValue(*series), check.value, 1e-9) << check.promql;
  }

  // Later recordings show up in later scrapes.
  metrics_->AddPromptTokens(1000);
  absl::StatusOr<nlohmann::json> more = WaitFor(
      "alibi_prompt_tokens_total",
      [](const nlohmann::json& s) { return SampleValue(s) == 2234; },
      absl::Seconds(30));
  ASSERT_TRUE(more.ok()) << more.status();

  // The dashboard's $model variable finds the model.
  absl::StatusOr<test_util::HttpResponse> labels =
      HttpGet(port_, "/api/v1/label/model/values?match[]=" +
                         test_util::UrlEncode("alibi_model_info"));
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_NE(labels->body.find(absl::StrCat("\"", kModel, "\"")),
            std::string::npos)
      << labels->body;

  // Every panel expression is valid PromQL and, once a few scrapes are in
  // the window, returns data.
  absl::StatusOr<nlohmann::json> dashboard =
      test_util::LoadJson(std::string(ALIBI_SOURCE_DIR) +
                          "/deploy/grafana/dashboards/alibi-serve.json");
  ASSERT_TRUE(dashboard.ok()) << dashboard.status();
  const std::vector<test_util::PanelQuery> queries =
      test_util::PanelQueries(*dashboard);
  ASSERT_FALSE(queries.empty());
  std::vector<std::string> empty;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    empty.clear();
    for (const test_util::PanelQuery& query : queries) {
      const std::string promql =
          test_util::SubstituteVariables(query.expr, "1m", kModel);
      absl::StatusOr<nlohmann::json> data = Query(port_, promql);
      ASSERT_TRUE(data.ok()) << query.panel << ": " << data.status();
      if ((*data)["result"].empty()) {
        empty.push_back(absl::StrCat(query.panel, ": ", promql));
      }
    }
    if (!empty.empty()) absl::SleepFor(absl::Milliseconds(500));
  } while (!empty.empty() && absl::Now() < deadline);
  EXPECT_TRUE(empty.empty()) << "no data for:\n" << absl::StrJoin(empty, "\n");
}

}  // namespace
}  // namespace alibi::metrics
