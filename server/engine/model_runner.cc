#include "server/engine/model_runner.h"

#include <algorithm>
#include <utility>

#include "common/status_macros.h"

namespace alibi::engine {

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(
    std::unique_ptr<kernels::Backend> backend,
    std::unique_ptr<model::Model> model, int num_blocks, int block_size,
    int max_num_batched_tokens) {
  if (backend == nullptr || model == nullptr) {
    return absl::InvalidArgumentError("model runner needs a backend and model");
  }
  RETURN_IF_ERROR(model->AllocateKvCache(num_blocks, block_size));
  RETURN_IF_ERROR(
      model->Reserve(max_num_batched_tokens,
                     std::min(kLogitRowsPerChunk, max_num_batched_tokens)));
  return std::unique_ptr<ModelRunner>(
      new ModelRunner(std::move(backend), std::move(model)));
}

ModelRunner::ModelRunner(std::unique_ptr<kernels::Backend> backend,
                         std::unique_ptr<model::Model> model)
    : backend_(std::move(backend)), model_(std::move(model)) {
  for (int eos : model_->config().eos_token_ids) {
    if (eos >= 0) eos_tokens_.push_back(eos);
  }
}

ModelRunner::~ModelRunner() = default;

absl::Status ModelRunner::BuildBatch(const StepPlan& plan) {
  model::ForwardBatch& b = batch_;
  b.token_ids.assign(plan.token_ids.begin(), plan.token_ids.end());
  b.query_start.assign(1, 0);
  b.context_lens.clear();
  b.slot_mapping.clear();
  b.logit_rows.clear();
  b.windows.clear();
  b.first_blocks.clear();
  bool windowed = false;
  for (const ScheduledRequest& r : plan.requests) {
    windowed = windowed || r.window > 0 || r.first_block > 0;
  }
  b.max_blocks_per_seq = 1;
  for (const ScheduledRequest& r : plan.requests) {
    b.max_blocks_per_seq = std::max(b.max_blocks_per_seq, r.num_blocks);
  }
  b.block_tables.assign(plan.requests.size() * b.max_blocks_per_seq, 0);
  logit_row_of_.assign(plan.requests.size(), -1);
  row_owner_.clear();
  for (size_t i = 0; i < plan.requests.size(); ++i) {
    const ScheduledRequest& r = plan.requests[i];
    b.query_start.push_back(r.token_offset + r.num_tokens);
    b.context_lens.push_back(r.context_len());
    if (windowed) {
      b.windows.push_back(r.window);
      b.first_blocks.push_back(r.first_block);
    }
    absl::Span<const int32_t> table = plan.BlockTable(r);
    std::copy(table.begin(), table.end(),
              b.block_tables.begin() + i * b.max_blocks_per_seq);
    for (int32_t pos = r.first_position; pos < r.end_position(); ++pos) {
      b.slot_mapping.push_back(plan.Slot(r, pos));
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

bool ModelRunner::Use(const StepPlan& plan,
                      absl::Span<const RunnerRequest> requests, int row,
                      RowUse* use) const {
  const size_t i = row_owner_[row];
  const RunnerRequest& rr = requests[i];
  if (rr.request == nullptr) return false;  // gone
  const ScheduledRequest& r = plan.requests[i];
  const EngineRequest& request = *rr.request;
  const int32_t pos = r.logits_begin + (row - logit_row_of_[i]);
  const int32_t prompt_len = static_cast<int32_t>(request.prompt.size());
  use->request = i;
  use->target = request.prompt_logprobs && pos + 1 < prompt_len
                    ? request.prompt[pos + 1]
                    : -1;
  use->sample = r.sample && pos == r.end_position() - 1;
  return use->target >= 0 || use->sample;
}

void ModelRunner::Bans(const RunnerRequest& rr,
                       std::vector<int32_t>* banned) const {
  banned->clear();
  const EngineRequest& request = *rr.request;
  if (rr.num_output_tokens < request.min_tokens) {
    *banned = request.stop_token_ids;
    if (!request.ignore_eos) {
      banned->insert(banned->end(), eos_tokens_.begin(), eos_tokens_.end());
    }
  }
}

void ModelRunner::ConsumeLogitRow(const StepPlan& plan,
                                  absl::Span<const RunnerRequest> requests,
                                  int row, absl::Span<const float> logits,
                                  std::vector<int32_t>* sampled) {
  RowUse use;
  if (!Use(plan, requests, row, &use)) return;
  const RunnerRequest& rr = requests[use.request];
  const EngineRequest& request = *rr.request;
  if (use.target >= 0) {
    LogprobResult lp =
        ComputeLogprobs(logits, use.target, request.prompt_top_logprobs);
    rr.output->prompt_logprobs.push_back(
        {use.target, lp.logprob, std::move(lp.top)});
  }
  if (use.sample) {
    Bans(rr, &banned_);
    const int32_t token =
        SampleToken(logits, *rr.sampler, banned_, sampler_scratch_);
    (*sampled)[use.request] = token;
    if (request.logprobs.has_value()) {
      LogprobResult lp = ComputeLogprobs(logits, token, *request.logprobs);
      rr.output->logprobs.push_back({token, lp.logprob, std::move(lp.top)});
    }
  }
}

absl::Status ModelRunner::SampleOnDevice(
    const StepPlan& plan, absl::Span<const RunnerRequest> requests,
    int first_row, int num_rows, const kernels::TensorView& logits,
    std::vector<int32_t>* sampled) {
  device_rows_.clear();
  device_uses_.clear();
  if (device_bans_.size() < static_cast<size_t>(num_rows)) {
    device_bans_.resize(num_rows);
  }
  for (int row = first_row; row < first_row + num_rows; ++row) {
    RowUse use;
    if (!Use(plan, requests, row, &use)) continue;
    if (use.target >= 0 && use.sample) {
      return absl::InternalError("a logit row both scored and sampled");
    }
    const RunnerRequest& rr = requests[use.request];
    const EngineRequest& request = *rr.request;
    kernels::SampleRow s;
    s.row = row - first_row;
    if (use.target >= 0) {
      s.target = use.target;
      s.top_n = request.prompt_top_logprobs;
    } else {
      std::vector<int32_t>& bans = device_bans_[device_rows_.size()];
      Bans(rr, &bans);
      s = DeviceSampleRow(*rr.sampler, bans);
      s.row = row - first_row;
      s.top_n = request.logprobs.value_or(0);
    }
    device_rows_.push_back(s);
    device_uses_.push_back(use);
  }
  if (device_rows_.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(backend_->Sample(logits, device_rows_, &device_results_));
  for (size_t k = 0; k < device_rows_.size(); ++k) {
    const RowUse& use = device_uses_[k];
    const RunnerRequest& rr = requests[use.request];
    kernels::SampleResult& result = device_results_[k];
    std::vector<TopLogprob> top;
    top.reserve(result.top.size());
    for (const auto& [token, logprob] : result.top) {
      top.push_back({token, logprob});
    }
    if (use.target >= 0) {
      rr.output->prompt_logprobs.push_back(
          {use.target, result.logprob, std::move(top)});
      continue;
    }
    (*sampled)[use.request] = result.token;
    if (rr.request->logprobs.has_value()) {
      rr.output->logprobs.push_back(
          {result.token, result.logprob, std::move(top)});
    }
  }
  return absl::OkStatus();
}

absl::Status ModelRunner::Execute(const StepPlan& plan,
                                  absl::Span<const RunnerRequest> requests,
                                  std::vector<int32_t>* sampled) {
  sampled->assign(plan.requests.size(), -1);
  if (requests.size() != plan.requests.size()) {
    return absl::InternalError("model runner: one request per plan entry");
  }
  RETURN_IF_ERROR(BuildBatch(plan));
  if (backend_->SupportsSampling()) {
    return model_->ForwardOnDevice(
        batch_,
        [&](int first_row, int num_rows, const kernels::TensorView& logits) {
          return SampleOnDevice(plan, requests, first_row, num_rows, logits,
                                sampled);
        },
        kLogitRowsPerChunk);
  }
  const int64_t vocab = model_->config().vocab_size;
  return model_->Forward(
      batch_,
      [&](int first_row, int num_rows, const float* logits) {
        for (int row = first_row; row < first_row + num_rows; ++row) {
          ConsumeLogitRow(
              plan, requests, row,
              absl::MakeConstSpan(
                  logits + static_cast<int64_t>(row - first_row) * vocab,
                  vocab),
              sampled);
        }
        return absl::OkStatus();
      },
      kLogitRowsPerChunk);
}

}  // namespace alibi::engine
