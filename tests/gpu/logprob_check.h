// Log-prob comparison against the fixtures' float64 reference
// (tests/data/reference) and the tolerances the GPU model tests hold each
// 16-bit dtype to (justified by rounding_budget_test).
//
// Thread-safety: pure functions.
#ifndef ALIBI_TESTS_GPU_LOGPROB_CHECK_H_
#define ALIBI_TESTS_GPU_LOGPROB_CHECK_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "nlohmann/json.hpp"

namespace alibi::kernels::gpu_test {

// Largest |log p - reference| allowed at any position. fp16: 2e-2. bf16:
// its 8-bit mantissa alone moves the fixtures' log-probs by up to ~0.15
// (rounding_budget_test measures it on the CPU), so 2e-2 is out of reach.
inline double LogprobMaxTolerance(DType dtype) {
  return dtype == DType::kBF16 ? 0.25 : 2e-2;
}
// Mean |log p - reference| over a sequence's positions.
inline double LogprobMeanTolerance(DType dtype) {
  return dtype == DType::kBF16 ? 4e-2 : 1e-2;
}

inline std::vector<double> LogSoftmax(const float* logits, int vocab) {
  double m = *std::max_element(logits, logits + vocab), z = 0;
  for (int i = 0; i < vocab; ++i) z += std::exp(double{logits[i]} - m);
  const double lz = m + std::log(z);
  std::vector<double> out(vocab);
  for (int i = 0; i < vocab; ++i) out[i] = logits[i] - lz;
  return out;
}

struct LogprobErrors {
  double max = 0;  // infinity when a log-prob is not finite
  double mean = 0;
};

// `logits`: [n, vocab], row i predicting token_ids[i + 1] of `seq` (one
// record of a reference file).
inline LogprobErrors CompareLogprobs(const nlohmann::json& seq,
                                     const std::vector<float>& logits,
                                     int vocab) {
  const std::vector<int32_t> ids = seq["token_ids"];
  const auto& ref = seq["prompt_logprobs"];
  LogprobErrors err;
  if (ids.size() < 2) return err;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    const std::vector<double> lp =
        LogSoftmax(logits.data() + i * static_cast<size_t>(vocab), vocab);
    const double e = std::abs(lp[ids[i + 1]] - ref[i].get<double>());
    if (!std::isfinite(e)) {
      err.max = INFINITY;
      err.mean = INFINITY;
      return err;
    }
    err.max = std::max(err.max, e);
    err.mean += e;
  }
  err.mean /= static_cast<double>(ids.size() - 1);
  return err;
}

}  // namespace alibi::kernels::gpu_test

#endif  // ALIBI_TESTS_GPU_LOGPROB_CHECK_H_
