#include "server/scheduler/scheduler.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/enum_names.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace alibi {

absl::string_view RequestStateName(RequestState state) {
  constexpr absl::string_view kNames[] = {"waiting", "running", "preempted"};
  static_assert(std::size(kNames) == EnumCount(RequestState::kPreempted));
  return EnumName(state, kNames, absl::string_view("unknown"));
}

void StepPlan::Clear() {
  step = 0;
  requests.clear();
  token_ids.clear();
  block_tables.clear();
  preempted.clear();
  num_batched_tokens = 0;
  attention_pairs = 0;
}

struct Scheduler::Request {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // prompt, then outputs
  int32_t num_prompt_tokens = 0;
  int32_t max_tokens = 0;
  int32_t priority = 0;
  bool prompt_logprobs = false;
  bool generate = true;
  uint64_t share_prompt_with = 0;
  int32_t window = 0;
  int32_t window_recompute_tokens = 0;
  int32_t origin = 0;  // position of KV slot 0 (see ScheduledRequest)
  uint64_t arrival = 0;

  RequestState state = RequestState::kWaiting;
  int32_t num_computed_tokens = 0;
  int32_t num_cached_tokens = -1;
  int32_t num_preemptions = 0;
  // Prompt positions [0, prompt_logits_done) already had logits reported.
  int32_t prompt_logits_done = 0;
  size_t running_index = 0;  // in running_, while kRunning
  SequenceBlocks blocks;

  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  WaitKey wait_key() const { return WaitKey{priority, arrival}; }
};

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(
    const SchedulerConfig& config) {
  auto positive = [](absl::string_view name, int64_t value) -> absl::Status {
    if (value >= 1) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be >= 1, got ", value));
  };
  RETURN_IF_ERROR(
      positive("max_num_batched_tokens", config.max_num_batched_tokens));
  RETURN_IF_ERROR(positive("max_num_seqs", config.max_num_seqs));
  RETURN_IF_ERROR(positive("max_model_len", config.max_model_len));
  RETURN_IF_ERROR(positive("max_queued_requests", config.max_queued_requests));
  if (config.long_prefill_token_threshold < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("long_prefill_token_threshold must be >= 0, got ",
                     config.long_prefill_token_threshold));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<KvCacheManager> kv,
                   KvCacheManager::Create(config.kv));
  return std::unique_ptr<Scheduler>(new Scheduler(config, std::move(kv)));
}

Scheduler::Scheduler(const SchedulerConfig& config,
                     std::unique_ptr<KvCacheManager> kv)
    : config_(config), kv_(std::move(kv)) {
  running_.reserve(config.max_num_seqs);
  // A modest start; the engine raises it while steps stay short.
  attention_budget_ =
      std::min<int64_t>(config.max_step_attention_pairs, int64_t{1} << 18);
}

Scheduler::~Scheduler() = default;

int32_t Scheduler::MaxChunk() const {
  return config_.long_prefill_token_threshold > 0
             ? std::min(config_.max_num_batched_tokens,
                        config_.long_prefill_token_threshold)
             : config_.max_num_batched_tokens;
}

absl::Status Scheduler::Add(RequestSpec spec) {
  const int64_t prompt_len = static_cast<int64_t>(spec.prompt_token_ids.size());
  if (prompt_len == 0) {
    return absl::InvalidArgumentError("prompt_token_ids is empty");
  }
  if (spec.generate && spec.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 1, got ", spec.max_tokens));
  }
  if (spec.kv_window < 0 || spec.window_recompute_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_window must be >= 0, got ", spec.kv_window));
  }
  const int64_t max_output = spec.generate ? spec.max_tokens : 0;
  if (spec.kv_window == 0 && prompt_len + max_output > config_.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", prompt_len, " tokens) + max_tokens (", max_output,
        ") exceeds max_model_len (", config_.max_model_len, ")"));
  }
  if (prompt_len + max_output > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", prompt_len, " tokens) + max_tokens (",
                     max_output, ") exceeds 2^31 - 1 positions"));
  }
  // The last sampled token is never fed back, so its KV is never needed.
  int64_t max_kv_tokens = prompt_len + std::max<int64_t>(0, max_output - 1);
  int32_t blocks_needed;
  if (spec.kv_window > 0) {
    // A step's chunk sees the window before its first position: at most
    // window - 1 + chunk slots live, over one more block when unaligned.
    const int64_t span = std::min<int64_t>(
        max_kv_tokens, int64_t{spec.kv_window} - 1 + MaxChunk());
    blocks_needed = kv_->BlocksForTokens(static_cast<int32_t>(span)) + 1;
  } else {
    blocks_needed = kv_->BlocksForTokens(static_cast<int32_t>(max_kv_tokens));
  }
  if (blocks_needed > kv_->num_blocks()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request needs ", blocks_needed, " KV blocks (",
        spec.kv_window > 0 ? absl::StrCat("window ", spec.kv_window)
                           : absl::StrCat(max_kv_tokens, " tokens"),
        "); the whole pool has ", kv_->num_blocks()));
  }
  if (requests_.contains(spec.id)) {
    return absl::AlreadyExistsError(
        absl::StrCat("request id ", spec.id, " is already live"));
  }
  if (static_cast<int64_t>(waiting_.size()) >= config_.max_queued_requests) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "waiting queue is full (", config_.max_queued_requests, " requests)"));
  }
  auto r = std::make_unique<Request>();
  r->id = spec.id;
  r->num_prompt_tokens = static_cast<int32_t>(prompt_len);
  r->tokens = std::move(spec.prompt_token_ids);
  if (spec.generate) {
    r->tokens.reserve(prompt_len + std::min<int64_t>(spec.max_tokens, 4096));
  }
  r->max_tokens = static_cast<int32_t>(max_output);
  r->priority = spec.priority;
  r->prompt_logprobs = spec.prompt_logprobs;
  r->generate = spec.generate;
  r->share_prompt_with = spec.share_prompt_with;
  r->window = spec.kv_window;
  r->window_recompute_tokens = spec.window_recompute_tokens;
  r->arrival = next_arrival_++;
  waiting_.emplace(r->wait_key(), r.get());
  requests_.emplace(spec.id, std::move(r));
  return absl::OkStatus();
}

int64_t Scheduler::AttentionPairs(const Request& r, int32_t from,
                                  int32_t n) const {
  // Position p (KV slot p - origin) sees min(p - origin + 1, window) keys.
  const int64_t a = int64_t{from} - r.origin + 1;  // keys of the first
  const int64_t b = a + n - 1;                     // keys of the last
  if (r.window <= 0 || b <= r.window) return (a + b) * n / 2;
  if (a >= r.window) return int64_t{n} * r.window;
  const int64_t below = r.window - a;  // positions before the window binds
  return (a + r.window - 1) * below / 2 + (n - below) * int64_t{r.window};
}

int32_t Scheduler::PromptLogitRows(const Request& r, int32_t from,
                                   int32_t n) const {
  if (!r.prompt_logprobs) return 0;
  const int32_t begin = std::max(from, r.prompt_logits_done);
  return std::max(0, std::min(from + n, r.num_prompt_tokens) - begin);
}

void Scheduler::Spend(const Request& r, int32_t from, int32_t n,
                      StepBudget* budget, StepPlan* plan) const {
  budget->tokens -= n;
  plan->attention_pairs += AttentionPairs(r, from, n);
  if (budget->attention_pairs > 0) {
    budget->attention_pairs = std::max<int64_t>(
        0, budget->attention_pairs - AttentionPairs(r, from, n));
  }
  if (budget->logit_rows > 0) {
    budget->logit_rows =
        std::max(0, budget->logit_rows - PromptLogitRows(r, from, n));
  }
}

int32_t Scheduler::ChunkSize(const Request& r, int32_t num_computed,
                             const StepBudget& budget) const {
  int32_t n = std::min(r.num_tokens() - num_computed, budget.tokens);
  if (config_.long_prefill_token_threshold > 0) {
    n = std::min(n, config_.long_prefill_token_threshold);
  }
  if (n <= 0) return 0;
  if (budget.logit_rows >= 0 &&
      PromptLogitRows(r, num_computed, n) > budget.logit_rows) {
    // Rows are needed from the first unreported prompt position on.
    const int32_t first = std::max(num_computed, r.prompt_logits_done);
    n = std::max(0, first + budget.logit_rows - num_computed);
  }
  if (budget.attention_pairs >= 0 &&
      AttentionPairs(r, num_computed, n) > budget.attention_pairs) {
    // The largest n that fits (pairs grow with n).
    int32_t lo = 0, hi = n;
    while (lo < hi) {
      const int32_t mid = lo + (hi - lo + 1) / 2;
      if (AttentionPairs(r, num_computed, mid) <= budget.attention_pairs) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    n = lo;
  }
  return n;
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  Schedule(&plan);
  return plan;
}

void Scheduler::Schedule(StepPlan* plan) {
  ALIBI_CHECK(!update_pending_)
      << "Schedule() called before Update() of step " << last_step_;
  plan->Clear();
  plan->step = ++last_step_;
  plan->block_size = kv_->block_size();
  update_pending_ = true;
  CompactRunning();

  StepBudget budget;
  budget.tokens = config_.max_num_batched_tokens;
  budget.attention_pairs = attention_budget_ > 0 ? attention_budget_ : -1;
  budget.logit_rows =
      config_.max_step_logit_rows > 0 ? config_.max_step_logit_rows : -1;
  bool preempted = false;
  // Running requests, oldest admission first. Victims come from the tail,
  // which is not scheduled yet in this step.
  for (size_t i = 0; i < running_.size() && !budget.exhausted();) {
    Request* r = running_[i];
    int32_t n = ChunkSize(*r, r->num_computed_tokens, budget);
    if (n == 0) {
      // Every step makes progress: the oldest request gets a token even
      // when that alone is over the caps.
      if (!plan->requests.empty()) break;
      n = 1;
    }
    ReleaseOutOfWindow(r);
    bool fits = true;
    while (!kv_->Allocate(&r->blocks, r->num_computed_tokens + n - r->origin)) {
      Request* victim = running_.back();
      Preempt(victim, plan);
      preempted = true;
      if (victim == r) {
        fits = false;
        break;
      }
    }
    if (!fits) break;
    Spend(*r, r->num_computed_tokens, n, &budget, plan);
    AddToPlan(r, /*newly_admitted=*/false, n, plan);
    ++i;
  }

  // Waiting requests, in queue order, never skipping the head.
  while (!preempted && !budget.exhausted() &&
         num_running_ < config_.max_num_seqs && !waiting_.empty()) {
    auto it = waiting_.begin();
    Request* r = it->second;
    PrefixMatch match;
    // A restarted KV sequence (origin > 0) was computed from a cut context:
    // it neither matches nor registers cached blocks.
    if (!r->prompt_logprobs && r->origin == 0) {
      match = kv_->MatchPrefix(r->tokens, WindowRoot(r->window));
    }
    if (const Request* source = PromptSource(*r); source != nullptr) {
      // Full blocks of the prompt, leaving at least one token to compute.
      const int32_t shared =
          (r->num_prompt_tokens - 1) / kv_->block_size() * kv_->block_size();
      if (source->state != RequestState::kRunning ||
          source->num_computed_tokens < shared) {
        break;  // not computed yet: the head waits
      }
      if (match.num_tokens < shared)
        match = kv_->ShareFrom(source->blocks, shared);
    }
    const int32_t computed = r->origin + match.num_tokens;
    int32_t n = ChunkSize(*r, computed, budget);
    if (n == 0) {
      if (!plan->requests.empty()) break;
      n = 1;  // an idle engine always makes progress
    }
    if (!kv_->Allocate(&r->blocks, computed + n - r->origin, &match)) break;
    waiting_.erase(it);
    r->state = RequestState::kRunning;
    r->num_computed_tokens = computed;
    if (r->num_cached_tokens < 0) r->num_cached_tokens = match.num_tokens;
    num_windowed_running_ += r->window > 0;
    ReleaseOutOfWindow(r);
    r->running_index = running_.size();
    running_.push_back(r);
    ++num_running_;
    Spend(*r, computed, n, &budget, plan);
    AddToPlan(r, /*newly_admitted=*/true, n, plan);
  }
}

const Scheduler::Request* Scheduler::PromptSource(const Request& r) const {
  // Only a first admission shares: a preempted request recomputes its own.
  if (r.share_prompt_with == 0 || r.num_preemptions > 0 || r.prompt_logprobs) {
    return nullptr;
  }
  auto it = requests_.find(r.share_prompt_with);
  if (it == requests_.end()) return nullptr;
  const Request* source = it->second.get();
  // A preempted source will recompute later; do not wait for it.
  if (source->state == RequestState::kPreempted) return nullptr;
  return source;
}

void Scheduler::ReleaseOutOfWindow(Request* r) {
  if (r->window <= 0) return;
  // The earliest key the next position can see, as a KV slot.
  const int32_t first_key =
      std::max(0, r->num_computed_tokens - r->origin - r->window + 1);
  num_window_released_blocks_ += static_cast<uint64_t>(
      kv_->ReleaseBefore(&r->blocks, first_key / kv_->block_size()));
}

void Scheduler::AddToPlan(Request* r, bool newly_admitted, int32_t num_tokens,
                          StepPlan* plan) {
  ScheduledRequest s;
  s.id = r->id;
  s.first_position = r->num_computed_tokens;
  s.num_tokens = num_tokens;
  s.newly_admitted = newly_admitted;
  const int32_t end = s.end_position();
  s.reaches_end = end == r->num_tokens();
  s.sample = s.reaches_end && r->generate;
  // Logit positions form one range ending at `end`: the sampled position,
  // and prompt positions not reported yet. Once a request has output tokens
  // its whole prompt has been reported, so the two never leave a gap.
  s.logits_begin = s.sample ? end - 1 : end;
  if (r->prompt_logprobs) {
    const int32_t begin = std::max(s.first_position, r->prompt_logits_done);
    if (begin < std::min(end, r->num_prompt_tokens)) {
      s.logits_begin = std::min(s.logits_begin, begin);
    }
  }
  s.token_offset = static_cast<int32_t>(plan->token_ids.size());
  plan->token_ids.insert(plan->token_ids.end(),
                         r->tokens.begin() + s.first_position,
                         r->tokens.begin() + end);
  s.block_table_offset = static_cast<int32_t>(plan->block_tables.size());
  s.origin = r->origin;
  s.window = r->window;
  s.first_block = r->blocks.first_block();
  s.num_blocks = kv_->BlocksForTokens(end - r->origin) - s.first_block;
  const std::vector<int32_t>& table = r->blocks.block_ids();
  ALIBI_CHECK(s.num_blocks >= 1 &&
              s.num_blocks <= static_cast<int32_t>(table.size()))
      << "request " << r->id << ": " << s.num_blocks << " blocks of "
      << table.size();
  plan->block_tables.insert(plan->block_tables.end(), table.begin(),
                            table.begin() + s.num_blocks);
  plan->num_batched_tokens += num_tokens;
  plan->requests.push_back(s);
}

void Scheduler::Preempt(Request* r, StepPlan* plan) {
  ALIBI_CHECK(!running_.empty() && running_.back() == r);
  running_.pop_back();
  --num_running_;
  num_windowed_running_ -= r->window > 0;
  kv_->Free(&r->blocks);
  if (r->window > 0) {
    // Restart the KV sequence a bounded distance back: keys from there on,
    // recomputed, are exact again once `window_recompute_tokens` lie behind.
    r->origin = std::max(r->origin,
                         r->num_computed_tokens - r->window_recompute_tokens);
    r->num_computed_tokens = r->origin;
  } else {
    r->num_computed_tokens = 0;
  }
  r->state = RequestState::kPreempted;
  ++r->num_preemptions;
  ++num_preemptions_;
  waiting_.emplace(r->wait_key(), r);
  plan->preempted.push_back(r->id);
}

std::vector<FinishedRequest> Scheduler::Update(
    const StepPlan& plan, absl::Span<const int32_t> sampled_token_ids) {
  ALIBI_CHECK(update_pending_ && plan.step == last_step_)
      << "Update() of step " << plan.step << ", last scheduled " << last_step_;
  ALIBI_CHECK(sampled_token_ids.size() == plan.requests.size())
      << sampled_token_ids.size() << " sampled tokens for "
      << plan.requests.size() << " requests";
  update_pending_ = false;
  std::vector<FinishedRequest> finished;
  for (size_t k = 0; k < plan.requests.size(); ++k) {
    const ScheduledRequest& s = plan.requests[k];
    auto it = requests_.find(s.id);
    if (it == requests_.end()) continue;  // finished since Schedule()
    Request* r = it->second.get();
    if (r->state != RequestState::kRunning ||
        r->num_computed_tokens != s.first_position) {
      continue;  // finished and re-added under the same id
    }
    r->num_computed_tokens += s.num_tokens;
    if (r->prompt_logprobs) {
      r->prompt_logits_done =
          std::max(r->prompt_logits_done,
                   std::min(r->num_computed_tokens, r->num_prompt_tokens));
    }
    if (r->origin == 0) {
      kv_->CacheComputedBlocks(&r->blocks, r->tokens, r->num_computed_tokens,
                               WindowRoot(r->window));
    }
    if (!s.reaches_end) continue;
    FinishReason reason;
    if (!r->generate) {
      reason = FinishReason::kScored;
    } else {
      ALIBI_CHECK(sampled_token_ids[k] >= 0)
          << "request " << s.id << " sampled " << sampled_token_ids[k];
      r->tokens.push_back(sampled_token_ids[k]);
      // Add() guarantees prompt + max_tokens <= max_model_len, so this also
      // stops at max_model_len.
      if (r->num_output_tokens() < r->max_tokens) continue;
      reason = FinishReason::kLength;
    }
    finished.push_back(Release(r, reason));
  }
  return finished;
}

std::optional<FinishedRequest> Scheduler::Finish(uint64_t id,
                                                 FinishReason reason) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return std::nullopt;
  return Release(it->second.get(), reason);
}

void Scheduler::RemoveFromRunning(Request* r) {
  ALIBI_CHECK(running_[r->running_index] == r);
  running_[r->running_index] = nullptr;
  running_has_holes_ = true;
  --num_running_;
}

void Scheduler::CompactRunning() {
  if (!running_has_holes_) return;
  std::erase(running_, nullptr);
  for (size_t i = 0; i < running_.size(); ++i) running_[i]->running_index = i;
  running_has_holes_ = false;
}

FinishedRequest Scheduler::Release(Request* r, FinishReason reason) {
  const FinishedRequest done{
      .id = r->id,
      .reason = reason,
      .num_prompt_tokens = r->num_prompt_tokens,
      .num_output_tokens = r->num_output_tokens(),
      .num_cached_tokens = std::max(0, r->num_cached_tokens)};
  if (r->state == RequestState::kRunning) {
    RemoveFromRunning(r);
    num_windowed_running_ -= r->window > 0;
  } else {
    waiting_.erase(r->wait_key());
  }
  kv_->Free(&r->blocks);
  requests_.erase(r->id);  // destroys r
  return done;
}

std::optional<RequestInfo> Scheduler::GetRequest(uint64_t id) const {
  auto it = requests_.find(id);
  if (it == requests_.end()) return std::nullopt;
  const Request& r = *it->second;
  return RequestInfo{.state = r.state,
                     .num_prompt_tokens = r.num_prompt_tokens,
                     .num_tokens = r.num_tokens(),
                     .num_computed_tokens = r.num_computed_tokens,
                     .num_output_tokens = r.num_output_tokens(),
                     .num_cached_tokens = r.num_cached_tokens,
                     .num_preemptions = r.num_preemptions,
                     .num_blocks = r.blocks.num_blocks()};
}

absl::Span<const int32_t> Scheduler::TokenIds(uint64_t id) const {
  auto it = requests_.find(id);
  if (it == requests_.end()) return {};
  return it->second->tokens;
}

absl::Span<const int32_t> Scheduler::BlockTable(uint64_t id) const {
  auto it = requests_.find(id);
  if (it == requests_.end()) return {};
  return it->second->blocks.block_ids();
}

SchedulerStats Scheduler::Stats() const {
  return SchedulerStats{
      .num_running = num_running_,
      .num_waiting = num_waiting(),
      .num_windowed_running = num_windowed_running_,
      .num_preemptions = num_preemptions_,
      .num_window_released_blocks = num_window_released_blocks_,
      .kv = kv_->Stats()};
}

}  // namespace alibi
