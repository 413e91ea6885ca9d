// The per-request numbers that shape a sampled distribution: part of the
// engine's SamplingParams and of the backends' sampling rows
// (kernels::SampleRow, the CUDA kernel's rows). Plain C++ without
// dependencies, so nvcc-compiled code includes it.
//
// Thread-safety: a plain value.
#ifndef ALIBI_COMMON_SAMPLING_KNOBS_H_
#define ALIBI_COMMON_SAMPLING_KNOBS_H_

#include <cstdint>

namespace alibi {

struct SamplingKnobs {
  float temperature = 1.0f;  // below 1e-5: greedy
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  int32_t top_k = 0;         // 0: off
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
};

}  // namespace alibi

#endif  // ALIBI_COMMON_SAMPLING_KNOBS_H_
