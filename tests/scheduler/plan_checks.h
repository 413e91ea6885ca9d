// Checks every StepPlan must satisfy against the scheduler state it was made
// from (call between Schedule() and Update()). Shared by the scheduler tests.
#ifndef ALIBI_TESTS_SCHEDULER_PLAN_CHECKS_H_
#define ALIBI_TESTS_SCHEDULER_PLAN_CHECKS_H_

#include <cstdint>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/scheduler/scheduler.h"

namespace alibi {

inline void CheckPlanAgainstState(const Scheduler& s, const StepPlan& plan) {
  const SchedulerConfig& config = s.config();
  EXPECT_EQ(plan.block_size, config.kv.block_size);
  EXPECT_LE(static_cast<int32_t>(plan.requests.size()), config.max_num_seqs);
  int32_t total = 0;
  absl::flat_hash_set<uint64_t> ids;
  for (const ScheduledRequest& r : plan.requests) {
    SCOPED_TRACE(testing::Message() << "request " << r.id);
    EXPECT_TRUE(ids.insert(r.id).second) << "scheduled twice";
    std::optional<RequestInfo> info = s.GetRequest(r.id);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->state, RequestState::kRunning);
    absl::Span<const int32_t> tokens = s.TokenIds(r.id);
    ASSERT_GE(r.num_tokens, 1);
    ASSERT_GE(r.first_position, 0);
    ASSERT_LE(r.end_position(), static_cast<int32_t>(tokens.size()));
    EXPECT_THAT(plan.TokenIds(r), testing::ElementsAreArray(tokens.subspan(
                                      r.first_position, r.num_tokens)));
    EXPECT_EQ(r.reaches_end,
              r.end_position() == static_cast<int32_t>(tokens.size()));
    EXPECT_EQ(r.num_blocks,
              (r.context_len() + plan.block_size - 1) / plan.block_size);
    EXPECT_THAT(plan.BlockTable(r),
                testing::ElementsAreArray(s.BlockTable(r.id)));
    EXPECT_GE(r.logits_begin, r.first_position);
    EXPECT_LE(r.logits_begin, r.end_position());
    if (r.sample) {
      EXPECT_TRUE(r.reaches_end);
      EXPECT_GE(r.num_logits(), 1);
    }
    total += r.num_tokens;
  }
  EXPECT_EQ(plan.num_batched_tokens, total);
  EXPECT_EQ(plan.token_ids.size(), static_cast<size_t>(total));
  EXPECT_LE(total, config.max_num_batched_tokens);
  for (uint64_t id : plan.preempted) {
    EXPECT_FALSE(ids.contains(id))
        << "request " << id << " preempted and scheduled";
  }
  if (!plan.preempted.empty()) {
    for (const ScheduledRequest& r : plan.requests) {
      EXPECT_FALSE(r.newly_admitted) << "admitted in a preemption step";
    }
  }
}

}  // namespace alibi

#endif  // ALIBI_TESTS_SCHEDULER_PLAN_CHECKS_H_
