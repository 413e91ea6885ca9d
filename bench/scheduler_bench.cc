// Host cost of one engine step's scheduling: Schedule() + Update() (plus the
// Add() of the requests that replace finished ones) at a steady state of N
// running sequences: decode-heavy with a trickle of prefills, prompts sharing
// system-prompt prefixes, prefix caching on or off. No model: sampled tokens
// are made up.
//
//   ./alibi-microbench --benchmark_filter=Scheduler
//
// Counters: tokens, seqs and new (admitted) requests per step, preemptions
// per step, prefix-cache hit rate in tokens.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "common/logging.h"
#include "server/scheduler/scheduler.h"

namespace alibi {
namespace {

constexpr int32_t kVocab = 50000;
constexpr int32_t kSystemPromptLen = 256;
constexpr int kNumSystemPrompts = 4;

class Workload {
 public:
  Workload(int32_t num_seqs, bool prefix_caching) : rng_(42) {
    SchedulerConfig config;
    config.max_num_batched_tokens = 2048;
    config.max_num_seqs = num_seqs;
    config.max_model_len = 4096;
    config.max_queued_requests = 4 * num_seqs;
    config.kv.block_size = 16;
    // ~48 blocks per sequence at the mean (512 prompt + 256 output tokens),
    // with head room: preemption is rare.
    config.kv.num_blocks = num_seqs * 64;
    config.kv.enable_prefix_caching = prefix_caching;
    auto s = Scheduler::Create(config);
    ALIBI_CHECK_OK(s.status());
    scheduler_ = *std::move(s);

    std::uniform_int_distribution<int32_t> tok(0, kVocab - 1);
    random_tokens_.resize(1 << 16);
    for (int32_t& t : random_tokens_) t = tok(rng_);
    for (int i = 0; i < kNumSystemPrompts; ++i) {
      system_prompts_.emplace_back(kSystemPromptLen);
      for (int32_t& t : system_prompts_.back()) t = tok(rng_);
    }
    // Keep a few requests waiting so finished ones are replaced at once.
    target_live_ = num_seqs + 8;
  }

  // Tops the scheduler up to the target number of live requests.
  void Refill() {
    while (live_ < target_live_) {
      RequestSpec spec;
      spec.id = next_id_++;
      const std::vector<int32_t>& system =
          system_prompts_[Uniform(0, kNumSystemPrompts - 1)];
      const int32_t user_len = Uniform(64, 448);
      const int32_t offset =
          Uniform(0, static_cast<int32_t>(random_tokens_.size()) - user_len);
      spec.prompt_token_ids.reserve(system.size() + user_len);
      spec.prompt_token_ids = system;
      spec.prompt_token_ids.insert(spec.prompt_token_ids.end(),
                                   random_tokens_.begin() + offset,
                                   random_tokens_.begin() + offset + user_len);
      spec.max_tokens = Uniform(64, 448);
      ALIBI_CHECK_OK(scheduler_->Add(std::move(spec)));
      ++live_;
    }
  }

  // One engine step without the model.
  void Step() {
    scheduler_->Schedule(&plan_);
    sampled_.resize(plan_.requests.size());
    for (size_t k = 0; k < plan_.requests.size(); ++k) {
      sampled_[k] = static_cast<int32_t>(
          (plan_.requests[k].id * 7919 + plan_.requests[k].end_position()) %
          kVocab);
    }
    std::vector<FinishedRequest> finished = scheduler_->Update(plan_, sampled_);
    live_ -= static_cast<int32_t>(finished.size());
    tokens_ += plan_.num_batched_tokens;
    seqs_ += static_cast<int64_t>(plan_.requests.size());
    for (const ScheduledRequest& r : plan_.requests)
      admitted_ += r.newly_admitted;
    Refill();
  }

  void ResetCounters() {
    tokens_ = seqs_ = admitted_ = 0;
    const SchedulerStats stats = scheduler_->Stats();
    preemptions0_ = stats.num_preemptions;
    queries0_ = stats.kv.prefix_cache_queries;
    hits0_ = stats.kv.prefix_cache_hits;
  }

  void Report(benchmark::State& state) const {
    const double steps = static_cast<double>(state.iterations());
    const SchedulerStats stats = scheduler_->Stats();
    state.counters["tokens/step"] = tokens_ / steps;
    state.counters["seqs/step"] = seqs_ / steps;
    state.counters["admitted/step"] = admitted_ / steps;
    state.counters["preempt/step"] =
        static_cast<double>(stats.num_preemptions - preemptions0_) / steps;
    const uint64_t queries = stats.kv.prefix_cache_queries - queries0_;
    state.counters["hit_rate"] =
        queries == 0
            ? 0.0
            : static_cast<double>(stats.kv.prefix_cache_hits - hits0_) /
                  static_cast<double>(queries);
    state.counters["kv_usage"] = stats.kv.usage;
  }

 private:
  int32_t Uniform(int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng_);
  }

  std::mt19937_64 rng_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<int32_t> random_tokens_;
  std::vector<std::vector<int32_t>> system_prompts_;
  StepPlan plan_;
  std::vector<int32_t> sampled_;
  int32_t target_live_ = 0;
  int32_t live_ = 0;
  uint64_t next_id_ = 1;
  int64_t tokens_ = 0;
  int64_t seqs_ = 0;
  int64_t admitted_ = 0;
  uint64_t preemptions0_ = 0;
  uint64_t queries0_ = 0;
  uint64_t hits0_ = 0;
};

// Args: running sequences, prefix caching (0/1).
void BM_SchedulerStep(benchmark::State& state) {
  Workload w(static_cast<int32_t>(state.range(0)), state.range(1) != 0);
  w.Refill();
  // Reach the steady state: every sequence decoding, arrivals replacing
  // finished requests.
  for (int i = 0; i < 2000; ++i) w.Step();
  w.ResetCounters();
  for (auto _ : state) w.Step();
  w.Report(state);
}
BENCHMARK(BM_SchedulerStep)
    ->ArgNames({"seqs", "prefix_caching"})
    ->Args({64, 1})
    ->Args({256, 1})
    ->Args({256, 0})
    ->Args({1024, 1})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace alibi
