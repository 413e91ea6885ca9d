// alibi-bench's JSON report against client/bench_report.schema.json, and the
// schema checker itself (it must reject what the schema forbids).
#include "client/bench/report.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "client/bench/stats.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/client/json_schema.h"

namespace alibi::client::bench {
namespace {

using ::alibi::client::testing::ValidateJson;
using nlohmann::json;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

json LoadSchema() {
  std::ifstream in(std::string(ALIBI_SOURCE_DIR) +
                   "/client/bench_report.schema.json");
  EXPECT_TRUE(in.good());
  return json::parse(in);
}

// The report as the plain (sorted-key) json the checker takes.
json ToJson(const Report& report) {
  return json::parse(ReportToJson(report).dump());
}

Report SampleReport() {
  Report report;
  report.started_at = "2025-01-31T12:00:00.000Z";
  report.config.address = "localhost:50051";
  report.config.workload = "random";
  report.config.num_requests = 3;
  report.config.request_rate = std::numeric_limits<double>::infinity();
  report.config.input_len = 16;
  report.config.output_len = 4;
  report.config.ignore_eos = true;
  report.config.temperature = 0.0;
  report.server = {
      "tiny-bloom", "BloomForCausalLM", "cpu", "float32", "0.1.0", 2048, 50432};
  std::vector<RequestResult> results(3);
  results[0].ok = true;
  results[0].end_s = 0.5;
  results[0].ttft_s = 0.1;
  results[0].prompt_tokens = 16;
  results[0].output_tokens = 4;
  results[0].output_messages = 4;
  results[0].itl_s = {0.1, 0.1, 0.2};
  results[0].finish_reason = "length";
  results[1] = results[0];
  results[1].start_s = 0.01;
  results[2].ok = false;
  results[2].code = "RESOURCE_EXHAUSTED";
  results[2].error = "queue full";
  report.metrics = ComputeMetrics(results, 0.51, SloOptions());
  report.requests = results;
  return report;
}

TEST(ReportJsonTest, SampleValidatesAgainstSchema) {
  const json schema = LoadSchema();
  const json doc = ToJson(SampleReport());
  EXPECT_THAT(ValidateJson(schema, doc), IsEmpty()) << doc.dump(2);
  EXPECT_EQ(doc["config"]["request_rate"], "inf");
  EXPECT_EQ(doc["completed"], 2);
  EXPECT_EQ(doc["failures_by_code"]["RESOURCE_EXHAUSTED"], 1);
  EXPECT_EQ(doc["finish_reasons"]["length"], 2);
  EXPECT_TRUE(doc["goodput"].is_null());
  EXPECT_EQ(doc["requests"].size(), 3u);
  EXPECT_EQ(doc["requests"][2]["error"], "queue full");
  EXPECT_NEAR(doc["ttft_ms"]["mean"].get<double>(), 100, 1e-9);
  EXPECT_EQ(doc["itl_ms"]["count"], 6);
}

TEST(ReportJsonTest, EmptyStatisticsAndSlosValidate) {
  Report report = SampleReport();
  report.requests.reset();
  report.config.workload = "score";
  report.config.request_rate = 2.5;
  report.config.temperature.reset();
  report.config.corpus = "/tmp/corpus.txt";
  report.config.chars_per_token = 3.9;
  report.config.slo.ttft_ms = 100;
  std::vector<RequestResult> results(2);
  results[0].ok = true;
  results[0].end_s = 0.2;  // a Score call: no TTFT, no tokens
  results[0].prompt_tokens = 100;
  results[1] = results[0];
  report.metrics = ComputeMetrics(results, 0.2, report.config.slo);
  const json doc = ToJson(report);
  EXPECT_THAT(ValidateJson(LoadSchema(), doc), IsEmpty()) << doc.dump(2);
  EXPECT_FALSE(doc.contains("requests"));
  EXPECT_EQ(doc["ttft_ms"]["count"], 0);
  EXPECT_TRUE(doc["ttft_ms"]["mean"].is_null());  // NaN is written as null
  EXPECT_EQ(doc["good_requests"], 0);             // 200 ms > 100 ms
  EXPECT_EQ(doc["config"]["request_rate"], 2.5);
}

// The checker must be able to fail, or the tests above prove nothing.
TEST(SchemaCheckerTest, RejectsDocumentsTheSchemaForbids) {
  const json schema = LoadSchema();
  const json good = ToJson(SampleReport());
  ASSERT_THAT(ValidateJson(schema, good), IsEmpty());

  json missing = good;
  missing.erase("ttft_ms");
  EXPECT_THAT(ValidateJson(schema, missing),
              Contains(HasSubstr("missing required property \"ttft_ms\"")));

  json wrong_type = good;
  wrong_type["completed"] = "two";
  EXPECT_THAT(ValidateJson(schema, wrong_type),
              Contains(HasSubstr("/completed: type string")));

  json fraction = good;
  fraction["completed"] = 2.5;
  EXPECT_THAT(ValidateJson(schema, fraction), Not(IsEmpty()));

  json extra = good;
  extra["p95_ttft_ms"] = 1.0;
  EXPECT_THAT(ValidateJson(schema, extra),
              Contains(HasSubstr("/p95_ttft_ms: property not allowed")));

  json bad_enum = good;
  bad_enum["config"]["workload"] = "sharegpt";
  EXPECT_THAT(ValidateJson(schema, bad_enum),
              Contains(HasSubstr("/config/workload")));

  json bad_rate = good;
  bad_rate["config"]["request_rate"] = "fast";
  EXPECT_THAT(ValidateJson(schema, bad_rate),
              Contains(HasSubstr("matches no anyOf option")));
  bad_rate["config"]["request_rate"] = 0;
  EXPECT_THAT(ValidateJson(schema, bad_rate), Not(IsEmpty()));

  json bad_code = good;
  bad_code["failures_by_code"]["TEAPOT"] = 1;
  EXPECT_THAT(ValidateJson(schema, bad_code),
              Contains(HasSubstr("/failures_by_code/TEAPOT")));

  json negative = good;
  negative["e2e_latency_ms"]["std"] = -1.0;
  EXPECT_THAT(ValidateJson(schema, negative),
              Contains(HasSubstr("/e2e_latency_ms/std")));

  json bad_request = good;
  bad_request["requests"][0].erase("e2e_ms");
  EXPECT_THAT(ValidateJson(schema, bad_request),
              Contains(HasSubstr("/requests/0: missing required")));

  json version = good;
  version["schema_version"] = 2;
  EXPECT_THAT(ValidateJson(schema, version), Not(IsEmpty()));
}

TEST(SchemaCheckerTest, ReportsUnsupportedKeywords) {
  const json schema = json::parse(R"({"type": "string", "pattern": "^a"})");
  EXPECT_THAT(ValidateJson(schema, json("abc")),
              Contains(HasSubstr("unsupported schema keyword \"pattern\"")));
}

TEST(ReportTableTest, HasTheHeadlineNumbers) {
  const std::string table = FormatReportTable(SampleReport());
  EXPECT_THAT(table, HasSubstr("Successful requests:"));
  EXPECT_THAT(table, HasSubstr("Failed requests:"));
  EXPECT_THAT(table, HasSubstr("RESOURCE_EXHAUSTED:"));
  EXPECT_THAT(table, HasSubstr("Request throughput (req/s):"));
  EXPECT_THAT(table, HasSubstr("Output token throughput (tok/s):"));
  EXPECT_THAT(table, HasSubstr("Total token throughput (tok/s):"));
  EXPECT_THAT(table, HasSubstr("n/a (no --slo_* given)"));
  EXPECT_THAT(table, HasSubstr("TTFT"));
  EXPECT_THAT(table, HasSubstr("TPOT"));
  EXPECT_THAT(table, HasSubstr("ITL"));
  EXPECT_THAT(table, HasSubstr("E2E latency"));
  // TTFT mean of 100 ms and 4 output tokens per request.
  EXPECT_THAT(table, HasSubstr("100.00"));
}

}  // namespace
}  // namespace alibi::client::bench
