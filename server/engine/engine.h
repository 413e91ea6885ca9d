// The engine as its callers see it: token ids in, token ids and log-
// probabilities out. This is the narrow API of the serving core: transports
// and the frontend (tokenization, detokenization, stop strings, response
// building) use only this header; model, backend, scheduler and KV cache stay
// behind it (engine_core.h creates an engine from them).
//
// A request's life: the caller makes an OutputStream (with a notification
// callback), calls Engine::Submit, and takes EngineOutputs from the stream
// whenever it is notified, until one is `finished`. Outputs published while
// the caller is busy are merged, so a slow consumer costs at most the
// request's own output in memory. Cancel or Stop end a request early and free
// its KV blocks within one engine step.
//
// Thread-safety: Engine's methods are thread-safe. OutputStream is thread-safe
// (one producer, the engine thread; any consumer thread). The notification
// callback runs on the engine thread and must only signal another thread
// (post a task, notify a condition variable): it must not take locks that a
// consumer may hold while calling into the engine, build responses or write
// to the network. OnEngineThread() tells code which thread it is on.
#ifndef ALIBI_SERVER_ENGINE_ENGINE_H_
#define ALIBI_SERVER_ENGINE_ENGINE_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/finish_reason.h"
#include "common/logging.h"
#include "common/sampling_knobs.h"

namespace alibi::engine {

using ::alibi::FinishReason;

// How the next token is chosen (vLLM's semantics; see sampler.h).
// The knobs (temperature, top_k, top_p, min_p, penalties) and the rest.
struct SamplingParams : SamplingKnobs {
  std::optional<uint64_t> seed;  // none: a random seed
  // Added to the logits of these tokens (OpenAI's logit_bias).
  std::vector<std::pair<int32_t, float>> logit_bias;
  // Only these tokens may be sampled; empty: any.
  std::vector<int32_t> allowed_token_ids;
  // Token sequences never to generate (vLLM's bad_words, tokenized): the
  // last token of a sequence is banned whenever the output so far ends with
  // the tokens before it (a one-token sequence is always banned).
  std::vector<std::vector<int32_t>> bad_words;
};

// A request in engine terms. The frontend validates every field against
// EngineInfo before submitting; Submit rejects what could corrupt the engine.
struct EngineRequest {
  std::vector<int32_t> prompt;  // token ids, at least one
  // Tokens to generate (>= 1) when `generate`.
  int max_tokens = 16;
  SamplingParams sampling;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  // EOS and stop token ids cannot end the request before this many tokens.
  int min_tokens = 0;
  // Per generated token: its log-probability and this many alternatives.
  std::optional<int> logprobs;
  // Log-probabilities of prompt tokens 1..n-1 (scoring, echo); disables
  // prefix-cache hits for this request (every position is computed).
  bool prompt_logprobs = false;
  int prompt_top_logprobs = 0;
  // false: prefill only (scoring), no token generated.
  bool generate = true;
  int priority = 0;  // lower first
  // Sliding window (0: none): position i attends to the last kv_window
  // positions only, and KV blocks that left the window are released, so the
  // request holds O(kv_window) memory and max_model_len does not limit it.
  int kv_window = 0;
  std::string client_request_id;  // the caller's id, for logs
};

struct TopLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct TokenLogprobs {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<TopLogprob> top;  // best first
};

struct RequestTimings {
  TimePoint arrival;
  TimePoint scheduled;    // first step that ran it (queue time ends)
  TimePoint first_token;  // first generated token (scoring: input done)
  TimePoint last_token;
};

// Everything new for one request since the consumer last took an output.
struct EngineOutput {
  std::vector<int32_t> token_ids;              // generated
  std::vector<TokenLogprobs> logprobs;         // one per token, if asked
  std::vector<TokenLogprobs> prompt_logprobs;  // positions 1..n-1, if asked
  // Counts so far.
  int num_prompt_tokens = 0;
  int num_output_tokens = 0;
  int num_cached_tokens = 0;  // prompt tokens served from the prefix cache
  RequestTimings timings;     // as of this output

  bool finished = false;
  // Set when finished.
  FinishReason finish_reason = FinishReason::kLength;
  int32_t stop_token = -1;  // the stop token id that ended it, if any
  // Not OK when the request did not complete normally (cancelled: the status
  // the canceller gave; engine failure: INTERNAL).
  absl::Status status;

  // Appends `next` (a later output) to this one.
  void Merge(EngineOutput&& next);
};

// One request's outputs, from the engine thread to a consumer.
class OutputStream {
 public:
  // `notify` runs on the engine thread after each publish (see the thread-
  // safety note above). It may be empty (poll with WaitAndTake).
  explicit OutputStream(std::function<void()> notify = nullptr);

  // The engine's id of the request; 0 until Submit accepted it.
  uint64_t id() const;

  // Everything published since the last Take, or nullopt if nothing is new.
  // After the finished output was taken, always nullopt.
  std::optional<EngineOutput> Take();
  // Blocks until something is new (or `timeout`), then Take().
  std::optional<EngineOutput> WaitAndTake(absl::Duration timeout);
  // Whether the final output has been published (taken or not).
  bool finished() const;

  // Engine side: merges `output` into the pending one and notifies.
  void Publish(EngineOutput output);
  void set_id(uint64_t id);

 private:
  const std::function<void()> notify_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t id_ = 0;
  std::optional<EngineOutput> pending_;
  bool finished_ = false;
};

// What the engine serves, for validation, GetModelInfo and /v1/models.
struct EngineInfo {
  std::string architecture;  // Hugging Face class, e.g. "BloomForCausalLM"
  std::string family;        // registry name, e.g. "bloom"
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  std::vector<double> alibi_slopes;  // one per head
  int trained_context_length = 0;    // not a limit (ALiBi)
  int eos_token_id = -1;
  int bos_token_id = -1;
  std::string dtype;         // weights as computed, e.g. "float32", "bfloat16"
  std::string device;        // e.g. "cpu (2 threads)", "cuda:0 (NVIDIA H200)"
  std::string backend_kind;  // "cpu", "ref", "cuda"
  // Serving limits.
  int max_model_len = 0;  // prompt + generated tokens at most
  int max_num_seqs = 0;
  int max_logprobs = 0;
  int kv_block_size = 0;
  int kv_num_blocks = 0;
  // The window a request gets when it asks for none (0: off).
  int default_kv_window = 0;
};

// A consistent view of the engine for health checks, tests and metrics.
struct EngineSnapshot {
  int num_running = 0;
  int num_windowed_running = 0;  // running with a sliding window
  int num_waiting = 0;           // not yet admitted, or preempted
  int num_live_requests = 0;
  int kv_blocks_used = 0;    // held by live requests
  int kv_blocks_cached = 0;  // free, holding a reusable prefix
  int kv_blocks_free = 0;
  uint64_t num_steps = 0;
  uint64_t num_preemptions = 0;
  uint64_t prefix_cache_hit_tokens = 0;  // prompt tokens served from cache
  uint64_t window_released_blocks = 0;   // KV blocks sliding windows freed
  // The engine has requests it has not finished.
  bool has_work = false;
  // Last time the engine made progress: finished a step, went idle, or
  // issued one more layer of a step in progress (so a long step is not a
  // stall).
  TimePoint last_progress;
};

class Engine {
 public:
  virtual ~Engine() = default;

  // Queues `request`; its outputs go to `stream` (which gets the request's
  // id before this returns). Errors, at once: INVALID_ARGUMENT (can never
  // run), RESOURCE_EXHAUSTED (the waiting queue is full), UNAVAILABLE
  // (shutting down).
  virtual absl::Status Submit(EngineRequest request,
                              std::shared_ptr<OutputStream> stream) = 0;

  // Several completions of one prompt (OpenAI's `n`): one request per
  // stream, each with its own output and its own seed stream (completion i
  // of a seeded request samples with GroupSeed(seed, i), so it is
  // reproducible whatever else runs), sharing the prompt's KV blocks: the
  // prompt is computed once, the others start from its blocks. All or none
  // are queued; each is cancelled or stopped by its own id.
  virtual absl::Status SubmitGroup(
      EngineRequest request,
      std::vector<std::shared_ptr<OutputStream>> streams) = 0;

  // Ends request `id` (if still live): finish reason kCancelled with
  // `reason` as its status.
  virtual void Cancel(uint64_t id, absl::Status reason) = 0;
  // Ends request `id` (if still live) as completed with kStop: the caller
  // found a stop condition of its own (a stop string). Tokens the engine
  // generated after the one the caller stopped at are discarded by it.
  virtual void Stop(uint64_t id) = 0;

  // Refuses new requests, ends every live one with `reason` and stops the
  // engine thread. Idempotent; blocks until the thread has exited.
  virtual void Shutdown(absl::Status reason) = 0;

  virtual EngineSnapshot GetSnapshot() const = 0;
  virtual const EngineInfo& info() const = 0;
};

// The seed of completion `index` of a group whose request has `seed`
// (index 0 keeps the seed itself).
uint64_t GroupSeed(uint64_t seed, int index);

// Whether the calling thread is an engine thread. Response building and
// transport code check that it is not (ALIBI_CHECK_NOT_ENGINE_THREAD).
bool OnEngineThread();
// Marks the calling thread as an engine thread (the engine core does this).
void MarkEngineThread();

}  // namespace alibi::engine

// Aborts when called on the engine thread: for code that must never run
// there (response building, transports).
#define ALIBI_CHECK_NOT_ENGINE_THREAD()           \
  ALIBI_CHECK(!::alibi::engine::OnEngineThread()) \
      << "transport or response-building code ran on the engine thread"

#endif  // ALIBI_SERVER_ENGINE_ENGINE_H_
