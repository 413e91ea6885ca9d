// Backend configurations the tests run on, as one parameter list each: the
// fast CPU backend at every weight width, and (for the conformance suite)
// also at every lower kernel level this CPU runs, with 16-bit KV caches, and
// the CUDA backend (whose tests skip without a GPU).
//
// Thread-safety: pure functions.
#ifndef ALIBI_TESTS_TESTING_BACKEND_CONFIGS_H_
#define ALIBI_TESTS_TESTING_BACKEND_CONFIGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace alibi::testing {

struct BackendConfig {
  std::string name;  // a test-name suffix: "cpu_bf16", "cpu_int8_avx2", ...
  kernels::BackendOptions options;
};

// "cpu" with float32, bfloat16, float16 and int8 weights (best kernels).
std::vector<BackendConfig> CpuWeightWidths();

// CpuWeightWidths(), "cpu" at each lower kernel level this CPU runs (every
// width), "cpu" with float16 and bfloat16 KV caches, and "cuda" in bf16 and
// fp16.
std::vector<BackendConfig> ConformanceConfigs();

// Creates the backend; nullopt-like error when it is not available here
// (FailedPrecondition), which tests turn into a skip.
absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateConfigured(
    const BackendConfig& config, int num_threads = 2);

// For INSTANTIATE_TEST_SUITE_P's name generator.
struct BackendConfigName {
  template <typename Info>
  std::string operator()(const Info& info) const {
    return info.param.name;
  }
};

}  // namespace alibi::testing

#endif  // ALIBI_TESTS_TESTING_BACKEND_CONFIGS_H_
