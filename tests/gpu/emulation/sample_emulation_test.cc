// The device sampler (kernels/cuda/sample.cu) run by the emulator: the host
// sampler's semantics and distribution cases (tests/testing/sampler_cases.h),
// its log-probabilities against the host's, draws that do not depend on the
// batch, and the engine end to end with device sampling.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cuda/sample.cuh"
#include "kernels/cuda/sample_pack.h"
#include "server/engine/engine_core.h"
#include "server/engine/sampler.h"
#include "server/model/model.h"
#include "tests/gpu/emulation/emulated_kernels.h"
#include "tests/testing/forwarding_backend.h"
#include "tests/testing/sampler_cases.h"

namespace alibi::engine {
namespace {

using kernels::SampleResult;
using kernels::SampleRow;
using testing::kLogits;

// Runs the emulated kernel on `rows` of `logits` ([*, vocab], host memory).
std::vector<SampleResult> RunKernel(float* logits, int64_t num_rows,
                                    int64_t vocab,
                                    absl::Span<const SampleRow> rows) {
  kernels::cuda::PackedSample packed;
  packed.Pack(rows, vocab);
  std::vector<float> saved(packed.ids.size());
  std::vector<kernels::cuda::SampledToken> out(rows.size());
  std::vector<int32_t> top_ids(packed.top_total);
  std::vector<float> top_logprobs(packed.top_total);
  kernels::cuda::SampleArgs args;
  args.logits = logits;
  args.vocab = vocab;
  args.stride = vocab;
  args.rows = packed.params.data();
  args.num_rows = static_cast<int>(rows.size());
  args.ids = packed.ids.data();
  args.values = packed.values.data();
  args.saved = saved.data();
  args.out = out.data();
  args.top_ids = top_ids.data();
  args.top_logprobs = top_logprobs.data();
  for (const SampleRow& r : rows) {
    EXPECT_TRUE(r.row >= 0 && r.row < num_rows) << r.row;
  }
  EXPECT_EQ(kernels::cuda::emulated::LaunchSample(args, nullptr), cudaSuccess);
  std::vector<SampleResult> results;
  packed.Unpack(out.data(), top_ids.data(), top_logprobs.data(), &results);
  return results;
}

// A sampled row for `state`'s request (what the model runner builds);
// `bans` must outlive it.
SampleRow RowFor(SamplerState& state, absl::Span<const int32_t> banned,
                 std::vector<int32_t>& bans) {
  bans.assign(banned.begin(), banned.end());
  return DeviceSampleRow(state, bans);
}

class DeviceSampler : public testing::SamplerUnderTest {
 public:
  int32_t Sample(const std::vector<float>& logits, SamplerState& state,
                 absl::Span<const int32_t> banned) override {
    std::vector<float> row = logits;  // sampling edits it in place
    std::vector<int32_t> bans;
    const SampleRow r = RowFor(state, banned, bans);
    return RunKernel(row.data(), 1, static_cast<int64_t>(row.size()), {r})[0]
        .token;
  }

  std::vector<int32_t> SampleMany(const std::vector<float>& logits,
                                  const SamplingParams& options,
                                  int n) override {
    SamplerState state(options, {});
    std::vector<std::vector<int32_t>> bans(n);
    std::vector<SampleRow> rows;
    for (int i = 0; i < n; ++i) rows.push_back(RowFor(state, {}, bans[i]));
    // Rows without edits only read their logits: they share one copy.
    const bool edits =
        (n > 0 && !bans[0].empty()) || !options.allowed_token_ids.empty() ||
        !options.logit_bias.empty() || options.repetition_penalty != 1.0f ||
        options.frequency_penalty != 0.0f || options.presence_penalty != 0.0f;
    const int64_t copies = edits ? n : 1;
    std::vector<float> all;
    for (int64_t c = 0; c < copies; ++c) {
      all.insert(all.end(), logits.begin(), logits.end());
    }
    for (int i = 0; i < n; ++i) rows[i].row = edits ? i : 0;
    std::vector<int32_t> tokens;
    for (const SampleResult& r : RunKernel(
             all.data(), copies, static_cast<int64_t>(logits.size()), rows)) {
      tokens.push_back(r.token);
    }
    return tokens;
  }

  int Draws(int wanted) const override { return std::min(wanted, 4000); }
};

DeviceSampler device_sampler;
using testing::SamplerTest;
INSTANTIATE_TEST_SUITE_P(Device, SamplerTest,
                         ::testing::Values(&device_sampler),
                         [](const auto&) { return std::string("Device"); });

std::vector<float> RandomLogits(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void ExpectSameLogprobs(const SampleResult& device, const LogprobResult& host,
                        const std::string& where) {
  EXPECT_NEAR(device.logprob, host.logprob, 2e-5) << where;
  ASSERT_EQ(device.top.size(), host.top.size()) << where;
  for (size_t i = 0; i < host.top.size(); ++i) {
    EXPECT_EQ(device.top[i].first, host.top[i].token) << where << " top " << i;
    EXPECT_NEAR(device.top[i].second, host.top[i].logprob, 2e-5)
        << where << " top " << i;
  }
}

TEST(DeviceSamplerTest, LogprobsAndEditedGreedyTokensMatchTheHost) {
  constexpr int64_t kVocab = 3000;
  std::vector<float> raw = RandomLogits(4 * kVocab, 7);
  raw[kVocab + 17] = raw[kVocab + 18];  // a tie among the top alternatives
  std::vector<float> device = raw;
  SamplingParams o;
  o.temperature = 0.0f;
  o.repetition_penalty = 1.3f;
  o.frequency_penalty = 0.4f;
  o.presence_penalty = 0.2f;
  o.logit_bias = {{5, 2.0f}, {9, -50.0f}, {5, 1.0f}};
  o.bad_words = {{11}, {2, 3}};
  std::vector<int32_t> prompt = {1, 2, 40, 41};
  SamplerState state(o, prompt);
  for (int32_t t : {2, 7, 7, 99}) state.AddOutputToken(t);
  std::vector<int32_t> banned = {100, 101}, bans;
  std::vector<SampleRow> rows;
  rows.push_back(RowFor(state, banned, bans));
  rows.back().row = 2;
  rows.back().top_n = 4;
  for (int32_t row : {0, 1, 3}) {  // scored rows
    SampleRow s;
    s.row = row;
    s.target = 10 * row + 3;
    s.top_n = row + 1;
    rows.push_back(s);
  }
  std::vector<SampleResult> results = RunKernel(device.data(), 4, kVocab, rows);
  ASSERT_EQ(results.size(), rows.size());

  SamplerState host_state(o, prompt);
  for (int32_t t : {2, 7, 7, 99}) host_state.AddOutputToken(t);
  std::vector<float> scratch;
  const absl::Span<const float> row2(raw.data() + 2 * kVocab, kVocab);
  const int32_t host_token = SampleToken(row2, host_state, banned, scratch);
  EXPECT_EQ(results[0].token, host_token);
  ExpectSameLogprobs(results[0], ComputeLogprobs(row2, host_token, 4),
                     "sampled row");
  for (size_t k = 1; k < rows.size(); ++k) {
    const absl::Span<const float> row(raw.data() + rows[k].row * kVocab,
                                      kVocab);
    EXPECT_EQ(results[k].token, rows[k].target);
    ExpectSameLogprobs(results[k],
                       ComputeLogprobs(row, rows[k].target, rows[k].top_n),
                       "scored row " + std::to_string(rows[k].row));
  }
  // Scored rows are left as they were; the sampled row was edited.
  EXPECT_TRUE(std::equal(device.begin(), device.begin() + kVocab, raw.begin()));
  EXPECT_FALSE(std::equal(device.begin() + 2 * kVocab,
                          device.begin() + 3 * kVocab,
                          raw.begin() + 2 * kVocab));
}

TEST(DeviceSamplerTest, ADrawDependsOnlyOnItsRequest) {
  constexpr int64_t kVocab = 500;
  std::vector<float> logits = RandomLogits(kVocab, 3);
  SamplingParams o;
  o.temperature = 1.5f;
  o.top_k = 50;
  o.top_p = 0.95f;
  o.seed = 1234;
  // Draw 5 of the seeded request alone, then among strangers at row 3.
  std::vector<float> alone = logits;
  SampleRow r;
  r.knobs.temperature = o.temperature;
  r.knobs.top_k = o.top_k;
  r.knobs.top_p = o.top_p;
  r.seed = *o.seed;
  r.draw = 5;
  const int32_t token = RunKernel(alone.data(), 1, kVocab, {r})[0].token;
  std::vector<float> batch;
  std::vector<SampleRow> rows;
  for (int i = 0; i < 6; ++i) {
    batch.insert(batch.end(), logits.begin(), logits.end());
    SampleRow other = r;
    other.row = i;
    other.seed = i == 3 ? r.seed : 77 + i;
    rows.push_back(other);
  }
  std::vector<SampleResult> results = RunKernel(batch.data(), 6, kVocab, rows);
  EXPECT_EQ(results[3].token, token);
  // Other draws of the same request differ somewhere.
  std::vector<int32_t> draws;
  for (uint64_t d = 0; d < 8; ++d) {
    std::vector<float> copy = logits;
    SampleRow next = r;
    next.draw = d;
    draws.push_back(RunKernel(copy.data(), 1, kVocab, {next})[0].token);
  }
  EXPECT_GT(std::set<int32_t>(draws.begin(), draws.end()).size(), 1u);
}

TEST(DeviceSamplerTest, TopKCutsThroughTiesAtTheLowestIds) {
  std::vector<float> logits(40, -5.0f);
  for (int i = 10; i < 20; ++i) logits[i] = 1.0f;  // ten equal best tokens
  SamplingParams o;
  o.top_k = 3;
  o.seed = 8;
  std::vector<int> counts(logits.size());
  for (int32_t t : device_sampler.SampleMany(logits, o, 600)) ++counts[t];
  for (int i = 0; i < 40; ++i) {
    if (i >= 10 && i < 13) {
      EXPECT_GT(counts[i], 120) << i;  // ~200 each
    } else {
      EXPECT_EQ(counts[i], 0) << i;
    }
  }
}

// A token whose probability is below 1e-12 is never drawn: the noise of
// the Gumbel-max draw stays finite (a noise of +inf, e.g. from u = 1, would
// pick a token whatever its probability).
TEST(DeviceSamplerTest, ImpossibleTokensAreNeverDrawn) {
  std::vector<float> logits(50000, 0.0f);
  logits[31337] = 40.0f;  // every other token: p < 1e-12
  SamplingParams o;
  o.seed = 77;
  const std::vector<int32_t> tokens =
      device_sampler.SampleMany(logits, o, 3000);
  EXPECT_EQ(std::count(tokens.begin(), tokens.end(), 31337), 3000);
}

// A reference backend that samples with the emulated kernel (logits in host
// memory), so the engine runs its device-sampling path on the CPU.
class EmulatedSamplingBackend : public alibi::testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  bool SupportsSampling() const override { return true; }
  absl::Status Sample(const kernels::TensorView& logits,
                      absl::Span<const SampleRow> rows,
                      std::vector<SampleResult>* results) override {
    if (logits.row_stride != logits.cols) {
      return absl::InvalidArgumentError("strided logits");
    }
    *results = RunKernel(static_cast<float*>(logits.data), logits.rows,
                         logits.cols, rows);
    ++calls;
    return absl::OkStatus();
  }
  int calls = 0;
};

struct Served {
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;
  std::vector<TokenLogprobs> prompt_logprobs;
};

std::vector<Served> Serve(bool device, const std::vector<EngineRequest>& reqs) {
  kernels::BackendOptions options;
  options.device = "ref";
  options.num_threads = 1;
  auto inner = kernels::CreateBackend(options);
  EXPECT_TRUE(inner.ok()) << inner.status();
  std::unique_ptr<kernels::Backend> backend;
  EmulatedSamplingBackend* emulated = nullptr;
  if (device) {
    auto b = std::make_unique<EmulatedSamplingBackend>(std::move(*inner));
    emulated = b.get();
    backend = std::move(b);
  } else {
    backend = std::move(*inner);
  }
  auto model = model::Model::Load(
      std::string(ALIBI_TEST_DATA_DIR) + "/models/tiny-bloom", backend.get());
  EXPECT_TRUE(model.ok()) << model.status();
  EngineConfig config;
  config.scheduler.kv.num_blocks = 64;
  auto engine =
      CreateEngine(config, std::move(backend), std::move(*model), nullptr);
  EXPECT_TRUE(engine.ok()) << engine.status();
  std::vector<std::shared_ptr<OutputStream>> streams;
  for (const EngineRequest& r : reqs) {
    streams.push_back(std::make_shared<OutputStream>());
    EXPECT_TRUE((*engine)->Submit(r, streams.back()).ok());
  }
  std::vector<Served> runs;
  for (auto& stream : streams) {
    EngineOutput all;
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::minutes(5);
    while (!all.finished && std::chrono::steady_clock::now() < deadline) {
      std::optional<EngineOutput> d = stream->WaitAndTake(absl::Seconds(1));
      if (d.has_value()) all.Merge(std::move(*d));
    }
    EXPECT_TRUE(all.finished);
    EXPECT_TRUE(all.status.ok()) << all.status;
    runs.push_back({all.token_ids, all.logprobs, all.prompt_logprobs});
  }
  if (emulated != nullptr) {
    EXPECT_GT(emulated->calls, 0);
  }
  (*engine)->Shutdown(absl::CancelledError("test over"));
  return runs;
}

void ExpectClose(const std::vector<TokenLogprobs>& a,
                 const std::vector<TokenLogprobs>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].token, b[i].token) << i;
    EXPECT_NEAR(a[i].logprob, b[i].logprob, 1e-4) << i;
    ASSERT_EQ(a[i].top.size(), b[i].top.size()) << i;
    for (size_t k = 0; k < a[i].top.size(); ++k) {
      EXPECT_EQ(a[i].top[k].token, b[i].top[k].token) << i << " " << k;
      EXPECT_NEAR(a[i].top[k].logprob, b[i].top[k].logprob, 1e-4);
    }
  }
}

TEST(DeviceSamplingEngineTest, MatchesTheHostSamplerEndToEnd) {
  std::vector<EngineRequest> reqs;
  EngineRequest greedy;
  greedy.prompt = {5, 17, 300, 42, 8, 99, 1000, 7};
  greedy.max_tokens = 6;
  greedy.ignore_eos = true;
  greedy.sampling.temperature = 0.0f;
  greedy.sampling.repetition_penalty = 1.2f;
  greedy.sampling.logit_bias = {{123, 3.0f}};
  greedy.logprobs = 3;
  greedy.prompt_logprobs = true;
  greedy.prompt_top_logprobs = 2;
  reqs.push_back(greedy);
  EngineRequest seeded = greedy;
  seeded.prompt = {9, 8, 7, 6, 5};
  seeded.prompt_logprobs = false;
  seeded.sampling = SamplingParams();
  seeded.sampling.temperature = 0.8f;
  seeded.sampling.top_k = 40;
  seeded.sampling.top_p = 0.9f;
  seeded.sampling.seed = 42;
  seeded.logprobs = 0;
  reqs.push_back(seeded);

  const std::vector<Served> host = Serve(false, reqs);
  const std::vector<Served> device = Serve(true, reqs);
  const std::vector<Served> again = Serve(true, reqs);
  ASSERT_EQ(host.size(), 2u);
  ASSERT_EQ(device.size(), 2u);
  // Greedy: the same tokens and log-probabilities as the host path.
  EXPECT_EQ(device[0].tokens, host[0].tokens);
  ExpectClose(device[0].logprobs, host[0].logprobs);
  ExpectClose(device[0].prompt_logprobs, host[0].prompt_logprobs);
  EXPECT_EQ(device[0].prompt_logprobs.size(), greedy.prompt.size() - 1);
  // Seeded sampling repeats itself; its log-probabilities are the model's.
  EXPECT_EQ(device[1].tokens, again[1].tokens);
  ASSERT_EQ(device[1].logprobs.size(), device[1].tokens.size());
  for (const TokenLogprobs& lp : device[1].logprobs) {
    EXPECT_LE(lp.logprob, 0.0f);
    EXPECT_TRUE(std::isfinite(lp.logprob));
  }
}

}  // namespace
}  // namespace alibi::engine
