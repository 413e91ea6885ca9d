#include "server/metrics/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <exception>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"

namespace alibi::metrics {
namespace {

// Index of each family in Families(); the constructor registers them by it.
enum FamilyIndex : int {
  kTimeToFirstToken,
  kInterTokenLatency,
  kE2eLatency,
  kQueueTime,
  kStepDuration,
  kBatchTokens,
  kPromptTokens,
  kGenerationTokens,
  kRequests,
  kRequestFinished,
  kPreemptions,
  kPrefixCacheHits,
  kPrefixCacheQueries,
  kRequestsRunning,
  kRequestsWaiting,
  kRequestsWindowed,
  kWindowReleasedBlocks,
  kKvCacheUsage,
  kKvCacheBlocks,
  kDeviceMemoryUsed,
  kDeviceMemoryTotal,
  kModelInfo,
  kNumFamilies,
};

// Bucket upper bounds (the +Inf bucket is implicit). Latencies span a
// millisecond decode step to multi-minute requests; vLLM's bounds where they
// exist (TTFT exactly; the others extended below its smallest bound, since a
// small ALiBi model on an H100 decodes in a few milliseconds).
const std::vector<double>& TtftBuckets() {
  static const auto* b = new std::vector<double>{
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
      1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
  return *b;
}
const std::vector<double>& InterTokenBuckets() {
  static const auto* b = new std::vector<double>{
      0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075,
      0.1,   0.15,   0.2,   0.3,    0.4,  0.5,   0.75, 1.0,
      2.5,   5.0,    7.5,   10.0,   20.0, 40.0,  80.0};
  return *b;
}
const std::vector<double>& E2eBuckets() {
  static const auto* b = new std::vector<double>{
      0.01, 0.025, 0.05,  0.1,   0.2,   0.3,   0.5,    0.8,   1.0,
      1.5,  2.0,   2.5,   5.0,   10.0,  15.0,  20.0,   30.0,  40.0,
      50.0, 60.0,  120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return *b;
}
const std::vector<double>& QueueBuckets() {
  static const auto* b = new std::vector<double>{
      0.001, 0.0025, 0.005, 0.01,  0.025, 0.05,  0.1,   0.2,    0.3,   0.5,
      0.8,   1.0,    1.5,   2.0,   2.5,   5.0,   10.0,  15.0,   20.0,  30.0,
      40.0,  50.0,   60.0,  120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return *b;
}
const std::vector<double>& StepBuckets() {
  static const auto* b = new std::vector<double>{
      0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02,
      0.03,   0.04,  0.05,   0.075, 0.1,    0.15, 0.2,   0.3,
      0.5,    0.75,  1.0,    2.5,   5.0,    10.0};
  return *b;
}
// vLLM's iteration_tokens_total bounds: up to the largest token budgets.
const std::vector<double>& BatchTokenBuckets() {
  static const auto* b = new std::vector<double>{
      1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
  return *b;
}

constexpr int kNumCodes = 17;  // gRPC status codes 0..16
constexpr std::array<absl::string_view, kNumCodes> kCodeNames = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

int CodeIndex(absl::StatusCode code) {
  const int index = static_cast<int>(code);
  return index >= 0 && index < kNumCodes ? index : 2;  // UNKNOWN
}

// The label every family but alibi_model_info carries with the model name.
constexpr char kModelLabel[] = "model";

std::vector<FamilyInfo> BuildFamilies() {
  using T = MetricType;
  std::vector<FamilyInfo> f(kNumFamilies);
  auto set = [&f](int index, const char* name, T type, const char* help,
                  std::vector<std::string> labels) {
    if (index != kModelInfo) labels.emplace_back(kModelLabel);
    std::sort(labels.begin(), labels.end());
    f[index] = FamilyInfo{name, type, help, std::move(labels)};
  };
  set(kTimeToFirstToken, "alibi_time_to_first_token_seconds", T::kHistogram,
      "Time from a request's arrival to its first generated token, seconds.",
      {});
  set(kInterTokenLatency, "alibi_inter_token_latency_seconds", T::kHistogram,
      "Time between two consecutive generated tokens of a request, seconds.",
      {});
  set(kE2eLatency, "alibi_e2e_request_latency_seconds", T::kHistogram,
      "Time from a request's arrival to its last token, seconds.", {});
  set(kQueueTime, "alibi_request_queue_time_seconds", T::kHistogram,
      "Time a request waited before it was first scheduled, seconds.", {});
  set(kStepDuration, "alibi_step_duration_seconds", T::kHistogram,
      "Wall time of one engine step (schedule, forward, sample), seconds.", {});
  set(kBatchTokens, "alibi_batch_tokens", T::kHistogram,
      "Tokens computed in one engine step (prefill plus decode).", {});
  set(kPromptTokens, "alibi_prompt_tokens_total", T::kCounter,
      "Prompt (prefill) tokens computed.", {});
  set(kGenerationTokens, "alibi_generation_tokens_total", T::kCounter,
      "Tokens generated.", {});
  set(kRequests, "alibi_requests_total", T::kCounter,
      "Requests finished, by gRPC method or HTTP route (rpc) and canonical "
      "status code (code).",
      {"rpc", "code"});
  set(kRequestFinished, "alibi_request_finished_total", T::kCounter,
      "Generation requests finished, by finish reason.", {"finish_reason"});
  set(kPreemptions, "alibi_preemptions_total", T::kCounter,
      "Requests preempted (KV blocks freed, recomputed later).", {});
  set(kPrefixCacheHits, "alibi_prefix_cache_hits_total", T::kCounter,
      "Prompt tokens found in the prefix cache.", {});
  set(kPrefixCacheQueries, "alibi_prefix_cache_queries_total", T::kCounter,
      "Prompt tokens looked up in the prefix cache.", {});
  set(kRequestsRunning, "alibi_num_requests_running", T::kGauge,
      "Requests in the running batch.", {});
  set(kRequestsWaiting, "alibi_num_requests_waiting", T::kGauge,
      "Requests waiting to be scheduled.", {});
  set(kRequestsWindowed, "alibi_num_requests_windowed", T::kGauge,
      "Running requests with a sliding KV window.", {});
  set(kWindowReleasedBlocks, "alibi_kv_cache_window_released_blocks_total",
      T::kCounter,
      "KV blocks released because every position's sliding window had left "
      "them.",
      {});
  set(kKvCacheUsage, "alibi_kv_cache_usage_ratio", T::kGauge,
      "Fraction of KV blocks held by live requests (0 to 1).", {});
  set(kKvCacheBlocks, "alibi_kv_cache_blocks", T::kGauge,
      "KV blocks by state: used (live requests), cached (prefix reuse only, "
      "evictable), free.",
      {"state"});
  set(kDeviceMemoryUsed, "alibi_device_memory_used_bytes", T::kGauge,
      "Device memory in use, bytes.", {});
  set(kDeviceMemoryTotal, "alibi_device_memory_total_bytes", T::kGauge,
      "Device memory in total, bytes.", {});
  set(kModelInfo, "alibi_model_info", T::kGauge,
      "The served model and server build; always 1.",
      {"model", "architecture", "dtype", "device", "version"});
  return f;
}

// Counts each value into its bucket the way prometheus::Histogram::Observe
// does (the first bound >= value; +Inf last), for ObserveMultiple().
void ObserveBatch(prometheus::Histogram& histogram,
                  const std::vector<double>& bounds,
                  absl::Span<const double> values) {
  thread_local std::vector<double> increments;
  increments.assign(bounds.size() + 1, 0.0);
  double sum = 0.0;
  bool any = false;
  for (double value : values) {
    if (std::isnan(value)) continue;
    const auto bucket =
        std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin();
    increments[bucket] += 1.0;
    sum += value;
    any = true;
  }
  if (any) histogram.ObserveMultiple(increments, sum);
}

}  // namespace

class Metrics::Impl {
 public:
  explicit Impl(const MetricsOptions& options)
      : registry_(std::make_shared<prometheus::Registry>()),
        constant_labels_{{kModelLabel, options.model.model}} {
    ttft_ = &AddHistogram(kTimeToFirstToken, TtftBuckets());
    itl_ = &AddHistogram(kInterTokenLatency, InterTokenBuckets());
    e2e_ = &AddHistogram(kE2eLatency, E2eBuckets());
    queue_ = &AddHistogram(kQueueTime, QueueBuckets());
    step_ = &AddHistogram(kStepDuration, StepBuckets());
    batch_tokens_ = &AddHistogram(kBatchTokens, BatchTokenBuckets());

    prompt_tokens_ = &AddCounter(kPromptTokens);
    generation_tokens_ = &AddCounter(kGenerationTokens);
    preemptions_ = &AddCounter(kPreemptions);
    prefix_hits_ = &AddCounter(kPrefixCacheHits);
    prefix_queries_ = &AddCounter(kPrefixCacheQueries);
    requests_family_ = &CounterFamily(kRequests);
    finished_family_ = &CounterFamily(kRequestFinished);

    running_ = &AddGauge(kRequestsRunning);
    waiting_ = &AddGauge(kRequestsWaiting);
    windowed_ = &AddGauge(kRequestsWindowed);
    window_released_ = &AddCounter(kWindowReleasedBlocks);
    kv_usage_ = &AddGauge(kKvCacheUsage);
    auto& blocks = GaugeFamily(kKvCacheBlocks);
    kv_used_ = &blocks.Add({{"state", "used"}});
    kv_cached_ = &blocks.Add({{"state", "cached"}});
    kv_free_ = &blocks.Add({{"state", "free"}});
    memory_used_ = &AddGauge(kDeviceMemoryUsed);
    memory_total_ = &AddGauge(kDeviceMemoryTotal);

    const FamilyInfo& info = Families()[kModelInfo];
    const ModelLabels& m = options.model;
    prometheus::BuildGauge()
        .Name(info.name)
        .Help(info.help)
        .Register(*registry_)
        .Add({{"model", m.model},
              {"architecture", m.architecture},
              {"dtype", m.dtype},
              {"device", m.device},
              {"version", m.version}})
        .Set(1.0);

    for (const std::string& rpc : options.rpc_names) {
      RequestCounter(rpc, absl::StatusCode::kOk);
    }
    for (const std::string& reason : options.finish_reasons) {
      FinishedCounter(reason);
    }
  }

  std::string SerializeText() const {
    return prometheus::TextSerializer().Serialize(registry_->Collect());
  }

  prometheus::Counter& RequestCounter(absl::string_view rpc,
                                      absl::StatusCode code) {
    const int index = CodeIndex(code);
    {
      absl::ReaderMutexLock lock(&requests_mu_);
      auto it = requests_.find(rpc);
      if (it != requests_.end() && it->second[index] != nullptr) {
        return *it->second[index];
      }
    }
    absl::MutexLock lock(&requests_mu_);
    auto it = requests_.find(rpc);
    if (it == requests_.end()) {
      it = requests_.try_emplace(std::string(rpc)).first;
    }
    prometheus::Counter*& counter = it->second[index];
    if (counter == nullptr) {
      counter =
          &requests_family_->Add({{"rpc", std::string(rpc)},
                                  {"code", std::string(kCodeNames[index])}});
    }
    return *counter;
  }

  prometheus::Counter& FinishedCounter(absl::string_view reason) {
    {
      absl::ReaderMutexLock lock(&finished_mu_);
      auto it = finished_.find(reason);
      if (it != finished_.end()) return *it->second;
    }
    absl::MutexLock lock(&finished_mu_);
    auto it = finished_.find(reason);
    if (it == finished_.end()) {
      it = finished_
               .try_emplace(std::string(reason),
                            &finished_family_->Add(
                                {{"finish_reason", std::string(reason)}}))
               .first;
    }
    return *it->second;
  }

  // Family handles, resolved once; the pointees live as long as registry_.
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* queue_;
  prometheus::Histogram* step_;
  prometheus::Histogram* batch_tokens_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Counter* preemptions_;
  prometheus::Counter* prefix_hits_;
  prometheus::Counter* prefix_queries_;
  prometheus::Gauge* running_;
  prometheus::Gauge* waiting_;
  prometheus::Gauge* windowed_;
  prometheus::Counter* window_released_;
  prometheus::Gauge* kv_usage_;
  prometheus::Gauge* kv_used_;
  prometheus::Gauge* kv_cached_;
  prometheus::Gauge* kv_free_;
  prometheus::Gauge* memory_used_;
  prometheus::Gauge* memory_total_;

 private:
  // Registers family `index` of Families() from a prometheus::BuildCounter()
  // (Gauge, Histogram) builder, with the constant labels.
  template <typename Builder>
  auto& Register(Builder&& builder, int index) {
    const FamilyInfo& info = Families()[index];
    return builder.Name(info.name)
        .Help(info.help)
        .Labels(constant_labels_)
        .Register(*registry_);
  }
  prometheus::Histogram& AddHistogram(int index,
                                      const std::vector<double>& bounds) {
    return Register(prometheus::BuildHistogram(), index).Add({}, bounds);
  }
  prometheus::Family<prometheus::Counter>& CounterFamily(int index) {
    return Register(prometheus::BuildCounter(), index);
  }
  prometheus::Counter& AddCounter(int index) {
    return CounterFamily(index).Add({});
  }
  prometheus::Family<prometheus::Gauge>& GaugeFamily(int index) {
    return Register(prometheus::BuildGauge(), index);
  }
  prometheus::Gauge& AddGauge(int index) { return GaugeFamily(index).Add({}); }

  const std::shared_ptr<prometheus::Registry> registry_;
  const prometheus::Labels constant_labels_;
  prometheus::Family<prometheus::Counter>* requests_family_;
  prometheus::Family<prometheus::Counter>* finished_family_;

  absl::Mutex requests_mu_;
  absl::flat_hash_map<std::string, std::array<prometheus::Counter*, kNumCodes>>
      requests_ ABSL_GUARDED_BY(requests_mu_);
  absl::Mutex finished_mu_;
  absl::flat_hash_map<std::string, prometheus::Counter*> finished_
      ABSL_GUARDED_BY(finished_mu_);
};

namespace {

void Observe(prometheus::Histogram& histogram, double value) {
  if (!std::isnan(value)) histogram.Observe(value);
}

void Increment(prometheus::Counter& counter, int64_t n) {
  if (n > 0) counter.Increment(static_cast<double>(n));
}

}  // namespace

Metrics::Metrics(MetricsOptions options)
    : impl_(std::make_unique<Impl>(options)) {}

Metrics::~Metrics() = default;

const std::vector<FamilyInfo>& Metrics::Families() {
  static const auto* families = new std::vector<FamilyInfo>(BuildFamilies());
  return *families;
}

absl::string_view Metrics::CodeName(absl::StatusCode code) {
  return kCodeNames[CodeIndex(code)];
}

std::string Metrics::SerializeText() const { return impl_->SerializeText(); }

void Metrics::RecordRequest(absl::string_view rpc, absl::StatusCode code) {
  impl_->RequestCounter(rpc, code).Increment();
}

void Metrics::RecordFinished(absl::string_view finish_reason) {
  impl_->FinishedCounter(finish_reason).Increment();
}

void Metrics::ObserveTimeToFirstToken(double seconds) {
  Observe(*impl_->ttft_, seconds);
}

void Metrics::ObserveE2eLatency(double seconds) {
  Observe(*impl_->e2e_, seconds);
}

void Metrics::ObserveQueueTime(double seconds) {
  Observe(*impl_->queue_, seconds);
}

void Metrics::ObserveInterTokenLatency(double seconds) {
  Observe(*impl_->itl_, seconds);
}

void Metrics::ObserveInterTokenLatencies(absl::Span<const double> seconds) {
  if (seconds.empty()) return;
  ObserveBatch(*impl_->itl_, InterTokenBuckets(), seconds);
}

void Metrics::ObserveStep(double duration_seconds, int64_t num_tokens) {
  Observe(*impl_->step_, duration_seconds);
  if (num_tokens >= 0) {
    impl_->batch_tokens_->Observe(static_cast<double>(num_tokens));
  }
}

void Metrics::AddPromptTokens(int64_t n) {
  Increment(*impl_->prompt_tokens_, n);
}

void Metrics::AddGenerationTokens(int64_t n) {
  Increment(*impl_->generation_tokens_, n);
}

void Metrics::AddPreemptions(int64_t n) { Increment(*impl_->preemptions_, n); }

void Metrics::AddPrefixCache(int64_t queried_tokens, int64_t hit_tokens) {
  Increment(*impl_->prefix_queries_, queried_tokens);
  Increment(*impl_->prefix_hits_, hit_tokens);
}

void Metrics::SetRequests(int64_t running, int64_t waiting) {
  impl_->running_->Set(static_cast<double>(running));
  impl_->waiting_->Set(static_cast<double>(waiting));
}

void Metrics::SetWindowedRequests(int64_t running) {
  impl_->windowed_->Set(static_cast<double>(running));
}

void Metrics::AddWindowReleasedBlocks(int64_t n) {
  Increment(*impl_->window_released_, n);
}

void Metrics::SetKvCacheBlocks(int64_t used, int64_t cached, int64_t free) {
  impl_->kv_used_->Set(static_cast<double>(used));
  impl_->kv_cached_->Set(static_cast<double>(cached));
  impl_->kv_free_->Set(static_cast<double>(free));
  const int64_t total = used + cached + free;
  impl_->kv_usage_->Set(
      total > 0 ? static_cast<double>(used) / static_cast<double>(total) : 0.0);
}

void Metrics::SetDeviceMemory(int64_t used_bytes, int64_t total_bytes) {
  impl_->memory_used_->Set(static_cast<double>(used_bytes));
  impl_->memory_total_->Set(static_cast<double>(total_bytes));
}

}  // namespace alibi::metrics
