// What a caller hands the engine (GenerationRequest) and how results come
// back (RequestStream): a per-request event stream of coalesced deltas.
//
// The engine thread publishes deltas; the consumer (a gRPC reactor, a test)
// takes them. Deltas published while the consumer is busy are merged, so a
// slow reader costs at most the request's own output in memory, never an
// unbounded queue of messages.
//
// Thread-safety: RequestStream is thread-safe (one producer, the engine
// thread; any consumer thread). GenerationRequest / RequestDelta are plain
// values.
#ifndef ALIBI_SERVER_ENGINE_REQUEST_H_
#define ALIBI_SERVER_ENGINE_REQUEST_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "server/engine/sampler.h"

namespace alibi::engine {

enum class FinishReason {
  kLength,     // max_tokens or the context length
  kStop,       // stop string or stop token id
  kEos,        // end-of-sequence token
  kCancelled,  // client cancel, deadline or shutdown
  kError,      // failure inside the engine
};
const char* FinishReasonName(FinishReason reason);

struct GenerationRequest {
  std::string client_request_id;  // caller's id, for logs
  std::vector<int32_t> prompt;    // token ids, at least one
  // Tokens to generate (>= 1); ignored when !generate.
  int max_tokens = 16;
  SamplingOptions sampling;
  bool ignore_eos = false;
  std::vector<std::string> stop;        // stop strings
  std::vector<int32_t> stop_token_ids;  // stop tokens
  int min_tokens = 0;
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  // Per generated token: its log-probability and this many alternatives.
  std::optional<int> logprobs;
  // Log-probabilities of prompt tokens 1..n-1 (scoring, echo): disables
  // prefix-cache hits for this request (every prompt position is computed).
  bool prompt_logprobs = false;
  int prompt_top_logprobs = 0;
  // false: score only (prefill, no token generated).
  bool generate = true;
  int priority = 0;  // lower first
};

struct TokenLogprobs {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<TopLogprob> top;
};

struct RequestTimings {
  TimePoint arrival;
  TimePoint scheduled;    // first step that ran it (queue time ends)
  TimePoint first_token;  // first generated token (or scoring done)
  TimePoint last_token;
};

// Everything new since the consumer last took a delta.
struct RequestDelta {
  std::vector<int32_t> token_ids;
  std::string text;                            // complete UTF-8
  std::vector<TokenLogprobs> logprobs;         // one per new token, if asked
  std::vector<TokenLogprobs> prompt_logprobs;  // positions 1..n-1, if asked

  bool finished = false;
  // Set when finished.
  FinishReason finish_reason = FinishReason::kLength;
  std::string stop_reason;  // the stop string or "token <id>"
  // Not OK when the request did not complete normally (cancelled: CANCELLED
  // or the status the canceller gave; engine failure: INTERNAL).
  absl::Status status;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;
  RequestTimings timings;

  // Appends `next` (a later delta) to this one.
  void Merge(RequestDelta&& next);
};

class RequestStream {
 public:
  // Runs on the engine thread after each publish, with this stream; it must
  // be quick and must not block (e.g. start a write). It may run before
  // Engine::Submit has returned the stream to its caller.
  using UpdateCallback = std::function<void(RequestStream&)>;

  RequestStream(uint64_t id, UpdateCallback on_update);

  uint64_t id() const { return id_; }

  // Consumer: everything published since the last Take, or nullopt if
  // nothing is new. After the finished delta was taken, always nullopt.
  std::optional<RequestDelta> Take();
  // Consumer: blocks until something is new (or `timeout`), then Take().
  std::optional<RequestDelta> WaitAndTake(absl::Duration timeout);
  // Whether the final delta has been published (taken or not).
  bool finished() const;

  // Engine: merges `delta` into the pending one and notifies.
  void Publish(RequestDelta delta);

 private:
  const uint64_t id_;
  const UpdateCallback on_update_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<RequestDelta> pending_;
  bool finished_ = false;
};

}  // namespace alibi::engine

#endif  // ALIBI_SERVER_ENGINE_REQUEST_H_
