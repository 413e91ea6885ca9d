#include "server/engine/engine_core.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/engine/model_runner.h"
#include "server/engine/sampler.h"
#include "server/model/config.h"

namespace alibi::engine {
namespace {

// How often device memory is sampled for the metrics.
constexpr auto kMemoryUpdatePeriod = std::chrono::seconds(1);
// How long the idle engine thread sleeps before refreshing its heartbeat.
constexpr auto kIdleWait = std::chrono::milliseconds(100);
// The attention budget never drops below this (query-key pairs per step).
constexpr int64_t kMinAttentionBudget = int64_t{1} << 16;

// The token ids and biases of `s` (logit_bias, allowed_token_ids,
// bad_words) are usable by the sampler.
absl::Status CheckSamplingTokens(const SamplingParams& s, int vocab_size) {
  auto outside = [vocab_size](int32_t t) { return t < 0 || t >= vocab_size; };
  for (const auto& [token, bias] : s.logit_bias) {
    if (outside(token) || !std::isfinite(bias)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "logit_bias: token ", token, " or its bias ", bias, " is invalid"));
    }
  }
  for (int32_t t : s.allowed_token_ids) {
    if (outside(t)) {
      return absl::InvalidArgumentError(
          absl::StrCat("allowed_token_ids: ", t, " is outside the vocabulary"));
    }
  }
  for (const std::vector<int32_t>& word : s.bad_words) {
    if (word.empty() || std::any_of(word.begin(), word.end(), outside)) {
      return absl::InvalidArgumentError(
          "bad_words: an empty word or a token outside the vocabulary");
    }
  }
  return absl::OkStatus();
}

class EngineCore final : public Engine {
 public:
  EngineCore(const EngineConfig& config, EngineInfo info,
             std::unique_ptr<ModelRunner> runner,
             std::unique_ptr<Scheduler> scheduler, metrics::Metrics* metrics);
  ~EngineCore() override {
    Shutdown(absl::UnavailableError("the engine is shutting down"));
  }

  void Start() {
    runner_->SetProgressCallback([this] {
      heartbeat_ns_.store(Now().time_since_epoch().count(),
                          std::memory_order_relaxed);
    });
    thread_ = std::thread([this] {
      MarkEngineThread();
      Loop();
    });
  }

  absl::Status Submit(EngineRequest request,
                      std::shared_ptr<OutputStream> stream) override;
  absl::Status SubmitGroup(
      EngineRequest request,
      std::vector<std::shared_ptr<OutputStream>> streams) override;
  void Cancel(uint64_t id, absl::Status reason) override;
  void Stop(uint64_t id) override;
  void Shutdown(absl::Status reason) override;
  EngineSnapshot GetSnapshot() const override;
  const EngineInfo& info() const override { return info_; }

 private:
  // A live request, owned by the engine thread.
  struct Active {
    Active(uint64_t id_in, EngineRequest request_in,
           std::shared_ptr<OutputStream> stream_in, TimePoint arrival)
        : id(id_in),
          request(std::move(request_in)),
          stream(std::move(stream_in)),
          sampler(request.sampling, request.prompt) {
      timings.arrival = arrival;
    }
    const uint64_t id;
    const EngineRequest request;
    const std::shared_ptr<OutputStream> stream;
    SamplerState sampler;
    RequestTimings timings;
    EngineOutput delta;  // what this step adds
    int num_output_tokens = 0;
    int num_cached_tokens = 0;
    bool admitted = false;     // scheduled at least once
    bool prompt_done = false;  // prompt computed once (metrics)
  };
  struct Pending {
    uint64_t id;
    EngineRequest request;
    std::shared_ptr<OutputStream> stream;
    TimePoint arrival;
    uint64_t share_prompt_with = 0;  // an earlier request of its group
  };
  // An early end asked for from outside: Cancel (status) or Stop.
  struct EarlyEnd {
    uint64_t id;
    FinishReason reason;
    absl::Status status;
  };

  absl::Status CheckRequest(const EngineRequest& request) const;
  void Loop();
  // Moves the inbox into the scheduler; false when the engine is stopping.
  bool DrainInbox(bool block);
  void Admit(Pending pending);
  void Step();
  void ProcessOutputs(TimePoint now);
  // Engine stop checks for a sampled token; true when it ends the request.
  bool AppendToken(Active& a, int32_t token, TimePoint now);
  void Finalize(uint64_t id, FinishReason reason, absl::Status status,
                TimePoint now);
  void FailStep(const absl::Status& status);
  void RecordStepMetrics(TimePoint start, TimePoint end);
  // Moves the attention budget toward what fits the target step time.
  void AdaptAttentionBudget(double step_seconds);
  // Outputs are published after the step's metrics are recorded, so a client
  // that has its answer also sees it counted.
  void Send(Active& a);
  void FlushOutbox();
  void UpdateSnapshot(TimePoint now);
  bool IsEos(int32_t token) const;

  const EngineConfig config_;
  const EngineInfo info_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<Scheduler> scheduler_;
  metrics::Metrics* const metrics_;
  std::vector<int32_t> eos_tokens_;

  // Inbox (any thread -> engine thread).
  mutable std::mutex inbox_mu_;
  std::condition_variable inbox_cv_;
  std::vector<Pending> inbox_;
  std::vector<EarlyEnd> early_ends_;
  bool stopping_ = false;
  absl::Status stop_reason_;
  std::atomic<bool> accepting_{true};
  std::atomic<uint64_t> next_id_{1};
  // Requests submitted but not yet admitted by the scheduler.
  std::atomic<int> queued_{0};

  // Engine-thread state.
  absl::flat_hash_map<uint64_t, std::unique_ptr<Active>> active_;
  StepPlan plan_;
  std::vector<RunnerRequest> runner_requests_;
  std::vector<int32_t> sampled_;
  std::vector<double> step_itls_;
  std::vector<std::pair<std::shared_ptr<OutputStream>, EngineOutput>> outbox_;
  uint64_t num_steps_ = 0;
  uint64_t prefix_queries_seen_ = 0;
  uint64_t prefix_hits_seen_ = 0;
  uint64_t window_released_seen_ = 0;
  TimePoint last_memory_update_;

  mutable std::mutex snapshot_mu_;
  EngineSnapshot snapshot_;
  // Last layer issued inside a step (TimePoint ticks): progress within a
  // long step.
  std::atomic<int64_t> heartbeat_ns_{0};

  std::thread thread_;
  std::once_flag shutdown_once_;
};

EngineCore::EngineCore(const EngineConfig& config, EngineInfo info,
                       std::unique_ptr<ModelRunner> runner,
                       std::unique_ptr<Scheduler> scheduler,
                       metrics::Metrics* metrics)
    : config_(config),
      info_(std::move(info)),
      runner_(std::move(runner)),
      scheduler_(std::move(scheduler)),
      metrics_(metrics) {
  for (int eos : runner_->model().config().eos_token_ids) {
    if (eos >= 0) eos_tokens_.push_back(eos);
  }
  snapshot_.last_progress = Now();
  snapshot_.kv_blocks_free = config_.scheduler.kv.num_blocks;
}

bool EngineCore::IsEos(int32_t token) const {
  return std::find(eos_tokens_.begin(), eos_tokens_.end(), token) !=
         eos_tokens_.end();
}

// What must hold for the engine to run a request at all. The frontend
// validates every field with its own messages first; this protects the
// engine from callers that did not.
absl::Status EngineCore::CheckRequest(const EngineRequest& r) const {
  const int n = static_cast<int>(r.prompt.size());
  if (n == 0) return absl::InvalidArgumentError("prompt: empty");
  for (int i = 0; i < n; ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= info_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt[", i, "]: token id ", r.prompt[i],
                       " outside the vocabulary [0, ", info_.vocab_size, ")"));
    }
  }
  if (r.kv_window < 0 || r.kv_window > info_.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat("kv_window: must be in [0, ",
                                                   info_.max_model_len,
                                                   "], got ", r.kv_window));
  }
  // A windowed request holds O(kv_window) blocks whatever its length.
  const int64_t limit =
      r.kv_window > 0 ? int64_t{INT32_MAX} : int64_t{info_.max_model_len};
  const int64_t total = int64_t{n} + (r.generate ? r.max_tokens : 0);
  if ((r.generate && r.max_tokens < 1) || total > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens: the prompt (", n, " tokens) + max_tokens (",
                     r.generate ? r.max_tokens : 0, ") must be in [", n + 1,
                     ", ", limit, "]"));
  }
  RETURN_IF_ERROR(CheckSamplingTokens(r.sampling, info_.vocab_size));
  const int top = std::max(r.logprobs.value_or(0), r.prompt_top_logprobs);
  if (r.logprobs.value_or(0) < 0 || r.prompt_top_logprobs < 0 ||
      top > config_.max_logprobs) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs: must be in [0, ", config_.max_logprobs, "]"));
  }
  return absl::OkStatus();
}

absl::Status EngineCore::Submit(EngineRequest request,
                                std::shared_ptr<OutputStream> stream) {
  std::vector<std::shared_ptr<OutputStream>> streams;
  streams.push_back(std::move(stream));
  return SubmitGroup(std::move(request), std::move(streams));
}

absl::Status EngineCore::SubmitGroup(
    EngineRequest request, std::vector<std::shared_ptr<OutputStream>> streams) {
  const int n = static_cast<int>(streams.size());
  if (n == 0)
    return absl::InvalidArgumentError("Submit needs an output stream");
  for (const auto& stream : streams) {
    if (stream == nullptr) {
      return absl::InvalidArgumentError("Submit needs an output stream");
    }
  }
  if (n > 1 && !request.generate) {
    return absl::InvalidArgumentError("n: a scoring request has one result");
  }
  if (!accepting_.load()) {
    return absl::UnavailableError("the server is shutting down");
  }
  RETURN_IF_ERROR(CheckRequest(request));
  const int queue_bound = config_.scheduler.max_queued_requests;
  if (n > queue_bound) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n: ", n, " completions exceed the request queue (", queue_bound, ")"));
  }
  if (queued_.fetch_add(n) + n > queue_bound) {
    queued_.fetch_sub(n);
    return absl::ResourceExhaustedError(
        absl::StrCat("the request queue is full (", queue_bound,
                     " requests waiting); retry later"));
  }
  const uint64_t first_id = next_id_.fetch_add(static_cast<uint64_t>(n));
  std::vector<Pending> pending;
  pending.reserve(n);
  const TimePoint now = Now();
  for (int i = 0; i < n; ++i) {
    EngineRequest r = i + 1 < n ? request : std::move(request);
    if (i > 0) {
      if (r.sampling.seed.has_value()) {
        r.sampling.seed = GroupSeed(*r.sampling.seed, i);
      }
      // The prompt's log-probabilities are the same for every completion:
      // the first computes them, the others share its blocks.
      r.prompt_logprobs = false;
      r.prompt_top_logprobs = 0;
    }
    streams[i]->set_id(first_id + i);
    pending.push_back({first_id + i, std::move(r), std::move(streams[i]), now,
                       i > 0 ? first_id : 0});
  }
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) {
      queued_.fetch_sub(n);
      return absl::UnavailableError("the server is shutting down");
    }
    for (Pending& p : pending) inbox_.push_back(std::move(p));
  }
  inbox_cv_.notify_one();
  return absl::OkStatus();
}

void EngineCore::Cancel(uint64_t id, absl::Status reason) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) return;
    early_ends_.push_back({id, FinishReason::kCancelled, std::move(reason)});
  }
  inbox_cv_.notify_one();
}

void EngineCore::Stop(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) return;
    early_ends_.push_back({id, FinishReason::kStop, absl::OkStatus()});
  }
  inbox_cv_.notify_one();
}

void EngineCore::Shutdown(absl::Status reason) {
  std::call_once(shutdown_once_, [&] {
    accepting_.store(false);
    {
      std::lock_guard<std::mutex> lock(inbox_mu_);
      stopping_ = true;
      stop_reason_ = reason;
    }
    inbox_cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  });
}

EngineSnapshot EngineCore::GetSnapshot() const {
  EngineSnapshot snapshot;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot = snapshot_;
  }
  const TimePoint heartbeat{
      TimePoint::duration(heartbeat_ns_.load(std::memory_order_relaxed))};
  snapshot.last_progress = std::max(snapshot.last_progress, heartbeat);
  std::lock_guard<std::mutex> lock(inbox_mu_);
  snapshot.num_waiting += static_cast<int>(inbox_.size());
  snapshot.num_live_requests += static_cast<int>(inbox_.size());
  snapshot.has_work =
      snapshot.has_work || !inbox_.empty() || !early_ends_.empty();
  return snapshot;
}

void EngineCore::Loop() {
  while (DrainInbox(/*block=*/!scheduler_->has_unfinished())) {
    // Before the step too: a step that never ends must show as work pending.
    UpdateSnapshot(Now());
    FlushOutbox();
    if (scheduler_->has_unfinished()) {
      Step();
      UpdateSnapshot(Now());
      FlushOutbox();
    }
  }
  // Stopping: end everything still live with the shutdown reason.
  std::vector<Pending> leftovers;
  absl::Status reason;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    leftovers.swap(inbox_);
    early_ends_.clear();
    reason = stop_reason_;
  }
  const TimePoint now = Now();
  for (Pending& p : leftovers) Admit(std::move(p));
  std::vector<uint64_t> ids;
  for (const auto& [id, active] : active_) ids.push_back(id);
  for (uint64_t id : ids) {
    scheduler_->Finish(id, FinishReason::kCancelled);
    Finalize(id, FinishReason::kCancelled, reason, now);
  }
  UpdateSnapshot(now);
  FlushOutbox();
}

bool EngineCore::DrainInbox(bool block) {
  std::vector<Pending> submissions;
  std::vector<EarlyEnd> early_ends;
  {
    std::unique_lock<std::mutex> lock(inbox_mu_);
    if (block && inbox_.empty() && early_ends_.empty() && !stopping_) {
      inbox_cv_.wait_for(lock, kIdleWait);
    }
    if (stopping_) return false;
    submissions.swap(inbox_);
    early_ends.swap(early_ends_);
  }
  for (Pending& p : submissions) Admit(std::move(p));
  const TimePoint now = Now();
  for (EarlyEnd& e : early_ends) {
    if (!active_.contains(e.id)) continue;  // already finished
    scheduler_->Finish(e.id, e.reason);
    Finalize(e.id, e.reason, std::move(e.status), now);
  }
  return true;
}

void EngineCore::Admit(Pending p) {
  RequestSpec spec;
  spec.id = p.id;
  spec.prompt_token_ids = p.request.prompt;
  spec.max_tokens = p.request.generate ? p.request.max_tokens : 1;
  spec.priority = p.request.priority;
  spec.prompt_logprobs = p.request.prompt_logprobs;
  spec.generate = p.request.generate;
  spec.share_prompt_with = p.share_prompt_with;
  spec.kv_window = p.request.kv_window;
  // Keys recomputed after a preemption are exact once this many positions
  // lie behind them (each layer reaches one window further back).
  spec.window_recompute_tokens = static_cast<int32_t>(std::min<int64_t>(
      INT32_MAX, int64_t{info_.num_layers + 1} * p.request.kv_window));
  auto active = std::make_unique<Active>(p.id, std::move(p.request),
                                         std::move(p.stream), p.arrival);
  const absl::Status status = scheduler_->Add(std::move(spec));
  active_.emplace(p.id, std::move(active));
  if (!status.ok()) Finalize(p.id, FinishReason::kError, status, Now());
}

void EngineCore::Step() {
  const TimePoint start = Now();
  scheduler_->Schedule(&plan_);
  if (plan_.empty()) {
    scheduler_->Update(plan_, {});
    // Nothing could run (should not happen: see Scheduler's policy); avoid
    // spinning.
    std::unique_lock<std::mutex> lock(inbox_mu_);
    inbox_cv_.wait_for(lock, std::chrono::milliseconds(10));
    return;
  }
  runner_requests_.assign(plan_.requests.size(), RunnerRequest());
  for (size_t i = 0; i < plan_.requests.size(); ++i) {
    auto it = active_.find(plan_.requests[i].id);
    if (it == active_.end()) continue;
    Active& a = *it->second;
    runner_requests_[i] = {&a.request, &a.sampler, a.num_output_tokens,
                           &a.delta};
  }
  const absl::Status status =
      runner_->Execute(plan_, runner_requests_, &sampled_);
  if (!status.ok()) {
    FailStep(status);
    scheduler_->Update(plan_, sampled_);
    RecordStepMetrics(start, Now());
    return;
  }
  ProcessOutputs(Now());
  const TimePoint end = Now();
  RecordStepMetrics(start, end);
  AdaptAttentionBudget(SecondsBetween(start, end));
}

void EngineCore::AdaptAttentionBudget(double seconds) {
  const double target = config_.step_target_seconds;
  if (target <= 0 || seconds <= 0 ||
      config_.scheduler.max_step_attention_pairs <= 0) {
    return;
  }
  const int64_t budget = scheduler_->attention_budget();
  const int64_t used = plan_.attention_pairs;
  // Only steps whose attention was a large share of the budget tell how fast
  // attention runs (in decode-only steps other work dominates).
  if (used < budget / 2) return;
  const double wanted = static_cast<double>(used) / seconds * target;
  const int64_t next = std::clamp<int64_t>(
      static_cast<int64_t>(std::clamp(wanted, budget / 2.0, budget * 2.0)),
      kMinAttentionBudget,
      std::max(kMinAttentionBudget,
               config_.scheduler.max_step_attention_pairs));
  scheduler_->SetAttentionBudget(next);
}

void EngineCore::FailStep(const absl::Status& status) {
  ALIBI_LOG(ERROR) << "engine step failed: " << status;
  const absl::Status failure = absl::InternalError(absl::StrCat(
      "the engine failed while running this request: ", status.message()));
  const TimePoint now = Now();
  for (const ScheduledRequest& r : plan_.requests) {
    if (!active_.contains(r.id)) continue;
    scheduler_->Finish(r.id, FinishReason::kError);
    Finalize(r.id, FinishReason::kError, failure, now);
  }
}

void EngineCore::ProcessOutputs(TimePoint now) {
  step_itls_.clear();
  for (size_t i = 0; i < plan_.requests.size(); ++i) {
    const ScheduledRequest& r = plan_.requests[i];
    auto it = active_.find(r.id);
    if (it == active_.end()) continue;
    Active& a = *it->second;
    if (!a.admitted) {
      a.admitted = true;
      queued_.fetch_sub(1);
      a.timings.scheduled = now;
      if (auto info = scheduler_->GetRequest(r.id); info.has_value()) {
        a.num_cached_tokens = std::max(0, info->num_cached_tokens);
      }
      if (metrics_ != nullptr) {
        metrics_->ObserveQueueTime(SecondsBetween(a.timings.arrival, now));
      }
    }
    if (r.reaches_end && !a.prompt_done) {
      a.prompt_done = true;
      if (metrics_ != nullptr) {
        metrics_->AddPromptTokens(
            static_cast<int64_t>(a.request.prompt.size()));
      }
    }
    if (r.sample && sampled_[i] >= 0) AppendToken(a, sampled_[i], now);
  }
  for (const FinishedRequest& f : scheduler_->Update(plan_, sampled_)) {
    Finalize(f.id, f.reason, absl::OkStatus(), now);
  }
  for (const ScheduledRequest& r : plan_.requests) {
    auto it = active_.find(r.id);
    if (it == active_.end()) continue;
    Active& a = *it->second;
    if (!a.delta.token_ids.empty() || !a.delta.prompt_logprobs.empty()) {
      Send(a);
    }
  }
}

bool EngineCore::AppendToken(Active& a, int32_t token, TimePoint now) {
  a.delta.token_ids.push_back(token);
  ++a.num_output_tokens;
  a.sampler.AddOutputToken(token);
  if (a.num_output_tokens == 1) {
    a.timings.first_token = now;
    if (metrics_ != nullptr) {
      metrics_->ObserveTimeToFirstToken(SecondsBetween(a.timings.arrival, now));
    }
  } else {
    step_itls_.push_back(SecondsBetween(a.timings.last_token, now));
  }
  a.timings.last_token = now;
  if (a.num_output_tokens < a.request.min_tokens) return false;
  FinishReason reason;
  if (!a.request.ignore_eos && IsEos(token)) {
    reason = FinishReason::kEos;
  } else if (std::find(a.request.stop_token_ids.begin(),
                       a.request.stop_token_ids.end(),
                       token) != a.request.stop_token_ids.end()) {
    reason = FinishReason::kStop;
    a.delta.stop_token = token;
  } else {
    return false;
  }
  // Before Update: a stop wins over the length limit on the same token.
  scheduler_->Finish(a.id, reason);
  Finalize(a.id, reason, absl::OkStatus(), now);
  return true;
}

void EngineCore::Finalize(uint64_t id, FinishReason reason, absl::Status status,
                          TimePoint now) {
  auto it = active_.find(id);
  if (it == active_.end()) return;
  Active& a = *it->second;
  if (!a.admitted) queued_.fetch_sub(1);
  if (a.timings.scheduled == TimePoint()) a.timings.scheduled = now;
  if (!a.request.generate && a.timings.first_token == TimePoint()) {
    a.timings.first_token = now;
  }
  if (a.timings.last_token == TimePoint()) a.timings.last_token = now;
  EngineOutput& d = a.delta;
  d.finished = true;
  d.finish_reason = reason;
  d.status = std::move(status);
  if (metrics_ != nullptr) {
    metrics_->ObserveE2eLatency(SecondsBetween(a.timings.arrival, now));
    metrics_->RecordFinished(FinishReasonMetricLabel(reason));
  }
  Send(a);
  active_.erase(it);
}

void EngineCore::Send(Active& a) {
  EngineOutput& d = a.delta;
  d.num_prompt_tokens = static_cast<int>(a.request.prompt.size());
  d.num_output_tokens = a.num_output_tokens;
  d.num_cached_tokens = a.num_cached_tokens;
  d.timings = a.timings;
  outbox_.emplace_back(a.stream, std::move(d));
  d = EngineOutput();
}

void EngineCore::FlushOutbox() {
  for (auto& [stream, output] : outbox_) stream->Publish(std::move(output));
  outbox_.clear();
}

void EngineCore::RecordStepMetrics(TimePoint start, TimePoint end) {
  ++num_steps_;
  if (metrics_ == nullptr) return;
  const SchedulerStats stats = scheduler_->Stats();
  metrics_->ObserveStep(SecondsBetween(start, end), plan_.num_batched_tokens);
  metrics_->ObserveInterTokenLatencies(step_itls_);
  int64_t generated = 0;
  for (const ScheduledRequest& r : plan_.requests) generated += r.sample;
  metrics_->AddGenerationTokens(generated);
  metrics_->AddPreemptions(static_cast<int64_t>(plan_.preempted.size()));
  metrics_->AddPrefixCache(
      static_cast<int64_t>(stats.kv.prefix_cache_queries -
                           prefix_queries_seen_),
      static_cast<int64_t>(stats.kv.prefix_cache_hits - prefix_hits_seen_));
  prefix_queries_seen_ = stats.kv.prefix_cache_queries;
  prefix_hits_seen_ = stats.kv.prefix_cache_hits;
}

void EngineCore::UpdateSnapshot(TimePoint now) {
  const SchedulerStats stats = scheduler_->Stats();
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot_.num_running = stats.num_running;
    snapshot_.num_windowed_running = stats.num_windowed_running;
    snapshot_.window_released_blocks = stats.num_window_released_blocks;
    snapshot_.num_waiting = stats.num_waiting;
    snapshot_.num_live_requests = static_cast<int>(active_.size());
    snapshot_.kv_blocks_used = stats.kv.num_used_blocks;
    snapshot_.kv_blocks_cached = stats.kv.num_cached_blocks;
    snapshot_.kv_blocks_free = stats.kv.num_free_blocks;
    snapshot_.num_steps = num_steps_;
    snapshot_.num_preemptions = stats.num_preemptions;
    snapshot_.prefix_cache_hit_tokens = stats.kv.prefix_cache_hits;
    snapshot_.has_work = scheduler_->has_unfinished();
    snapshot_.last_progress = now;
  }
  if (metrics_ == nullptr) return;
  metrics_->SetRequests(stats.num_running, stats.num_waiting);
  metrics_->SetWindowedRequests(stats.num_windowed_running);
  metrics_->AddWindowReleasedBlocks(static_cast<int64_t>(
      stats.num_window_released_blocks - window_released_seen_));
  window_released_seen_ = stats.num_window_released_blocks;
  metrics_->SetKvCacheBlocks(stats.kv.num_used_blocks,
                             stats.kv.num_cached_blocks,
                             stats.kv.num_free_blocks);
  if (now - last_memory_update_ >= kMemoryUpdatePeriod) {
    last_memory_update_ = now;
    const kernels::MemoryInfo memory = runner_->backend().GetMemoryInfo();
    metrics_->SetDeviceMemory(static_cast<int64_t>(memory.used_bytes),
                              static_cast<int64_t>(memory.total_bytes));
  }
}

EngineInfo MakeInfo(const EngineConfig& config, const model::Model& model,
                    const kernels::Backend& backend) {
  const model::ModelConfig& c = model.config();
  EngineInfo info;
  info.architecture = c.architecture_name;
  info.family = c.family;
  info.vocab_size = c.vocab_size;
  info.hidden_size = c.hidden_size;
  info.num_layers = c.num_layers;
  info.num_heads = c.num_heads;
  info.num_kv_heads = c.num_kv_heads;
  info.alibi_slopes = model::AlibiSlopes(c.num_heads, c.alibi_bias_max);
  info.trained_context_length = c.trained_context_length;
  info.eos_token_id = c.eos_token_id;
  info.bos_token_id = c.bos_token_id;
  info.dtype = std::string(kernels::DTypeName(backend.weight_dtype()));
  info.device = backend.Name();
  info.backend_kind = std::string(backend.Kind());
  info.max_model_len = config.scheduler.max_model_len;
  info.max_num_seqs = config.scheduler.max_num_seqs;
  info.max_logprobs = config.max_logprobs;
  info.kv_block_size = config.scheduler.kv.block_size;
  info.kv_num_blocks = config.scheduler.kv.num_blocks;
  info.default_kv_window = config.default_kv_window;
  return info;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(
    const EngineConfig& config, std::unique_ptr<kernels::Backend> backend,
    std::unique_ptr<model::Model> model, metrics::Metrics* metrics) {
  if (backend == nullptr || model == nullptr) {
    return absl::InvalidArgumentError("the engine needs a backend and a model");
  }
  const KvCacheOptions& kv = config.scheduler.kv;
  if (kv.num_blocks <= 0 || kv.block_size <= 0) {
    return absl::InvalidArgumentError("the engine needs a positive KV pool");
  }
  if (config.max_logprobs < 0) {
    return absl::InvalidArgumentError("max_logprobs must be >= 0");
  }
  if (config.default_kv_window < 0) {
    return absl::InvalidArgumentError("kv_window must be >= 0");
  }
  EngineConfig effective = config;
  const int64_t pool_tokens = int64_t{kv.num_blocks} * kv.block_size;
  const int32_t pool_len =
      static_cast<int32_t>(std::min<int64_t>(pool_tokens, INT32_MAX));
  int32_t& max_model_len = effective.scheduler.max_model_len;
  if (max_model_len > pool_len) {
    ALIBI_LOG(WARNING) << "max_model_len " << max_model_len
                       << " exceeds the KV pool (" << pool_len
                       << " tokens); using " << pool_len;
  }
  if (max_model_len <= 0 || max_model_len > pool_len) max_model_len = pool_len;
  // Preempted requests return to the scheduler's queue, so it holds up to
  // max_num_seqs more than the engine admits from new submissions.
  SchedulerConfig scheduler_config = effective.scheduler;
  scheduler_config.max_queued_requests += scheduler_config.max_num_seqs;
  ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler,
                   Scheduler::Create(scheduler_config));
  EngineInfo info = MakeInfo(effective, *model, *backend);
  ASSIGN_OR_RETURN(
      std::unique_ptr<ModelRunner> runner,
      ModelRunner::Create(std::move(backend), std::move(model), kv.num_blocks,
                          kv.block_size,
                          effective.scheduler.max_num_batched_tokens));
  auto engine = std::make_unique<EngineCore>(effective, std::move(info),
                                             std::move(runner),
                                             std::move(scheduler), metrics);
  engine->Start();
  return engine;
}

}  // namespace alibi::engine
