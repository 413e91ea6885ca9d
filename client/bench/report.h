// alibi-bench's report: a human-readable table (modelled on vLLM's
// benchmark_serving output) and a JSON document described by
// client/bench_report.schema.json.
//
// Thread-safety: pure functions.
#ifndef ALIBI_CLIENT_BENCH_REPORT_H_
#define ALIBI_CLIENT_BENCH_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "client/bench/stats.h"
#include "nlohmann/json.hpp"

namespace alibi::client::bench {

inline constexpr int kReportSchemaVersion = 1;

// What was run.
struct ReportConfig {
  std::string backend = "grpc";  // grpc, openai
  std::string address;
  std::string workload;  // random, corpus, score
  int64_t num_requests = 0;
  double request_rate = 0;  // requests/s; infinity: all at once
  int64_t concurrency = 0;  // 0: no cap
  int input_len = 0;
  int output_len = 0;
  double range_ratio = 0;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::optional<double> temperature;
  std::optional<double> top_p;
  int top_k = 0;
  std::string corpus;  // path; empty: none
  std::optional<double> chars_per_token;
  int64_t deadline_ms = 0;
  int num_channels = 1;
  bool tls = false;
  SloOptions slo;
};

// The server, as GetModelInfo describes it.
struct ServerInfo {
  std::string model;
  std::string architecture;
  std::string device;
  std::string dtype;
  std::string server_version;
  int max_context_length = 0;
  int vocab_size = 0;
};

struct Report {
  std::string started_at;  // RFC 3339, UTC
  ReportConfig config;
  ServerInfo server;
  BenchMetrics metrics;
  // Per-request records in the JSON when set (may be empty).
  std::optional<std::vector<RequestResult>> requests;
};

// Keys in the order the schema lists them (not sorted), for readers.
nlohmann::ordered_json ReportToJson(const Report& report);

// The table printed to stdout.
std::string FormatReportTable(const Report& report);

}  // namespace alibi::client::bench

#endif  // ALIBI_CLIENT_BENCH_REPORT_H_
