// Scheduler: iteration-level (Orca / vLLM V1) scheduling of requests over a
// paged KV pool. Each step, Schedule() decides how many tokens every request
// computes under a token budget; prefill is chunked and mixed with decodes in
// one flattened batch. A request is two counters over its known tokens
// (prompt + outputs so far): num_computed_tokens (KV written) and num_tokens.
//
// How the engine drives it, once per step on the engine thread:
//
//   // 0. inbox: Add() new requests (Status errors go back to the caller),
//   //    Finish(id, kCancelled) for cancellations and deadlines.
//   scheduler.Schedule(&plan);            // 1. decide
//   // 2. build the batch from `plan`: for request r, tokens
//   //    plan.TokenIds(r) at positions r.first_position + i, slot
//   //    plan.Slot(r, pos), context length r.context_len(); logits for
//   //    positions [r.logits_begin, r.end_position()).
//   // 3. forward, sample one token for every r with r.sample.
//   // 4. stop checks on the sampled tokens (EOS, stop ids, stop strings):
//   //    scheduler.Finish(id, FinishReason::kStop) for those that stop.
//   auto finished = scheduler.Update(plan, sampled);  // 5. commit
//   // 6. publish events: tokens; `finished` (kLength, kScored).
//
// Finishing in step 4, before Update, makes a stop condition win over the
// length limit on the same token (as in vLLM); Update then skips that
// request. Finish is also valid at any other time (cancellation) and frees
// the request's blocks at once, whatever its state. Every Schedule() must be
// followed by Update() with its plan before the next Schedule() (checked).
//
// Policy:
// - Running requests first, in admission order: each gets
//   min(remaining, budget, long_prefill_token_threshold) tokens (1 for a
//   decode). If its blocks cannot be allocated, the most recently admitted
//   running request is preempted (blocks freed, num_computed_tokens reset to
//   0, back to the waiting queue; recomputed later) until they can, or the
//   request preempts itself.
// - A request that shares its prompt with an earlier one of its group waits
//   (at the head of the queue) until that one has computed the prompt's full
//   blocks, then starts from them.
// - Then, unless a preemption happened this step, waiting requests in order
//   (priority ascending, then arrival; a preempted request keeps its arrival
//   number, so it goes back ahead of everything of its priority that arrived
//   after it) while budget, max_num_seqs and blocks allow. The head of the
//   queue is never skipped: if it does not fit, nobody behind it is admitted.
//   Admission takes prefix-cache hits first (never for prompt-logprob
//   requests, which need logits at every prompt position).
// - Add() rejects at once what can never run (InvalidArgument) and what the
//   bounded waiting queue cannot take (ResourceExhausted), so nothing waits
//   for room that can never exist: the oldest running request can always
//   preempt every other one and then fits alone. (Strict priorities can
//   still starve a low-priority request under endless high-priority load.)
//
// Thread-safety: not thread-safe. The engine thread owns the scheduler and is
// its only user.
#ifndef ALIBI_SERVER_SCHEDULER_SCHEDULER_H_
#define ALIBI_SERVER_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/finish_reason.h"
#include "server/kv_cache/kv_cache_manager.h"

namespace alibi {

struct SchedulerConfig {
  int32_t max_num_batched_tokens = 2048;  // token budget per step
  int32_t max_num_seqs = 256;             // running requests at most
  // Prompt + output tokens at most. The engine's 0 means "what the KV pool
  // holds" and is resolved before the scheduler sees it.
  int32_t max_model_len = 0;
  // Waiting queue bound for Add() (preempted requests included).
  int32_t max_queued_requests = 1024;
  // Cap on the tokens one request computes per step (0: no cap), so that one
  // long prompt cannot take a whole step's budget.
  int32_t long_prefill_token_threshold = 0;
  // Attention work one step may do, in query-key pairs (0: no cap): a chunk
  // of n tokens after c computed ones costs about n * c + n^2 / 2 pairs (at
  // most n * window with a window), a decode c + 1. Prefill chunks shrink as
  // their context grows, so a step's time stays bounded however long a
  // prompt is. A step always runs at least one token.
  // The engine adapts it at run time (SetAttentionBudget) to hold a target
  // step time; this is the start and the ceiling.
  int64_t max_step_attention_pairs = int64_t{64} << 20;
  // Rows of logits one step computes for prompt log-probabilities (scoring,
  // echo with logprobs) (0: no cap); sampling rows are not counted.
  int32_t max_step_logit_rows = 512;
  KvCacheOptions kv;  // the KV pool
};

// What a caller submits.
struct RequestSpec {
  uint64_t id = 0;                        // unique among live requests
  std::vector<int32_t> prompt_token_ids;  // non-empty
  int32_t max_tokens = 16;  // >= 1 output tokens; ignored unless `generate`
  int32_t priority = 0;     // lower is served first; FCFS within a priority
  bool prompt_logprobs = false;  // logits at every prompt position
  bool generate = true;          // false: prefill only (scoring)
  // Another live request with the same prompt (a completion of the same
  // group, added before this one): this request is admitted only once that
  // one has computed the prompt's full blocks, and then shares them (their
  // reference counts go up; nothing is computed or stored twice). If that
  // request is gone or preempted, this one runs on its own.
  uint64_t share_prompt_with = 0;
  // Sliding window (0: none): position i attends to the last kv_window
  // positions only, and blocks that left every position's window are
  // released at once, so the request holds O(kv_window) blocks whatever its
  // length (max_model_len does not cap it).
  int32_t kv_window = 0;
  // Tokens a preempted windowed request recomputes: it restarts its KV
  // sequence that far back (>= num_layers * kv_window for exact keys; the
  // engine sets it), not from its first token.
  int32_t window_recompute_tokens = 0;
};

enum class RequestState : uint8_t {
  kWaiting,    // never admitted yet
  kRunning,    // admitted; holds blocks
  kPreempted,  // back in the waiting queue after a preemption, no blocks
};
absl::string_view RequestStateName(RequestState state);

// Snapshot of a live request.
struct RequestInfo {
  RequestState state = RequestState::kWaiting;
  int32_t num_prompt_tokens = 0;
  int32_t num_tokens = 0;  // prompt + outputs so far
  int32_t num_computed_tokens = 0;
  int32_t num_output_tokens = 0;
  // Prompt tokens served from the prefix cache at first admission (-1 before
  // it).
  int32_t num_cached_tokens = -1;
  int32_t num_preemptions = 0;
  int32_t num_blocks = 0;
};

// One request's share of a step. Positions [first_position, end_position())
// are computed; their token ids are StepPlan::TokenIds(*this). Positions are
// the request's token indices; its KV sequence starts at `origin` (0 unless a
// preempted windowed request restarted it later), so KV slot j holds position
// origin + j, and logical blocks before `first_block` were released.
struct ScheduledRequest {
  uint64_t id = 0;
  int32_t first_position = 0;  // num_computed_tokens before the step
  int32_t num_tokens = 0;      // tokens computed this step (>= 1)
  // Positions [logits_begin, end_position()) need logits: the last position
  // when sampling, and for prompt-logprob requests every prompt position of
  // the chunk not reported before (a recomputed chunk is not reported
  // twice). Empty when logits_begin == end_position().
  int32_t logits_begin = 0;
  bool reaches_end = false;     // all known tokens are computed after the step
  bool sample = false;          // reaches_end and the request generates
  bool newly_admitted = false;  // admitted (or readmitted) this step
  int32_t token_offset = 0;     // into StepPlan::token_ids (query start)
  int32_t block_table_offset = 0;  // into StepPlan::block_tables
  // Live blocks in the table: ceil(context_len() / block_size) - first_block.
  int32_t num_blocks = 0;
  int32_t origin = 0;       // position of KV slot 0
  int32_t first_block = 0;  // logical block of the table's first entry
  int32_t window = 0;       // sliding window (0: none)

  int32_t end_position() const { return first_position + num_tokens; }
  // KV length after the step (attention context of the last position).
  int32_t context_len() const { return end_position() - origin; }
  int32_t num_logits() const { return end_position() - logits_begin; }
};

// The plan for one step. A plain value: it does not refer to scheduler state.
struct StepPlan {
  uint64_t step = 0;  // 1, 2, ...; pairs the plan with its Update
  int32_t block_size = 0;
  // Running requests (admission order) first, then newly admitted ones.
  std::vector<ScheduledRequest> requests;
  // Token ids of the whole batch, flattened in `requests` order.
  std::vector<int32_t> token_ids;
  // Block tables, flattened in `requests` order.
  std::vector<int32_t> block_tables;
  // Requests preempted this step (most recently admitted first).
  std::vector<uint64_t> preempted;
  int32_t num_batched_tokens = 0;  // == token_ids.size()
  int64_t attention_pairs = 0;     // query-key pairs the step computes

  bool empty() const { return requests.empty(); }
  absl::Span<const int32_t> TokenIds(const ScheduledRequest& r) const {
    return absl::MakeConstSpan(token_ids).subspan(r.token_offset, r.num_tokens);
  }
  absl::Span<const int32_t> BlockTable(const ScheduledRequest& r) const {
    return absl::MakeConstSpan(block_tables)
        .subspan(r.block_table_offset, r.num_blocks);
  }
  // KV pool slot of `position` (in [r.origin, r.end_position()), in a live
  // block) of request r.
  int32_t Slot(const ScheduledRequest& r, int32_t position) const {
    const int32_t j = position - r.origin;
    return block_tables[r.block_table_offset + j / block_size - r.first_block] *
               block_size +
           j % block_size;
  }
  void Clear();
};

// A finished request's final counts (from Update() or Finish()).
struct FinishedRequest {
  uint64_t id = 0;
  FinishReason reason = FinishReason::kLength;
  int32_t num_prompt_tokens = 0;
  int32_t num_output_tokens = 0;
  int32_t num_cached_tokens = 0;
};

struct SchedulerStats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;           // including preempted
  int32_t num_windowed_running = 0;  // running requests with a window
  uint64_t num_preemptions = 0;
  uint64_t num_window_released_blocks = 0;  // released by sliding windows
  KvCacheStats kv;
};

class Scheduler {
 public:
  // InvalidArgument for a nonsensical config (non-positive limits, no
  // blocks).
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(
      const SchedulerConfig& config);

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  ~Scheduler();

  // Queues a request. InvalidArgument: empty prompt, max_tokens < 1 for a
  // generating request, prompt + max_tokens > max_model_len, or more KV than
  // the whole pool holds. AlreadyExists: the id is live. ResourceExhausted:
  // the waiting queue holds max_queued_requests already.
  absl::Status Add(RequestSpec spec);

  // Plans the next step into `plan` (cleared first; its buffers are reused).
  void Schedule(StepPlan* plan);
  StepPlan Schedule();

  // Commits the step `plan` (the last Schedule()'s). `sampled_token_ids`
  // has one entry per plan.requests entry; entries whose request does not
  // sample are ignored. Requests finished since Schedule() are skipped.
  // Returns the requests this update finished (kLength, kScored).
  std::vector<FinishedRequest> Update(
      const StepPlan& plan, absl::Span<const int32_t> sampled_token_ids);

  // Finishes a live request now, releasing its blocks; any state. Returns
  // its final counts (for usage reporting), or nullopt (doing nothing) for
  // an unknown or already finished id. Called between Schedule() and
  // Update(), the counts exclude the token sampled in that step, which the
  // scheduler has not seen.
  std::optional<FinishedRequest> Finish(uint64_t id, FinishReason reason);

  std::optional<RequestInfo> GetRequest(uint64_t id) const;
  // A live request's token ids so far (prompt + outputs); empty if unknown.
  // Valid until the next non-const call.
  absl::Span<const int32_t> TokenIds(uint64_t id) const;
  // A live request's block table; empty if unknown or not running. Valid
  // until the next non-const call.
  absl::Span<const int32_t> BlockTable(uint64_t id) const;

  // The attention budget of the next steps, in query-key pairs (> 0).
  void SetAttentionBudget(int64_t pairs) { attention_budget_ = pairs; }
  int64_t attention_budget() const { return attention_budget_; }

  int32_t num_running() const { return num_running_; }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  bool has_unfinished() const { return !requests_.empty(); }
  SchedulerStats Stats() const;

  const SchedulerConfig& config() const { return config_; }
  const KvCacheManager& kv_cache() const { return *kv_; }

 private:
  struct Request;
  // Waiting-queue order: priority, then arrival.
  struct WaitKey {
    int32_t priority;
    uint64_t arrival;
    friend bool operator<(const WaitKey& a, const WaitKey& b) {
      return a.priority != b.priority ? a.priority < b.priority
                                      : a.arrival < b.arrival;
    }
  };

  Scheduler(const SchedulerConfig& config, std::unique_ptr<KvCacheManager> kv);

  // What a step may still spend.
  struct StepBudget {
    int32_t tokens = 0;
    int64_t attention_pairs = 0;  // < 0: no cap
    int32_t logit_rows = 0;       // < 0: no cap
    bool exhausted() const {
      return tokens <= 0 || attention_pairs == 0 || logit_rows == 0;
    }
  };
  // Tokens `r` computes this step from position `num_computed` within
  // `budget` (0 when not even one fits).
  int32_t ChunkSize(const Request& r, int32_t num_computed,
                    const StepBudget& budget) const;
  // Attention pairs of computing positions [from, from + n) of `r`.
  int64_t AttentionPairs(const Request& r, int32_t from, int32_t n) const;
  // Prompt logit rows of that chunk.
  int32_t PromptLogitRows(const Request& r, int32_t from, int32_t n) const;
  // Takes a chunk's cost from `budget` and adds its attention to `plan`.
  void Spend(const Request& r, int32_t from, int32_t n, StepBudget* budget,
             StepPlan* plan) const;
  void Preempt(Request* r, StepPlan* plan);
  // Releases the blocks of a windowed request that no position from
  // `r->num_computed_tokens` on can see.
  void ReleaseOutOfWindow(Request* r);
  // Most tokens one request computes in a step.
  int32_t MaxChunk() const;
  // The live request whose prompt blocks `r` may start from, if any.
  const Request* PromptSource(const Request& r) const;
  void AddToPlan(Request* r, bool newly_admitted, int32_t num_tokens,
                 StepPlan* plan);
  void RemoveFromRunning(Request* r);
  void CompactRunning();
  // Removes r from every structure and destroys it; returns its final
  // counts.
  FinishedRequest Release(Request* r, FinishReason reason);

  const SchedulerConfig config_;
  std::unique_ptr<KvCacheManager> kv_;

  absl::flat_hash_map<uint64_t, std::unique_ptr<Request>> requests_;
  absl::btree_map<WaitKey, Request*> waiting_;
  // Admission order. Finished requests leave a nullptr hole until the next
  // Schedule() compacts the vector (O(1) removal, order kept).
  std::vector<Request*> running_;
  int32_t num_running_ = 0;
  bool running_has_holes_ = false;

  uint64_t next_arrival_ = 0;
  uint64_t num_preemptions_ = 0;
  uint64_t num_window_released_blocks_ = 0;
  int64_t attention_budget_ = 0;  // 0: no cap
  int32_t num_windowed_running_ = 0;
  uint64_t last_step_ = 0;
  bool update_pending_ = false;
};

}  // namespace alibi

#endif  // ALIBI_SERVER_SCHEDULER_SCHEDULER_H_
