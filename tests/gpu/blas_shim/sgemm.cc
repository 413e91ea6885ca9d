#include "tests/gpu/blas_shim/sgemm.h"

#include <cstddef>

namespace alibi::blas_shim {
namespace {

// Row-major C[m, n] = alpha op(A) op(B) + beta C.
void RowMajor(bool ta, bool tb, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta,
              float* c, int ldc) {
  auto at = [&](int i, int p) {
    return ta ? a[static_cast<size_t>(p) * lda + i]
              : a[static_cast<size_t>(i) * lda + p];
  };
  auto bt = [&](int p, int j) {
    return tb ? b[static_cast<size_t>(j) * ldb + p]
              : b[static_cast<size_t>(p) * ldb + j];
  };
  for (int i = 0; i < m; ++i) {
    float* c_row = c + static_cast<size_t>(i) * ldc;
    for (int j = 0; j < n; ++j) {
      float sum = 0.0f;
      if (!ta && tb) {
        // Both operands contiguous along k (x W^T, the CPU backend's case):
        // eight partial sums the compiler vectorises.
        const float* x = a + static_cast<size_t>(i) * lda;
        const float* w = b + static_cast<size_t>(j) * ldb;
        float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int p = 0;
        for (; p + 8 <= k; p += 8) {
          for (int e = 0; e < 8; ++e) part[e] += x[p + e] * w[p + e];
        }
        for (; p < k; ++p) part[0] += x[p] * w[p];
        for (int e = 0; e < 8; ++e) sum += part[e];
      } else {
        for (int p = 0; p < k; ++p) sum += at(i, p) * bt(p, j);
      }
      c_row[j] = alpha * sum + (beta == 0.0f ? 0.0f : beta * c_row[j]);
    }
  }
}

}  // namespace

void Sgemm(int order, int trans_a, int trans_b, int m, int n, int k,
           float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc) {
  const bool ta = trans_a != kNoTrans, tb = trans_b != kNoTrans;
  if (order == kRowMajor) {
    RowMajor(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    // Column-major C = op(A) op(B) is row-major C^T = op(B)^T op(A)^T.
    RowMajor(tb, ta, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
  }
}

}  // namespace alibi::blas_shim
