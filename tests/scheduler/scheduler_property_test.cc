// Randomized property test: many steps of random arrivals (shared prefixes,
// scoring and prompt-logprob requests, priorities), cancellations and stops,
// over small KV pools that force preemption. A fake engine keeps a fake KV
// pool: each computed position writes a fingerprint of its token prefix into
// its slot, and every scheduled request checks that all earlier positions of
// its context hold exactly its own prefix, so a wrong prefix hit, a shared
// block written, or a live block handed to someone else shows up at once.
#include <algorithm>
#include <cstdint>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/scheduler/scheduler.h"
#include "tests/scheduler/plan_checks.h"

namespace alibi {
namespace {

struct PropertyCase {
  std::string name;
  SchedulerConfig config;
  uint64_t seed;
  int num_requests;
};

std::ostream& operator<<(std::ostream& os, const PropertyCase& c) {
  return os << c.name;
}

// What the fake engine knows about a live request.
struct Tracked {
  RequestSpec spec;
  std::vector<int32_t> tokens;  // prompt + outputs
  int32_t prompt_reported = 0;  // prompt positions whose logits were given
};

uint64_t Mix(uint64_t h, int32_t token) {
  h ^= static_cast<uint64_t>(token) + 0x9e3779b97f4a7c15ULL + (h << 6) +
       (h >> 2);
  h *= 0xff51afd7ed558ccdULL;
  return h ^ (h >> 33);
}

int32_t SampleToken(uint64_t id, size_t num_tokens) {
  return static_cast<int32_t>((id * 31 + num_tokens * 7) % 40);
}

class Simulation {
 public:
  explicit Simulation(const PropertyCase& c)
      : c_(c),
        rng_(c.seed),
        kv_(static_cast<size_t>(c.config.kv.num_blocks) *
                c.config.kv.block_size,
            0) {
    auto s = Scheduler::Create(c.config);
    EXPECT_TRUE(s.ok()) << s.status();
    s_ = *std::move(s);
    std::uniform_int_distribution<int32_t> tok(0, 39);
    for (int32_t len : {0, 7, 16, 24, 33}) {
      std::vector<int32_t> p(len);
      for (int32_t& t : p) t = tok(rng_);
      prefixes_.push_back(p);
    }
  }

  void Run() {
    const int kMaxSteps = 50 * c_.num_requests;
    int step = 0;
    while (next_id_ <= static_cast<uint64_t>(c_.num_requests) ||
           !pending_.empty() || !live_.empty()) {
      ASSERT_LT(++step, kMaxSteps)
          << "no progress: " << live_.size() << " live requests";
      SCOPED_TRACE(testing::Message() << "step " << step);
      Arrivals();
      Cancellations();
      ASSERT_NO_FATAL_FAILURE(OneStep());
      ASSERT_NO_FATAL_FAILURE(CheckInvariants());
    }
    SchedulerStats stats = s_->Stats();
    EXPECT_FALSE(s_->has_unfinished());
    EXPECT_EQ(stats.num_running, 0);
    EXPECT_EQ(stats.num_waiting, 0);
    EXPECT_EQ(stats.kv.num_used_blocks, 0);
    EXPECT_EQ(stats.kv.usage, 0.0);
    EXPECT_EQ(completed_ + cancelled_, c_.num_requests - rejected_);
    // The run exercised what it is meant to.
    EXPECT_GT(stats.num_preemptions, 0u);
    EXPECT_GT(queue_full_, 0);
    EXPECT_GT(rejected_, 0);
    if (c_.config.kv.enable_prefix_caching) {
      EXPECT_GT(stats.kv.prefix_cache_hits, 0u);
      EXPECT_GT(stats.kv.num_evictions, 0u);
    }
    testing::Test::RecordProperty("steps", step);
    testing::Test::RecordProperty("preemptions",
                                  static_cast<int>(stats.num_preemptions));
  }

 private:
  int32_t Uniform(int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng_);
  }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  RequestSpec NewSpec() {
    const SchedulerConfig& config = c_.config;
    RequestSpec spec;
    spec.id = next_id_++;
    spec.prompt_token_ids =
        prefixes_[Uniform(0, static_cast<int32_t>(prefixes_.size()) - 1)];
    const int32_t room = config.max_model_len - 17;
    const int32_t suffix = Uniform(
        1, std::max<int32_t>(
               1, room - static_cast<int32_t>(spec.prompt_token_ids.size())));
    for (int32_t i = 0; i < suffix; ++i) {
      spec.prompt_token_ids.push_back(Uniform(0, 39));
    }
    spec.max_tokens = Uniform(1, 16);
    spec.priority = Uniform(0, 2);
    spec.generate = !Chance(0.1);
    spec.prompt_logprobs = Chance(0.15);
    if (Chance(0.02)) {  // can never run
      spec.max_tokens = config.max_model_len;
      spec.generate = true;
    }
    return spec;
  }

  void Arrivals() {
    for (int n = Uniform(0, 2);
         n > 0 && next_id_ <= static_cast<uint64_t>(c_.num_requests); --n) {
      pending_.push_back(NewSpec());
    }
    // Retry what the full queue turned away, in order.
    while (!pending_.empty()) {
      RequestSpec spec = pending_.front();
      const bool full = s_->num_waiting() >= c_.config.max_queued_requests;
      absl::Status st = s_->Add(spec);
      if (spec.generate && spec.max_tokens == c_.config.max_model_len) {
        ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
        ++rejected_;
        pending_.erase(pending_.begin());
        continue;
      }
      if (full) {
        ASSERT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
        ++queue_full_;
        return;
      }
      ASSERT_TRUE(st.ok()) << st;
      live_[spec.id] = Tracked{spec, spec.prompt_token_ids, 0};
      pending_.erase(pending_.begin());
    }
  }

  void Cancellations() {
    std::vector<uint64_t> victims;
    for (const auto& [id, t] : live_) {
      if (Chance(0.004)) victims.push_back(id);
    }
    for (uint64_t id : victims) {
      EXPECT_TRUE(s_->Finish(id, FinishReason::kCancelled).has_value());
      EXPECT_FALSE(s_->Finish(id, FinishReason::kCancelled).has_value());
      live_.erase(id);
      ++cancelled_;
    }
  }

  void OneStep() {
    StepPlan plan = s_->Schedule();
    ASSERT_NO_FATAL_FAILURE(CheckPlanAgainstState(*s_, plan));
    const int32_t bs = c_.config.kv.block_size;
    const BlockPool& pool = s_->kv_cache().pool();
    absl::flat_hash_set<int32_t> written;
    std::vector<int32_t> sampled(plan.requests.size(), -1);
    std::vector<uint64_t> stop;
    for (size_t k = 0; k < plan.requests.size(); ++k) {
      const ScheduledRequest& r = plan.requests[k];
      SCOPED_TRACE(testing::Message() << "request " << r.id);
      auto it = live_.find(r.id);
      ASSERT_NE(it, live_.end());
      Tracked& t = it->second;
      ASSERT_THAT(s_->TokenIds(r.id), testing::ElementsAreArray(t.tokens));
      // The context must hold exactly this request's prefix; then the new
      // positions are written, each to a slot nobody else writes or shares.
      uint64_t h = 0;
      for (int32_t pos = 0; pos < r.end_position(); ++pos) {
        h = Mix(h, t.tokens[pos]);
        const int32_t slot = plan.Slot(r, pos);
        if (pos < r.first_position) {
          ASSERT_EQ(kv_[slot], h) << "stale KV at position " << pos;
        } else {
          ASSERT_TRUE(written.insert(slot).second) << "slot written twice";
          ASSERT_EQ(pool.ref_count(slot / bs), 1) << "writes a shared block";
          kv_[slot] = h;
        }
      }
      // Prompt logits are reported once each, with no gap.
      const int32_t prompt_len =
          static_cast<int32_t>(t.spec.prompt_token_ids.size());
      const int32_t prompt_end = std::min(r.end_position(), prompt_len);
      if (t.spec.prompt_logprobs && prompt_end > t.prompt_reported) {
        EXPECT_EQ(r.logits_begin,
                  std::max(r.first_position, t.prompt_reported));
        t.prompt_reported = prompt_end;
      } else {
        EXPECT_EQ(r.logits_begin,
                  r.sample ? r.end_position() - 1 : r.end_position());
      }
      EXPECT_EQ(r.sample, r.reaches_end && t.spec.generate);
      if (r.sample) {
        sampled[k] = SampleToken(r.id, t.tokens.size());
        if (Chance(0.03)) stop.push_back(r.id);
      }
    }
    for (uint64_t id : stop) {  // the engine's stop checks
      std::optional<FinishedRequest> f = s_->Finish(id, FinishReason::kStop);
      ASSERT_TRUE(f.has_value());
      const Tracked& t = live_.at(id);
      EXPECT_EQ(f->num_output_tokens,
                t.tokens.size() - t.spec.prompt_token_ids.size());
      live_.erase(id);
      ++completed_;
    }
    for (size_t k = 0; k < plan.requests.size(); ++k) {
      auto it = live_.find(plan.requests[k].id);
      if (it != live_.end() && sampled[k] >= 0) {
        it->second.tokens.push_back(sampled[k]);
      }
    }
    for (const FinishedRequest& f : s_->Update(plan, sampled)) {
      auto it = live_.find(f.id);
      ASSERT_NE(it, live_.end());
      const Tracked& t = it->second;
      if (t.spec.generate) {
        EXPECT_EQ(f.reason, FinishReason::kLength);
        EXPECT_EQ(f.num_output_tokens, t.spec.max_tokens);
      } else {
        EXPECT_EQ(f.reason, FinishReason::kScored);
        EXPECT_EQ(f.num_output_tokens, 0);
      }
      EXPECT_EQ(f.num_prompt_tokens,
                static_cast<int32_t>(t.spec.prompt_token_ids.size()));
      if (t.spec.prompt_logprobs) {
        EXPECT_EQ(t.prompt_reported, f.num_prompt_tokens);
        EXPECT_EQ(f.num_cached_tokens, 0);
      }
      live_.erase(it);
      ++completed_;
    }
  }

  void CheckInvariants() {
    const SchedulerConfig& config = c_.config;
    const BlockPool& pool = s_->kv_cache().pool();
    std::vector<int32_t> holders(config.kv.num_blocks, 0);
    int32_t running = 0;
    for (const auto& [id, t] : live_) {
      std::optional<RequestInfo> info = s_->GetRequest(id);
      ASSERT_TRUE(info.has_value()) << id;
      ASSERT_THAT(s_->TokenIds(id), testing::ElementsAreArray(t.tokens));
      if (info->state == RequestState::kRunning) {
        ++running;
        EXPECT_EQ(info->num_blocks,
                  (info->num_computed_tokens + config.kv.block_size - 1) /
                      config.kv.block_size);
      } else {
        EXPECT_EQ(info->num_blocks, 0);
        EXPECT_EQ(info->num_computed_tokens, 0);
      }
      for (int32_t b : s_->BlockTable(id)) ++holders[b];
    }
    int32_t distinct = 0;
    for (int32_t b = 0; b < config.kv.num_blocks; ++b) {
      ASSERT_EQ(pool.ref_count(b), holders[b]) << "block " << b;
      if (holders[b] > 0) ++distinct;
    }
    SchedulerStats stats = s_->Stats();
    EXPECT_EQ(stats.kv.num_used_blocks, distinct);
    EXPECT_EQ(stats.kv.num_used_blocks + stats.kv.num_cached_blocks +
                  stats.kv.num_free_blocks,
              config.kv.num_blocks);
    EXPECT_DOUBLE_EQ(stats.kv.usage,
                     static_cast<double>(distinct) / config.kv.num_blocks);
    EXPECT_EQ(stats.num_running, running);
    EXPECT_EQ(stats.num_running + stats.num_waiting,
              static_cast<int32_t>(live_.size()));
    EXPECT_LE(stats.num_running, config.max_num_seqs);
    absl::Status valid = pool.Validate();
    ASSERT_TRUE(valid.ok()) << valid;
  }

  const PropertyCase c_;
  std::mt19937_64 rng_;
  std::unique_ptr<Scheduler> s_;
  std::vector<uint64_t> kv_;  // fake KV pool: prefix fingerprint per slot
  std::vector<std::vector<int32_t>> prefixes_;
  std::vector<RequestSpec> pending_;
  std::map<uint64_t, Tracked> live_;
  uint64_t next_id_ = 1;
  int completed_ = 0;
  int cancelled_ = 0;
  int rejected_ = 0;
  int queue_full_ = 0;
};

class SchedulerPropertyTest : public testing::TestWithParam<PropertyCase> {};

TEST_P(SchedulerPropertyTest, InvariantsHoldAndEverythingFinishes) {
  Simulation sim(GetParam());
  sim.Run();
}

std::vector<PropertyCase> PropertyCases() {
  std::vector<PropertyCase> cases;
  auto base = [](int32_t num_blocks, int32_t block_size, int32_t budget) {
    return SchedulerConfig{.max_num_batched_tokens = budget,
                           .max_num_seqs = 8,
                           .max_model_len = 64,
                           .max_queued_requests = 12,
                           .kv = {.num_blocks = num_blocks,
                                  .block_size = block_size,
                                  .enable_prefix_caching = true}};
  };
  for (uint64_t seed : {1, 2, 3, 4}) {
    const std::string s = std::to_string(seed);
    cases.push_back({"cached_bs4_seed" + s, base(24, 4, 32), seed, 1000});
    SchedulerConfig no_cache = base(20, 4, 24);
    no_cache.kv.enable_prefix_caching = false;
    no_cache.long_prefill_token_threshold = 8;
    cases.push_back({"uncached_chunked_seed" + s, no_cache, seed, 1000});
    cases.push_back({"cached_bs1_seed" + s, base(80, 1, 16), seed, 1000});
    SchedulerConfig big_blocks = base(6, 16, 48);
    big_blocks.max_num_seqs = 4;
    cases.push_back({"cached_bs16_seed" + s, big_blocks, seed, 1000});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Random, SchedulerPropertyTest,
                         testing::ValuesIn(PropertyCases()),
                         [](const testing::TestParamInfo<PropertyCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace alibi
