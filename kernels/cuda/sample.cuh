// Sampling and log-probabilities on the device: rows of fp32 logits in, only
// the chosen token ids and the requested log-probabilities out.
//
// Per row (one thread block each), in the host sampler's order
// (server/engine/sampler.h): raw log_softmax (the returned log-probabilities
// and the top-N alternatives); then, for a sampled row, allowed_token_ids,
// bans (lifted when they would leave nothing), logit_bias, repetition,
// frequency and presence penalties, applied in place to the logits; then
// greedy argmax, or softmax(logits / temperature) with min_p, top_k and
// top_p (radix selection on the probabilities, ties to the lowest id) and
// one draw by the Gumbel-max trick. The draw's random numbers are a hash of
// (seed, draw, token id): a seeded request gets the same tokens whatever
// shares its batch, and the same distribution as the host sampler.
//
// A scored row (target >= 0) only returns the log-probability of `target`
// and the top-N alternatives.
//
// Thread-safety: stateless launchers; callers serialise use of a stream.
#ifndef ALIBI_KERNELS_CUDA_SAMPLE_CUH_
#define ALIBI_KERNELS_CUDA_SAMPLE_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "common/sampling_knobs.h"

namespace alibi::kernels::cuda {

// Below this temperature sampling is greedy (the host sampler's value).
constexpr float kGreedyTemperature = 1e-5f;

// One row's parameters (device memory). Lists live in the launch's `ids`
// (and `values`) arrays at [*_begin, *_begin + *_count).
struct SampleRowParams {
  int32_t row = 0;      // row of the logits
  int32_t target = -1;  // >= 0: score this token, no sampling
  int32_t top_n = 0;    // alternatives to return, at top_begin
  int32_t top_begin = 0;
  SamplingKnobs knobs;
  int32_t pad = 0;
  uint64_t seed = 0;
  uint64_t draw = 0;  // which draw of the request this is
  int32_t allowed_begin = 0, allowed_count = 0;  // allowed_token_ids
  int32_t banned_begin = 0, banned_count = 0;    // bad words, min_tokens
  int32_t seen_begin = 0, seen_count = 0;        // repetition: distinct tokens
  int32_t bias_begin = 0, bias_count = 0;        // logit_bias: ids, values
  int32_t counts_begin = 0, counts_count = 0;    // output: ids, counts
};

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.0f;  // raw log_softmax at token
};

struct SampleArgs {
  float* logits = nullptr;  // [rows, vocab] fp32, row stride `stride`;
                            // sampled rows are modified in place
  int64_t vocab = 0;
  int64_t stride = 0;
  const SampleRowParams* rows = nullptr;  // [num_rows]
  int num_rows = 0;
  const int32_t* ids = nullptr;   // the lists' token ids
  const float* values = nullptr;  // parallel to ids: bias or count
  float* saved = nullptr;         // parallel to ids: scratch
  SampledToken* out = nullptr;    // [num_rows]
  int32_t* top_ids = nullptr;     // at each row's top_begin
  float* top_logprobs = nullptr;
};

cudaError_t LaunchSample(const SampleArgs& args, cudaStream_t stream);

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_SAMPLE_CUH_
