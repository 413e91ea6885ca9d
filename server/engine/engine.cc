#include "server/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace alibi::engine {
namespace {

// Rows of logits materialised at once (bounds host and device memory when a
// scoring request needs logits at every prompt position).
constexpr int kLogitRowsPerChunk = 128;
// How often device memory is sampled for the metrics.
constexpr auto kMemoryUpdatePeriod = std::chrono::seconds(1);
// How long the idle engine thread sleeps before refreshing its heartbeat.
constexpr auto kIdleWait = std::chrono::milliseconds(100);

bool IsUtf8Continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

const char* MetricsFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
    case FinishReason::kEos:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "error";
}

}  // namespace

// A live request, owned by the engine thread.
struct Engine::Active {
  Active(uint64_t id_in, GenerationRequest request_in,
         std::shared_ptr<RequestStream> stream_in, TimePoint arrival,
         const tokenizer::Tokenizer& tokenizer)
      : id(id_in),
        request(std::move(request_in)),
        stream(std::move(stream_in)),
        sampler(request.sampling, request.prompt),
        decoder(tokenizer, request.skip_special_tokens) {
    timings.arrival = arrival;
    for (const std::string& s : request.stop) {
      max_stop_len = std::max(max_stop_len, s.size());
    }
  }

  const uint64_t id;
  const GenerationRequest request;
  const std::shared_ptr<RequestStream> stream;
  SamplerState sampler;
  tokenizer::IncrementalDecoder decoder;
  RequestTimings timings;
  std::string text;    // generated text so far (cut at a stop string)
  size_t emitted = 0;  // bytes of `text` already published
  size_t max_stop_len = 0;
  RequestDelta delta;  // what this step adds
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;
  bool admitted = false;     // scheduled at least once
  bool prompt_done = false;  // prompt computed once (metrics)
  bool text_cut = false;     // a stop string ended the text
};

Engine::Engine(const EngineConfig& config,
               std::unique_ptr<kernels::Backend> backend,
               std::unique_ptr<model::Model> model,
               std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
               std::unique_ptr<Scheduler> scheduler, metrics::Metrics* metrics)
    : config_(config),
      backend_(std::move(backend)),
      model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      scheduler_(std::move(scheduler)),
      metrics_(metrics) {
  snapshot_.last_progress = Now();
  snapshot_.kv = scheduler_->Stats().kv;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(
    const EngineConfig& config, std::unique_ptr<kernels::Backend> backend,
    std::unique_ptr<model::Model> model,
    std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
    metrics::Metrics* metrics) {
  if (backend == nullptr || model == nullptr || tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        "engine needs a backend, model, tokenizer");
  }
  if (config.num_blocks <= 0 || config.block_size <= 0) {
    return absl::InvalidArgumentError("engine needs a positive KV pool size");
  }
  EngineConfig effective = config;
  const int pool_tokens = config.num_blocks * config.block_size;
  if (effective.max_model_len <= 0 || effective.max_model_len > pool_tokens) {
    if (effective.max_model_len > pool_tokens) {
      ALIBI_LOG(WARNING) << "max_model_len " << effective.max_model_len
                         << " exceeds the KV pool (" << pool_tokens
                         << " tokens); using " << pool_tokens;
    }
    effective.max_model_len = pool_tokens;
  }
  SchedulerConfig sc;
  sc.max_num_batched_tokens = effective.max_num_batched_tokens;
  sc.max_num_seqs = effective.max_num_seqs;
  sc.max_model_len = effective.max_model_len;
  // Preempted requests return to the scheduler's queue, so it holds up to
  // max_num_seqs more than the engine ever admits from new submissions.
  sc.max_queued_requests =
      effective.max_queued_requests + effective.max_num_seqs;
  sc.long_prefill_token_threshold = effective.long_prefill_token_threshold;
  sc.num_blocks = effective.num_blocks;
  sc.block_size = effective.block_size;
  sc.enable_prefix_caching = effective.enable_prefix_caching;
  ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler, Scheduler::Create(sc));
  RETURN_IF_ERROR(
      model->AllocateKvCache(effective.num_blocks, effective.block_size));
  RETURN_IF_ERROR(model->Reserve(
      effective.max_num_batched_tokens,
      std::min(kLogitRowsPerChunk, effective.max_num_batched_tokens)));
  std::unique_ptr<Engine> engine(
      new Engine(effective, std::move(backend), std::move(model),
                 std::move(tokenizer), std::move(scheduler), metrics));
  engine->thread_ = std::thread([e = engine.get()] { e->Loop(); });
  return engine;
}

Engine::~Engine() {
  Shutdown(absl::UnavailableError("the engine is shutting down"));
}

absl::Status Engine::CheckRequest(const GenerationRequest& r) const {
  const int vocab = model_->config().vocab_size;
  const int n = static_cast<int>(r.prompt.size());
  if (n == 0) return absl::InvalidArgumentError("prompt: empty");
  for (int i = 0; i < n; ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt[", i, "]: token id ", r.prompt[i],
                       " outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (r.generate) {
    if (r.max_tokens < 1) {
      return absl::InvalidArgumentError("max_tokens: must be >= 1");
    }
    if (static_cast<int64_t>(n) + r.max_tokens > config_.max_model_len) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_tokens: the prompt (", n, " tokens) + max_tokens (",
                       r.max_tokens, ") exceeds the maximum context length ",
                       config_.max_model_len));
    }
  } else if (n > config_.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt: ", n,
                     " tokens exceed the maximum context "
                     "length ",
                     config_.max_model_len));
  }
  const int top = std::max(r.logprobs.value_or(0), r.prompt_top_logprobs);
  if (r.logprobs.value_or(0) < 0 || r.prompt_top_logprobs < 0 ||
      top > config_.max_logprobs) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs: must be in [0, ", config_.max_logprobs, "]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RequestStream>> Engine::Submit(
    GenerationRequest request, RequestStream::UpdateCallback on_update) {
  if (!accepting_.load()) {
    return absl::UnavailableError("the server is shutting down");
  }
  RETURN_IF_ERROR(CheckRequest(request));
  if (queued_.fetch_add(1) >= config_.max_queued_requests) {
    queued_.fetch_sub(1);
    return absl::ResourceExhaustedError(
        absl::StrCat("the request queue is full (", config_.max_queued_requests,
                     " requests waiting); retry later"));
  }
  const uint64_t id = next_id_.fetch_add(1);
  auto stream = std::make_shared<RequestStream>(id, std::move(on_update));
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) {
      queued_.fetch_sub(1);
      return absl::UnavailableError("the server is shutting down");
    }
    inbox_.push_back({id, std::move(request), stream, Now()});
  }
  inbox_cv_.notify_one();
  return stream;
}

void Engine::Cancel(uint64_t id, absl::Status reason) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) return;
    cancels_.emplace_back(id, std::move(reason));
  }
  inbox_cv_.notify_one();
}

void Engine::Shutdown(absl::Status reason) {
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

EngineSnapshot Engine::GetSnapshot() const {
  EngineSnapshot snapshot;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot = snapshot_;
  }
  std::lock_guard<std::mutex> lock(inbox_mu_);
  snapshot.num_waiting += static_cast<int>(inbox_.size());
  snapshot.num_live_requests += static_cast<int>(inbox_.size());
  snapshot.has_work = snapshot.has_work || !inbox_.empty() || !cancels_.empty();
  return snapshot;
}

void Engine::Loop() {
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
    cancels_.clear();
    reason = stop_reason_;
  }
  const TimePoint now = Now();
  for (Pending& p : leftovers) Admit(std::move(p));
  std::vector<uint64_t> ids;
  for (const auto& [id, active] : active_) ids.push_back(id);
  for (uint64_t id : ids) {
    scheduler_->Finish(id, alibi::FinishReason::kCancelled);
    Finalize(id, FinishReason::kCancelled, reason, now);
  }
  UpdateSnapshot(now);
  FlushOutbox();
}

bool Engine::DrainInbox(bool block) {
  std::vector<Pending> submissions;
  std::vector<std::pair<uint64_t, absl::Status>> cancels;
  {
    std::unique_lock<std::mutex> lock(inbox_mu_);
    if (block && inbox_.empty() && cancels_.empty() && !stopping_) {
      inbox_cv_.wait_for(lock, kIdleWait);
    }
    if (stopping_) return false;
    submissions.swap(inbox_);
    cancels.swap(cancels_);
  }
  for (Pending& p : submissions) Admit(std::move(p));
  const TimePoint now = Now();
  for (auto& [id, status] : cancels) {
    if (!active_.contains(id)) continue;  // already finished
    scheduler_->Finish(id, alibi::FinishReason::kCancelled);
    Finalize(id, FinishReason::kCancelled, std::move(status), now);
  }
  return true;
}

void Engine::Admit(Pending p) {
  RequestSpec spec;
  spec.id = p.id;
  spec.prompt_token_ids = p.request.prompt;
  spec.max_tokens = p.request.generate ? p.request.max_tokens : 1;
  spec.priority = p.request.priority;
  spec.prompt_logprobs = p.request.prompt_logprobs;
  spec.generate = p.request.generate;
  auto active = std::make_unique<Active>(p.id, std::move(p.request), p.stream,
                                         p.arrival, *tokenizer_);
  const absl::Status status = scheduler_->Add(std::move(spec));
  active_.emplace(p.id, std::move(active));
  if (!status.ok()) {
    Finalize(p.id, FinishReason::kError, status, Now());
  }
}

absl::Status Engine::BuildBatch() {
  model::ForwardBatch& b = batch_;
  b.token_ids.assign(plan_.token_ids.begin(), plan_.token_ids.end());
  b.query_start.assign(1, 0);
  b.context_lens.clear();
  b.slot_mapping.clear();
  b.logit_rows.clear();
  b.max_blocks_per_seq = 1;
  for (const ScheduledRequest& r : plan_.requests) {
    b.max_blocks_per_seq = std::max(b.max_blocks_per_seq, r.num_blocks);
  }
  b.block_tables.assign(plan_.requests.size() * b.max_blocks_per_seq, 0);
  logit_row_of_.assign(plan_.requests.size(), -1);
  row_owner_.clear();
  for (size_t i = 0; i < plan_.requests.size(); ++i) {
    const ScheduledRequest& r = plan_.requests[i];
    b.query_start.push_back(r.token_offset + r.num_tokens);
    b.context_lens.push_back(r.context_len());
    absl::Span<const int32_t> table = plan_.BlockTable(r);
    std::copy(table.begin(), table.end(),
              b.block_tables.begin() + i * b.max_blocks_per_seq);
    for (int32_t pos = r.first_position; pos < r.end_position(); ++pos) {
      b.slot_mapping.push_back(plan_.Slot(r, pos));
    }
    if (r.num_logits() > 0) {
      logit_row_of_[i] = static_cast<int32_t>(b.logit_rows.size());
      for (int32_t pos = r.logits_begin; pos < r.end_position(); ++pos) {
        b.logit_rows.push_back(r.token_offset + (pos - r.first_position));
        row_owner_.push_back(static_cast<int32_t>(i));
      }
    }
  }
  if (b.query_start.back() != static_cast<int32_t>(b.token_ids.size())) {
    return absl::InternalError("scheduler plan and batch disagree");
  }
  return absl::OkStatus();
}

void Engine::ConsumeLogitRow(int row, absl::Span<const float> logits,
                             std::vector<int32_t>* sampled) {
  const size_t i = row_owner_[row];
  const ScheduledRequest& r = plan_.requests[i];
  auto it = active_.find(r.id);
  if (it == active_.end()) return;
  Active& a = *it->second;
  const int32_t pos = r.logits_begin + (row - logit_row_of_[i]);
  const int32_t prompt_len = static_cast<int32_t>(a.request.prompt.size());
  if (a.request.prompt_logprobs && pos + 1 < prompt_len) {
    const int32_t next = a.request.prompt[pos + 1];
    LogprobResult lp =
        ComputeLogprobs(logits, next, a.request.prompt_top_logprobs);
    a.delta.prompt_logprobs.push_back({next, lp.logprob, std::move(lp.top)});
  }
  if (r.sample && pos == r.end_position() - 1) {
    std::vector<int32_t> banned;
    if (a.completion_tokens < a.request.min_tokens) {
      banned = a.request.stop_token_ids;
      const int eos = model_->config().eos_token_id;
      if (eos >= 0 && !a.request.ignore_eos) banned.push_back(eos);
    }
    const int32_t token =
        SampleToken(logits, a.sampler, banned, sampler_scratch_);
    (*sampled)[i] = token;
    if (a.request.logprobs.has_value()) {
      LogprobResult lp = ComputeLogprobs(logits, token, *a.request.logprobs);
      a.delta.logprobs.push_back({token, lp.logprob, std::move(lp.top)});
    }
  }
}

void Engine::Step() {
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
  std::vector<int32_t> sampled(plan_.requests.size(), -1);
  absl::Status status = BuildBatch();
  if (status.ok()) {
    const int64_t vocab = model_->config().vocab_size;
    status = model_->Forward(
        batch_,
        [&](int first_row, int num_rows, const float* logits) {
          for (int row = first_row; row < first_row + num_rows; ++row) {
            ConsumeLogitRow(
                row,
                absl::MakeConstSpan(
                    logits + static_cast<int64_t>(row - first_row) * vocab,
                    vocab),
                &sampled);
          }
          return absl::OkStatus();
        },
        kLogitRowsPerChunk);
  }
  if (!status.ok()) {
    FailStep(status);
    scheduler_->Update(plan_, sampled);
    RecordStepMetrics(start, Now());
    return;
  }
  ProcessOutputs(Now(), &sampled);
  RecordStepMetrics(start, Now());
}

void Engine::FailStep(const absl::Status& status) {
  ALIBI_LOG(ERROR) << "engine step failed: " << status;
  const absl::Status failure = absl::InternalError(absl::StrCat(
      "the engine failed while running this request: ", status.message()));
  const TimePoint now = Now();
  for (const ScheduledRequest& r : plan_.requests) {
    if (!active_.contains(r.id)) continue;
    scheduler_->Finish(r.id, alibi::FinishReason::kError);
    Finalize(r.id, FinishReason::kError, failure, now);
  }
}

void Engine::ProcessOutputs(TimePoint now, std::vector<int32_t>* sampled) {
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
        a.cached_prompt_tokens = std::max(0, info->num_cached_tokens);
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
    if (r.sample && (*sampled)[i] >= 0) {
      if (AppendToken(a, (*sampled)[i], now)) continue;  // finalized
    }
  }
  for (const FinishedRequest& f : scheduler_->Update(plan_, *sampled)) {
    Finalize(f.id, FinishReason::kLength, absl::OkStatus(), now);
  }
  for (const ScheduledRequest& r : plan_.requests) {
    auto it = active_.find(r.id);
    if (it == active_.end()) continue;
    Active& a = *it->second;
    if (!a.delta.token_ids.empty() || !a.delta.text.empty() ||
        !a.delta.prompt_logprobs.empty()) {
      Send(a.stream, std::move(a.delta));
      a.delta = RequestDelta();
    }
  }
}

bool Engine::AppendToken(Active& a, int32_t token, TimePoint now) {
  a.delta.token_ids.push_back(token);
  ++a.completion_tokens;
  a.sampler.AddOutputToken(token);
  if (a.completion_tokens == 1) {
    a.timings.first_token = now;
    if (metrics_ != nullptr) {
      metrics_->ObserveTimeToFirstToken(SecondsBetween(a.timings.arrival, now));
    }
  } else {
    step_itls_.push_back(SecondsBetween(a.timings.last_token, now));
  }
  a.timings.last_token = now;

  const size_t old_size = a.text.size();
  a.text += a.decoder.Add(token);

  std::optional<FinishReason> finish;
  std::string stop_reason;
  if (a.completion_tokens >= a.request.min_tokens) {
    const int eos = model_->config().eos_token_id;
    if (!a.request.ignore_eos && eos >= 0 && token == eos) {
      finish = FinishReason::kEos;
    } else if (std::find(a.request.stop_token_ids.begin(),
                         a.request.stop_token_ids.end(),
                         token) != a.request.stop_token_ids.end()) {
      finish = FinishReason::kStop;
      stop_reason = absl::StrCat(token);
    } else if (!a.request.stop.empty() && a.text.size() > old_size) {
      // Earliest occurrence of any stop string that ends in the new text.
      const size_t from =
          old_size >= a.max_stop_len ? old_size - (a.max_stop_len - 1) : 0;
      size_t best = std::string::npos;
      const std::string* best_stop = nullptr;
      for (const std::string& stop : a.request.stop) {
        const size_t at = a.text.find(stop, from);
        if (at != std::string::npos && at < best) {
          best = at;
          best_stop = &stop;
        }
      }
      if (best_stop != nullptr) {
        a.text.resize(best + (a.request.include_stop_str_in_output
                                  ? best_stop->size()
                                  : 0));
        finish = FinishReason::kStop;
        stop_reason = *best_stop;
        a.text_cut = true;
      }
    }
  }
  if (finish.has_value()) {
    a.delta.stop_reason = stop_reason;
    scheduler_->Finish(a.id, alibi::FinishReason::kStop);
    Finalize(a.id, *finish, absl::OkStatus(), now);
    return true;
  }
  // Publish what can no longer become part of a stop string.
  size_t limit = a.text.size();
  if (!a.request.stop.empty() && !a.request.include_stop_str_in_output) {
    const size_t hold = a.max_stop_len - 1;
    limit = limit > hold ? limit - hold : 0;
    while (limit > a.emitted && limit < a.text.size() &&
           IsUtf8Continuation(a.text[limit])) {
      --limit;
    }
  }
  if (limit > a.emitted) {
    a.delta.text.append(a.text, a.emitted, limit - a.emitted);
    a.emitted = limit;
  }
  return false;
}

void Engine::Finalize(uint64_t id, FinishReason reason, absl::Status status,
                      TimePoint now) {
  auto it = active_.find(id);
  if (it == active_.end()) return;
  Active& a = *it->second;
  // Bytes held back for an incomplete character become U+FFFD, as in
  // Tokenizer::Decode, unless a stop string cut the text on purpose.
  if (!a.text_cut) a.text += a.decoder.Finish();
  if (a.text.size() > a.emitted) {
    a.delta.text.append(a.text, a.emitted, std::string::npos);
    a.emitted = a.text.size();
  }
  if (!a.admitted) queued_.fetch_sub(1);
  RequestDelta& d = a.delta;
  d.finished = true;
  d.finish_reason = reason;
  d.status = std::move(status);
  d.prompt_tokens = static_cast<int>(a.request.prompt.size());
  d.completion_tokens = a.completion_tokens;
  d.cached_prompt_tokens = a.cached_prompt_tokens;
  if (a.timings.scheduled == TimePoint()) a.timings.scheduled = now;
  if (!a.request.generate && a.timings.first_token == TimePoint()) {
    a.timings.first_token = now;
  }
  if (a.timings.last_token == TimePoint()) a.timings.last_token = now;
  d.timings = a.timings;
  if (metrics_ != nullptr) {
    metrics_->ObserveE2eLatency(SecondsBetween(a.timings.arrival, now));
    metrics_->RecordFinished(MetricsFinishReason(reason));
  }
  Send(a.stream, std::move(a.delta));
  active_.erase(it);
}

void Engine::Send(const std::shared_ptr<RequestStream>& stream,
                  RequestDelta delta) {
  outbox_.emplace_back(stream, std::move(delta));
}

void Engine::FlushOutbox() {
  for (auto& [stream, delta] : outbox_) stream->Publish(std::move(delta));
  outbox_.clear();
}

void Engine::RecordStepMetrics(TimePoint start, TimePoint end) {
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

void Engine::UpdateSnapshot(TimePoint now) {
  const SchedulerStats stats = scheduler_->Stats();
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot_.num_running = stats.num_running;
    snapshot_.num_waiting = stats.num_waiting;
    snapshot_.num_live_requests = static_cast<int>(active_.size());
    snapshot_.kv = stats.kv;
    snapshot_.num_steps = num_steps_;
    snapshot_.num_preemptions = stats.num_preemptions;
    snapshot_.has_work = scheduler_->has_unfinished();
    snapshot_.last_progress = now;
  }
  if (metrics_ == nullptr) return;
  metrics_->SetRequests(stats.num_running, stats.num_waiting);
  metrics_->SetKvCacheBlocks(stats.kv.num_used_blocks,
                             stats.kv.num_cached_blocks,
                             stats.kv.num_free_blocks);
  if (now - last_memory_update_ >= kMemoryUpdatePeriod) {
    last_memory_update_ = now;
    const kernels::MemoryInfo memory = backend_->GetMemoryInfo();
    metrics_->SetDeviceMemory(static_cast<int64_t>(memory.used_bytes),
                              static_cast<int64_t>(memory.total_bytes));
  }
}

}  // namespace alibi::engine
