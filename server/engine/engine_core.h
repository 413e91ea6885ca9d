// The engine core: one thread that owns the scheduler, the KV pool (through
// the scheduler's bookkeeping and the model runner's memory) and the model
// runner, and turns submitted EngineRequests into OutputStreams (engine.h).
//
// Each iteration: take new requests, cancellations and stops from the inbox
// -> Scheduler::Schedule -> ModelRunner::Execute (batch, forward, prompt
// log-probs, sampling) -> engine stop checks (EOS, stop token ids, max
// tokens) -> Scheduler::Update -> publish each request's new tokens to its
// stream -> record metrics. Text, stop strings and responses are the
// frontend's business, on the consumers' threads.
//
// A failure inside a step fails the requests of that step (INTERNAL), not the
// process. Cancel/Stop free a request's KV blocks within one step.
//
// Thread-safety: the Engine interface is thread-safe (engine.h).
#ifndef ALIBI_SERVER_ENGINE_ENGINE_CORE_H_
#define ALIBI_SERVER_ENGINE_ENGINE_CORE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "server/engine/engine.h"
#include "server/metrics/metrics.h"
#include "server/model/model.h"
#include "server/scheduler/scheduler.h"

namespace alibi::engine {

// The engine's settings, each declared once with its default; the server's
// flags bind to these (server/main.cc).
struct EngineConfig {
  // Budget, limits and the KV pool. scheduler.max_model_len 0: whatever the
  // pool holds (ALiBi has no position limit of its own); larger values are
  // capped there. scheduler.kv.num_blocks is required (> 0).
  SchedulerConfig scheduler;
  // Most log-probability alternatives a request may ask for per token.
  int max_logprobs = 20;
  // The sliding window of requests that set none (0: off); the frontend
  // applies it.
  int default_kv_window = 0;
  // Step time the engine holds by adapting the attention budget of a step
  // (scheduler.max_step_attention_pairs is its ceiling) from the attention
  // throughput it measures; 0: a fixed budget.
  double step_target_seconds = 0.2;
};

// Starts an engine thread serving `model` (created on `backend`). `metrics`
// may be null; it must outlive the engine.
absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(
    const EngineConfig& config, std::unique_ptr<kernels::Backend> backend,
    std::unique_ptr<model::Model> model, metrics::Metrics* metrics);

}  // namespace alibi::engine

#endif  // ALIBI_SERVER_ENGINE_ENGINE_CORE_H_
