// The model runner: turns one scheduler plan into one forward pass and its
// results. It owns the backend and the model; per step it flattens the plan
// into a batch (token ids, per-sequence query ranges, context lengths, block
// tables, KV slots, logit rows), runs Model::Forward, and for every logit row
// computes the prompt log-probabilities asked for and samples the next token
// of each sequence that reached its end.
//
// Thread-safety: not thread-safe; the engine thread owns the runner.
#ifndef ALIBI_SERVER_ENGINE_MODEL_RUNNER_H_
#define ALIBI_SERVER_ENGINE_MODEL_RUNNER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/backend.h"
#include "server/engine/engine.h"
#include "server/engine/sampler.h"
#include "server/model/model.h"
#include "server/scheduler/scheduler.h"

namespace alibi::engine {

// What the runner needs of one live request in a step.
struct RunnerRequest {
  const EngineRequest* request = nullptr;
  SamplerState* sampler = nullptr;
  int num_output_tokens = 0;  // generated before this step (min_tokens)
  // Receives this step's prompt log-probabilities and, with `logprobs`, the
  // sampled token's.
  EngineOutput* output = nullptr;
};

class ModelRunner {
 public:
  // Rows of logits materialised at once (bounds host and device memory when
  // a scoring request needs logits at every prompt position).
  static constexpr int kLogitRowsPerChunk = 128;

  // Allocates the KV pool (`num_blocks` x `block_size` tokens) and the
  // activation workspace for steps of up to `max_num_batched_tokens`.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(
      std::unique_ptr<kernels::Backend> backend,
      std::unique_ptr<model::Model> model, int num_blocks, int block_size,
      int max_num_batched_tokens);
  ~ModelRunner();

  // Runs the step `plan`. `requests[i]` describes plan.requests[i] (null if
  // the request is gone). `sampled` gets one entry per plan request: the
  // token sampled for it, or -1.
  absl::Status Execute(const StepPlan& plan,
                       absl::Span<const RunnerRequest> requests,
                       std::vector<int32_t>* sampled);

  // Runs `callback` as each layer of a forward pass is issued (heartbeat).
  void SetProgressCallback(std::function<void()> callback) {
    model_->SetLayerCallback(std::move(callback));
  }

  const model::Model& model() const { return *model_; }
  kernels::Backend& backend() const { return *backend_; }

 private:
  ModelRunner(std::unique_ptr<kernels::Backend> backend,
              std::unique_ptr<model::Model> model);
  // What one logit row of the step is for.
  struct RowUse {
    size_t request = 0;   // index in the plan
    int32_t target = -1;  // >= 0: the prompt log-probability of this token
    bool sample = false;  // the request's next token
  };

  absl::Status BuildBatch(const StepPlan& plan);
  // False when logit row `row` is for nothing (its request is gone).
  bool Use(const StepPlan& plan, absl::Span<const RunnerRequest> requests,
           int row, RowUse* use) const;
  // The tokens that may not end the request yet (min_tokens).
  void Bans(const RunnerRequest& rr, std::vector<int32_t>* banned) const;
  // Prompt log-probs and sampling for logit row `row` of the step, on the
  // host.
  void ConsumeLogitRow(const StepPlan& plan,
                       absl::Span<const RunnerRequest> requests, int row,
                       absl::Span<const float> logits,
                       std::vector<int32_t>* sampled);
  // The same for rows [first_row, first_row + num_rows), whose logits stay
  // in backend memory (Backend::Sample).
  absl::Status SampleOnDevice(const StepPlan& plan,
                              absl::Span<const RunnerRequest> requests,
                              int first_row, int num_rows,
                              const kernels::TensorView& logits,
                              std::vector<int32_t>* sampled);

  std::unique_ptr<kernels::Backend> backend_;  // outlives model_
  std::unique_ptr<model::Model> model_;
  std::vector<int32_t> eos_tokens_;
  model::ForwardBatch batch_;
  std::vector<float> sampler_scratch_;
  std::vector<int32_t> banned_;
  std::vector<kernels::SampleRow> device_rows_;
  std::vector<RowUse> device_uses_;
  std::vector<std::vector<int32_t>> device_bans_;  // per device row
  std::vector<kernels::SampleResult> device_results_;
  // Per plan request: its first logit row, or -1.
  std::vector<int32_t> logit_row_of_;
  // Per logit row: the plan request it belongs to.
  std::vector<int32_t> row_owner_;
};

}  // namespace alibi::engine

#endif  // ALIBI_SERVER_ENGINE_MODEL_RUNNER_H_
