// Graphs for decode-only steps, on the CPU: the bucketing and padding
// (server/model/decode_graph.h), and the model's capture / replay protocol
// end to end through a backend that records op sequences the way a CUDA
// graph does (the ops issued during a capture do not run; a replay re-runs
// them with the arguments they were issued with, on whatever the buffers
// hold by then). A model decoding through it must give bitwise the logits of
// a model on the plain CPU backend (batch invariant), through bucket changes,
// context-bucket growth, replays and workspace growth.
#include "server/model/decode_graph.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "server/model/model.h"
#include "tests/model/test_util.h"
#include "tests/testing/forwarding_backend.h"

namespace alibi::model {
namespace {

ForwardBatch DecodeBatch(const std::vector<int>& contexts, int block_size,
                         int max_blocks) {
  ForwardBatch b;
  b.query_start = {0};
  b.max_blocks_per_seq = max_blocks;
  for (size_t s = 0; s < contexts.size(); ++s) {
    b.token_ids.push_back(7 + static_cast<int>(s));
    b.query_start.push_back(b.query_start.back() + 1);
    b.context_lens.push_back(contexts[s]);
    for (int i = 0; i < max_blocks; ++i) {
      b.block_tables.push_back(static_cast<int>(s) * max_blocks + i + 1);
    }
    const int pos = contexts[s] - 1;
    b.slot_mapping.push_back(
        (static_cast<int>(s) * max_blocks + pos / block_size + 1) * block_size +
        pos % block_size);
    b.logit_rows.push_back(static_cast<int>(s));
  }
  return b;
}

TEST(DecodeGraphTest, BucketsGrowByAtMostAQuarter) {
  const std::vector<int>& buckets = DecodeBatchBuckets();
  ASSERT_EQ(buckets.front(), 1);
  EXPECT_EQ(buckets.back(), 512);
  for (size_t i = 1; i < buckets.size(); ++i) {
    EXPECT_GT(buckets[i], buckets[i - 1]);
    EXPECT_LE(buckets[i] - buckets[i - 1], std::max(8, buckets[i - 1] / 4))
        << buckets[i];
  }
}

TEST(DecodeGraphTest, PaddedSequenceCounts) {
  EXPECT_EQ(PaddedDecodeSeqs(1), 1);
  EXPECT_EQ(PaddedDecodeSeqs(3), 4);
  EXPECT_EQ(PaddedDecodeSeqs(256), 256);
  EXPECT_EQ(PaddedDecodeSeqs(257), 320);
  EXPECT_EQ(PaddedDecodeSeqs(600), 600);  // past the buckets: eager
}

TEST(DecodeGraphTest, ChoosesTheSmallestBucketThatHoldsTheStep) {
  auto bucket = ChooseDecodeBucket(DecodeBatch({5, 300, 17}, 16, 20), 16);
  ASSERT_TRUE(bucket.has_value());
  EXPECT_EQ(bucket->batch, 4);
  EXPECT_EQ(bucket->context, 512);
  EXPECT_EQ(bucket->blocks_per_seq, 32);
  // Keys differ between buckets and agree within one.
  auto same = ChooseDecodeBucket(DecodeBatch({400, 2, 2, 2}, 16, 30), 16);
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(same->key, bucket->key);
  std::map<uint64_t, std::pair<int, int>> keys;  // key -> (batch, context)
  for (int n : {1, 2, 3, 5, 9, 33, 65, 129, 200, 257, 512}) {
    for (int ctx : {1, 256, 257, 4000, 65536}) {
      auto b = ChooseDecodeBucket(
          DecodeBatch(std::vector<int>(n, ctx), 16, (ctx + 15) / 16), 16);
      ASSERT_TRUE(b.has_value()) << n << " " << ctx;
      EXPECT_GE(b->batch, n);
      EXPECT_GE(b->context, std::max(ctx, kMinDecodeGraphContext));
      EXPECT_LT(b->context, 2 * std::max(ctx, kMinDecodeGraphContext));
      EXPECT_GE(b->blocks_per_seq * 16, b->context);
      // One key per (batch, context) bucket.
      const auto [it, inserted] =
          keys.emplace(b->key, std::pair(b->batch, b->context));
      EXPECT_EQ(it->second, std::pair(b->batch, b->context));
    }
  }
  EXPECT_EQ(keys.size(), 11u * 4);  // contexts 1 and 256 share a bucket
  // Block size 1 and 32.
  EXPECT_EQ(ChooseDecodeBucket(DecodeBatch({600}, 1, 600), 1)->blocks_per_seq,
            1024);
  EXPECT_EQ(ChooseDecodeBucket(DecodeBatch({600}, 32, 19), 32)->blocks_per_seq,
            32);
}

TEST(DecodeGraphTest, OnlyDecodeOnlyStepsWithinTheLimitsQualify) {
  ForwardBatch prefill = DecodeBatch({40, 8}, 16, 3);
  prefill.token_ids.push_back(1);  // sequence 1 gets two query rows
  prefill.query_start.back() = 3;
  prefill.slot_mapping.push_back(0);
  EXPECT_FALSE(ChooseDecodeBucket(prefill, 16).has_value());
  EXPECT_FALSE(
      ChooseDecodeBucket(DecodeBatch(std::vector<int>(513, 9), 16, 1), 16)
          .has_value());
  EXPECT_FALSE(ChooseDecodeBucket(
                   DecodeBatch({kMaxDecodeGraphContext + 1}, 16, 4097), 16)
                   .has_value());
    EXPECT_FALSE(ChooseDecodeBucket(DecodeBatch({5}, 16, 1), 0).has_value());
  ForwardBatch windowed = DecodeBatch({40, 8}, 16, 3);
  ASSERT_TRUE(ChooseDecodeBucket(windowed, 16).has_value());
  windowed.windows = {32, 0};
  windowed.first_blocks = {0, 0};
  EXPECT_FALSE(ChooseDecodeBucket(windowed, 16).has_value());
}

TEST(DecodeGraphTest, PaddingRowsAreInert) {
  const ForwardBatch in = DecodeBatch({5, 300, 17}, 16, 20);
  const DecodeBucket bucket = *ChooseDecodeBucket(in, 16);
  const ForwardBatch out = PadToBucket(in, bucket);
  ASSERT_EQ(out.num_seqs(), 4);
  ASSERT_EQ(out.num_tokens(), 4);
  EXPECT_EQ(out.query_start, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(out.token_ids, (std::vector<int32_t>{7, 8, 9, 0}));
  EXPECT_EQ(out.context_lens, (std::vector<int32_t>{5, 300, 17, 1}));
  EXPECT_EQ(out.slot_mapping[3], -1);
  EXPECT_EQ(out.logit_rows, in.logit_rows);
  ASSERT_EQ(out.max_blocks_per_seq, 32);
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(out.block_tables[s * 32 + i], in.block_tables[s * 20 + i]);
    }
  }
  EXPECT_EQ(out.block_tables[3 * 32], 0);
}

// Records op sequences like a CUDA graph: ops issued while capturing are
// kept (with their arguments) and not run; EndGraph runs them, a replay runs
// them again. Anything that cannot be recorded fails while capturing.
class RecordingBackend : public ::alibi::testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;

  int captures = 0, replays = 0, clears = 0;

  bool SupportsGraphs() const override { return true; }
  absl::StatusOr<kernels::GraphMode> BeginGraph(uint64_t key) override {
    if (recording_ != nullptr) return Refuse("BeginGraph");
    Graph& g = graphs_[key];
    if (g.ready) {
      ++replays;
      for (const auto& op : g.ops) RETURN_IF_ERROR(op());
      return kernels::GraphMode::kReplayed;
    }
    if (++g.seen < 2) return kernels::GraphMode::kEager;
    ++captures;
    g.ops.clear();
    recording_ = &g;
    return kernels::GraphMode::kCapture;
  }
  absl::Status EndGraph(bool keep) override {
    Graph* g = recording_;
    recording_ = nullptr;
    if (g == nullptr) return absl::FailedPreconditionError("no capture");
    if (!keep) {
      g->ops.clear();
      return absl::OkStatus();
    }
    g->ready = true;
    for (const auto& op : g->ops) RETURN_IF_ERROR(op());
    return absl::OkStatus();
  }
  void ClearGraphs() override {
    ++clears;
    graphs_.clear();
  }

  absl::StatusOr<kernels::Buffer> Allocate(size_t bytes) override {
    if (recording_ != nullptr) return Refuse("Allocate");
    return ForwardingBackend::Allocate(bytes);
  }
  absl::Status CopyToDevice(void* dst, const void* src, size_t n) override {
    if (recording_ != nullptr) return Refuse("CopyToDevice");
    return ForwardingBackend::CopyToDevice(dst, src, n);
  }
  absl::Status CopyToHost(void* dst, const void* src, size_t n) override {
    if (recording_ != nullptr) return Refuse("CopyToHost");
    return ForwardingBackend::CopyToHost(dst, src, n);
  }
  absl::Status Synchronize() override {
    if (recording_ != nullptr) return Refuse("Synchronize");
    return ForwardingBackend::Synchronize();
  }
  absl::Status Embedding(const int32_t* ids, int n, kernels::TensorView table,
                         kernels::TensorView out) override {
    return Issue([=, this] { return inner().Embedding(ids, n, table, out); });
  }
  absl::Status GatherRows(kernels::TensorView in, const int32_t* rows, int n,
                          kernels::TensorView out) override {
    return Issue([=, this] { return inner().GatherRows(in, rows, n, out); });
  }
  absl::Status LayerNorm(kernels::TensorView in, const float* gamma,
                         const float* beta, float eps,
                         kernels::TensorView out) override {
    return Issue(
        [=, this] { return inner().LayerNorm(in, gamma, beta, eps, out); });
  }
  absl::Status Linear(kernels::TensorView in, kernels::TensorView weight,
                      const kernels::LinearEpilogue& epi,
                      kernels::TensorView out) override {
    return Issue([=, this] { return inner().Linear(in, weight, epi, out); });
  }
  absl::Status WriteKv(kernels::TensorView k, kernels::TensorView v,
                       const int32_t* slots, int n,
                       const kernels::PagedKvView& kv) override {
    return Issue([=, this] { return inner().WriteKv(k, v, slots, n, kv); });
  }
  absl::Status PagedAttention(kernels::TensorView q,
                              const kernels::PagedKvView& kv,
                              const kernels::AttentionMeta& meta,
                              const float* slopes, int heads, float scale,
                              kernels::TensorView out) override {
    return Issue([=, this] {
      return inner().PagedAttention(q, kv, meta, slopes, heads, scale, out);
    });
  }

 private:
  struct Graph {
    int seen = 0;
    bool ready = false;
    std::vector<std::function<absl::Status()>> ops;
  };

  absl::Status Issue(std::function<absl::Status()> op) {
    if (recording_ == nullptr) return op();
    recording_->ops.push_back(std::move(op));
    return absl::OkStatus();
  }
  static absl::Status Refuse(const char* what) {
    return absl::FailedPreconditionError(std::string(what) +
                                         " is not allowed while capturing");
  }

  std::map<uint64_t, Graph> graphs_;
  Graph* recording_ = nullptr;
};

std::unique_ptr<kernels::Backend> Cpu() {
  kernels::BackendOptions options;
  options.device = "cpu";
  options.num_threads = 2;
  auto backend = kernels::CreateBackend(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return std::move(*backend);
}

// Two models on the tiny-bloom fixture, one through the recording backend:
// prefills, then decode steps whose batch changes bucket (1 .. 9 sequences)
// and whose contexts cross the 256-token context bucket; every step's logits
// must be bitwise equal.
TEST(DecodeGraphTest, RecordedDecodeStepsMatchEagerOnesBitwise) {
  constexpr int kBlockSize = 16, kBlocksPerSeq = 24, kSeqs = 9;
  auto plain_backend = Cpu();
  auto recording = std::make_unique<RecordingBackend>(Cpu());
  RecordingBackend& rec = *recording;
  auto plain = Model::Load(testing::TinyBloomDir(), plain_backend.get());
  auto graphed = Model::Load(testing::TinyBloomDir(), recording.get());
  ASSERT_TRUE(plain.ok() && graphed.ok());
  for (Model* m : {plain->get(), graphed->get()}) {
    ASSERT_TRUE(m->AllocateKvCache(kSeqs * kBlocksPerSeq + 1, kBlockSize).ok());
    ASSERT_TRUE(m->Reserve(300, 16).ok());  // as the server does
  }
  const int vocab = (*plain)->config().vocab_size;
  uint32_t lcg = 12345;
  auto next_token = [&] {
    lcg = lcg * 1664525u + 1013904223u;
    return static_cast<int32_t>((lcg >> 8) % vocab);
  };
  // Sequence s holds blocks 1 + s * kBlocksPerSeq ... (block 0 is left to
  // the padding rows).
  std::vector<int> length(kSeqs, 0);
  auto step = [&](const std::vector<std::pair<int, int>>& pieces) {
    ForwardBatch b;
    b.query_start = {0};
    b.max_blocks_per_seq = kBlocksPerSeq;
    for (const auto& [seq, n] : pieces) {
      for (int i = 0; i < n; ++i) {
        const int pos = length[seq] + i;
        b.token_ids.push_back(next_token());
        b.slot_mapping.push_back((1 + seq * kBlocksPerSeq + pos / kBlockSize) *
                                     kBlockSize +
                                 pos % kBlockSize);
      }
      length[seq] += n;
      b.query_start.push_back(b.query_start.back() + n);
      b.context_lens.push_back(length[seq]);
      b.logit_rows.push_back(b.query_start.back() - 1);
      for (int i = 0; i < kBlocksPerSeq; ++i) {
        b.block_tables.push_back(1 + seq * kBlocksPerSeq + i);
      }
    }
    const size_t size = b.logit_rows.size() * static_cast<size_t>(vocab);
    std::vector<float> want(size), got(size);
    ASSERT_TRUE((*plain)->Forward(b, absl::MakeSpan(want)).ok());
    absl::Status s = (*graphed)->Forward(b, absl::MakeSpan(got));
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(got, want) << "step of " << pieces.size() << " sequences";
  };
  for (int s = 0; s < kSeqs; ++s) step({{s, 200 + 7 * s}});  // prefills
  for (int round = 0; round < 10; ++round) {
    const int n = 1 + round % kSeqs;  // buckets 1, 2, 4, 4, 8, 8, 8, 8, 16
    std::vector<std::pair<int, int>> pieces;
    for (int s = 0; s < n; ++s) pieces.push_back({s, 1});
    for (int repeat = 0; repeat < 3; ++repeat) step(pieces);
  }
  // Past 256 tokens: a new context bucket.
  for (int repeat = 0; repeat < 6; ++repeat) {
    step({{0, 1}, {1, 1}, {kSeqs - 1, 1}});
  }
  // A step past the reserved 300 tokens grows the workspace: recordings
  // are dropped, then made again.
  const int clears_before = rec.clears;
  step({{2, 64}, {3, 64}, {4, 64}, {5, 64}, {6, 64}});
  EXPECT_GT(rec.clears, clears_before);
  for (int repeat = 0; repeat < 3; ++repeat) step({{0, 1}, {1, 1}});
  EXPECT_EQ(rec.captures, 7);  // buckets 1, 2, 4, 8, 16; (4, 512), (2, 512)
  EXPECT_GE(rec.replays, 10);
}

}  // namespace
}  // namespace alibi::model
