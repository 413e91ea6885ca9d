// The Grafana dashboard and provisioning in deploy/grafana: the JSON parses,
// and every PromQL expression names only metrics the server exports (the
// list comes from the library, Metrics::Families()), used as their types
// allow.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "tests/metrics/dashboard_util.h"
#include "tests/metrics/test_util.h"

namespace alibi::metrics {
namespace {

using test_util::AlibiNames;
using test_util::AllPanels;
using test_util::LoadJson;
using test_util::PanelQueries;
using test_util::PanelQuery;
using test_util::ReadFile;
using ::testing::HasSubstr;

const std::string kDeploy = std::string(ALIBI_SOURCE_DIR) + "/deploy";
const std::string kDashboard = kDeploy + "/grafana/dashboards/alibi-serve.json";

nlohmann::json Dashboard() {
  absl::StatusOr<nlohmann::json> json = LoadJson(kDashboard);
  EXPECT_TRUE(json.ok()) << json.status();
  return json.ok() ? *json : nlohmann::json::object();
}

// What an expression may reference: each family by name, and a histogram's
// _bucket, _sum and _count series. Maps the reference to (family, series
// kind), where kind is the family type or "bucket" / "sum" / "count".
std::map<std::string, std::pair<std::string, std::string>> Referable() {
  std::map<std::string, std::pair<std::string, std::string>> referable;
  for (const FamilyInfo& family : Metrics::Families()) {
    switch (family.type) {
      case MetricType::kCounter:
        referable[family.name] = {family.name, "counter"};
        break;
      case MetricType::kGauge:
        referable[family.name] = {family.name, "gauge"};
        break;
      case MetricType::kHistogram:
        for (const char* part : {"bucket", "sum", "count"}) {
          referable[absl::StrCat(family.name, "_", part)] = {family.name, part};
        }
        break;
    }
  }
  return referable;
}

// The model variable's query, which also names a metric.
std::string ModelVariableQuery(const nlohmann::json& dashboard) {
  for (const nlohmann::json& variable : dashboard["templating"]["list"]) {
    if (variable.value("name", "") == "model") {
      return variable.value("definition", "");
    }
  }
  return "";
}

TEST(DashboardTest, ParsesWithPanelsAndQueries) {
  const nlohmann::json dashboard = Dashboard();
  ASSERT_TRUE(dashboard.is_object());
  EXPECT_EQ(dashboard.value("uid", ""), "alibi-serve");
  EXPECT_FALSE(dashboard.value("title", "").empty());
  EXPECT_TRUE(dashboard.contains("schemaVersion"));

  std::set<int> ids;
  int graphs = 0;
  for (const nlohmann::json* panel : AllPanels(dashboard)) {
    const std::string title = panel->value("title", "");
    SCOPED_TRACE(title);
    EXPECT_FALSE(title.empty());
    ASSERT_TRUE(panel->contains("id"));
    EXPECT_TRUE(ids.insert((*panel)["id"].get<int>()).second) << "duplicate id";
    ASSERT_TRUE(panel->contains("gridPos"));
    if (panel->value("type", "") == "row") continue;
    ++graphs;
    EXPECT_EQ((*panel)["datasource"].value("uid", ""), "${datasource}");
    ASSERT_TRUE(panel->contains("targets"));
    ASSERT_FALSE((*panel)["targets"].empty());
    std::set<std::string> ref_ids;
    for (const nlohmann::json& target : (*panel)["targets"]) {
      EXPECT_FALSE(target.value("expr", "").empty());
      EXPECT_TRUE(ref_ids.insert(target.value("refId", "")).second);
    }
  }
  EXPECT_GE(graphs, 10);
}

TEST(DashboardTest, ExpressionsNameOnlyExportedMetrics) {
  const nlohmann::json dashboard = Dashboard();
  const auto referable = Referable();
  std::vector<PanelQuery> queries = PanelQueries(dashboard);
  ASSERT_FALSE(queries.empty());
  queries.push_back({"variable $model", "", ModelVariableQuery(dashboard)});
  ASSERT_FALSE(queries.back().expr.empty());
  for (const PanelQuery& query : queries) {
    const std::vector<std::string> names = AlibiNames(query.expr);
    EXPECT_FALSE(names.empty()) << query.panel << ": " << query.expr;
    for (const std::string& name : names) {
      EXPECT_TRUE(referable.count(name))
          << query.panel << ": '" << name
          << "' is not a metric the server exports: " << query.expr;
    }
  }
}

TEST(DashboardTest, EveryExportedFamilyIsShown) {
  const auto referable = Referable();
  std::set<std::string> shown;
  for (const PanelQuery& query : PanelQueries(Dashboard())) {
    for (const std::string& name : AlibiNames(query.expr)) {
      auto it = referable.find(name);
      if (it != referable.end()) shown.insert(it->second.first);
    }
  }
  for (const FamilyInfo& family : Metrics::Families()) {
    EXPECT_TRUE(shown.count(family.name))
        << family.name << " is exported but on no panel: add one";
  }
}

// rate() and friends only over counters (and histogram series); quantiles
// only over _bucket series aggregated by le.
TEST(DashboardTest, FunctionsFitMetricTypes) {
  const auto referable = Referable();
  for (const PanelQuery& query : PanelQueries(Dashboard())) {
    SCOPED_TRACE(absl::StrCat(query.panel, ": ", query.expr));
    for (const char* fn : {"rate(", "increase(", "irate("}) {
      for (size_t pos = query.expr.find(fn); pos != std::string::npos;
           pos = query.expr.find(fn, pos + 1)) {
        if (pos > 0 && query.expr[pos - 1] == 'i' && fn[0] == 'r') continue;
        const std::vector<std::string> names =
            AlibiNames(query.expr.substr(pos));
        ASSERT_FALSE(names.empty());
        const std::string kind = referable.at(names[0]).second;
        EXPECT_NE(kind, "gauge") << fn << " over gauge " << names[0];
      }
    }
    if (absl::StrContains(query.expr, "histogram_quantile(")) {
      EXPECT_THAT(query.expr, HasSubstr("by (le)"));
      for (const std::string& name : AlibiNames(query.expr)) {
        EXPECT_EQ(referable.at(name).second, "bucket") << name;
      }
    }
    // Only the two variables the tests know how to substitute.
    const std::string plain =
        test_util::SubstituteVariables(query.expr, "1m", ".*");
    EXPECT_EQ(plain.find('$'), std::string::npos);
  }
}

TEST(DashboardTest, ShowsTheRequiredViews) {
  std::string all;
  for (const PanelQuery& query : PanelQueries(Dashboard())) {
    absl::StrAppend(&all, query.expr, "\n");
  }
  for (const char* family : {"alibi_time_to_first_token_seconds",
                             "alibi_inter_token_latency_seconds",
                             "alibi_e2e_request_latency_seconds"}) {
    for (const char* q : {"0.5", "0.9", "0.99"}) {
      EXPECT_THAT(all, HasSubstr(absl::StrCat("histogram_quantile(", q,
                                              ", sum by (le) (rate(", family,
                                              "_bucket")));
    }
  }
  EXPECT_THAT(all, HasSubstr("sum by (rpc, code) (rate(alibi_requests_total"));
}

TEST(DashboardTest, ProvisioningMatchesDashboard) {
  const nlohmann::json dashboard = Dashboard();
  const nlohmann::json* datasource_variable = nullptr;
  for (const nlohmann::json& variable : dashboard["templating"]["list"]) {
    if (variable.value("name", "") == "datasource") {
      datasource_variable = &variable;
    }
  }
  ASSERT_NE(datasource_variable, nullptr);
  EXPECT_EQ(datasource_variable->value("type", ""), "datasource");
  EXPECT_EQ(datasource_variable->value("query", ""), "prometheus");
  const std::string uid = (*datasource_variable)["current"].value("value", "");

  absl::StatusOr<std::string> datasources =
      ReadFile(kDeploy + "/grafana/provisioning/datasources/prometheus.yml");
  ASSERT_TRUE(datasources.ok()) << datasources.status();
  EXPECT_THAT(*datasources, HasSubstr(absl::StrCat("uid: ", uid)));
  EXPECT_THAT(*datasources, HasSubstr("type: prometheus"));
  EXPECT_THAT(*datasources, HasSubstr("url: http://prometheus:9090"));

  absl::StatusOr<std::string> providers =
      ReadFile(kDeploy + "/grafana/provisioning/dashboards/alibi-serve.yml");
  ASSERT_TRUE(providers.ok()) << providers.status();
  EXPECT_THAT(*providers, HasSubstr("type: file"));
  EXPECT_THAT(*providers,
              HasSubstr("path: /var/lib/grafana/dashboards/alibi-serve"));

  absl::StatusOr<std::string> prometheus =
      ReadFile(kDeploy + "/prometheus/prometheus.yml");
  ASSERT_TRUE(prometheus.ok()) << prometheus.status();
  EXPECT_THAT(*prometheus, HasSubstr("metrics_path: /metrics"));
  EXPECT_THAT(*prometheus, HasSubstr("\"alibi-server:9464\""));
}

}  // namespace
}  // namespace alibi::metrics
