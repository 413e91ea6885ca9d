#include "client/bench/report.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace alibi::client::bench {
namespace {

using json = nlohmann::ordered_json;

// NaN and infinities are not JSON: null.
json Number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

template <typename T>
json Optional(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json SummaryJson(const Summary& s) {
  return json{{"count", s.count},           {"mean", Number(s.mean)},
              {"median", Number(s.median)}, {"std", Number(s.std)},
              {"p90", Number(s.p90)},       {"p99", Number(s.p99)},
              {"min", Number(s.min)},       {"max", Number(s.max)}};
}

json RequestJson(size_t index, const RequestResult& r) {
  json j{{"index", index},
         {"ok", r.ok},
         {"code", r.code},
         {"start_ms", r.start_s * 1e3},
         {"e2e_ms", r.e2e_s() * 1e3},
         {"ttft_ms", r.ttft_s ? json(*r.ttft_s * 1e3) : json(nullptr)},
         {"tpot_ms", r.tpot_s() ? json(*r.tpot_s() * 1e3) : json(nullptr)},
         {"prompt_tokens", r.prompt_tokens},
         {"output_tokens", r.output_tokens},
         {"output_messages", r.output_messages},
         {"finish_reason", r.finish_reason}};
  if (!r.ok) j["error"] = r.error;
  return j;
}

std::string Ms(double v) {
  return std::isfinite(v) ? absl::StrFormat("%.2f", v) : "-";
}

}  // namespace

json ReportToJson(const Report& report) {
  const ReportConfig& c = report.config;
  const BenchMetrics& m = report.metrics;
  json config{{"backend", c.backend},
              {"address", c.address},
              {"workload", c.workload},
              {"num_requests", c.num_requests},
              {"request_rate",
               std::isinf(c.request_rate) ? json("inf") : json(c.request_rate)},
              {"concurrency", c.concurrency},
              {"input_len", c.input_len},
              {"output_len", c.output_len},
              {"range_ratio", c.range_ratio},
              {"seed", c.seed},
              {"ignore_eos", c.ignore_eos},
              {"temperature", Optional(c.temperature)},
              {"top_p", Optional(c.top_p)},
              {"top_k", c.top_k},
              {"corpus", c.corpus.empty() ? json(nullptr) : json(c.corpus)},
              {"chars_per_token", Optional(c.chars_per_token)},
              {"deadline_ms", c.deadline_ms},
              {"num_channels", c.num_channels},
              {"tls", c.tls},
              {"slo",
               {{"ttft_ms", Optional(c.slo.ttft_ms)},
                {"tpot_ms", Optional(c.slo.tpot_ms)},
                {"e2e_ms", Optional(c.slo.e2e_ms)}}}};
  const ServerInfo& s = report.server;
  json server{{"model", s.model},
              {"architecture", s.architecture},
              {"device", s.device},
              {"dtype", s.dtype},
              {"server_version", s.server_version},
              {"max_context_length", s.max_context_length},
              {"vocab_size", s.vocab_size}};
  json j{{"schema_version", kReportSchemaVersion},
         {"tool", "alibi-bench"},
         {"started_at", report.started_at},
         {"config", std::move(config)},
         {"server", std::move(server)},
         {"num_requests", m.num_requests},
         {"completed", m.completed},
         {"failed", m.failed},
         {"failures_by_code", json::object()},
         {"finish_reasons", json::object()},
         {"duration_s", m.duration_s},
         {"total_input_tokens", m.total_input_tokens},
         {"total_output_tokens", m.total_output_tokens},
         {"request_throughput", m.request_throughput},
         {"output_token_throughput", m.output_token_throughput},
         {"total_token_throughput", m.total_token_throughput},
         {"good_requests", Optional(m.good_requests)},
         {"goodput", Optional(m.goodput)},
         {"ttft_ms", SummaryJson(m.ttft_ms)},
         {"tpot_ms", SummaryJson(m.tpot_ms)},
         {"itl_ms", SummaryJson(m.itl_ms)},
         {"e2e_latency_ms", SummaryJson(m.e2e_ms)}};
  for (const auto& [code, n] : m.failures_by_code) {
    j["failures_by_code"][code] = n;
  }
  for (const auto& [reason, n] : m.finish_reasons) {
    j["finish_reasons"][reason] = n;
  }
  if (report.requests) {
    json requests = json::array();
    for (size_t i = 0; i < report.requests->size(); ++i) {
      requests.push_back(RequestJson(i, (*report.requests)[i]));
    }
    j["requests"] = std::move(requests);
  }
  return j;
}

std::string FormatReportTable(const Report& report) {
  const ReportConfig& c = report.config;
  const BenchMetrics& m = report.metrics;
  std::string out;
  auto line = [&out](absl::string_view key, const std::string& value) {
    absl::StrAppend(&out, absl::StrFormat("%-40s%s\n", key, value));
  };
  const std::string rule(72, '-');
  absl::StrAppend(&out, std::string(20, '='),
                  " alibi-bench: serving benchmark ", std::string(20, '='),
                  "\n");
  line("Server:",
       absl::StrCat(c.address, " (", report.server.model, ", ",
                    report.server.device.empty() ? std::string("device unknown")
                                                 : report.server.device,
                    ") via ", c.backend));
  std::string workload =
      absl::StrFormat("%s, input %d", c.workload, c.input_len);
  if (c.workload != "score") {
    absl::StrAppend(&workload, absl::StrFormat(", output %d", c.output_len));
  }
  if (c.range_ratio > 0) {
    absl::StrAppend(&workload,
                    absl::StrFormat(" (+-%.0f%%)", c.range_ratio * 100));
  }
  line("Workload:", workload);
  line("Request rate (req/s):", std::isinf(c.request_rate)
                                    ? std::string("inf")
                                    : absl::StrFormat("%.2f", c.request_rate));
  line("Max concurrency:",
       c.concurrency > 0 ? absl::StrCat(c.concurrency) : std::string("none"));
  line("Successful requests:", absl::StrCat(m.completed));
  line("Failed requests:", absl::StrCat(m.failed));
  for (const auto& [code, n] : m.failures_by_code) {
    line(absl::StrCat("  ", code, ":"), absl::StrCat(n));
  }
  if (!m.finish_reasons.empty()) {
    std::vector<std::string> reasons;
    for (const auto& [reason, n] : m.finish_reasons) {
      reasons.push_back(absl::StrCat(reason, " ", n));
    }
    line("Finish reasons:", absl::StrJoin(reasons, ", "));
  }
  line("Benchmark duration (s):", absl::StrFormat("%.2f", m.duration_s));
  line("Total input tokens:", absl::StrCat(m.total_input_tokens));
  line("Total generated tokens:", absl::StrCat(m.total_output_tokens));
  line("Request throughput (req/s):",
       absl::StrFormat("%.2f", m.request_throughput));
  line("Output token throughput (tok/s):",
       absl::StrFormat("%.2f", m.output_token_throughput));
  line("Total token throughput (tok/s):",
       absl::StrFormat("%.2f", m.total_token_throughput));
  if (m.goodput) {
    std::vector<std::string> slos;
    if (c.slo.ttft_ms)
      slos.push_back(absl::StrFormat("TTFT <= %g ms", *c.slo.ttft_ms));
    if (c.slo.tpot_ms)
      slos.push_back(absl::StrFormat("TPOT <= %g ms", *c.slo.tpot_ms));
    if (c.slo.e2e_ms)
      slos.push_back(absl::StrFormat("E2E <= %g ms", *c.slo.e2e_ms));
    line("Request goodput (req/s):",
         absl::StrFormat("%.2f (%d good; %s)", *m.goodput, *m.good_requests,
                         absl::StrJoin(slos, ", ")));
  } else {
    line("Request goodput (req/s):", "n/a (no --slo_* given)");
  }
  absl::StrAppend(&out, rule, "\n");
  absl::StrAppend(
      &out, absl::StrFormat("%-16s%9s%9s%9s%9s%9s%9s%8s\n", "Latency (ms)",
                            "mean", "median", "std", "p90", "p99", "max", "n"));
  auto row = [&out](absl::string_view name, const Summary& s) {
    absl::StrAppend(
        &out, absl::StrFormat("%-16s%9s%9s%9s%9s%9s%9s%8d\n", name, Ms(s.mean),
                              Ms(s.median), Ms(s.std), Ms(s.p90), Ms(s.p99),
                              Ms(s.max), s.count));
  };
  row("TTFT", m.ttft_ms);
  row("TPOT", m.tpot_ms);
  row("ITL", m.itl_ms);
  row("E2E latency", m.e2e_ms);
  absl::StrAppend(&out, std::string(72, '='), "\n");
  return out;
}

}  // namespace alibi::client::bench
