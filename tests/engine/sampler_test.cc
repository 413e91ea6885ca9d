// The host sampler: the shared semantics and distribution cases
// (tests/testing/sampler_cases.h) and its log-probabilities.
#include "server/engine/sampler.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/sampler_cases.h"

namespace alibi::engine {
namespace {

using testing::kLogits;
using testing::Softmax;

class HostSampler : public testing::SamplerUnderTest {
 public:
  int32_t Sample(const std::vector<float>& logits, SamplerState& state,
                 absl::Span<const int32_t> banned) override {
    return SampleToken(logits, state, banned, scratch_);
  }
  std::vector<int32_t> SampleMany(const std::vector<float>& logits,
                                  const SamplingParams& options,
                                  int n) override {
    SamplerState state(options, {});
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) out.push_back(Sample(logits, state, {}));
    return out;
  }

 private:
  std::vector<float> scratch_;
};

HostSampler host_sampler;
using testing::SamplerTest;
INSTANTIATE_TEST_SUITE_P(Host, SamplerTest, ::testing::Values(&host_sampler),
                         [](const auto&) { return std::string("Host"); });

TEST(SamplerTest, LogprobsAreRawLogSoftmax) {
  std::vector<double> p = Softmax(kLogits, 1.0f);
  LogprobResult r = ComputeLogprobs(kLogits, 2, 3);
  EXPECT_NEAR(r.logprob, std::log(p[2]), 1e-6);
  ASSERT_EQ(r.top.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r.top[i].token, i);
    EXPECT_NEAR(r.top[i].logprob, std::log(p[i]), 1e-6);
  }
  std::vector<float> ties = {1.0f, 2.0f, 2.0f};
  LogprobResult t = ComputeLogprobs(ties, 0, 2);
  EXPECT_EQ(t.top[0].token, 1);
  EXPECT_EQ(t.top[1].token, 2);
}

}  // namespace
}  // namespace alibi::engine
