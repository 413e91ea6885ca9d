// Sliding-window KV (issue 16) through the real engine on the CPU backend:
// windowed scoring equals the banded-mask reference (the whole text in one
// forward pass on the reference backend with the window as a mask, nothing
// evicted) on both fixture families, whatever the chunking, bit for bit
// across chunk sizes and equal to plain scoring when the window covers the
// text; a long windowed generation holds a bounded number of blocks.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "server/engine/engine_core.h"
#include "server/model/model.h"
#include "tests/testing/forwarding_backend.h"

namespace alibi::engine {
namespace {

constexpr int kBlockSize = 16;

std::string ModelDir(const std::string& name) {
  return std::string(ALIBI_TEST_DATA_DIR) + "/models/" + name;
}

// The fast CPU backend ("cpu") serves; the reference oracle ("ref") computes
// the banded reference.
std::unique_ptr<kernels::Backend> Cpu(const std::string& device = "cpu") {
  kernels::BackendOptions options;
  options.device = device;
  options.num_threads = 2;
  auto backend = kernels::CreateBackend(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return std::move(*backend);
}

std::vector<int32_t> RandomText(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = 3 + static_cast<int32_t>(rng() % 20000);
  return ids;
}

// log p(ids[i+1] | ids[max(0, i-W+1)..i]) for every i, from one forward pass
// over the whole text with the window as a mask and nothing evicted.
std::vector<double> BandedReference(const std::string& name,
                                    const std::vector<int32_t>& ids,
                                    int window) {
    std::unique_ptr<kernels::Backend> backend = Cpu("ref");
  auto model = model::Model::Load(ModelDir(name), backend.get());
  EXPECT_TRUE(model.ok()) << model.status();
  const int n = static_cast<int>(ids.size());
  const int blocks = (n + kBlockSize - 1) / kBlockSize;
  EXPECT_TRUE((*model)->AllocateKvCache(blocks, kBlockSize).ok());
  model::ForwardBatch batch;
  batch.token_ids = ids;
  batch.query_start = {0, n};
  batch.context_lens = {n};
  batch.max_blocks_per_seq = blocks;
  for (int b = 0; b < blocks; ++b) batch.block_tables.push_back(b);
  for (int p = 0; p < n; ++p) {
    batch.slot_mapping.push_back(p);
    if (p + 1 < n) batch.logit_rows.push_back(p);
  }
  batch.windows = {window};
  batch.first_blocks = {0};
  const int vocab = (*model)->config().vocab_size;
  std::vector<double> out;
  const absl::Status status = (*model)->Forward(
      batch,
      [&](int first_row, int num_rows, const float* logits) {
        for (int r = 0; r < num_rows; ++r) {
          const float* row = logits + static_cast<size_t>(r) * vocab;
          double m = *std::max_element(row, row + vocab), z = 0;
          for (int v = 0; v < vocab; ++v) z += std::exp(double{row[v]} - m);
          out.push_back(row[ids[first_row + r + 1]] - m - std::log(z));
        }
        return absl::OkStatus();
      },
      64);
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

// Scores `ids` through an engine whose steps compute at most `budget` tokens
// and whose pool holds `num_blocks` blocks.
std::vector<float> EngineScore(const std::string& name,
                               const std::vector<int32_t>& ids, int window,
                               int budget, int num_blocks) {
  std::unique_ptr<kernels::Backend> backend = Cpu();
  auto model = model::Model::Load(ModelDir(name), backend.get());
  EXPECT_TRUE(model.ok()) << model.status();
  EngineConfig config;
  config.scheduler.kv.num_blocks = num_blocks;
  config.scheduler.kv.block_size = kBlockSize;
  config.scheduler.max_num_batched_tokens = budget;
  auto engine =
      CreateEngine(config, std::move(backend), std::move(*model), nullptr);
  EXPECT_TRUE(engine.ok()) << engine.status();
  EngineRequest r;
  r.prompt = ids;
  r.generate = false;
  r.max_tokens = 0;
  r.prompt_logprobs = true;
  r.kv_window = window;
  auto stream = std::make_shared<OutputStream>();
  const absl::Status submitted = (*engine)->Submit(r, stream);
  EXPECT_TRUE(submitted.ok()) << submitted;
  if (!submitted.ok()) return {};
  EngineOutput all;
  while (!all.finished) {
    if (auto d = stream->WaitAndTake(absl::Seconds(60))) {
      all.Merge(std::move(*d));
    } else {
      ADD_FAILURE() << "no output for a minute";
      break;
    }
  }
  EXPECT_TRUE(all.status.ok()) << all.status;
  std::vector<float> out;
  for (const TokenLogprobs& lp : all.prompt_logprobs) out.push_back(lp.logprob);
  return out;
}

struct WindowCase {
  std::string model;
  int window;
};

class WindowedScoreTest : public ::testing::TestWithParam<WindowCase> {};

TEST_P(WindowedScoreTest, MatchesTheBandedReferenceWhileEvicting) {
  const WindowCase& c = GetParam();
  const std::vector<int32_t> ids = RandomText(20 * c.window, c.window);
  const std::vector<double> want = BandedReference(c.model, ids, c.window);
  // A pool of at most 24 blocks, far less than the text's (8-125), and
  // 64-token steps: the window slides and blocks are released throughout.
  const std::vector<float> got = EngineScore(c.model, ids, c.window, 64, 24);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-4) << "position " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, WindowedScoreTest,
    ::testing::Values(WindowCase{"tiny-bloom", 37},
                      WindowCase{"tiny-bloom", 64},
                      WindowCase{"tiny-bloom", 100}, WindowCase{"tiny-mpt", 37},
                      WindowCase{"tiny-mpt", 64}, WindowCase{"tiny-mpt", 100}),
    [](const auto& info) {
      return (info.param.model == "tiny-bloom" ? std::string("Bloom")
                                               : std::string("Mpt")) +
             std::to_string(info.param.window);
    });

TEST(WindowedScoreTest, ChunkSizesGiveBitIdenticalResults) {
  for (const char* name : {"tiny-bloom", "tiny-mpt"}) {
    const std::vector<int32_t> ids = RandomText(20 * 37, 11);
    const std::vector<float> by64 = EngineScore(name, ids, 37, 64, 24);
    EXPECT_EQ(EngineScore(name, ids, 37, 7, 24), by64) << name;
    EXPECT_EQ(EngineScore(name, ids, 37, 1, 24), by64) << name;
  }
}

TEST(WindowedScoreTest, AWindowCoveringTheTextChangesNothing) {
  for (const char* name : {"tiny-bloom", "tiny-mpt"}) {
    const std::vector<int32_t> ids = RandomText(300, 12);
    const std::vector<float> plain = EngineScore(name, ids, 0, 64, 64);
    EXPECT_EQ(EngineScore(name, ids, 300, 64, 64), plain) << name;
    EXPECT_EQ(EngineScore(name, ids, 1024, 64, 64), plain) << name;
  }
}

// Records the most KV blocks any sequence's attention reaches in one step.
class BlockWatcher : public testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  std::atomic<int> max_blocks{0};
  std::atomic<int> steps{0};

  absl::Status PagedAttention(kernels::TensorView q,
                              const kernels::PagedKvView& kv,
                              const kernels::AttentionMeta& meta,
                              const float* slopes, int heads, float scale,
                              kernels::TensorView out) override {
    for (int s = 0; s < meta.num_seqs; ++s) {
      const int first = meta.first_blocks != nullptr ? meta.first_blocks[s] : 0;
      const int held =
          (meta.context_lens[s] + kv.block_size - 1) / kv.block_size - first;
      int expected = max_blocks.load();
      while (held > expected &&
             !max_blocks.compare_exchange_weak(expected, held)) {
      }
    }
    ++steps;
    return ForwardingBackend::PagedAttention(q, kv, meta, slopes, heads, scale,
                                             out);
  }
};

TEST(WindowedGenerationTest, TwentyThousandTokensInBoundedBlocks) {
  auto backend = std::make_unique<BlockWatcher>(Cpu());
  BlockWatcher* watcher = backend.get();
  auto model = model::Model::Load(ModelDir("tiny-mpt"), backend.get());
  ASSERT_TRUE(model.ok()) << model.status();
  EngineConfig config;
  config.scheduler.kv.num_blocks = 64;  // 1024 tokens: far less than 20,000
  config.scheduler.max_num_batched_tokens = 64;
  auto engine =
      CreateEngine(config, std::move(backend), std::move(*model), nullptr);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EngineRequest r;
  r.prompt = RandomText(8, 3);
  r.max_tokens = 20000;
  r.ignore_eos = true;
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 5;
  r.kv_window = 256;
  auto stream = std::make_shared<OutputStream>();
  ASSERT_TRUE((*engine)->Submit(r, stream).ok());
  int tokens = 0;
  bool finished = false;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    if (auto d = stream->WaitAndTake(absl::Seconds(10))) {
      tokens += static_cast<int>(d->token_ids.size());
      finished = d->finished;
      ASSERT_TRUE(d->status.ok()) << d->status;
    }
  }
  EXPECT_EQ(tokens, 20000);
  EXPECT_GE(watcher->steps.load(), 20000);
  // ceil(256 / 16) + 1 blocks at most, while 20,008 positions went by.
  EXPECT_LE(watcher->max_blocks.load(), 256 / 16 + 1);
  const EngineSnapshot s = (*engine)->GetSnapshot();
  EXPECT_GT(s.window_released_blocks, 1000u);
  EXPECT_EQ(s.kv_blocks_used, 0);
}

}  // namespace
}  // namespace alibi::engine
