// Whole forward passes on the CUDA backend of random-weight checkpoints whose
// head dims take the tensor-core prefill path inside the real model (a
// BLOOM-like model with head dim 64; an MPT-like one with grouped-query
// attention and head dim 128), against the CPU backend on the same
// checkpoint: chunked prefills, a prefill mixed with another sequence's
// decode in one step, then decode steps. The fixtures (head dim 16) only
// reach the generic row kernel, so this is the model-level check of the
// prefill kernel and of mixed batches.
//
// Tolerance: the relative error by norm of all logits must stay within 3x
// what the CPU rounding model (rounding_backend.h) predicts for a correct
// 16-bit pass on the same inputs (and under 1e-3 when that is smaller).
//
// Skips (GTEST_SKIP) when no CUDA device is visible.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "server/model/model.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/rounding_backend.h"
#include "tools/mkmodel/mkmodel.h"

namespace alibi::model {
namespace {

constexpr int kBlockSize = 16;
constexpr int kBlocksPerSeq = 32;

struct ModelShape {
  std::string name;
  const char* family;
  int hidden, heads, kv_heads, layers, vocab;
};

// One step: (sequence, first position, tokens).
struct Piece {
  int seq, start, len;
};

// The schedule every backend runs: sequence 0 prefilled in chunks of 100,
// sequence 1 prefilled whole next to sequence 0's second chunk and decoded
// next to its third, then both decoded together.
std::vector<std::vector<Piece>> Schedule() {
  std::vector<std::vector<Piece>> steps = {
      {{0, 0, 100}},
      {{0, 100, 100}, {1, 0, 40}},
      {{0, 200, 100}, {1, 40, 1}},
  };
  for (int i = 0; i < 4; ++i)
    steps.push_back({{0, 300 + i, 1}, {1, 41 + i, 1}});
  return steps;
}

// Runs the schedule on `backend`; the logits of every query row, in order.
std::vector<float> RunSchedule(
    const std::string& dir, kernels::Backend* backend,
    const std::vector<std::vector<int32_t>>& tokens) {
  auto model = Model::Load(dir, backend);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  EXPECT_TRUE((*model)->AllocateKvCache(2 * kBlocksPerSeq, kBlockSize).ok());
  const int vocab = (*model)->config().vocab_size;
  std::vector<float> all;
  for (const std::vector<Piece>& step : Schedule()) {
    ForwardBatch batch;
    batch.query_start = {0};
    batch.max_blocks_per_seq = kBlocksPerSeq;
    for (const Piece& p : step) {
      for (int i = 0; i < p.len; ++i) {
        const int pos = p.start + i;
        batch.token_ids.push_back(tokens[p.seq][pos]);
        batch.slot_mapping.push_back(
            (p.seq * kBlocksPerSeq + pos / kBlockSize) * kBlockSize +
            pos % kBlockSize);
        batch.logit_rows.push_back(batch.num_tokens() - 1);
      }
      batch.query_start.push_back(batch.num_tokens());
      batch.context_lens.push_back(p.start + p.len);
      for (int b = 0; b < kBlocksPerSeq; ++b) {
        batch.block_tables.push_back(p.seq * kBlocksPerSeq + b);
      }
    }
    std::vector<float> logits(batch.logit_rows.size() *
                              static_cast<size_t>(vocab));
    const absl::Status s = (*model)->Forward(batch, absl::MakeSpan(logits));
    EXPECT_TRUE(s.ok()) << s;
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

class CudaMkModelTest
    : public ::testing::TestWithParam<std::tuple<ModelShape, kernels::DType>> {
};

TEST_P(CudaMkModelTest, ForwardMatchesCpuWithinTheRoundingBudget) {
  ALIBI_SKIP_WITHOUT_CUDA();
  const ModelShape& shape = std::get<0>(GetParam());
  const kernels::DType dtype = std::get<1>(GetParam());
  mkmodel::MkModelOptions options;
  options.family = shape.family;
  options.hidden = shape.hidden;
  options.heads = shape.heads;
  options.kv_heads = shape.kv_heads;
  options.layers = shape.layers;
  options.vocab = shape.vocab;
  options.seq_length = 128;  // the prompts run past it
  options.dtype = kernels::DType::kBF16;
  options.seed = 11;
  options.out_dir = ::testing::TempDir() + "/alibi_cuda_mkmodel_" + shape.name +
                    "_" + std::to_string(getpid());
  ASSERT_TRUE(mkmodel::WriteCheckpoint(options).ok());

  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int32_t> token(0, shape.vocab - 1);
  std::vector<std::vector<int32_t>> tokens(2);
  for (auto& seq : tokens) {
    for (int i = 0; i < 310; ++i) seq.push_back(token(rng));
  }

  kernels::BackendOptions cpu_options;
  cpu_options.device = "ref";
  auto cpu = kernels::CreateBackend(cpu_options);
  ASSERT_TRUE(cpu.ok());
  const std::vector<float> want =
      RunSchedule(options.out_dir, cpu->get(), tokens);

  auto cpu2 = kernels::CreateBackend(cpu_options);
  ASSERT_TRUE(cpu2.ok());
  kernels::gpu_test::RoundingBackend rounding(std::move(*cpu2), dtype,
                                              shape.vocab);
  const double budget = kernels::gpu_test::RelErr(
      RunSchedule(options.out_dir, &rounding, tokens), want);

  kernels::BackendOptions gpu_options;
  gpu_options.device = "cuda";
  gpu_options.cuda_dtype = dtype;
  auto gpu = kernels::CreateBackend(gpu_options);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const double err = kernels::gpu_test::RelErr(
      RunSchedule(options.out_dir, gpu->get(), tokens), want);
  RecordProperty("rel_err", std::to_string(err));
  RecordProperty("rounding_budget", std::to_string(budget));
  EXPECT_LT(err, std::max(3 * budget, 1e-3)) << "budget " << budget;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaMkModelTest,
    ::testing::Combine(
        ::testing::Values(ModelShape{"bloom_d64", "bloom", 512, 8, 8, 2, 2048},
                          ModelShape{"mpt_gqa_d128", "mpt", 512, 4, 2, 2,
                                     2048}),
        ::testing::Values(kernels::DType::kBF16, kernels::DType::kF16)),
    [](const auto& info) {
      return std::get<0>(info.param).name +
             (std::get<1>(info.param) == kernels::DType::kBF16 ? "_bf16"
                                                               : "_fp16");
    });

}  // namespace
}  // namespace alibi::model
