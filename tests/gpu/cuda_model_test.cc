// The whole forward pass of both fixture models (tests/data/models) on the
// CUDA backend, bf16 and fp16, against the float64 reference
// (tests/data/reference): per-position log-probs within 2e-2 absolute in
// fp16 (bf16: within the looser bounds of logprob_check.h, which
// rounding_budget_test shows a correct bf16 pass meets), fed whole and in
// chunks through the paged KV cache (sequences run up to 8x
// past the trained length), greedy continuations decoded token by token, and
// a step that mixes one sequence's prefill with another's decode.
//
// Skips (GTEST_SKIP) when no CUDA device is visible.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "nlohmann/json.hpp"
#include "server/model/model.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/logprob_check.h"
#include "tests/testing/forwarding_backend.h"

namespace alibi::model {
namespace {

constexpr int kBlockSize = 16;
using kernels::gpu_test::CompareLogprobs;
using kernels::gpu_test::LogprobErrors;
using kernels::gpu_test::LogSoftmax;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

using Param = std::tuple<std::string, kernels::DType>;

class CudaModelTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    ALIBI_SKIP_WITHOUT_CUDA();
    name_ = std::get<0>(GetParam());
    kernels::BackendOptions options;
    options.device = "cuda";
    options.cuda_dtype = std::get<1>(GetParam());
    auto backend = kernels::CreateBackend(options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    auto model = Model::Load(
        std::string(ALIBI_TEST_DATA_DIR) + "/models/" + name_, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    ASSERT_TRUE(model_->AllocateKvCache(160, kBlockSize).ok());
    ref_ = ReadJson(std::string(ALIBI_TEST_DATA_DIR) + "/reference/" + name_ +
                    ".json");
  }

  int vocab() const { return model_->config().vocab_size; }

  // Blocks for sequence `slot` (0 or 1): disjoint halves of the pool, in
  // reverse order, to exercise the block table.
  int32_t BlockOf(int slot, int index) const {
    return model_->kv_num_blocks() - 1 - index - slot * 80;
  }

  // Runs `ids` `chunk` tokens at a time as sequence `slot`; logits of every
  // position, [n, vocab].
  std::vector<float> RunChunked(const std::vector<int32_t>& ids, int chunk,
                                int slot = 0) {
    const int n = static_cast<int>(ids.size());
    const int blocks = (n + kBlockSize - 1) / kBlockSize;
    std::vector<int32_t> table(blocks);
    for (int b = 0; b < blocks; ++b) table[b] = BlockOf(slot, b);
    std::vector<float> all(static_cast<size_t>(n) * vocab());
    for (int start = 0; start < n; start += chunk) {
      const int len = std::min(chunk, n - start);
      ForwardBatch batch;
      batch.token_ids.assign(ids.begin() + start, ids.begin() + start + len);
      batch.query_start = {0, len};
      batch.context_lens = {start + len};
      batch.max_blocks_per_seq = blocks;
      batch.block_tables = table;
      for (int p = start; p < start + len; ++p) {
        batch.slot_mapping.push_back(table[p / kBlockSize] * kBlockSize +
                                     p % kBlockSize);
        batch.logit_rows.push_back(p - start);
      }
      absl::Span<float> out(all.data() + static_cast<size_t>(start) * vocab(),
                            static_cast<size_t>(len) * vocab());
      const absl::Status status = model_->Forward(batch, out);
      EXPECT_TRUE(status.ok()) << status;
      if (!status.ok()) break;
    }
    return all;
  }

  kernels::DType dtype() const { return std::get<1>(GetParam()); }
  double max_tol() const {
    return kernels::gpu_test::LogprobMaxTolerance(dtype());
  }
  double mean_tol() const {
    return kernels::gpu_test::LogprobMeanTolerance(dtype());
  }

  std::string name_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<Model> model_;
  nlohmann::json ref_;
};

TEST_P(CudaModelTest, PromptLogprobsMatchReferenceWholeAndChunked) {
  for (const auto& seq : ref_["sequences"]) {
    const std::string seq_name = seq["name"];
    const std::vector<int32_t> ids = seq["token_ids"];
    const int n = static_cast<int>(ids.size());
    ASSERT_LE(n, 80 * kBlockSize);
    for (int chunk : {n, 64, 7}) {
      const std::vector<float> logits = RunChunked(ids, chunk);
      const LogprobErrors err = CompareLogprobs(seq, logits, vocab());
      EXPECT_LT(err.max, max_tol())
          << seq_name << " (" << n << " tokens) chunk " << chunk;
      EXPECT_LT(err.mean, mean_tol())
          << seq_name << " (" << n << " tokens) chunk " << chunk;
      RecordProperty(
          seq_name + "_chunk" + std::to_string(chunk) + "_max_logprob_error",
          std::to_string(err.max));
      if (chunk == n && seq.contains("last_logits")) {
        const std::vector<double> want = seq["last_logits"];
        std::vector<float> got(logits.end() - vocab(), logits.end());
        std::vector<float> want_f(want.begin(), want.end());
        RecordProperty(seq_name + "_last_logits_rel_err",
                       std::to_string(kernels::gpu_test::RelErr(got, want_f)));
      }
    }
  }
}

TEST_P(CudaModelTest, GreedyContinuationsDecodeTokenByToken) {
  for (const auto& seq : ref_["sequences"]) {
    if (!seq.contains("greedy16")) continue;
    std::vector<int32_t> ids = seq["token_ids"];
    const std::vector<float> logits = RunChunked(ids, 64);
    std::vector<float> last(logits.end() - vocab(), logits.end());
    for (const auto& step : seq["greedy16"]) {
      const std::vector<double> lp = LogSoftmax(last.data(), vocab());
      const int32_t want = step["token"];
      EXPECT_NEAR(lp[want], step["logprob"].get<double>(), max_tol())
          << seq["name"] << " after " << ids.size();
      // Where the reference's lead is clear of rounding noise, argmax
      // agrees.
      if (step["margin"].get<double>() > 2 * max_tol()) {
        const int32_t best = static_cast<int32_t>(
            std::max_element(lp.begin(), lp.end()) - lp.begin());
        ASSERT_EQ(best, want) << seq["name"] << " after " << ids.size();
      }
      ids.push_back(want);
      const int n = static_cast<int>(ids.size());
      const int blocks = (n + kBlockSize - 1) / kBlockSize;
      ForwardBatch batch;
      for (int b = 0; b < blocks; ++b)
        batch.block_tables.push_back(BlockOf(0, b));
      batch.token_ids = {want};
      batch.query_start = {0, 1};
      batch.context_lens = {n};
      batch.max_blocks_per_seq = blocks;
      batch.slot_mapping = {BlockOf(0, (n - 1) / kBlockSize) * kBlockSize +
                            (n - 1) % kBlockSize};
      batch.logit_rows = {0};
      ASSERT_TRUE(model_->Forward(batch, absl::MakeSpan(last)).ok());
    }
  }
}

// One step holding sequence A's whole prompt (prefill) and one decode token
// of sequence B (whose prompt minus its last token is already cached): both
// agree with the reference, so batching changes nothing beyond rounding.
TEST_P(CudaModelTest, MixedPrefillAndDecodeStep) {
  const auto& seqs = ref_["sequences"];
  ASSERT_GE(seqs.size(), 3u);
  const auto& a = seqs[2];  // paragraph: past the trained length
  const auto& b = seqs[1];
  const std::vector<int32_t> ids_a = a["token_ids"];
  const std::vector<int32_t> ids_b = b["token_ids"];
  const int na = static_cast<int>(ids_a.size());
  const int nb = static_cast<int>(ids_b.size());
  // Cache B's first nb - 1 tokens as sequence slot 1.
  RunChunked(std::vector<int32_t>(ids_b.begin(), ids_b.end() - 1), 64, 1);

  const int blocks_a = (na + kBlockSize - 1) / kBlockSize;
  const int blocks_b = (nb + kBlockSize - 1) / kBlockSize;
  const int max_blocks = std::max(blocks_a, blocks_b);
  ForwardBatch batch;
  batch.token_ids = ids_a;
  batch.token_ids.push_back(ids_b.back());
  batch.query_start = {0, na, na + 1};
  batch.context_lens = {na, nb};
  batch.max_blocks_per_seq = max_blocks;
  batch.block_tables.assign(2 * max_blocks, 0);
  for (int i = 0; i < blocks_a; ++i) batch.block_tables[i] = BlockOf(0, i);
  for (int i = 0; i < blocks_b; ++i) {
    batch.block_tables[max_blocks + i] = BlockOf(1, i);
  }
  for (int p = 0; p < na; ++p) {
    batch.slot_mapping.push_back(BlockOf(0, p / kBlockSize) * kBlockSize +
                                 p % kBlockSize);
    batch.logit_rows.push_back(p);
  }
  batch.slot_mapping.push_back(BlockOf(1, (nb - 1) / kBlockSize) * kBlockSize +
                               (nb - 1) % kBlockSize);
  batch.logit_rows.push_back(na);
  std::vector<float> logits(static_cast<size_t>(na + 1) * vocab());
  ASSERT_TRUE(model_->Forward(batch, absl::MakeSpan(logits)).ok());
  std::vector<float> logits_a(
      logits.begin(), logits.begin() + static_cast<size_t>(na) * vocab());
  const LogprobErrors err_a = CompareLogprobs(a, logits_a, vocab());
  EXPECT_LT(err_a.max, max_tol());
  EXPECT_LT(err_a.mean, mean_tol());
  // B's last position predicts nothing in prompt_logprobs; compare with its
  // own whole-sequence run instead (position nb - 1 of that run).
  const std::vector<float> alone = RunChunked(ids_b, nb);
  const std::vector<double> lp_mixed =
      LogSoftmax(logits.data() + static_cast<size_t>(na) * vocab(), vocab());
  const std::vector<double> lp_alone =
      LogSoftmax(alone.data() + static_cast<size_t>(nb - 1) * vocab(), vocab());
  double worst = 0;
  for (int i = 0; i < vocab(); ++i) {
    if (lp_alone[i] > -20) {
      worst = std::max(worst, std::abs(lp_mixed[i] - lp_alone[i]));
    }
  }
  EXPECT_LT(worst, max_tol());
}

// Decode steps of three sequences replay a CUDA graph recorded for their
// bucket (four sequences, one of them padding): the same log-probs, up to
// rounding, as the same steps run eagerly, and the recording is replayed.
TEST_P(CudaModelTest, DecodeGraphsMatchEagerDecodes) {
  class CountingBackend : public ::alibi::testing::ForwardingBackend {
   public:
    using ForwardingBackend::ForwardingBackend;
    absl::StatusOr<kernels::GraphMode> BeginGraph(uint64_t key) override {
      absl::StatusOr<kernels::GraphMode> mode = inner().BeginGraph(key);
      if (mode.ok()) ++modes[static_cast<int>(*mode)];
      return mode;
    }
    int modes[3] = {0, 0, 0};  // eager, capture, replayed
  };
  kernels::BackendOptions options;
  options.device = "cuda";
  options.cuda_dtype = dtype();
  auto cuda = kernels::CreateBackend(options);
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  CountingBackend counting(std::move(*cuda));
  ASSERT_TRUE(counting.SupportsGraphs());
  auto model = Model::Load(
      std::string(ALIBI_TEST_DATA_DIR) + "/models/" + name_, &counting);
  ASSERT_TRUE(model.ok()) << model.status();
  constexpr int kSeqs = 3, kBlocksPerSeq = 40;
  ASSERT_TRUE(
      (*model)->AllocateKvCache(kSeqs * kBlocksPerSeq, kBlockSize).ok());
  const auto& refs = ref_["sequences"];
  ASSERT_GE(refs.size(), 3u);
  std::vector<int> length(kSeqs);
  auto slot = [](int s, int pos) {
    return (s * kBlocksPerSeq + pos / kBlockSize) * kBlockSize +
           pos % kBlockSize;
  };
  auto table = [](ForwardBatch& b, int s) {
    for (int i = 0; i < kBlocksPerSeq; ++i) {
      b.block_tables.push_back(s * kBlocksPerSeq + i);
    }
  };
  for (int s = 0; s < kSeqs; ++s) {  // prefills
    const std::vector<int32_t> ids = refs[s]["token_ids"];
    ForwardBatch b;
    b.token_ids = ids;
    length[s] = static_cast<int>(ids.size());
    b.query_start = {0, length[s]};
    b.context_lens = {length[s]};
    b.max_blocks_per_seq = kBlocksPerSeq;
    table(b, s);
    for (int p = 0; p < length[s]; ++p) b.slot_mapping.push_back(slot(s, p));
    b.logit_rows = {length[s] - 1};
    std::vector<float> logits(vocab());
    ASSERT_TRUE((*model)->Forward(b, absl::MakeSpan(logits)).ok());
  }
  for (int step = 0; step < 6; ++step) {
    ForwardBatch b;
    b.query_start = {0};
    b.max_blocks_per_seq = kBlocksPerSeq;
    for (int s = 0; s < kSeqs; ++s) {
      b.token_ids.push_back((step * 7919 + s * 104729) % vocab());
      b.slot_mapping.push_back(slot(s, length[s]));
      ++length[s];
      b.query_start.push_back(s + 1);
      b.context_lens.push_back(length[s]);
      table(b, s);
      b.logit_rows.push_back(s);
    }
    std::vector<float> graphed(kSeqs * static_cast<size_t>(vocab()));
    std::vector<float> eager(graphed.size());
    (*model)->set_decode_graphs(true);
    ASSERT_TRUE((*model)->Forward(b, absl::MakeSpan(graphed)).ok());
    (*model)->set_decode_graphs(false);  // rewrites the same KV slots
    ASSERT_TRUE((*model)->Forward(b, absl::MakeSpan(eager)).ok());
    for (int s = 0; s < kSeqs; ++s) {
      const std::vector<double> lg = LogSoftmax(
          graphed.data() + s * static_cast<size_t>(vocab()), vocab());
      const std::vector<double> le =
          LogSoftmax(eager.data() + s * static_cast<size_t>(vocab()), vocab());
      double worst = 0;
      for (int i = 0; i < vocab(); ++i) {
        if (le[i] > -20) worst = std::max(worst, std::abs(lg[i] - le[i]));
      }
      EXPECT_LT(worst, max_tol()) << "step " << step << " sequence " << s;
    }
  }
  // Step 0 eager, step 1 captured, steps 2-5 replayed.
  EXPECT_EQ(counting.modes[1], 1);
  EXPECT_EQ(counting.modes[2], 4);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, CudaModelTest,
    ::testing::Combine(::testing::Values("tiny-bloom", "tiny-mpt"),
                       ::testing::Values(kernels::DType::kBF16,
                                         kernels::DType::kF16)),
    kernels::gpu_test::FixtureParamName);

}  // namespace
}  // namespace alibi::model
