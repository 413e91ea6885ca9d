// libopenblas.so.0 for the GPU machine's bundle (see sgemm.h): the two
// OpenBLAS symbols alibi-serve's CPU backend uses.
#include "tests/gpu/blas_shim/sgemm.h"

extern "C" {

__attribute__((visibility("default"))) void cblas_sgemm(
    int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
    const float* a, int lda, const float* b, int ldb, float beta, float* c,
    int ldc) {
  alibi::blas_shim::Sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b,
                          ldb, beta, c, ldc);
}

// The CPU backend parallelises over row tiles itself.
__attribute__((visibility("default"))) void openblas_set_num_threads(int) {}

}  // extern "C"
