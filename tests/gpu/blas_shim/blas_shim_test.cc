// The BLAS stand-in of the GPU machine's bundle (sgemm.h) against OpenBLAS:
// every order and transpose combination, odd shapes and leading dimensions,
// alpha and beta, to fp32 rounding.
#include <cblas.h>

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/blas_shim/sgemm.h"

namespace alibi::blas_shim {
namespace {

TEST(BlasShimTest, MatchesOpenBlas) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (int order : {kRowMajor, kColMajor}) {
    for (int ta : {kNoTrans, kTrans}) {
      for (int tb : {kNoTrans, kTrans}) {
        for (auto [m, n, k] :
             {std::tuple{1, 1, 1}, std::tuple{7, 33, 100},
              std::tuple{64, 96, 17}, std::tuple{3, 250, 512}}) {
          const int pad = 3;
          // Leading dimensions of the stored (not the op) matrices.
          const int a_rows = (order == kRowMajor) == (ta == kNoTrans) ? m : k;
          const int a_cols = a_rows == m ? k : m;
          const int b_rows = (order == kRowMajor) == (tb == kNoTrans) ? k : n;
          const int b_cols = b_rows == k ? n : k;
          const int c_rows = order == kRowMajor ? m : n;
          const int c_cols = order == kRowMajor ? n : m;
          const int lda = a_cols + pad, ldb = b_cols + pad, ldc = c_cols + pad;
          std::vector<float> a(a_rows * lda), b(b_rows * ldb), c(c_rows * ldc);
          for (float& x : a) x = normal(rng);
          for (float& x : b) x = normal(rng);
          for (float& x : c) x = normal(rng);
          std::vector<float> want = c, got = c;
          const float alpha = 0.75f, beta = order == kRowMajor ? 0.5f : 0.0f;
          cblas_sgemm(static_cast<CBLAS_ORDER>(order),
                      static_cast<CBLAS_TRANSPOSE>(ta),
                      static_cast<CBLAS_TRANSPOSE>(tb), m, n, k, alpha,
                      a.data(), lda, b.data(), ldb, beta, want.data(), ldc);
          Sgemm(order, ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb,
                beta, got.data(), ldc);
          for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_NEAR(got[i], want[i],
                        1e-4f * (1.0f + std::abs(want[i])) *
                            std::sqrt(static_cast<float>(k)))
                << order << " " << ta << " " << tb << " " << m << "x" << n
                << "x" << k << " at " << i;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace alibi::blas_shim
