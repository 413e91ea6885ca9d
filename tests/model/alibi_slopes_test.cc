#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "server/model/config.h"

namespace alibi::model {
namespace {

// Exact values: slopes are powers of two, written here as exponents.
struct Table {
  int n;
  double max_bias;
  std::vector<double> log2_slopes;
};

TEST(AlibiSlopesTest, ClosedFormTable) {
  const std::vector<Table> tables = {
      {1, 8, {-8}},
      {2, 8, {-4, -8}},
      {3, 8, {-4, -8, -2}},
      {4, 8, {-2, -4, -6, -8}},
      {6, 8, {-2, -4, -6, -8, -1, -3}},
      {8, 8, {-1, -2, -3, -4, -5, -6, -7, -8}},
      {12, 8, {-1, -2, -3, -4, -5, -6, -7, -8, -0.5, -1.5, -2.5, -3.5}},
      {16,
       8,
       {-0.5, -1, -1.5, -2, -2.5, -3, -3.5, -4, -4.5, -5, -5.5, -6, -6.5, -7,
        -7.5, -8}},
      {24, 8, {-0.5,  -1,    -1.5,  -2,    -2.5,  -3,    -3.5,  -4,
               -4.5,  -5,    -5.5,  -6,    -6.5,  -7,    -7.5,  -8,
               -0.25, -0.75, -1.25, -1.75, -2.25, -2.75, -3.25, -3.75}},
      {6, 16, {-4, -8, -12, -16, -2, -6}},
      {5, 4, {-1, -2, -3, -4, -0.5}},
      {2, 1, {-0.5, -1}},
  };
  for (const Table& t : tables) {
    std::vector<double> got = AlibiSlopes(t.n, t.max_bias);
    ASSERT_EQ(got.size(), t.log2_slopes.size()) << "n=" << t.n;
    for (size_t h = 0; h < got.size(); ++h) {
      EXPECT_DOUBLE_EQ(got[h], std::exp2(t.log2_slopes[h]))
          << "n=" << t.n << " max_bias=" << t.max_bias << " head " << h;
    }
  }
}

TEST(AlibiSlopesTest, FortyHeads) {
  // p = 32: 2^(-8 (h+1) / 32) for h < 32, then 2^(-8 (2k+1) / 64), k < 8.
  std::vector<double> got = AlibiSlopes(40);
  ASSERT_EQ(got.size(), 40u);
  for (int h = 0; h < 32; ++h) {
    EXPECT_DOUBLE_EQ(got[h], std::exp2(-0.25 * (h + 1)));
  }
  for (int k = 0; k < 8; ++k) {
    EXPECT_DOUBLE_EQ(got[32 + k], std::exp2(-0.125 * (2 * k + 1)));
  }
}

// MPT's gen_slopes, computed independently:
//   _n = 2^ceil(log2 n); m = arange(1, _n + 1) * (max_bias / _n)
//   slopes = 1 / 2^m; if _n != n: slopes = cat(slopes[1::2], slopes[::2])[:n]
std::vector<double> MptGenSlopes(int n, double max_bias) {
  const int big = 1 << static_cast<int>(std::ceil(std::log2(n)));
  std::vector<double> slopes;
  for (int i = 1; i <= big; ++i) {
    slopes.push_back(1.0 / std::pow(2.0, i * (max_bias / big)));
  }
  if (big == n) return slopes;
  std::vector<double> reordered;
  for (int i = 1; i < big; i += 2) reordered.push_back(slopes[i]);
  for (int i = 0; i < big; i += 2) reordered.push_back(slopes[i]);
  reordered.resize(static_cast<size_t>(n));
  return reordered;
}

// BLOOM's build_alibi_tensor (max_bias 8), computed independently.
std::vector<double> BloomSlopes(int n) {
  const int closest = 1 << static_cast<int>(std::floor(std::log2(n)));
  const double base = std::pow(2.0, -std::pow(2.0, -(std::log2(closest) - 3)));
  std::vector<double> slopes;
  for (int i = 1; i <= closest; ++i) slopes.push_back(std::pow(base, i));
  if (closest != n) {
    const double extra_base =
        std::pow(2.0, -std::pow(2.0, -(std::log2(2 * closest) - 3)));
    const int remaining = std::min(closest, n - closest);
    for (int i = 1; i < 1 + 2 * remaining; i += 2) {
      slopes.push_back(std::pow(extra_base, i));
    }
  }
  return slopes;
}

TEST(AlibiSlopesTest, MatchesMptGenSlopes) {
  for (double max_bias : {8.0, 4.0, 16.0, 1.0, 12.5}) {
    for (int n = 1; n <= 64; ++n) {
      std::vector<double> got = AlibiSlopes(n, max_bias);
      std::vector<double> want = MptGenSlopes(n, max_bias);
      ASSERT_EQ(got.size(), want.size()) << n;
      for (int h = 0; h < n; ++h) {
        EXPECT_NEAR(got[h], want[h], 1e-12 * want[h])
            << "n=" << n << " max_bias=" << max_bias << " head " << h;
      }
    }
  }
}

TEST(AlibiSlopesTest, MatchesBloomBuildAlibiTensor) {
  for (int n = 1; n <= 64; ++n) {
    std::vector<double> got = AlibiSlopes(n);
    std::vector<double> want = BloomSlopes(n);
    ASSERT_EQ(got.size(), want.size()) << n;
    for (int h = 0; h < n; ++h) {
      EXPECT_NEAR(got[h], want[h], 1e-12 * want[h]) << "n=" << n << " " << h;
    }
  }
}

TEST(AlibiSlopesTest, EdgeCases) {
  EXPECT_TRUE(AlibiSlopes(0).empty());
  EXPECT_TRUE(AlibiSlopes(-3).empty());
  for (int n : {1, 7, 64, 112}) {
    for (double s : AlibiSlopes(n)) {
      EXPECT_GT(s, 0.0);
      EXPECT_LT(s, 1.0);
    }
  }
}

}  // namespace
}  // namespace alibi::model
