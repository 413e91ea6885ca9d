// The engine end to end on the CPU backend with the fixture models: batch
// invariance (with preemption, chunked prefill and prefix caching; at every
// weight width), seeded sampling, stop conditions, cancellation, admission
// control and failure isolation.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "nlohmann/json.hpp"
#include "server/engine/engine_core.h"
#include "server/metrics/metrics.h"
#include "server/model/model.h"
#include "tests/testing/backend_configs.h"
#include "tests/testing/forwarding_backend.h"

namespace alibi::engine {
namespace {

std::string ModelDir(const std::string& name) {
  return std::string(ALIBI_TEST_DATA_DIR) + "/models/" + name;
}

// A CPU backend whose attention fails while `fail` is set.
class FaultyBackend : public testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  std::atomic<bool> fail{false};

  absl::Status PagedAttention(kernels::TensorView q,
                              const kernels::PagedKvView& kv,
                              const kernels::AttentionMeta& meta,
                              const float* slopes, int heads, float scale,
                              kernels::TensorView out) override {
    if (fail.load()) return absl::DataLossError("injected attention failure");
    return ForwardingBackend::PagedAttention(q, kv, meta, slopes, heads, scale,
                                             out);
  }
};

struct TestEngine {
  std::unique_ptr<metrics::Metrics> metrics;
  FaultyBackend* backend = nullptr;  // owned by the engine
  std::unique_ptr<Engine> engine;
};

kernels::BackendOptions CpuBackend() {
  kernels::BackendOptions options;
  options.device = "cpu";
  return options;
}

TestEngine MakeEngine(const std::string& model, EngineConfig config,
                      kernels::BackendOptions options = CpuBackend()) {
  const std::string dir =
      model.find('/') == std::string::npos ? ModelDir(model) : model;
  TestEngine t;
  t.metrics = std::make_unique<metrics::Metrics>(metrics::MetricsOptions{});
  options.num_threads = 2;
  auto cpu = kernels::CreateBackend(options);
  EXPECT_TRUE(cpu.ok()) << cpu.status();
  auto backend = std::make_unique<FaultyBackend>(std::move(*cpu));
  t.backend = backend.get();
  auto loaded = model::Model::Load(dir, backend.get());
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  auto engine = CreateEngine(config, std::move(backend), std::move(*loaded),
                             t.metrics.get());
  EXPECT_TRUE(engine.ok()) << engine.status();
  t.engine = std::move(*engine);
  return t;
}

absl::StatusOr<std::shared_ptr<OutputStream>> SubmitTo(Engine& engine,
                                                       EngineRequest request) {
  auto stream = std::make_shared<OutputStream>();
  absl::Status status = engine.Submit(std::move(request), stream);
  if (!status.ok()) return status;
  return stream;
}

// Reads a stream to its end, merging the outputs.
EngineOutput Drain(OutputStream& stream) {
  EngineOutput all;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (!all.finished) {
    std::optional<EngineOutput> d = stream.WaitAndTake(absl::Seconds(1));
    if (d.has_value()) all.Merge(std::move(*d));
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "request " << stream.id() << " never finished";
      break;
    }
  }
  return all;
}

EngineRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
  EngineRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  r.ignore_eos = true;
  return r;
}

// 32 requests of mixed prompt and output lengths; with `shared_prefix` every
// prompt starts with the same 40 tokens.
std::vector<EngineRequest> MixedRequests(int vocab, bool shared_prefix,
                                         uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> token(3, std::min(vocab, 30000) - 1);
  std::vector<int32_t> prefix(40);
  for (int32_t& t : prefix) t = token(rng);
  std::vector<EngineRequest> out;
  for (int i = 0; i < 32; ++i) {
    std::vector<int32_t> prompt;
    if (shared_prefix) prompt = prefix;
    const int len = 1 + static_cast<int>(rng() % 60);
    for (int j = 0; j < len; ++j) prompt.push_back(token(rng));
    out.push_back(Greedy(std::move(prompt), 4 + static_cast<int>(rng() % 20)));
  }
  return out;
}

std::vector<std::vector<int32_t>> RunAlone(
    Engine& engine, const std::vector<EngineRequest>& reqs) {
  std::vector<std::vector<int32_t>> out;
  for (const EngineRequest& r : reqs) {
    auto stream = SubmitTo(engine, r);
    EXPECT_TRUE(stream.ok()) << stream.status();
    EngineOutput d = Drain(**stream);
    EXPECT_TRUE(d.status.ok()) << d.status;
    out.push_back(d.token_ids);
  }
  return out;
}

std::vector<EngineOutput> RunTogether(Engine& engine,
                                      const std::vector<EngineRequest>& reqs) {
  std::vector<std::shared_ptr<OutputStream>> streams;
  for (const EngineRequest& r : reqs) {
    auto stream = SubmitTo(engine, r);
    EXPECT_TRUE(stream.ok()) << stream.status();
    streams.push_back(*stream);
  }
  std::vector<EngineOutput> out;
  for (auto& s : streams) out.push_back(Drain(*s));
  return out;
}

int NeededBlocks(const std::vector<EngineRequest>& reqs, int block_size) {
  int blocks = 0;
  for (const auto& r : reqs) {
    blocks +=
        (static_cast<int>(r.prompt.size()) + r.max_tokens + block_size - 1) /
        block_size;
  }
  return blocks;
}

void ExpectIdle(Engine& engine) {
  // The engine publishes a request's end before its own bookkeeping for the
  // step is visible in the snapshot; give it a moment.
  EngineSnapshot s;
  for (int i = 0; i < 200; ++i) {
    s = engine.GetSnapshot();
    if (!s.has_work && s.kv_blocks_used == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(s.has_work);
  EXPECT_EQ(s.num_live_requests, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_waiting, 0);
}

struct InvarianceCase {
  std::string model;
  bool shared_prefix;
  int pool_divisor;  // pool = needed blocks / divisor (1: ample)
  int token_budget;
  bool windowed = false;  // every other request with a sliding window
};

class BatchInvarianceTest
    : public ::testing::TestWithParam<
          std::tuple<InvarianceCase, testing::BackendConfig>> {};

TEST_P(BatchInvarianceTest, ConcurrentGreedyEqualsAlone) {
    const InvarianceCase& c = std::get<0>(GetParam());
  const kernels::BackendOptions& backend = std::get<1>(GetParam()).options;
  EngineConfig reference_config;
  reference_config.scheduler.kv.num_blocks = 64;
    TestEngine alone = MakeEngine(c.model, reference_config, backend);
  const int vocab = alone.engine->info().vocab_size;
  std::vector<EngineRequest> reqs = MixedRequests(vocab, c.shared_prefix, 17);
  if (c.windowed) {
    for (size_t i = 1; i < reqs.size(); i += 2) {
      reqs[i].kv_window = 8 + 8 * static_cast<int>(i % 4);
    }
  }
  const auto expected = RunAlone(*alone.engine, reqs);

  EngineConfig config;
  config.scheduler.kv.block_size = 16;
  config.scheduler.kv.num_blocks =
      std::max(8, NeededBlocks(reqs, 16) / c.pool_divisor);
  config.scheduler.max_num_batched_tokens = c.token_budget;
    TestEngine together = MakeEngine(c.model, config, backend);
  const auto results = RunTogether(*together.engine, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status;
    EXPECT_EQ(results[i].token_ids, expected[i]) << "request " << i;
    EXPECT_EQ(results[i].finish_reason, FinishReason::kLength);
    EXPECT_EQ(results[i].num_output_tokens, reqs[i].max_tokens);
  }
  const EngineSnapshot s = together.engine->GetSnapshot();
  if (c.pool_divisor > 1) {
    EXPECT_GT(s.num_preemptions, 0u) << "the small pool forced no preemption";
  }
  if (c.shared_prefix) {
    EXPECT_GT(s.prefix_cache_hit_tokens, 0u);
    EXPECT_NE(
        together.metrics->SerializeText().find("alibi_prefix_cache_hits_total"),
        std::string::npos);
  }
  ExpectIdle(*together.engine);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BatchInvarianceTest,
        ::testing::Combine(
        ::testing::Values(InvarianceCase{"tiny-bloom", false, 1, 2048},
                          InvarianceCase{"tiny-mpt", false, 1, 2048},
                          InvarianceCase{"tiny-bloom", false, 8, 2048},
                          InvarianceCase{"tiny-mpt", false, 8, 2048},
                          InvarianceCase{"tiny-bloom", false, 1, 8},
                          InvarianceCase{"tiny-mpt", true, 1, 2048},
                          InvarianceCase{"tiny-bloom", true, 8, 24},
                          InvarianceCase{"tiny-bloom", false, 8, 2048, true},
                          InvarianceCase{"tiny-mpt", false, 8, 24, true},
                          InvarianceCase{"tiny-mpt", true, 1, 2048, true}),
        ::testing::ValuesIn(testing::CpuWeightWidths())),
    [](const auto& info) {
      const InvarianceCase& c = std::get<0>(info.param);
      std::string name = c.model == "tiny-bloom" ? "Bloom" : "Mpt";
      if (c.shared_prefix) name += "SharedPrefix";
      if (c.pool_divisor > 1) name += "SmallPool";
      if (c.token_budget < 64) name += "ChunkedPrefill";
            if (c.windowed) name += "Windowed";
      return name + "_" + std::get<1>(info.param).name;
    });

TEST(EngineTest, SeededSamplingIsReproducibleAcrossBatches) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 128;
  TestEngine t = MakeEngine("tiny-mpt", config);
  EngineRequest seeded = Greedy({100, 200, 300, 400}, 24);
  seeded.sampling.temperature = 0.9f;
  seeded.sampling.top_p = 0.95f;
  seeded.sampling.top_k = 50;
  seeded.sampling.seed = 1234;
  const auto alone = RunAlone(*t.engine, {seeded, seeded});
  EXPECT_EQ(alone[0], alone[1]);
  // With other (unseeded, sampled) traffic around it.
  std::vector<EngineRequest> mix =
      MixedRequests(t.engine->info().vocab_size, false, 5);
  for (auto& r : mix) r.sampling.temperature = 1.0f;
  mix.insert(mix.begin() + 7, seeded);
  const auto together = RunTogether(*t.engine, mix);
  EXPECT_EQ(together[7].token_ids, alone[0]);
  EngineRequest other_seed = seeded;
  other_seed.sampling.seed = 4321;
  EXPECT_NE(RunAlone(*t.engine, {other_seed})[0], alone[0]);
}

// n completions of one prompt: the prompt's full blocks are computed once
// and shared (even with the prefix cache off), each completion samples with
// its own seed stream, and a seeded group gives the same completions whatever
// else runs.
TEST(EngineTest, GroupSharesThePromptAndIsReproducible) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 256;
  config.scheduler.kv.enable_prefix_caching = false;
  TestEngine t = MakeEngine("tiny-mpt", config);
  std::mt19937 rng(5);
  EngineRequest r = Greedy({}, 6);
  for (int i = 0; i < 512; ++i) {
    r.prompt.push_back(3 + static_cast<int32_t>(rng() % 20000));
  }
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 77;
  auto run_group = [&](Engine& engine) {
    std::vector<std::shared_ptr<OutputStream>> streams;
    for (int i = 0; i < 8; ++i)
      streams.push_back(std::make_shared<OutputStream>());
    EXPECT_TRUE(engine.SubmitGroup(r, streams).ok());
    std::vector<std::vector<int32_t>> out;
    for (auto& s : streams) {
      EngineOutput d = Drain(*s);
      EXPECT_TRUE(d.status.ok()) << d.status;
      EXPECT_EQ(d.num_output_tokens, 6);
      out.push_back(d.token_ids);
    }
    return out;
  };
  const uint64_t hits_before = t.engine->GetSnapshot().prefix_cache_hit_tokens;
  const auto alone = run_group(*t.engine);
  ExpectIdle(*t.engine);
  // Seven completions started from the first one's 31 full blocks.
  EXPECT_EQ(t.engine->GetSnapshot().prefix_cache_hit_tokens - hits_before,
            7u * 496u);
  std::set<std::vector<int32_t>> distinct(alone.begin(), alone.end());
  EXPECT_GT(distinct.size(), 1u) << "every completion sampled the same";
  // Again, with other traffic around it.
  std::vector<std::shared_ptr<OutputStream>> traffic;
  for (EngineRequest& other :
       MixedRequests(t.engine->info().vocab_size, false, 9)) {
    other.sampling.temperature = 1.0f;
    traffic.push_back(*SubmitTo(*t.engine, other));
  }
  EXPECT_EQ(run_group(*t.engine), alone);
  for (auto& s : traffic) Drain(*s);
  ExpectIdle(*t.engine);
}

TEST(EngineTest, OutputsCarryUsageLogprobsAndTimings) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 64;
  TestEngine t = MakeEngine("tiny-bloom", config);
  const std::vector<int32_t> prompt = {644, 262, 3726};
  const std::vector<int32_t>* ids = &prompt;
  EngineRequest r = Greedy(*ids, 20);
  r.logprobs = 3;
  auto stream = SubmitTo(*t.engine, r);
  ASSERT_TRUE(stream.ok());
  EngineOutput d = Drain(**stream);
  ASSERT_TRUE(d.status.ok());
  EXPECT_EQ(d.token_ids.size(), 20u);
  EXPECT_EQ(d.num_prompt_tokens, static_cast<int>(ids->size()));
  EXPECT_EQ(d.num_output_tokens, 20);
  ASSERT_EQ(d.logprobs.size(), 20u);
  for (size_t i = 0; i < d.logprobs.size(); ++i) {
    EXPECT_EQ(d.logprobs[i].token, d.token_ids[i]);
    ASSERT_EQ(d.logprobs[i].top.size(), 3u);
    // Greedy: the chosen token is the most likely one.
    EXPECT_EQ(d.logprobs[i].top[0].token, d.token_ids[i]);
    EXPECT_FLOAT_EQ(d.logprobs[i].top[0].logprob, d.logprobs[i].logprob);
  }
  EXPECT_LE(d.timings.arrival, d.timings.scheduled);
  EXPECT_LE(d.timings.scheduled, d.timings.first_token);
  EXPECT_LE(d.timings.first_token, d.timings.last_token);
}

TEST(EngineTest, StopTokenConditions) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 64;
  TestEngine t = MakeEngine("tiny-mpt", config);
  const std::vector<int32_t> prompt = {39, 9439, 76, 600};
  const std::vector<int32_t> free_run =
      RunAlone(*t.engine, {Greedy(prompt, 16)})[0];
  ASSERT_EQ(free_run.size(), 16u);

  // Stop token id: the 5th generated token ends the request (kept in ids).
  EngineRequest by_id = Greedy(prompt, 16);
  by_id.stop_token_ids = {free_run[4]};
  auto s1 = SubmitTo(*t.engine, by_id);
  EngineOutput d1 = Drain(**s1);
  const size_t first_hit =
      std::find(free_run.begin(), free_run.end(), free_run[4]) -
      free_run.begin();
  EXPECT_EQ(d1.finish_reason, FinishReason::kStop);
  EXPECT_EQ(d1.token_ids.size(), first_hit + 1);
  EXPECT_EQ(d1.stop_token, free_run[4]);

  // min_tokens: the stop id cannot end it earlier than min_tokens.
  EngineRequest with_min = by_id;
  with_min.min_tokens = 10;
  EngineOutput d2 = Drain(**SubmitTo(*t.engine, with_min));
  EXPECT_GE(d2.token_ids.size(), 10u);
}

// A copy of a fixture model directory whose config.json names `eos` as the
// end-of-sequence token (weights and tokenizer are symlinked).
std::string ModelWithEos(const std::string& name, int eos) {
  const std::string dir =
      ::testing::TempDir() + "/" + name + "-eos" + std::to_string(eos);
  std::filesystem::create_directories(dir);
  for (const char* file : {"model.safetensors", "tokenizer.json"}) {
    std::filesystem::remove(dir + "/" + file);
    std::filesystem::create_symlink(ModelDir(name) + "/" + file,
                                    dir + "/" + file);
  }
  std::ifstream in(ModelDir(name) + "/config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  config["eos_token_id"] = eos;
  std::ofstream(dir + "/config.json") << config.dump(2);
  return dir;
}

TEST(EngineTest, EosEndsGenerationUnlessIgnored) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 64;
  const std::vector<int32_t> prompt = {39, 9439, 76, 600};
  std::vector<int32_t> free_run;
  {
    TestEngine t = MakeEngine("tiny-mpt", config);
    free_run = RunAlone(*t.engine, {Greedy(prompt, 12)})[0];
  }
  const int32_t eos = free_run[5];
  const size_t first =
      std::find(free_run.begin(), free_run.end(), eos) - free_run.begin();
  TestEngine t = MakeEngine(ModelWithEos("tiny-mpt", eos), config);
  EngineRequest r = Greedy(prompt, 12);
  r.ignore_eos = false;
  EngineOutput d = Drain(**SubmitTo(*t.engine, r));
  EXPECT_EQ(d.finish_reason, FinishReason::kEos);
  EXPECT_EQ(d.token_ids, std::vector<int32_t>(free_run.begin(),
                                              free_run.begin() + first + 1));
  // min_tokens keeps EOS from being sampled before it.
  r.min_tokens = static_cast<int>(first) + 2;
  EngineOutput later = Drain(**SubmitTo(*t.engine, r));
  EXPECT_GE(later.token_ids.size(), first + 2);
  for (size_t i = 0; i < static_cast<size_t>(r.min_tokens); ++i) {
    EXPECT_NE(later.token_ids[i], eos) << i;
  }
  r.min_tokens = 0;
  r.ignore_eos = true;
  EngineOutput ignored = Drain(**SubmitTo(*t.engine, r));
  EXPECT_EQ(ignored.token_ids, free_run);
  EXPECT_EQ(ignored.finish_reason, FinishReason::kLength);
}

TEST(EngineTest, ScoringMatchesReferenceUnderPressure) {
  std::ifstream in(std::string(ALIBI_TEST_DATA_DIR) +
                   "/reference/tiny-mpt.json");
  const nlohmann::json ref = nlohmann::json::parse(in);
  EngineConfig config;
  config.scheduler.kv.num_blocks =
      70;  // long_3x needs 49 blocks; others compete
  config.scheduler.max_num_batched_tokens = 100;
  TestEngine t = MakeEngine("tiny-mpt", config);
  std::vector<std::shared_ptr<OutputStream>> streams;
  std::vector<std::vector<double>> want;
  for (const auto& seq : ref["sequences"]) {
    EngineRequest r;
    r.prompt = seq["token_ids"].get<std::vector<int32_t>>();
    r.generate = false;
    r.prompt_logprobs = true;
    r.prompt_top_logprobs = 2;
    streams.push_back(*SubmitTo(*t.engine, r));
    want.push_back(seq["prompt_logprobs"].get<std::vector<double>>());
  }
  // Greedy traffic alongside.
  auto traffic = RunTogether(
      *t.engine, MixedRequests(t.engine->info().vocab_size, false, 3));
  for (size_t i = 0; i < streams.size(); ++i) {
    EngineOutput d = Drain(*streams[i]);
    ASSERT_TRUE(d.status.ok()) << d.status;
    ASSERT_EQ(d.prompt_logprobs.size(), want[i].size());
    for (size_t j = 0; j < want[i].size(); ++j) {
      ASSERT_NEAR(d.prompt_logprobs[j].logprob, want[i][j], 1e-3)
          << i << "," << j;
      ASSERT_EQ(d.prompt_logprobs[j].top.size(), 2u);
    }
    EXPECT_TRUE(d.token_ids.empty());
  }
  ExpectIdle(*t.engine);
}

TEST(EngineTest, CancellingHundredRequestsReturnsEveryBlock) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 96;
  config.scheduler.max_num_batched_tokens = 64;
  TestEngine t = MakeEngine("tiny-bloom", config);
  std::mt19937 rng(99);
  std::vector<std::shared_ptr<OutputStream>> streams;
  for (int i = 0; i < 100; ++i) {
    std::vector<int32_t> prompt(1 + rng() % 50);
    for (int32_t& x : prompt) x = 5 + static_cast<int32_t>(rng() % 20000);
    auto s = SubmitTo(*t.engine, Greedy(prompt, 40));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  std::vector<int> order(100);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  for (int i : order) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    t.engine->Cancel(streams[i]->id(),
                     absl::CancelledError("request cancelled"));
  }
  int cancelled = 0;
  for (auto& s : streams) {
    EngineOutput d = Drain(*s);
    ASSERT_TRUE(d.finished);
    if (d.finish_reason == FinishReason::kCancelled) {
      ++cancelled;
      EXPECT_EQ(d.status.code(), absl::StatusCode::kCancelled);
    }
  }
  EXPECT_GT(cancelled, 50);
  ExpectIdle(*t.engine);
  // Cancelling a finished or unknown id is harmless.
  t.engine->Cancel(streams[0]->id(), absl::CancelledError("again"));
  t.engine->Cancel(123456789, absl::CancelledError("unknown"));
  ExpectIdle(*t.engine);
}

TEST(EngineTest, AdmissionControl) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 64;
  config.scheduler.max_num_seqs = 1;
  config.scheduler.max_queued_requests = 4;
  TestEngine t = MakeEngine("tiny-bloom", config);
  const int max_len = t.engine->info().max_model_len;
  EXPECT_EQ(max_len, 64 * 16);
  // Never fits: INVALID_ARGUMENT at once.
  EXPECT_EQ(SubmitTo(*t.engine, Greedy(std::vector<int32_t>(max_len, 5), 1))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SubmitTo(*t.engine, Greedy({}, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SubmitTo(*t.engine, Greedy({-1}, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Queue full: RESOURCE_EXHAUSTED at once for the excess.
  std::vector<std::shared_ptr<OutputStream>> accepted;
  int rejected = 0;
  for (int i = 0; i < 20; ++i) {
    auto s = SubmitTo(*t.engine, Greedy({7, 8, 9}, 100));
    if (s.ok()) {
      accepted.push_back(*s);
    } else {
      EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
      ++rejected;
    }
  }
  EXPECT_GE(rejected, 10);
  for (auto& s : accepted) {
    EngineOutput d = Drain(*s);
    EXPECT_TRUE(d.status.ok());
    EXPECT_EQ(d.token_ids.size(), 100u);
  }
  ExpectIdle(*t.engine);
}

TEST(EngineTest, StepFailureFailsOnlyThatStepsRequests) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 64;
  TestEngine t = MakeEngine("tiny-mpt", config);
  t.backend->fail = true;
  EngineOutput failed = Drain(**SubmitTo(*t.engine, Greedy({1, 2, 3}, 5)));
  EXPECT_EQ(failed.finish_reason, FinishReason::kError);
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kInternal);
  EXPECT_NE(failed.status.message().find("injected"), std::string::npos);
  t.backend->fail = false;
  EngineOutput ok = Drain(**SubmitTo(*t.engine, Greedy({1, 2, 3}, 5)));
  EXPECT_TRUE(ok.status.ok());
  EXPECT_EQ(ok.token_ids.size(), 5u);
  ExpectIdle(*t.engine);
}

TEST(EngineTest, ShutdownEndsLiveRequestsAndRefusesNewOnes) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 64;
  TestEngine t = MakeEngine("tiny-bloom", config);
  auto s = SubmitTo(*t.engine, Greedy({5, 6, 7}, 900));
  ASSERT_TRUE(s.ok());
  t.engine->Shutdown(absl::UnavailableError("draining"));
  EngineOutput d = Drain(**s);
  EXPECT_TRUE(d.finished);
  if (d.finish_reason == FinishReason::kCancelled) {
    EXPECT_EQ(d.status.code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ(SubmitTo(*t.engine, Greedy({5}, 1)).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(EngineTest, MetricsCountRequestsAndTokensExactly) {
  EngineConfig config;
  config.scheduler.kv.num_blocks = 64;
  TestEngine t = MakeEngine("tiny-mpt", config);
  const auto results = RunTogether(
      *t.engine, MixedRequests(t.engine->info().vocab_size, false, 8));
  int64_t prompt = 0, generated = 0;
  for (const auto& d : results) {
    prompt += d.num_prompt_tokens;
    generated += d.num_output_tokens;
  }
  ExpectIdle(*t.engine);
  const std::string text = t.metrics->SerializeText();
  auto value = [&](const std::string& series) {
    const size_t at = text.find("\n" + series);
    EXPECT_NE(at, std::string::npos) << series;
    if (at == std::string::npos) return -1.0;
    const size_t space = text.find(' ', at + 1 + series.size());
    return std::stod(text.substr(space + 1));
  };
  EXPECT_EQ(value("alibi_prompt_tokens_total{"), prompt);
  EXPECT_EQ(value("alibi_generation_tokens_total{"), generated);
  EXPECT_EQ(value("alibi_e2e_request_latency_seconds_count{"), 32);
  EXPECT_EQ(value("alibi_time_to_first_token_seconds_count{"), 32);
  EXPECT_EQ(value("alibi_inter_token_latency_seconds_count{"), generated - 32);
}

}  // namespace
}  // namespace alibi::engine
