#include "tests/metrics/dashboard_util.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tests/metrics/test_util.h"

namespace alibi::metrics::test_util {
namespace {

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         c == ':';
}

void CollectPanels(const nlohmann::json& panels,
                   std::vector<const nlohmann::json*>& out) {
  if (!panels.is_array()) return;
  for (const nlohmann::json& panel : panels) {
    out.push_back(&panel);
    if (panel.contains("panels")) CollectPanels(panel["panels"], out);
  }
}

}  // namespace

absl::StatusOr<nlohmann::json> LoadJson(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  nlohmann::json json = nlohmann::json::parse(*text, /*cb=*/nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not JSON"));
  }
  return json;
}

std::vector<const nlohmann::json*> AllPanels(const nlohmann::json& dashboard) {
  std::vector<const nlohmann::json*> panels;
  if (dashboard.contains("panels")) CollectPanels(dashboard["panels"], panels);
  return panels;
}

std::vector<PanelQuery> PanelQueries(const nlohmann::json& dashboard) {
  std::vector<PanelQuery> queries;
  for (const nlohmann::json* panel : AllPanels(dashboard)) {
    if (!panel->contains("targets") || !(*panel)["targets"].is_array()) {
      continue;
    }
    for (const nlohmann::json& target : (*panel)["targets"]) {
      PanelQuery query;
      query.panel = panel->value("title", "");
      query.ref_id = target.value("refId", "");
      query.expr = target.value("expr", "");
      queries.push_back(std::move(query));
    }
  }
  return queries;
}

std::string SubstituteVariables(absl::string_view expr,
                                absl::string_view rate_interval,
                                absl::string_view model_regex) {
  return absl::StrReplaceAll(
      expr, {{"$__rate_interval", rate_interval}, {"$model", model_regex}});
}

std::vector<std::string> AlibiNames(absl::string_view expr) {
  std::vector<std::string> names;
  constexpr absl::string_view kPrefix = "alibi_";
  for (size_t pos = expr.find(kPrefix); pos != absl::string_view::npos;
       pos = expr.find(kPrefix, pos + 1)) {
    if (pos > 0 && IsNameChar(expr[pos - 1])) continue;
    size_t end = pos;
    while (end < expr.size() && IsNameChar(expr[end])) ++end;
    names.emplace_back(expr.substr(pos, end - pos));
    pos = end - 1;
  }
  return names;
}

}  // namespace alibi::metrics::test_util
