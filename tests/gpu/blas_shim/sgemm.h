// A small, plain single-precision GEMM with the CBLAS interface's
// semantics, for the GPU machine's copy of the test binaries: there it
// stands in for OpenBLAS (libopenblas.so.0, built from exports.cc), whose
// 36 MB would not fit the device bundle (scripts/gpu-check.sh). It computes
// what cblas_sgemm computes, with fp32 accumulation (summation order
// differs, as between BLAS libraries); blas_shim_test checks it against
// OpenBLAS. Not used by anything built for this machine.
//
// Thread-safety: pure function.
#ifndef ALIBI_TESTS_GPU_BLAS_SHIM_SGEMM_H_
#define ALIBI_TESTS_GPU_BLAS_SHIM_SGEMM_H_

namespace alibi::blas_shim {

// CBLAS enum values (cblas.h).
enum Order { kRowMajor = 101, kColMajor = 102 };
enum Transpose { kNoTrans = 111, kTrans = 112, kConjTrans = 113 };

// C = alpha op(A) op(B) + beta C, op(A): [m, k], op(B): [k, n], C: [m, n],
// in `order` with leading dimensions lda, ldb, ldc (cblas_sgemm).
void Sgemm(int order, int trans_a, int trans_b, int m, int n, int k,
           float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc);

}  // namespace alibi::blas_shim

#endif  // ALIBI_TESTS_GPU_BLAS_SHIM_SGEMM_H_
