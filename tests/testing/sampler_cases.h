// The sampler's semantics and distribution tests, for every implementation
// of server/engine/sampler.h's rules: the host sampler (SampleToken,
// tests/engine/sampler_test.cc) and the device sampler (the CUDA kernel run
// by the emulator, tests/gpu/emulation/sample_emulation_test.cc). A test
// file defines its SamplerUnderTest and instantiates SamplerTest with it.
#ifndef ALIBI_TESTS_TESTING_SAMPLER_CASES_H_
#define ALIBI_TESTS_TESTING_SAMPLER_CASES_H_

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "server/engine/sampler.h"

namespace alibi::engine::testing {

class SamplerUnderTest {
 public:
  virtual ~SamplerUnderTest() = default;
  // One token for the request whose state is `state` (its next draw), as
  // SampleToken(logits, state, banned).
  virtual int32_t Sample(const std::vector<float>& logits, SamplerState& state,
                         absl::Span<const int32_t> banned) = 0;
  // `n` tokens drawn for one request under `options`, each its own draw.
  virtual std::vector<int32_t> SampleMany(const std::vector<float>& logits,
                                          const SamplingParams& options,
                                          int n) = 0;
  // How many draws a distribution test makes when it would like `wanted`
  // (an emulated kernel is slower).
  virtual int Draws(int wanted) const { return wanted; }
};

class SamplerTest : public ::testing::TestWithParam<SamplerUnderTest*> {
 protected:
  SamplerUnderTest& sampler() { return *GetParam(); }
};

// Pearson chi-square statistic of `counts` against `expected` probabilities
// (cells with zero expectation must be empty).
inline double ChiSquare(const std::vector<int>& counts,
                        const std::vector<double>& expected, int n, int* dof) {
  double chi = 0;
  *dof = -1;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (expected[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " should never be drawn";
      continue;
    }
    const double e = expected[i] * n;
    chi += (counts[i] - e) * (counts[i] - e) / e;
    ++*dof;
  }
  return chi;
}

// Upper 0.1% critical values of chi-square for small degrees of freedom.
inline double Critical999(int dof) {
  static const double kTable[] = {0,     10.83, 13.82, 16.27, 18.47, 20.52,
                                  22.46, 24.32, 26.12, 27.88, 29.59};
  return kTable[dof];
}

inline std::vector<double> Softmax(const std::vector<float>& logits, float t) {
  std::vector<double> p(logits.size());
  double m = *std::max_element(logits.begin(), logits.end()), z = 0;
  for (size_t i = 0; i < p.size(); ++i)
    z += p[i] = std::exp((logits[i] - m) / t);
  for (double& x : p) x /= z;
  return p;
}

// Draws n tokens for one request and compares with `expected`.
inline void ExpectDistribution(SamplerUnderTest& sampler,
                               const std::vector<float>& logits,
                               const SamplingParams& options,
                               const std::vector<double>& expected) {
  const int n = sampler.Draws(20000);
  std::vector<int> counts(logits.size());
  for (int32_t t : sampler.SampleMany(logits, options, n)) ++counts[t];
  int dof = 0;
  const double chi = ChiSquare(counts, expected, n, &dof);
  ASSERT_GE(dof, 1);
  EXPECT_LT(chi, Critical999(dof)) << "dof " << dof;
}

inline const std::vector<float> kLogits = {2.0f, 1.5f,  1.0f,  0.5f,
                                           0.0f, -0.5f, -1.0f, -3.0f};

TEST_P(SamplerTest, TemperatureFollowsSoftmax) {
  for (float t : {1.0f, 0.5f, 2.0f}) {
    SamplingParams o;
    o.temperature = t;
    o.seed = 11;
    ExpectDistribution(sampler(), kLogits, o, Softmax(kLogits, t));
  }
}

TEST_P(SamplerTest, TopKKeepsTheKMostLikely) {
  SamplingParams o;
  o.top_k = 3;
  o.seed = 12;
  std::vector<double> p = Softmax(kLogits, 1.0f);
  double z = p[0] + p[1] + p[2];
  std::vector<double> expected(p.size(), 0.0);
  for (int i = 0; i < 3; ++i) expected[i] = p[i] / z;
  ExpectDistribution(sampler(), kLogits, o, expected);
}

TEST_P(SamplerTest, TopPKeepsTheSmallestNucleus) {
  SamplingParams o;
  o.top_p = 0.7f;
  o.seed = 13;
  std::vector<double> p = Softmax(kLogits, 1.0f);
  // Cumulative: p0=.379 p0+p1=.609 p0..p2=.749 >= .7 -> keep 3.
  ASSERT_LT(p[0] + p[1], 0.7);
  ASSERT_GE(p[0] + p[1] + p[2], 0.7);
  double z = p[0] + p[1] + p[2];
  std::vector<double> expected(p.size(), 0.0);
  for (int i = 0; i < 3; ++i) expected[i] = p[i] / z;
  ExpectDistribution(sampler(), kLogits, o, expected);
}

TEST_P(SamplerTest, TopPOverALargeVocabularyKeepsExactlyTheNucleus) {
  // 5000 tokens, slowly decaying: the 0.6 nucleus spans hundreds of tokens,
  // more than the sampler's first partial selection.
  std::vector<float> logits(5000);
  for (size_t i = 0; i < logits.size(); ++i) {
    logits[(i * 7919) % logits.size()] = -0.002f * static_cast<float>(i);
  }
  std::vector<double> p = Softmax(logits, 1.0f);
  std::vector<int32_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return p[a] > p[b] || (p[a] == p[b] && a < b);
  });
  double cumulative = 0;
  size_t nucleus = 0;
  while (cumulative < 0.6) cumulative += p[order[nucleus++]];
  ASSERT_GT(nucleus, 256u);
  std::vector<bool> inside(p.size(), false);
  for (size_t i = 0; i < nucleus; ++i) inside[order[i]] = true;
  SamplingParams o;
  o.top_p = 0.6f;
  o.seed = 21;
  int32_t least_likely_seen = 0;
  for (int32_t t : sampler().SampleMany(logits, o, sampler().Draws(40000))) {
    ASSERT_TRUE(inside[t]) << "token " << t << " is outside the nucleus";
    if (t == order[nucleus - 1]) ++least_likely_seen;
  }
  // The nucleus's last token is drawn too (expected ~draws * p / 0.6 times).
  EXPECT_GT(least_likely_seen, 0);
}

TEST_P(SamplerTest, MinPDropsUnlikelyTokens) {
  SamplingParams o;
  o.min_p = 0.3f;  // keep p >= 0.3 * p_max: logits >= 2 + ln 0.3 = 0.796
  o.seed = 14;
  std::vector<double> p = Softmax(kLogits, 1.0f);
  double z = p[0] + p[1] + p[2];
  std::vector<double> expected(p.size(), 0.0);
  for (int i = 0; i < 3; ++i) expected[i] = p[i] / z;
  ExpectDistribution(sampler(), kLogits, o, expected);
}

TEST_P(SamplerTest, CombinedFiltersWithTemperature) {
  SamplingParams o;
  o.temperature = 0.7f;
  o.top_k = 5;
  o.top_p = 0.9f;
  o.seed = 15;
  std::vector<double> p = Softmax(kLogits, 0.7f);
  // top_k 5 then nucleus 0.9 of the renormalised top 5.
  double z5 = 0;
  for (int i = 0; i < 5; ++i) z5 += p[i];
  double cum = 0;
  int keep = 0;
  while (keep < 5) {
    cum += p[keep++] / z5;
    if (cum >= 0.9) break;
  }
  double z = 0;
  for (int i = 0; i < keep; ++i) z += p[i];
  std::vector<double> expected(p.size(), 0.0);
  for (int i = 0; i < keep; ++i) expected[i] = p[i] / z;
  ExpectDistribution(sampler(), kLogits, o, expected);
}

TEST_P(SamplerTest, GreedyPicksArgmaxLowestIdOnTies) {
  SamplingParams o;
  o.temperature = 0.0f;
  SamplerState state(o, {});
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(sampler().Sample(logits, state, {}), 1);
  std::vector<int32_t> banned = {1};
  EXPECT_EQ(sampler().Sample(logits, state, banned), 3);
}

TEST_P(SamplerTest, SameSeedSameTokens) {
  SamplingParams o;
  o.seed = 99;
  std::vector<int32_t> first, second;
  for (auto* out : {&first, &second}) {
    SamplerState state(o, {});
    for (int i = 0; i < 200; ++i) {
      out->push_back(sampler().Sample(kLogits, state, {}));
    }
  }
  EXPECT_EQ(first, second);
  o.seed = 100;
  SamplerState other(o, {});
  std::vector<int32_t> third;
  for (int i = 0; i < 200; ++i) {
    third.push_back(sampler().Sample(kLogits, other, {}));
  }
  EXPECT_NE(first, third);
}

TEST_P(SamplerTest, PenaltiesFollowVllmSemantics) {
  SamplingParams o;
  o.temperature = 0.0f;
  o.repetition_penalty = 2.0f;
  std::vector<int32_t> prompt = {0};
  SamplerState state(o, prompt);
  // Token 0 (in the prompt): 2.0 / 2 = 1.0 < 1.5 -> token 1 wins.
  EXPECT_EQ(sampler().Sample(kLogits, state, {}), 1);

  SamplingParams f;
  f.temperature = 0.0f;
  f.frequency_penalty = 0.3f;
  f.presence_penalty = 0.1f;
  SamplerState fstate(f, {});
  fstate.AddOutputToken(0);
  // 2.0 - 0.3 - 0.1 = 1.6 > 1.5: still token 0.
  EXPECT_EQ(sampler().Sample(kLogits, fstate, {}), 0);
  fstate.AddOutputToken(0);
  // 2.0 - 0.6 - 0.1 = 1.3 < 1.5: token 1.
  EXPECT_EQ(sampler().Sample(kLogits, fstate, {}), 1);

  // A negative logit is multiplied by the repetition penalty.
  std::vector<float> negative = {-1.0f, -1.5f};
  SamplingParams r;
  r.temperature = 0.0f;
  r.repetition_penalty = 2.0f;
  SamplerState rstate(r, std::vector<int32_t>{0});
  EXPECT_EQ(sampler().Sample(negative, rstate, {}), 1);  // -2.0 < -1.5
}

TEST_P(SamplerTest, BannedTokensAreNeverSampled) {
  SamplingParams o;
  o.seed = 5;
  SamplerState state(o, {});
  std::vector<int32_t> banned = {0, 1};
  for (int i = 0; i < 2000; ++i) {
    int32_t t = sampler().Sample(kLogits, state, banned);
    ASSERT_NE(t, 0);
    ASSERT_NE(t, 1);
  }
}

TEST_P(SamplerTest, LogitBiasShiftsTheDistribution) {
  SamplingParams o;
  o.seed = 31;
  o.logit_bias = {{7, 4.0f}, {0, -1.5f}};
  std::vector<float> biased = kLogits;
  biased[7] += 4.0f;
  biased[0] -= 1.5f;
  ExpectDistribution(sampler(), kLogits, o, Softmax(biased, 1.0f));
  // -100 removes a token in practice; +100 forces it (greedy too).
  SamplingParams g;
  g.temperature = 0.0f;
  g.logit_bias = {{6, 100.0f}};
  SamplerState state(g, {});
  EXPECT_EQ(sampler().Sample(kLogits, state, {}), 6);
}

TEST_P(SamplerTest, LogitBiasComesBeforeThePenalties) {
  // vLLM V1 adds the bias before the penalties. Token 6 (-1.0, in the
  // prompt) with bias 3.2 and repetition penalty 1.6: biased first,
  // (-1 + 3.2) / 1.6 = 1.375 < 1.5, so token 1 wins; penalised first it
  // would be -1 * 1.6 + 3.2 = 1.6 > 1.5 (token 6).
  SamplingParams o;
  o.temperature = 0.0f;
  o.repetition_penalty = 1.6f;
  o.logit_bias = {{6, 3.2f}};
  std::vector<float> logits = {0.0f, 1.5f, 0.0f, 0.0f, 0.0f, 0.0f, -1.0f};
  SamplerState state(o, std::vector<int32_t>{6});
  EXPECT_EQ(sampler().Sample(logits, state, {}), 1);
  o.repetition_penalty = 1.0f;  // no penalty: 2.2 wins
  SamplerState plain(o, std::vector<int32_t>{6});
  EXPECT_EQ(sampler().Sample(logits, plain, {}), 6);
}

TEST_P(SamplerTest, AllowedTokenIdsRenormaliseOverTheAllowedSet) {
  SamplingParams o;
  o.seed = 32;
  o.allowed_token_ids = {1, 3, 6};
  std::vector<double> p = Softmax(kLogits, 1.0f);
  const double z = p[1] + p[3] + p[6];
  std::vector<double> expected(p.size(), 0.0);
  for (int i : {1, 3, 6}) expected[i] = p[i] / z;
  ExpectDistribution(sampler(), kLogits, o, expected);
  // With top_k 2: the two most likely allowed tokens.
  o.top_k = 2;
  std::vector<double> top2(p.size(), 0.0);
  for (int i : {1, 3}) top2[i] = p[i] / (p[1] + p[3]);
  ExpectDistribution(sampler(), kLogits, o, top2);
}

TEST_P(SamplerTest, OneTokenBadWordsAreNeverSampled) {
  SamplingParams o;
  o.seed = 33;
  o.bad_words = {{0}, {2}};
  std::vector<double> p = Softmax(kLogits, 1.0f);
  const double z = 1.0 - p[0] - p[2];
  std::vector<double> expected(p.size(), 0.0);
  for (size_t i = 0; i < p.size(); ++i) {
    if (i != 0 && i != 2) expected[i] = p[i] / z;
  }
  ExpectDistribution(sampler(), kLogits, o, expected);
}

TEST_P(SamplerTest, ManyTokenBadWordsBanTheirLastTokenAfterTheirPrefix) {
  SamplingParams o;
  o.temperature = 0.0f;
  o.bad_words = {{0, 0}, {3, 1, 0}};
  SamplerState state(o, std::vector<int32_t>{0});  // the prompt does not count
  EXPECT_EQ(sampler().Sample(kLogits, state, {}), 0);  // no prefix yet
  state.AddOutputToken(0);
  EXPECT_EQ(sampler().Sample(kLogits, state, {}), 1);  // 0 0 banned
  state.AddOutputToken(1);
  EXPECT_EQ(sampler().Sample(kLogits, state, {}), 0);  // 1 0 is fine
  state.AddOutputToken(3);
  state.AddOutputToken(1);
  EXPECT_EQ(sampler().Sample(kLogits, state, {}), 1);  // 3 1 0 banned
}

TEST_P(SamplerTest, BansThatLeaveNothingAreLifted) {
  SamplingParams o;
  o.temperature = 0.0f;
  o.allowed_token_ids = {4, 5};
  o.bad_words = {{4}, {5}};
  SamplerState state(o, {});
  // Every allowed token is a bad word: the bans are lifted, the allowed set
  // still holds (4 is the more likely of the two).
  EXPECT_EQ(sampler().Sample(kLogits, state, {}), 4);
  o.bad_words = {{4}};
  SamplerState one(o, {});
  EXPECT_EQ(sampler().Sample(kLogits, one, {}), 5);
}

}  // namespace alibi::engine::testing

#endif  // ALIBI_TESTS_TESTING_SAMPLER_CASES_H_
