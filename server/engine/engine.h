// The engine: one thread that owns the backend, the model, the KV pool and
// the scheduler, and turns submitted requests into token streams.
//
// Each iteration: take new requests and cancellations from the inbox ->
// Scheduler::Schedule -> build one flattened batch (prefill chunks and decode
// tokens of many sequences) -> Model::Forward -> prompt log-probs and
// sampling -> stop checks (EOS, stop token ids, stop strings on the
// detokenized text, max tokens) -> Scheduler::Update -> publish deltas to each
// request's RequestStream -> record metrics.
//
// A failure inside a step fails the requests of that step (status INTERNAL),
// not the process. Cancel() frees a request's KV blocks within one step.
//
// Thread-safety: Submit, Cancel, Shutdown, GetSnapshot and the accessors are
// thread-safe; everything else runs on the engine thread.
#ifndef ALIBI_SERVER_ENGINE_ENGINE_H_
#define ALIBI_SERVER_ENGINE_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "common/clock.h"
#include "server/engine/request.h"
#include "server/metrics/metrics.h"
#include "server/model/model.h"
#include "server/scheduler/scheduler.h"
#include "server/tokenizer/tokenizer.h"

namespace alibi::engine {

struct EngineConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  // Longest prompt + output. 0: everything the KV pool holds. Capped at the
  // pool's capacity either way (ALiBi has no position limit of its own).
  int max_model_len = 0;
  int max_queued_requests = 1024;
  // Most tokens one request computes per step (0: no cap).
  int long_prefill_token_threshold = 0;
  int block_size = 16;
  // KV pool size in blocks (required, > 0).
  int num_blocks = 0;
  bool enable_prefix_caching = true;
  int max_logprobs = 20;
};

// A consistent view of the engine for health checks, tests and metrics.
struct EngineSnapshot {
  int num_running = 0;
  int num_waiting = 0;  // inbox + scheduler queue (including preempted)
  int num_live_requests = 0;
  KvCacheStats kv;
  uint64_t num_steps = 0;
  uint64_t num_preemptions = 0;
  // The engine has requests it has not finished.
  bool has_work = false;
  // Last time the engine loop made progress (finished a step or went idle).
  TimePoint last_progress;
};

class Engine {
 public:
  // Starts the engine thread. `metrics` may be null; it must outlive the
  // engine. The model must have been created on `backend`.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const EngineConfig& config, std::unique_ptr<kernels::Backend> backend,
      std::unique_ptr<model::Model> model,
      std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
      metrics::Metrics* metrics);

  // Shuts down (UNAVAILABLE) if Shutdown was not called.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Errors, at once: INVALID_ARGUMENT (can never run:
  // empty prompt, ids outside the vocabulary, prompt + max_tokens beyond
  // max_model_len), RESOURCE_EXHAUSTED (the waiting queue is full),
  // UNAVAILABLE (shutting down). `on_update` runs on the engine thread after
  // each publish to the returned stream (see RequestStream).
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(
      GenerationRequest request,
      RequestStream::UpdateCallback on_update = nullptr);

  // Ends request `id` (if still live) with FinishReason::kCancelled and
  // `reason` as its status, freeing its KV blocks within one step.
  void Cancel(uint64_t id,
              absl::Status reason = absl::CancelledError("request cancelled"));

  // Refuses new requests, ends every live one with `reason` and stops the
  // engine thread. Idempotent; blocks until the thread has exited.
  void Shutdown(absl::Status reason);

  EngineSnapshot GetSnapshot() const;

  // The effective configuration (max_model_len resolved).
  const EngineConfig& config() const { return config_; }
  const model::ModelConfig& model_config() const { return model_->config(); }
  const model::Model& model() const { return *model_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  std::string device_name() const { return backend_->Name(); }

 private:
  struct Active;
  struct Pending {
    uint64_t id;
    GenerationRequest request;
    std::shared_ptr<RequestStream> stream;
    TimePoint arrival;
  };

  Engine(const EngineConfig& config, std::unique_ptr<kernels::Backend> backend,
         std::unique_ptr<model::Model> model,
         std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
         std::unique_ptr<Scheduler> scheduler, metrics::Metrics* metrics);

  absl::Status CheckRequest(const GenerationRequest& request) const;
  void Loop();
  // Moves the inbox into the scheduler; false when the engine is stopping.
  bool DrainInbox(bool block);
  void Admit(Pending pending);
  void Step();
  absl::Status BuildBatch();
  // Prompt log-probs and sampling for logit row `row` of the step.
  void ConsumeLogitRow(int row, absl::Span<const float> logits,
                       std::vector<int32_t>* sampled);
  void ProcessOutputs(TimePoint now, std::vector<int32_t>* sampled);
  // Per sampled token: detokenize, stop checks; true when it ends the request.
  bool AppendToken(Active& a, int32_t token, TimePoint now);
  void Finalize(uint64_t id, FinishReason reason, absl::Status status,
                TimePoint now);
  void FailStep(const absl::Status& status);
  void RecordStepMetrics(TimePoint start, TimePoint end);
  // Deltas are published after the step's metrics are recorded, so a client
  // that has its answer also sees it counted.
  void Send(const std::shared_ptr<RequestStream>& stream, RequestDelta delta);
  void FlushOutbox();
  void UpdateSnapshot(TimePoint now);

  EngineConfig config_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<model::Model> model_;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<Scheduler> scheduler_;
  metrics::Metrics* metrics_;

  // Inbox (any thread -> engine thread).
  mutable std::mutex inbox_mu_;
  std::condition_variable inbox_cv_;
  std::vector<Pending> inbox_;
  std::vector<std::pair<uint64_t, absl::Status>> cancels_;
  bool stopping_ = false;
  absl::Status stop_reason_;
  std::atomic<bool> accepting_{true};
  std::atomic<uint64_t> next_id_{1};
  // Requests submitted but not yet admitted by the scheduler.
  std::atomic<int> queued_{0};

  // Engine-thread state.
  absl::flat_hash_map<uint64_t, std::unique_ptr<Active>> active_;
  StepPlan plan_;
  model::ForwardBatch batch_;
  std::vector<float> sampler_scratch_;
  // Per plan request: its first logit row, or -1.
  std::vector<int32_t> logit_row_of_;
  // Per logit row: the plan request it belongs to.
  std::vector<int32_t> row_owner_;
  std::vector<double> step_itls_;
  std::vector<std::pair<std::shared_ptr<RequestStream>, RequestDelta>> outbox_;
  uint64_t num_steps_ = 0;
  uint64_t prefix_queries_seen_ = 0;
  uint64_t prefix_hits_seen_ = 0;
  TimePoint last_memory_update_;

  mutable std::mutex snapshot_mu_;
  EngineSnapshot snapshot_;

  std::thread thread_;
  std::once_flag shutdown_once_;
};

}  // namespace alibi::engine

#endif  // ALIBI_SERVER_ENGINE_ENGINE_H_
