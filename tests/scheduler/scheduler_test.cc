#include "server/scheduler/scheduler.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/scheduler/plan_checks.h"

namespace alibi {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

std::vector<int32_t> Prompt(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

RequestSpec Gen(uint64_t id, int32_t prompt_len, int32_t max_tokens,
                int32_t priority = 0) {
  return RequestSpec{
      .id = id,
      .prompt_token_ids = Prompt(100 * static_cast<int32_t>(id), prompt_len),
      .max_tokens = max_tokens,
      .priority = priority};
}

RequestSpec WithTokens(uint64_t id, std::vector<int32_t> prompt,
                       int32_t max_tokens) {
  return RequestSpec{.id = id,
                     .prompt_token_ids = std::move(prompt),
                     .max_tokens = max_tokens};
}

SchedulerConfig Config(int32_t num_blocks, int32_t block_size, int32_t budget,
                       bool caching = false) {
  return SchedulerConfig{.max_num_batched_tokens = budget,
                         .max_num_seqs = 16,
                         .max_model_len = 256,
                         .max_queued_requests = 16,
                         .kv = {.num_blocks = num_blocks,
                                .block_size = block_size,
                                .enable_prefix_caching = caching}};
}

// One expected plan entry.
struct Want {
  uint64_t id;
  int32_t first;
  int32_t n;
  bool sample;
  int32_t logits = -1;  // expected num_logits(); -1: 1 if sample else 0
};

// One expected finished request from Update().
struct Done {
  uint64_t id;
  FinishReason reason;
  int32_t cached = -1;  // expected num_cached_tokens; -1: not checked
};

struct Step {
  std::vector<RequestSpec> add = {};  // Add()ed before Schedule()
  std::vector<uint64_t> cancel = {};  // Finish(kCancelled) before Schedule()
  std::vector<Want> plan = {};
  std::vector<uint64_t> preempted = {};
  std::vector<uint64_t> stop = {};  // Finish(kStop) before Update()
  std::vector<Done> finished = {};
  int32_t used_blocks = -1;  // after Update(); -1: not checked
  std::function<void(const Scheduler&)> check = nullptr;  // after Update()
};

struct Case {
  std::string name;
  SchedulerConfig config;
  std::vector<Step> steps;
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.name;
}

class SchedulerTableTest : public testing::TestWithParam<Case> {};

TEST_P(SchedulerTableTest, StepsMatch) {
  const Case& c = GetParam();
  auto created = Scheduler::Create(c.config);
  ASSERT_TRUE(created.ok()) << created.status();
  Scheduler& s = **created;
  for (size_t i = 0; i < c.steps.size(); ++i) {
    SCOPED_TRACE(testing::Message() << "step " << i + 1);
    const Step& step = c.steps[i];
    for (uint64_t id : step.cancel) {
      EXPECT_TRUE(s.Finish(id, FinishReason::kCancelled).has_value()) << id;
    }
    for (const RequestSpec& spec : step.add) {
      absl::Status st = s.Add(spec);
      ASSERT_TRUE(st.ok()) << st;
    }
    StepPlan plan = s.Schedule();
    CheckPlanAgainstState(s, plan);
    ASSERT_EQ(plan.requests.size(), step.plan.size());
    for (size_t k = 0; k < step.plan.size(); ++k) {
      const Want& w = step.plan[k];
      const ScheduledRequest& got = plan.requests[k];
      SCOPED_TRACE(testing::Message() << "entry " << k << " id " << w.id);
      EXPECT_EQ(got.id, w.id);
      EXPECT_EQ(got.first_position, w.first);
      EXPECT_EQ(got.num_tokens, w.n);
      EXPECT_EQ(got.sample, w.sample);
      EXPECT_EQ(got.num_logits(), w.logits >= 0 ? w.logits : w.sample);
    }
    EXPECT_THAT(plan.preempted, ElementsAreArray(step.preempted));
    for (uint64_t id : step.stop) {
      EXPECT_TRUE(s.Finish(id, FinishReason::kStop).has_value()) << id;
    }
    std::vector<int32_t> sampled(plan.requests.size(),
                                 static_cast<int32_t>(9000 + i));
    std::vector<FinishedRequest> finished = s.Update(plan, sampled);
    ASSERT_EQ(finished.size(), step.finished.size());
    for (size_t k = 0; k < finished.size(); ++k) {
      EXPECT_EQ(finished[k].id, step.finished[k].id);
      EXPECT_EQ(finished[k].reason, step.finished[k].reason)
          << FinishReasonName(finished[k].reason);
      if (step.finished[k].cached >= 0) {
        EXPECT_EQ(finished[k].num_cached_tokens, step.finished[k].cached);
      }
      EXPECT_FALSE(s.GetRequest(finished[k].id).has_value());
    }
    if (step.used_blocks >= 0) {
      EXPECT_EQ(s.Stats().kv.num_used_blocks, step.used_blocks);
    }
    if (step.check) step.check(s);
    ASSERT_TRUE(s.kv_cache().pool().Validate().ok());
  }
  // Every case runs to completion.
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_EQ(s.Stats().kv.num_used_blocks, 0);
}

constexpr FinishReason kLength = FinishReason::kLength;
constexpr FinishReason kPromptComplete = FinishReason::kScored;

std::vector<Case> Cases() {
  std::vector<Case> cases;

  cases.push_back({"decode_after_prefill",
                   Config(16, 4, 100),
                   {
                       {.add = {Gen(1, 10, 3)},
                        .plan = {{1, 0, 10, true}},
                        .used_blocks = 3},
                       {.plan = {{1, 10, 1, true}}, .used_blocks = 3},
                       {.plan = {{1, 11, 1, true}},
                        .finished = {{1, kLength}},
                        .used_blocks = 0},
                   }});

  cases.push_back(
      {"chunked_prefill_under_token_budget",
       Config(32, 4, 8),
       {
           {.add = {Gen(1, 20, 2), Gen(2, 5, 2)}, .plan = {{1, 0, 8, false}}},
           {.plan = {{1, 8, 8, false}}},
           {.plan = {{1, 16, 4, true}, {2, 0, 4, false}}},
           {.plan = {{1, 20, 1, true}, {2, 4, 1, true}},
            .finished = {{1, kLength}}},
           {.plan = {{2, 5, 1, true}}, .finished = {{2, kLength}}},
       }});

  {
    SchedulerConfig config = Config(32, 4, 100);
    config.long_prefill_token_threshold = 4;
    cases.push_back(
        {"long_prefill_threshold_caps_chunks",
         config,
         {
             {.add = {Gen(1, 10, 1), Gen(2, 3, 1)},
              .plan = {{1, 0, 4, false}, {2, 0, 3, true}},
              .finished = {{2, kLength}}},
             {.plan = {{1, 4, 4, false}}},
             {.plan = {{1, 8, 2, true}}, .finished = {{1, kLength}}},
         }});
  }

  {
    SchedulerConfig config = Config(32, 4, 100);
    config.max_num_seqs = 2;
    cases.push_back(
        {"max_num_seqs_limits_running",
         config,
         {
             {.add = {Gen(1, 4, 2), Gen(2, 4, 2), Gen(3, 4, 2)},
              .plan = {{1, 0, 4, true}, {2, 0, 4, true}}},
             {.plan = {{1, 4, 1, true}, {2, 4, 1, true}},
              .finished = {{1, kLength}, {2, kLength}}},
             {.plan = {{3, 0, 4, true}}},
             {.plan = {{3, 4, 1, true}}, .finished = {{3, kLength}}},
         }});
  }

  cases.push_back({"budget_goes_to_running_first",
                   Config(32, 4, 6),
                   {
                       {.add = {Gen(1, 4, 3), Gen(2, 4, 2)},
                        .plan = {{1, 0, 4, true}, {2, 0, 2, false}}},
                       {.plan = {{1, 4, 1, true}, {2, 2, 2, true}}},
                       {.plan = {{1, 5, 1, true}, {2, 4, 1, true}},
                        .finished = {{1, kLength}, {2, kLength}}},
                   }});

  {
    SchedulerConfig config = Config(32, 4, 100);
    config.max_num_seqs = 1;
    cases.push_back(
        {"priority_then_fcfs",
         config,
         {
             {.add = {Gen(1, 4, 1, /*priority=*/1),
                      Gen(2, 4, 1, /*priority=*/0),
                      Gen(3, 4, 1, /*priority=*/1)},
              .plan = {{2, 0, 4, true}},
              .finished = {{2, kLength}}},
             {.plan = {{1, 0, 4, true}}, .finished = {{1, kLength}}},
             {.plan = {{3, 0, 4, true}}, .finished = {{3, kLength}}},
         }});
  }

  cases.push_back(
      {"preempt_newest_then_recompute",
       Config(4, 2, 16),
       {
           {.add = {Gen(1, 2, 4), Gen(2, 2, 4)},
            .plan = {{1, 0, 2, true}, {2, 0, 2, true}},
            .used_blocks = 2},
           {.plan = {{1, 2, 1, true}, {2, 2, 1, true}}, .used_blocks = 4},
           {.plan = {{1, 3, 1, true}, {2, 3, 1, true}}, .used_blocks = 4},
           // A needs a third block: B (newest) is preempted.
           {.plan = {{1, 4, 1, true}},
            .preempted = {2},
            .finished = {{1, kLength}},
            .used_blocks = 0,
            .check =
                [](const Scheduler& s) {
                  std::optional<RequestInfo> b = s.GetRequest(2);
                  ASSERT_TRUE(b.has_value());
                  EXPECT_EQ(b->state, RequestState::kPreempted);
                  EXPECT_EQ(b->num_computed_tokens, 0);
                  EXPECT_EQ(b->num_tokens, 5);
                  EXPECT_EQ(b->num_preemptions, 1);
                  EXPECT_EQ(b->num_blocks, 0);
                  EXPECT_EQ(s.Stats().num_preemptions, 1u);
                }},
           // B recomputes prompt + its 3 outputs and samples its 4th.
           {.plan = {{2, 0, 5, true}}, .finished = {{2, kLength}}},
       }});

  {
    SchedulerConfig config = Config(5, 2, 8);
    config.long_prefill_token_threshold = 6;
    cases.push_back(
        {"preempt_several_newest_first_resume_in_order",
         config,
         {
             {.add = {Gen(1, 10, 1), Gen(2, 1, 3), Gen(3, 1, 3)},
              .plan = {{1, 0, 6, false}, {2, 0, 1, true}, {3, 0, 1, true}},
              .used_blocks = 5},
             // A's last chunk needs 2 more blocks: C, then B.
             {.plan = {{1, 6, 4, true}},
              .preempted = {3, 2},
              .finished = {{1, kLength}},
              .used_blocks = 0},
             {.plan = {{2, 0, 2, true}, {3, 0, 2, true}}},
             {.plan = {{2, 2, 1, true}, {3, 2, 1, true}},
              .finished = {{2, kLength}, {3, kLength}}},
         }});
  }

  cases.push_back(
      {"no_admission_in_a_preemption_step",
       Config(4, 2, 16),
       {
           {.add = {Gen(1, 2, 3), Gen(2, 5, 2)},
            .plan = {{1, 0, 2, true}, {2, 0, 5, true}},
            .used_blocks = 4},
           // C (top priority) would fit after B is preempted, but waits.
           {.add = {Gen(3, 1, 1, /*priority=*/-1)},
            .plan = {{1, 2, 1, true}},
            .preempted = {2},
            .used_blocks = 2},
           {.plan = {{1, 3, 1, true}, {3, 0, 1, true}},
            .finished = {{1, kLength}, {3, kLength}}},
           {.plan = {{2, 0, 6, true}}, .finished = {{2, kLength}}},
       }});

  cases.push_back({"prefix_hit_and_last_token_rule",
                   Config(16, 4, 64, /*caching=*/true),
                   {
                       {.add = {WithTokens(1, Prompt(0, 8), 1)},
                        .plan = {{1, 0, 8, true}},
                        .finished = {{1, kLength, 0}},
                        .check =
                            [](const Scheduler& s) {
                              EXPECT_EQ(s.Stats().kv.num_cached_blocks, 2);
                              EXPECT_EQ(s.Stats().kv.usage, 0.0);
                            }},
                       // Same 8 tokens: only the first block may hit (last
                       // token rule); 9 tokens: both blocks hit.
                       {.add = {WithTokens(2, Prompt(0, 8), 1),
                                WithTokens(3, Prompt(0, 9), 1)},
                        .plan = {{2, 4, 4, true}, {3, 8, 1, true}},
                        .finished = {{2, kLength, 4}, {3, kLength, 8}},
                        .check =
                            [](const Scheduler& s) {
                              KvCacheStats kv = s.Stats().kv;
                              EXPECT_EQ(kv.prefix_cache_queries, 8u + 8u + 9u);
                              EXPECT_EQ(kv.prefix_cache_hits, 4u + 8u);
                            }},
                   }});

  cases.push_back({"prompt_logprobs_skip_the_cache",
                   Config(16, 4, 6, /*caching=*/true),
                   {
                       {.add = {WithTokens(1, Prompt(0, 8), 1)},
                        .plan = {{1, 0, 6, false}}},
                       {.plan = {{1, 6, 2, true}}, .finished = {{1, kLength}}},
                       {.add = {RequestSpec{.id = 2,
                                            .prompt_token_ids = Prompt(0, 8),
                                            .max_tokens = 2,
                                            .prompt_logprobs = true}},
                        .plan = {{2, 0, 6, false, /*logits=*/6}}},
                       {.plan = {{2, 6, 2, true, /*logits=*/2}}},
                       {.plan = {{2, 8, 1, true}},
                        .finished = {{2, kLength, 0}},
                        .check =
                            [](const Scheduler& s) {
                              // Only request 1 queried the cache.
                              EXPECT_EQ(s.Stats().kv.prefix_cache_queries, 8u);
                            }},
                   }});

  cases.push_back(
      {"scoring_requests_finish_at_end_of_prompt",
       Config(16, 4, 4),
       {
           {.add = {RequestSpec{.id = 1,
                                .prompt_token_ids = Prompt(0, 6),
                                .prompt_logprobs = true,
                                .generate = false},
                    RequestSpec{.id = 2,
                                .prompt_token_ids = Prompt(50, 3),
                                .generate = false}},
            .plan = {{1, 0, 4, false, /*logits=*/4}}},
           {.plan = {{1, 4, 2, false, /*logits=*/2}, {2, 0, 2, false}},
            .finished = {{1, kPromptComplete}}},
           {.plan = {{2, 2, 1, false}}, .finished = {{2, kPromptComplete}}},
       }});

  cases.push_back(
      {"prompt_logits_not_reported_twice_after_preemption",
       Config(4, 2, 4),
       {
           {.add = {Gen(1, 2, 4), RequestSpec{.id = 2,
                                              .prompt_token_ids = Prompt(0, 6),
                                              .max_tokens = 1,
                                              .prompt_logprobs = true}},
            .plan = {{1, 0, 2, true}, {2, 0, 2, false, /*logits=*/2}}},
           // Request 2's next chunk does not fit: it preempts itself.
           {.plan = {{1, 2, 1, true}}, .preempted = {2}},
           // Recomputed positions 0, 1 need no logits again.
           {.plan = {{1, 3, 1, true}, {2, 0, 3, false, /*logits=*/1}}},
           {.plan = {{1, 4, 1, true}},
            .preempted = {2},
            .finished = {{1, kLength}}},
           {.plan = {{2, 0, 4, false, /*logits=*/1}}},
           {.plan = {{2, 4, 2, true, /*logits=*/2}},
            .finished = {{2, kLength}}},
       }});

  cases.push_back(
      {"cancel_waiting_running_and_preempted",
       Config(4, 2, 16),
       {
           {.add = {Gen(1, 2, 3), Gen(2, 5, 2)},
            .plan = {{1, 0, 2, true}, {2, 0, 5, true}}},
           {.add = {Gen(3, 1, 1)}, .plan = {{1, 2, 1, true}}, .preempted = {2}},
           // 2 is preempted and 3 waiting: both cancelled, then 4 admitted.
           {.add = {Gen(4, 2, 5)},
            .cancel = {2, 3},
            .plan = {{1, 3, 1, true}, {4, 0, 2, true}},
            .finished = {{1, kLength}},
            .used_blocks = 1},
           // Running 4 cancelled: its block is free at once.
           {.cancel = {4},
            .plan = {},
            .used_blocks = 0,
            .check =
                [](const Scheduler& s) {
                  EXPECT_EQ(s.num_running(), 0);
                  EXPECT_EQ(s.num_waiting(), 0);
                }},
       }});

  cases.push_back({"stop_between_schedule_and_update_wins",
                   Config(8, 4, 16),
                   {
                       {.add = {Gen(1, 3, 5)},
                        .plan = {{1, 0, 3, true}},
                        .stop = {1},
                        .finished = {},
                        .used_blocks = 0},
                   }});

  cases.push_back(
      {"lru_keeps_prefix_evicts_tail",
       Config(5, 2, 16, /*caching=*/true),
       {
           {.add = {WithTokens(1, {1, 2, 3, 4, 5}, 1)},
            .plan = {{1, 0, 5, true}},
            .finished = {{1, kLength}}},
           // 7 tokens need 4 blocks: 2 empty ones, the partial one, then the
           // least recently used cached block (request 1's tail {3, 4}).
           {.add = {WithTokens(2, {9, 9, 9, 9, 9, 9, 9}, 1)},
            .plan = {{2, 0, 7, true}},
            .finished = {{2, kLength}},
            .check =
                [](const Scheduler& s) {
                  EXPECT_EQ(s.Stats().kv.num_evictions, 1u);
                }},
           {.add = {WithTokens(3, {1, 2, 3, 4, 5}, 1)},
            .plan = {{3, 2, 3, true}},
            .finished = {{3, kLength, 2}}},
       }});

  return cases;
}

INSTANTIATE_TEST_SUITE_P(Table, SchedulerTableTest, testing::ValuesIn(Cases()),
                         [](const testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------

std::unique_ptr<Scheduler> Make(const SchedulerConfig& config) {
  auto s = Scheduler::Create(config);
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

TEST(SchedulerTest, CreateRejectsBadConfig) {
  SchedulerConfig ok = Config(8, 4, 16);
  EXPECT_TRUE(Scheduler::Create(ok).ok());
  for (auto mutate : std::vector<std::function<void(SchedulerConfig&)>>{
           [](SchedulerConfig& c) { c.max_num_batched_tokens = 0; },
           [](SchedulerConfig& c) { c.max_num_seqs = 0; },
           [](SchedulerConfig& c) { c.max_model_len = 0; },
           [](SchedulerConfig& c) { c.max_queued_requests = 0; },
           [](SchedulerConfig& c) { c.long_prefill_token_threshold = -1; },
           [](SchedulerConfig& c) { c.kv.num_blocks = 0; },
           [](SchedulerConfig& c) { c.kv.block_size = 0; },
       }) {
    SchedulerConfig bad = ok;
    mutate(bad);
    EXPECT_EQ(Scheduler::Create(bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(SchedulerTest, AddRejectsInvalidRequests) {
  SchedulerConfig config = Config(4, 4, 64);  // the pool holds 16 tokens
  config.max_model_len = 20;
  auto s = Make(config);
  EXPECT_EQ(s->Add(WithTokens(1, {}, 1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s->Add(Gen(1, 4, 0)).code(), absl::StatusCode::kInvalidArgument);
  // Beyond max_model_len.
  EXPECT_EQ(s->Add(Gen(1, 15, 6)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      s->Add(RequestSpec{
                 .id = 1, .prompt_token_ids = Prompt(0, 21), .generate = false})
          .code(),
      absl::StatusCode::kInvalidArgument);
  // Within max_model_len but never fits the pool: 12 + 6 - 1 = 17 > 16.
  absl::Status st = s->Add(Gen(1, 12, 6));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), testing::HasSubstr("KV blocks"));
  // Exactly the pool: 12 + 5 - 1 = 16 tokens.
  EXPECT_TRUE(s->Add(Gen(1, 12, 5)).ok());
  EXPECT_EQ(s->Add(Gen(1, 2, 1)).code(), absl::StatusCode::kAlreadyExists);
  // Scoring needs only the prompt.
  EXPECT_TRUE(s->Add(RequestSpec{.id = 2,
                                 .prompt_token_ids = Prompt(0, 16),
                                 .max_tokens = 100,
                                 .generate = false})
                  .ok());
  EXPECT_EQ(s->num_waiting(), 2);
}

TEST(SchedulerTest, FullWaitingQueueIsResourceExhausted) {
  SchedulerConfig config = Config(64, 4, 64);
  config.max_queued_requests = 2;
  config.max_num_seqs = 1;
  auto s = Make(config);
  ASSERT_TRUE(s->Add(Gen(1, 4, 4)).ok());
  ASSERT_TRUE(s->Add(Gen(2, 4, 4)).ok());
  EXPECT_EQ(s->Add(Gen(3, 4, 4)).code(), absl::StatusCode::kResourceExhausted);
  // Validation comes first: a never-fitting request is InvalidArgument even
  // when the queue is full.
  EXPECT_EQ(s->Add(Gen(3, 300, 4)).code(), absl::StatusCode::kInvalidArgument);
  StepPlan plan = s->Schedule();  // admits 1 (max_num_seqs 1)
  EXPECT_EQ(s->num_waiting(), 1);
  EXPECT_EQ(s->num_running(), 1);
  s->Update(plan, std::vector<int32_t>(plan.requests.size(), 7));
  EXPECT_TRUE(s->Add(Gen(3, 4, 4)).ok());
  EXPECT_EQ(s->Add(Gen(4, 4, 4)).code(), absl::StatusCode::kResourceExhausted);
}

TEST(SchedulerTest, GroupMemberWaitsForThePromptThenSharesItsBlocks) {
  auto s = Make(Config(16, 4, 64));  // prefix caching off
  ASSERT_TRUE(s->Add(Gen(1, 10, 3)).ok());
  RequestSpec child = Gen(1, 10, 3);  // same prompt
  child.id = 2;
  child.share_prompt_with = 1;
  ASSERT_TRUE(s->Add(child).ok());
  StepPlan plan = s->Schedule();
  // The child waits while the prompt is being computed.
  ASSERT_EQ(plan.requests.size(), 1u);
  EXPECT_EQ(plan.requests[0].id, 1u);
  s->Update(plan, {7});
  plan = s->Schedule();
  ASSERT_EQ(plan.requests.size(), 2u);
  const ScheduledRequest& c = plan.requests[1];
  EXPECT_EQ(c.id, 2u);
  EXPECT_EQ(c.first_position, 8);  // two full blocks shared
  EXPECT_EQ(c.num_tokens, 2);
  EXPECT_THAT(
      plan.BlockTable(c).subspan(0, 2),
      ElementsAreArray(plan.BlockTable(plan.requests[0]).subspan(0, 2)));
  EXPECT_NE(plan.BlockTable(c)[2], plan.BlockTable(plan.requests[0])[2]);
  // 3 blocks for the first (10 tokens + 1), 1 more for the child's tail.
  EXPECT_EQ(s->Stats().kv.num_used_blocks, 4);
  EXPECT_EQ(s->Stats().kv.prefix_cache_hits, 8u);
  s->Update(plan, {7, 8});
  // Gone source: a member added later runs on its own.
  s->Finish(1, FinishReason::kCancelled);
  child.id = 3;
  ASSERT_TRUE(s->Add(child).ok());
  plan = s->Schedule();
  ASSERT_EQ(plan.requests.size(), 2u);
  EXPECT_EQ(plan.requests[1].id, 3u);
  EXPECT_EQ(plan.requests[1].first_position, 0);
}

TEST(SchedulerTest, WindowedRequestHoldsBoundedBlocksWhateverItsLength) {
  auto s = Make(Config(64, 4, 64));  // max_model_len 256
  RequestSpec spec = Gen(1, 10, 2000);
  spec.kv_window = 12;
  ASSERT_TRUE(s->Add(spec).ok());  // 2010 tokens: only the window counts
  RequestSpec unwindowed = Gen(2, 10, 2000);
  EXPECT_EQ(s->Add(unwindowed).code(), absl::StatusCode::kInvalidArgument);
  int32_t max_blocks = 0;
  int steps = 0;
  while (s->has_unfinished()) {
    StepPlan plan = s->Schedule();
    ASSERT_EQ(plan.requests.size(), 1u);
    const ScheduledRequest& r = plan.requests[0];
    EXPECT_EQ(r.window, 12);
    EXPECT_EQ(r.origin, 0);
    // The table covers the window of the chunk's first position.
    const int32_t first_key = std::max(0, r.first_position - 12 + 1);
    EXPECT_EQ(r.first_block, first_key / 4);
    EXPECT_EQ(r.first_block + r.num_blocks, (r.end_position() + 3) / 4);
    if (steps > 0) max_blocks = std::max(max_blocks, r.num_blocks);
    EXPECT_LE(s->Stats().kv.num_used_blocks, r.num_blocks);
    s->Update(plan, {7});
    ++steps;
  }
  EXPECT_EQ(steps, 2000);
  EXPECT_LE(max_blocks, 12 / 4 + 1);
  EXPECT_GT(s->Stats().num_window_released_blocks, 400u);
  EXPECT_EQ(s->Stats().kv.num_used_blocks, 0);
}

TEST(SchedulerTest, PreemptedWindowedRequestRecomputesOnlyItsTail) {
  auto s = Make(Config(16, 4, 16));
  ASSERT_TRUE(s->Add(Gen(1, 20, 40)).ok());  // grows to 15 of 16 blocks
  RequestSpec windowed = Gen(2, 8, 200);
  windowed.kv_window = 8;
  windowed.window_recompute_tokens = 16;
  ASSERT_TRUE(s->Add(windowed).ok());
  bool preempted = false;
  bool restarted = false;
  int32_t computed_at_preemption = 0;
  for (int i = 0; i < 1000 && s->has_unfinished(); ++i) {
    const int32_t before = s->GetRequest(2).has_value()
                               ? s->GetRequest(2)->num_computed_tokens
                               : 0;
    StepPlan plan = s->Schedule();
    if (std::find(plan.preempted.begin(), plan.preempted.end(), 2u) !=
        plan.preempted.end()) {
      preempted = true;
      computed_at_preemption = before;
    }
    for (const ScheduledRequest& r : plan.requests) {
      if (r.id == 2 && r.newly_admitted && preempted && !restarted) {
        restarted = true;
        // Back from 16 tokens before where it stood, not from token 0.
        EXPECT_EQ(r.origin, computed_at_preemption - 16);
        EXPECT_EQ(r.first_position, r.origin);
        EXPECT_EQ(r.first_block, 0);
        EXPECT_EQ(r.context_len(), r.num_tokens);
      }
    }
    s->Update(plan, std::vector<int32_t>(plan.requests.size(), 7));
  }
  EXPECT_TRUE(preempted);
  EXPECT_TRUE(restarted);
  EXPECT_GT(computed_at_preemption, 16);
  EXPECT_FALSE(s->has_unfinished());
  EXPECT_EQ(s->Stats().kv.num_used_blocks, 0);
}

TEST(SchedulerTest, AttentionAndLogitBudgetsBoundEveryStep) {
  SchedulerConfig config = Config(512, 16, 2048);
  config.max_model_len = 8192;
  config.max_step_attention_pairs = 100000;
  config.max_step_logit_rows = 50;
  auto s = Make(config);
  s->SetAttentionBudget(100000);
  ASSERT_TRUE(s->Add(Gen(1, 4000, 4)).ok());  // a long prompt
  RequestSpec scoring = Gen(2, 300, 1);
  scoring.generate = false;
  scoring.prompt_logprobs = true;
  ASSERT_TRUE(s->Add(scoring).ok());
  ASSERT_TRUE(s->Add(Gen(3, 5, 50)).ok());  // a short request
  int steps = 0;
  bool short_started = false;
  while (s->has_unfinished() && steps < 10000) {
    StepPlan plan = s->Schedule();
    ASSERT_FALSE(plan.empty());
    int64_t pairs = 0;
    int32_t rows = 0;
    for (const ScheduledRequest& r : plan.requests) {
      const int64_t a = r.first_position + 1, b = r.end_position();
      pairs += (a + b) * r.num_tokens / 2;
      if (r.id == 2) rows += r.num_logits();
      if (r.id == 3) short_started = true;
    }
    EXPECT_EQ(plan.attention_pairs, pairs);
    // The first request always gets a token; beyond it, the caps hold.
        if (plan.requests.size() > 1) {
      EXPECT_LE(pairs, 100000 + 4100);
    }
    EXPECT_LE(rows, 50);
        if (steps == 2) {
      EXPECT_TRUE(short_started) << "the short request waited";
    }
    s->Update(plan, std::vector<int32_t>(plan.requests.size(), 7));
    ++steps;
  }
  EXPECT_FALSE(s->has_unfinished());
  // 4000^2 / 2 pairs of prefill alone need at least 80 steps.
  EXPECT_GT(steps, 80);
}

TEST(SchedulerTest, FinishIsIdempotentAndFreesAtOnce) {
  auto s = Make(Config(8, 4, 64));
  ASSERT_TRUE(s->Add(Gen(1, 6, 4)).ok());
  EXPECT_FALSE(s->Finish(42, FinishReason::kCancelled).has_value());
  StepPlan plan = s->Schedule();
  s->Update(plan, {7});
  EXPECT_EQ(s->Stats().kv.num_used_blocks, 2);
  std::optional<FinishedRequest> done = s->Finish(1, FinishReason::kCancelled);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->id, 1u);
  EXPECT_EQ(done->reason, FinishReason::kCancelled);
  EXPECT_EQ(done->num_prompt_tokens, 6);
  EXPECT_EQ(done->num_output_tokens, 1);
  EXPECT_EQ(done->num_cached_tokens, 0);
  EXPECT_EQ(s->Stats().kv.num_used_blocks, 0);
  EXPECT_FALSE(s->Finish(1, FinishReason::kCancelled).has_value());
  EXPECT_FALSE(s->GetRequest(1).has_value());
  EXPECT_TRUE(s->TokenIds(1).empty());
  EXPECT_TRUE(s->Schedule().empty());
}

TEST(SchedulerTest, RequestLifecycleAndOutputs) {
  auto s = Make(Config(8, 4, 64));
  ASSERT_TRUE(s->Add(Gen(1, 5, 3)).ok());
  std::optional<RequestInfo> info = s->GetRequest(1);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->state, RequestState::kWaiting);
  EXPECT_EQ(info->num_cached_tokens, -1);
  StepPlan plan = s->Schedule();
  EXPECT_TRUE(plan.requests[0].newly_admitted);
  EXPECT_THAT(s->Update(plan, {11}), IsEmpty());
  info = s->GetRequest(1);
  EXPECT_EQ(info->state, RequestState::kRunning);
  EXPECT_EQ(info->num_computed_tokens, 5);
  EXPECT_EQ(info->num_tokens, 6);
  EXPECT_EQ(info->num_output_tokens, 1);
  EXPECT_EQ(info->num_cached_tokens, 0);
  EXPECT_EQ(info->num_blocks, 2);
  plan = s->Schedule();
  EXPECT_FALSE(plan.requests[0].newly_admitted);
  EXPECT_THAT(plan.TokenIds(plan.requests[0]), ElementsAre(11));
  s->Update(plan, {12});
  EXPECT_THAT(s->TokenIds(1), ElementsAre(100, 101, 102, 103, 104, 11, 12));
  plan = s->Schedule();
  std::vector<FinishedRequest> done = s->Update(plan, {13});
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, 1u);
  EXPECT_EQ(done[0].reason, FinishReason::kLength);
  EXPECT_EQ(done[0].num_prompt_tokens, 5);
  EXPECT_EQ(done[0].num_output_tokens, 3);
  EXPECT_FALSE(s->has_unfinished());
}

TEST(SchedulerTest, PlanSlotsFollowTheBlockTable) {
  auto s = Make(Config(8, 4, 64));
  ASSERT_TRUE(s->Add(Gen(1, 3, 2)).ok());
  ASSERT_TRUE(s->Add(Gen(2, 6, 2)).ok());
  StepPlan plan = s->Schedule();
  ASSERT_EQ(plan.requests.size(), 2u);
  const ScheduledRequest& a = plan.requests[0];
  const ScheduledRequest& b = plan.requests[1];
  EXPECT_EQ(a.token_offset, 0);
  EXPECT_EQ(b.token_offset, 3);
  EXPECT_THAT(plan.BlockTable(a), ElementsAre(0));
  EXPECT_THAT(plan.BlockTable(b), ElementsAre(1, 2));
  EXPECT_EQ(plan.Slot(a, 2), 2);
  EXPECT_EQ(plan.Slot(b, 0), 4);
  EXPECT_EQ(plan.Slot(b, 5), 9);
  EXPECT_EQ(b.context_len(), 6);
  EXPECT_EQ(b.logits_begin, 5);
  s->Update(plan, {7, 8});
}

TEST(SchedulerDeathTest, ScheduleTwiceWithoutUpdateIsABug) {
  auto s = Make(Config(8, 4, 64));
  ASSERT_TRUE(s->Add(Gen(1, 4, 2)).ok());
  StepPlan plan = s->Schedule();
  EXPECT_DEATH(s->Schedule(), "before Update");
}

TEST(SchedulerDeathTest, StalePlanIsABug) {
  auto s = Make(Config(8, 4, 64));
  ASSERT_TRUE(s->Add(Gen(1, 4, 2)).ok());
  StepPlan plan = s->Schedule();
  s->Update(plan, {1});
  EXPECT_DEATH(s->Update(plan, {1}), "Update\\(\\) of step");
}

}  // namespace
}  // namespace alibi
