// Reads the Grafana dashboard for the metrics tests: its panels, their PromQL
// expressions, and the alibi_* metric names those expressions use.
//
// Thread-safety: free functions without shared state.
#ifndef ALIBI_TESTS_METRICS_DASHBOARD_UTIL_H_
#define ALIBI_TESTS_METRICS_DASHBOARD_UTIL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace alibi::metrics::test_util {

absl::StatusOr<nlohmann::json> LoadJson(const std::string& path);

// Every panel, rows and the panels nested in collapsed rows included.
std::vector<const nlohmann::json*> AllPanels(const nlohmann::json& dashboard);

struct PanelQuery {
  std::string panel;  // title
  std::string ref_id;
  std::string expr;
};
// The PromQL expression of every panel target.
std::vector<PanelQuery> PanelQueries(const nlohmann::json& dashboard);

// `expr` with the dashboard's variables replaced for a direct query:
// $__rate_interval -> rate_interval, $model -> model_regex.
std::string SubstituteVariables(absl::string_view expr,
                                absl::string_view rate_interval,
                                absl::string_view model_regex);

// The alibi_* identifiers in `expr`, in order of appearance.
std::vector<std::string> AlibiNames(absl::string_view expr);

}  // namespace alibi::metrics::test_util

#endif  // ALIBI_TESTS_METRICS_DASHBOARD_UTIL_H_
