#include "server/metrics/metrics.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics_endpoint.h"
#include "tests/metrics/test_util.h"

namespace alibi::metrics {
namespace {

using ::alibi::metrics::test_util::Find;
using ::alibi::metrics::test_util::HttpGet;
using ::alibi::metrics::test_util::ListeningSocket;
using ::alibi::metrics::test_util::ParsedText;
using ::alibi::metrics::test_util::ParseText;
using ::alibi::metrics::test_util::Sample;
using ::testing::HasSubstr;

MetricsOptions TestOptions() {
  MetricsOptions options;
  options.model = {.model = "bloom-test",
                   .architecture = "bloom",
                   .dtype = "f32",
                   .device = "cpu",
                   .version = "0.1.0-test"};
  options.rpc_names = {"Complete", "CompleteStream"};
  return options;
}

ParsedText Parse(const Metrics& metrics) {
  absl::StatusOr<ParsedText> parsed = ParseText(metrics.SerializeText());
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : ParsedText{};
}

// The one sample `name{labels}`; fails the test unless there is exactly one.
double Value(const ParsedText& parsed, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  const std::vector<Sample> found = Find(parsed, name, labels);
  EXPECT_EQ(found.size(), 1u) << name;
  return found.size() == 1 ? found[0].value : NAN;
}

// Cumulative count of histogram `family` at bucket `le` (as printed).
double Bucket(const ParsedText& parsed, const std::string& family,
              const std::string& le) {
  return Value(parsed, family + "_bucket", {{"le", le}});
}

std::string TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "?";
}

// The specification (DESIGN.md section 6): exact names, types, label names.
struct Expected {
  std::string name;
  std::string type;
  std::set<std::string> labels;
};
const std::vector<Expected>& Spec() {
  static const auto* spec = new std::vector<Expected>{
      {"alibi_time_to_first_token_seconds", "histogram", {"model"}},
      {"alibi_inter_token_latency_seconds", "histogram", {"model"}},
      {"alibi_e2e_request_latency_seconds", "histogram", {"model"}},
      {"alibi_request_queue_time_seconds", "histogram", {"model"}},
      {"alibi_step_duration_seconds", "histogram", {"model"}},
      {"alibi_batch_tokens", "histogram", {"model"}},
      {"alibi_prompt_tokens_total", "counter", {"model"}},
      {"alibi_generation_tokens_total", "counter", {"model"}},
      {"alibi_requests_total", "counter", {"model", "rpc", "code"}},
      {"alibi_request_finished_total", "counter", {"model", "finish_reason"}},
      {"alibi_preemptions_total", "counter", {"model"}},
      {"alibi_prefix_cache_hits_total", "counter", {"model"}},
      {"alibi_prefix_cache_queries_total", "counter", {"model"}},
      {"alibi_num_requests_running", "gauge", {"model"}},
      {"alibi_num_requests_waiting", "gauge", {"model"}},
      {"alibi_num_requests_windowed", "gauge", {"model"}},
      {"alibi_kv_cache_window_released_blocks_total", "counter", {"model"}},
      {"alibi_kv_cache_usage_ratio", "gauge", {"model"}},
      {"alibi_kv_cache_blocks", "gauge", {"model", "state"}},
      {"alibi_device_memory_used_bytes", "gauge", {"model"}},
      {"alibi_device_memory_total_bytes", "gauge", {"model"}},
      {"alibi_model_info",
       "gauge",
       {"model", "architecture", "dtype", "device", "version"}},
  };
  return *spec;
}

TEST(MetricsTest, FamiliesMatchTheSpecification) {
  const std::vector<FamilyInfo>& families = Metrics::Families();
  ASSERT_EQ(families.size(), Spec().size());
  for (size_t i = 0; i < families.size(); ++i) {
    SCOPED_TRACE(Spec()[i].name);
    EXPECT_EQ(families[i].name, Spec()[i].name);
    EXPECT_EQ(TypeName(families[i].type), Spec()[i].type);
    EXPECT_EQ(std::set<std::string>(families[i].label_names.begin(),
                                    families[i].label_names.end()),
              Spec()[i].labels);
    EXPECT_FALSE(families[i].help.empty());
  }
}

// Every family is in the text right after construction, with exactly the
// advertised name, type and label names on every sample: nothing appended.
TEST(MetricsTest, EveryFamilyIsExposedExactlyAsAdvertised) {
  Metrics metrics(TestOptions());
  const ParsedText parsed = Parse(metrics);

  std::map<std::string, const FamilyInfo*> by_name;
  for (const FamilyInfo& info : Metrics::Families()) {
    by_name[info.name] = &info;
  }
  std::map<std::string, std::string> expected_types;
  for (const FamilyInfo& info : Metrics::Families()) {
    expected_types[info.name] = TypeName(info.type);
  }
  EXPECT_EQ(parsed.types, expected_types);

  std::set<std::string> seen;
  for (const Sample& sample : parsed.samples) {
    std::string family = sample.name;
    std::set<std::string> labels;
    for (const auto& [key, value] : sample.labels) labels.insert(key);
    if (!by_name.count(family)) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (absl::EndsWith(family, suffix)) {
          family.resize(family.size() - std::strlen(suffix));
          break;
        }
      }
      ASSERT_TRUE(by_name.count(family)) << sample.name;
      ASSERT_EQ(by_name[family]->type, MetricType::kHistogram) << sample.name;
      if (absl::EndsWith(sample.name, "_bucket")) {
        EXPECT_EQ(labels.erase("le"), 1u) << sample.name;
      }
    }
    const std::vector<std::string>& want = by_name[family]->label_names;
    EXPECT_EQ(labels, std::set<std::string>(want.begin(), want.end()))
        << sample.name;
    if (family != "alibi_model_info") {
      EXPECT_EQ(sample.labels.at("model"), "bloom-test") << sample.name;
    }
    seen.insert(family);
  }
  EXPECT_EQ(seen.size(), Metrics::Families().size());
}

TEST(MetricsTest, InitialSeriesStartAtZero) {
  Metrics metrics(TestOptions());
  const ParsedText parsed = Parse(metrics);
  EXPECT_EQ(Value(parsed, "alibi_requests_total",
                  {{"rpc", "Complete"}, {"code", "OK"}}),
            0);
  EXPECT_EQ(Value(parsed, "alibi_requests_total",
                  {{"rpc", "CompleteStream"}, {"code", "OK"}}),
            0);
  EXPECT_EQ(Find(parsed, "alibi_requests_total").size(), 2u);
  for (const char* reason : {"stop", "length", "abort"}) {
    EXPECT_EQ(Value(parsed, "alibi_request_finished_total",
                    {{"finish_reason", reason}}),
              0);
  }
  EXPECT_EQ(Value(parsed, "alibi_time_to_first_token_seconds_count"), 0);
  EXPECT_EQ(Value(parsed, "alibi_kv_cache_usage_ratio"), 0);
  EXPECT_EQ(Value(parsed, "alibi_model_info",
                  {{"model", "bloom-test"},
                   {"architecture", "bloom"},
                   {"dtype", "f32"},
                   {"device", "cpu"},
                   {"version", "0.1.0-test"}}),
            1);
}

TEST(MetricsTest, CountersCountExactly) {
  Metrics metrics(TestOptions());
  metrics.AddPromptTokens(1000);
  metrics.AddPromptTokens(234);
  metrics.AddGenerationTokens(77);
  metrics.AddPreemptions(2);
  metrics.AddPreemptions(1);
  metrics.AddPrefixCache(/*queried_tokens=*/64, /*hit_tokens=*/48);
  metrics.AddPrefixCache(16, 0);
  // Ignored: counters only go up.
  metrics.AddPromptTokens(-5);
  metrics.AddGenerationTokens(0);
  metrics.AddPreemptions(-1);

  const ParsedText parsed = Parse(metrics);
  EXPECT_EQ(Value(parsed, "alibi_prompt_tokens_total"), 1234);
  EXPECT_EQ(Value(parsed, "alibi_generation_tokens_total"), 77);
  EXPECT_EQ(Value(parsed, "alibi_preemptions_total"), 3);
  EXPECT_EQ(Value(parsed, "alibi_prefix_cache_queries_total"), 80);
  EXPECT_EQ(Value(parsed, "alibi_prefix_cache_hits_total"), 48);
}

TEST(MetricsTest, RequestsByRpcAndCode) {
  Metrics metrics(TestOptions());
  for (int i = 0; i < 3; ++i) {
    metrics.RecordRequest("Complete", absl::StatusCode::kOk);
  }
  metrics.RecordRequest("Complete", absl::StatusCode::kInvalidArgument);
  metrics.RecordRequest("Complete", absl::StatusCode::kInvalidArgument);
  metrics.RecordRequest("Score", absl::StatusCode::kCancelled);
  metrics.RecordRequest("Score", absl::StatusCode::kResourceExhausted);
  metrics.RecordRequest("Score", static_cast<absl::StatusCode>(99));
  metrics.RecordFinished("stop");
  metrics.RecordFinished("stop");
  metrics.RecordFinished("length");
  metrics.RecordFinished("cancelled");

  const ParsedText parsed = Parse(metrics);
  const std::string family = "alibi_requests_total";
  EXPECT_EQ(Value(parsed, family, {{"rpc", "Complete"}, {"code", "OK"}}), 3);
  EXPECT_EQ(Value(parsed, family,
                  {{"rpc", "Complete"}, {"code", "INVALID_ARGUMENT"}}),
            2);
  EXPECT_EQ(Value(parsed, family, {{"rpc", "Score"}, {"code", "CANCELLED"}}),
            1);
  EXPECT_EQ(
      Value(parsed, family, {{"rpc", "Score"}, {"code", "RESOURCE_EXHAUSTED"}}),
      1);
  EXPECT_EQ(Value(parsed, family, {{"rpc", "Score"}, {"code", "UNKNOWN"}}), 1);
  EXPECT_EQ(Value(parsed, family, {{"rpc", "CompleteStream"}, {"code", "OK"}}),
            0);
  EXPECT_EQ(Find(parsed, family).size(), 6u);

  const std::string finished = "alibi_request_finished_total";
  EXPECT_EQ(Value(parsed, finished, {{"finish_reason", "stop"}}), 2);
  EXPECT_EQ(Value(parsed, finished, {{"finish_reason", "length"}}), 1);
  EXPECT_EQ(Value(parsed, finished, {{"finish_reason", "abort"}}), 0);
  EXPECT_EQ(Value(parsed, finished, {{"finish_reason", "cancelled"}}), 1);
}

TEST(MetricsTest, CodeNamesAreGrpcNames) {
  // absl and gRPC share the numbering and the canonical spelling.
  for (int code = 0; code <= 16; ++code) {
    const auto status_code = static_cast<absl::StatusCode>(code);
    EXPECT_EQ(std::string(Metrics::CodeName(status_code)),
              absl::StatusCodeToString(status_code));
  }
  EXPECT_EQ(Metrics::CodeName(absl::StatusCode::kResourceExhausted),
            "RESOURCE_EXHAUSTED");
  EXPECT_EQ(Metrics::CodeName(static_cast<absl::StatusCode>(17)), "UNKNOWN");
  EXPECT_EQ(Metrics::CodeName(static_cast<absl::StatusCode>(-1)), "UNKNOWN");
}

TEST(MetricsTest, HistogramsCountExactly) {
  Metrics metrics(TestOptions());
  // Values exactly on a bound count in that bucket (le = "less or equal").
  metrics.ObserveTimeToFirstToken(0.01);
  metrics.ObserveTimeToFirstToken(0.25);
  metrics.ObserveTimeToFirstToken(0.5);
  metrics.ObserveTimeToFirstToken(5000);  // beyond the last bound
  metrics.ObserveTimeToFirstToken(NAN);   // dropped
  metrics.ObserveE2eLatency(1.5);
  metrics.ObserveQueueTime(0.0005);
  metrics.ObserveQueueTime(0.125);
  metrics.ObserveInterTokenLatency(0.003);
  metrics.ObserveStep(0.0125, 256);
  metrics.ObserveStep(0.25, 2048);

  const ParsedText parsed = Parse(metrics);
  const std::string ttft = "alibi_time_to_first_token_seconds";
  EXPECT_EQ(Value(parsed, ttft + "_count"), 4);
  EXPECT_EQ(Value(parsed, ttft + "_sum"), 0.01 + 0.25 + 0.5 + 5000);
  EXPECT_EQ(Bucket(parsed, ttft, "0.005"), 0);
  EXPECT_EQ(Bucket(parsed, ttft, "0.01"), 1);
  EXPECT_EQ(Bucket(parsed, ttft, "0.1"), 1);
  EXPECT_EQ(Bucket(parsed, ttft, "0.25"), 2);
  EXPECT_EQ(Bucket(parsed, ttft, "0.5"), 3);
  EXPECT_EQ(Bucket(parsed, ttft, "2560"), 3);
  EXPECT_EQ(Bucket(parsed, ttft, "+Inf"), 4);

  const std::string e2e = "alibi_e2e_request_latency_seconds";
  EXPECT_EQ(Value(parsed, e2e + "_count"), 1);
  EXPECT_EQ(Bucket(parsed, e2e, "1"), 0);
  EXPECT_EQ(Bucket(parsed, e2e, "1.5"), 1);

  const std::string queue = "alibi_request_queue_time_seconds";
  EXPECT_EQ(Value(parsed, queue + "_count"), 2);
  EXPECT_EQ(Value(parsed, queue + "_sum"), 0.1255);
  EXPECT_EQ(Bucket(parsed, queue, "0.001"), 1);
  EXPECT_EQ(Bucket(parsed, queue, "0.1"), 1);
  EXPECT_EQ(Bucket(parsed, queue, "0.2"), 2);

  const std::string itl = "alibi_inter_token_latency_seconds";
  EXPECT_EQ(Value(parsed, itl + "_count"), 1);
  EXPECT_EQ(Bucket(parsed, itl, "0.0025"), 0);
  EXPECT_EQ(Bucket(parsed, itl, "0.005"), 1);

  const std::string step = "alibi_step_duration_seconds";
  EXPECT_EQ(Value(parsed, step + "_count"), 2);
  EXPECT_EQ(Value(parsed, step + "_sum"), 0.2625);
  EXPECT_EQ(Bucket(parsed, step, "0.01"), 0);
  EXPECT_EQ(Bucket(parsed, step, "0.015"), 1);
  EXPECT_EQ(Bucket(parsed, step, "0.3"), 2);

  const std::string tokens = "alibi_batch_tokens";
  EXPECT_EQ(Value(parsed, tokens + "_count"), 2);
  EXPECT_EQ(Value(parsed, tokens + "_sum"), 2304);
  EXPECT_EQ(Bucket(parsed, tokens, "128"), 0);
  EXPECT_EQ(Bucket(parsed, tokens, "256"), 1);
  EXPECT_EQ(Bucket(parsed, tokens, "1024"), 1);
  EXPECT_EQ(Bucket(parsed, tokens, "2048"), 2);
  EXPECT_EQ(Bucket(parsed, tokens, "16384"), 2);
}

// Histogram buckets are ascending and reach from milliseconds to minutes
// (tokens: from 1 to a few thousand per step).
TEST(MetricsTest, BucketRangesFitLlmServing) {
  Metrics metrics(TestOptions());
  const ParsedText parsed = Parse(metrics);
  for (const FamilyInfo& info : Metrics::Families()) {
    if (info.type != MetricType::kHistogram) continue;
    SCOPED_TRACE(info.name);
    std::vector<double> bounds;
    for (const Sample& s : Find(parsed, info.name + "_bucket")) {
      bounds.push_back(std::strtod(s.labels.at("le").c_str(), nullptr));
    }
    ASSERT_GE(bounds.size(), 10u);
    EXPECT_TRUE(std::isinf(bounds.back()));
    bounds.pop_back();
    EXPECT_TRUE(std::is_sorted(bounds.begin(), bounds.end()));
    if (absl::EndsWith(info.name, "_seconds")) {
      EXPECT_LE(bounds.front(), 0.01);
      EXPECT_GE(bounds.back(), 10.0);
      if (info.name != "alibi_step_duration_seconds") {
        EXPECT_GE(bounds.back(), 60.0);  // minutes-long requests still fit
      }
    } else {  // tokens per step
      EXPECT_EQ(bounds.front(), 1);
      EXPECT_GE(bounds.back(), 4096);
    }
  }
}

TEST(MetricsTest, BatchedInterTokenLatenciesEqualSingleObservations) {
  const std::vector<double> values = {0.0001, 0.001, 0.0025, 0.004, 0.01,
                                      0.0125, 0.5,   80.0,   1e6,   NAN,
                                      0.03,   0.03,  0.002,  0.0};
  Metrics single(TestOptions());
  Metrics batched(TestOptions());
  for (double v : values) single.ObserveInterTokenLatency(v);
  batched.ObserveInterTokenLatencies(values);
  batched.ObserveInterTokenLatencies({});

  auto itl_lines = [](const Metrics& m) {
    std::vector<Sample> lines;
    const ParsedText parsed = Parse(m);
    for (const Sample& s : parsed.samples) {
      if (absl::StartsWith(s.name, "alibi_inter_token_latency_seconds")) {
        lines.push_back(s);
      }
    }
    return lines;
  };
  const std::vector<Sample> a = itl_lines(single);
  const std::vector<Sample> b = itl_lines(batched);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].labels, b[i].labels);
    EXPECT_DOUBLE_EQ(a[i].value, b[i].value) << a[i].name;
  }
  const ParsedText parsed = Parse(batched);
  EXPECT_EQ(Value(parsed, "alibi_inter_token_latency_seconds_count"), 13);
  EXPECT_EQ(Bucket(parsed, "alibi_inter_token_latency_seconds", "0.001"), 3);
}

TEST(MetricsTest, GaugesHoldTheLastValue) {
  Metrics metrics(TestOptions());
  metrics.SetRequests(/*running=*/12, /*waiting=*/5);
  metrics.SetKvCacheBlocks(/*used=*/300, /*cached=*/100, /*free=*/600);
  metrics.SetDeviceMemory(/*used_bytes=*/int64_t{60} << 30,
                          /*total_bytes=*/int64_t{80} << 30);
  ParsedText parsed = Parse(metrics);
  EXPECT_EQ(Value(parsed, "alibi_num_requests_running"), 12);
  EXPECT_EQ(Value(parsed, "alibi_num_requests_waiting"), 5);
  EXPECT_EQ(Value(parsed, "alibi_kv_cache_blocks", {{"state", "used"}}), 300);
  EXPECT_EQ(Value(parsed, "alibi_kv_cache_blocks", {{"state", "cached"}}), 100);
  EXPECT_EQ(Value(parsed, "alibi_kv_cache_blocks", {{"state", "free"}}), 600);
  EXPECT_DOUBLE_EQ(Value(parsed, "alibi_kv_cache_usage_ratio"), 0.3);
  EXPECT_EQ(Value(parsed, "alibi_device_memory_used_bytes"), 64424509440.0);
  EXPECT_EQ(Value(parsed, "alibi_device_memory_total_bytes"), 85899345920.0);

  // Idle: blocks kept for prefix reuse do not count as usage.
  metrics.SetRequests(0, 0);
  metrics.SetKvCacheBlocks(0, 400, 600);
  parsed = Parse(metrics);
  EXPECT_EQ(Value(parsed, "alibi_num_requests_running"), 0);
  EXPECT_EQ(Value(parsed, "alibi_kv_cache_usage_ratio"), 0);
  EXPECT_EQ(Value(parsed, "alibi_kv_cache_blocks", {{"state", "cached"}}), 400);

  metrics.SetKvCacheBlocks(0, 0, 0);  // no pool (yet): 0, not NaN
  parsed = Parse(metrics);
  EXPECT_EQ(Value(parsed, "alibi_kv_cache_usage_ratio"), 0);
}

// Many threads record at once (new label values racing to be created) while
// another scrapes; every increment is counted.
TEST(MetricsTest, ConcurrentRecordingCountsEverything) {
  Metrics metrics(TestOptions());
  constexpr int kThreads = 8;
  constexpr int kIterations = 2000;
  const std::vector<std::string> rpcs = {"Complete", "Score", "Tokenize",
                                         "GetModelInfo"};
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) {
      EXPECT_TRUE(ParseText(metrics.SerializeText()).ok());
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::vector<double> itl(16, 0.02);
      for (int i = 0; i < kIterations; ++i) {
        metrics.RecordRequest(rpcs[(t + i) % rpcs.size()],
                              static_cast<absl::StatusCode>(i % 3));
        metrics.RecordFinished(i % 2 == 0 ? "stop" : "eos");
        metrics.AddPromptTokens(3);
        metrics.AddGenerationTokens(1);
        metrics.AddPrefixCache(2, 1);
        metrics.ObserveTimeToFirstToken(0.05);
        metrics.ObserveInterTokenLatencies(itl);
        metrics.ObserveStep(0.01, 16);
        metrics.SetRequests(t, i);
        metrics.SetKvCacheBlocks(i, t, 100);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  done.store(true);
  scraper.join();

  const ParsedText parsed = Parse(metrics);
  constexpr double kTotal = kThreads * kIterations;
  double requests = 0;
  for (const Sample& s : Find(parsed, "alibi_requests_total")) {
    requests += s.value;
  }
  EXPECT_EQ(requests, kTotal);
  // 4 rpcs x codes {OK, CANCELLED, UNKNOWN}, plus CompleteStream{OK}.
  EXPECT_EQ(Find(parsed, "alibi_requests_total").size(), 13u);
  EXPECT_EQ(
      Value(parsed, "alibi_request_finished_total", {{"finish_reason", "eos"}}),
      kTotal / 2);
  EXPECT_EQ(Value(parsed, "alibi_prompt_tokens_total"), 3 * kTotal);
  EXPECT_EQ(Value(parsed, "alibi_generation_tokens_total"), kTotal);
  EXPECT_EQ(Value(parsed, "alibi_prefix_cache_queries_total"), 2 * kTotal);
  EXPECT_EQ(Value(parsed, "alibi_prefix_cache_hits_total"), kTotal);
  EXPECT_EQ(Value(parsed, "alibi_time_to_first_token_seconds_count"), kTotal);
  EXPECT_EQ(Value(parsed, "alibi_inter_token_latency_seconds_count"),
            16 * kTotal);
  EXPECT_EQ(Bucket(parsed, "alibi_inter_token_latency_seconds", "0.025"),
            16 * kTotal);
  EXPECT_EQ(Value(parsed, "alibi_step_duration_seconds_count"), kTotal);
  EXPECT_EQ(Value(parsed, "alibi_batch_tokens_sum"), 16 * kTotal);
}

http_server::HttpServerOptions EndpointOptions(int port = 0) {
  http_server::HttpServerOptions options;
  options.host = "127.0.0.1";
  options.port = port;
  return options;
}

TEST(MetricsEndpointTest, ServesMetricsOverHttp) {
  Metrics metrics(TestOptions());
  auto endpoint = MetricsEndpoint::Start(&metrics, EndpointOptions());
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const int port = (*endpoint)->port();
  ASSERT_GT(port, 0);
  metrics.AddPromptTokens(4321);
  metrics.RecordRequest("Score", absl::StatusCode::kInvalidArgument);

  absl::StatusOr<test_util::HttpResponse> response = HttpGet(port, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  absl::StatusOr<ParsedText> parsed = ParseText(response->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(Value(*parsed, "alibi_prompt_tokens_total"), 4321);
  EXPECT_EQ(Value(*parsed, "alibi_requests_total",
                  {{"rpc", "Score"}, {"code", "INVALID_ARGUMENT"}}),
            1);
  // Exactly our families.
  size_t alibi_families = 0;
  for (const auto& [name, type] : parsed->types) {
    EXPECT_TRUE(absl::StartsWith(name, "alibi_")) << name;
    alibi_families += absl::StartsWith(name, "alibi_");
  }
  EXPECT_EQ(alibi_families, Metrics::Families().size());

  absl::StatusOr<test_util::HttpResponse> missing = HttpGet(port, "/nothing");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->status, 404);
}

TEST(MetricsEndpointTest, PortInUseIsAnErrorNotACrash) {
  ListeningSocket taken;
  ASSERT_GT(taken.port(), 0);
  Metrics metrics(TestOptions());
  auto endpoint =
      MetricsEndpoint::Start(&metrics, EndpointOptions(taken.port()));
  EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kUnavailable)
      << endpoint.status();
  EXPECT_THAT(std::string(endpoint.status().message()),
              HasSubstr(absl::StrCat("127.0.0.1:", taken.port())));

  // The object still works, and can serve elsewhere.
  metrics.AddGenerationTokens(5);
  EXPECT_THAT(
      metrics.SerializeText(),
      HasSubstr("alibi_generation_tokens_total{model=\"bloom-test\"} 5"));
  auto elsewhere = MetricsEndpoint::Start(&metrics, EndpointOptions());
  ASSERT_TRUE(elsewhere.ok()) << elsewhere.status();
  EXPECT_GT((*elsewhere)->port(), 0);
  EXPECT_NE((*elsewhere)->port(), taken.port());
}

TEST(MetricsEndpointTest, RejectsBadArguments) {
  Metrics metrics(TestOptions());
  for (const auto& [host, port] :
       std::vector<std::pair<std::string, int>>{{"127.0.0.1", -1},
                                                {"127.0.0.1", 65536},
                                                {"", 0},
                                                {"127.0.0.1:1,127.0.0.1", 0}}) {
    http_server::HttpServerOptions options = EndpointOptions(port);
    options.host = host;
    EXPECT_EQ(MetricsEndpoint::Start(&metrics, options).status().code(),
              absl::StatusCode::kInvalidArgument)
        << host << " " << port;
  }
}

TEST(MetricsEndpointTest, StopsServingWhenDestroyed) {
  Metrics metrics(TestOptions());
  int port = 0;
  {
    auto endpoint = MetricsEndpoint::Start(&metrics, EndpointOptions());
    ASSERT_TRUE(endpoint.ok()) << endpoint.status();
    port = (*endpoint)->port();
    ASSERT_TRUE(HttpGet(port, "/metrics").ok());
  }
  const absl::StatusOr<test_util::HttpResponse> after =
      HttpGet(port, "/metrics");
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace alibi::metrics
