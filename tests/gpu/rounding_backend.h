// A CPU backend that rounds to bf16 / fp16 exactly where the CUDA backend
// stores 16-bit values (weight matrices; layernorm outputs feeding a GEMM;
// QKV and FFN GEMM outputs, the exact-erf GELU applied after rounding the
// GEMM output as the CUDA epilogue kernel does; attention outputs), keeping
// in fp32 what the CUDA backend keeps in fp32 (residual stream, biases,
// norms, softmax, logits). It predicts, without a GPU, how far a correct
// 16-bit forward pass lands from the fp32 one; the GPU tests derive their
// tolerances from it.
//
// Assumes Model's call pattern (server/model/model.cc): a Linear without a
// residual whose output is not the logits writes a 16-bit tensor; uploads
// of more than kMatrixThreshold elements are weight matrices.
//
// Everything else (memory, embedding, gathers, KV writes from the rounded
// QKV) goes to the CPU backend unchanged.
//
// Thread-safety: not thread-safe (a Backend).
#ifndef ALIBI_TESTS_GPU_ROUNDING_BACKEND_H_
#define ALIBI_TESTS_GPU_ROUNDING_BACKEND_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "kernels/backend.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/testing/forwarding_backend.h"

namespace alibi::kernels::gpu_test {

// Elements above which an uploaded fp32 tensor is a weight matrix (the test
// models' vectors have at most 4 * 512, their matrices at least 96 * 96).
inline constexpr size_t kMatrixThreshold = 4096;

// The CPU backend with 16-bit rounding where the CUDA backend stores 16-bit
// values. Assumes Model's call pattern (model.cc).
class RoundingBackend final : public ::alibi::testing::ForwardingBackend {
 public:
  RoundingBackend(std::unique_ptr<Backend> cpu, DType dtype, int vocab)
      : ForwardingBackend(std::move(cpu)), dtype_(dtype), vocab_(vocab) {}

  std::string Name() const override { return "cpu rounding to 16 bits"; }

  absl::Status UploadConvert(const void* src, DType src_dtype, size_t count,
                             void* dst, DType dst_dtype) override {
    absl::Status s =
        inner().UploadConvert(src, src_dtype, count, dst, dst_dtype);
    if (s.ok() && count > kMatrixThreshold) {
      float* p = static_cast<float*>(dst);
      for (size_t i = 0; i < count; ++i) p[i] = Round(p[i]);
    }
    return s;
  }
  // Weight matrices through this UploadConvert (rounded), as row-major fp32
  // for the reference backend inside.
  absl::StatusOr<Weight> UploadWeight(const void* src, DType src_dtype,
                                      int64_t rows, int64_t cols) override {
    return Backend::UploadWeight(src, src_dtype, rows, cols);
  }
  absl::Status LayerNorm(TensorView in, const float* gamma, const float* beta,
                         float eps, TensorView out) override {
    absl::Status s = inner().LayerNorm(in, gamma, beta, eps, out);
    if (out.data != in.data) RoundAll(out);  // feeds a GEMM
    return s;
  }
  absl::Status Linear(TensorView in, TensorView weight,
                      const LinearEpilogue& epi, TensorView out) override {
    const bool to_16bit =
        epi.residual.data == nullptr && out.cols != vocab_;  // QKV, FFN up
    if (!to_16bit) return inner().Linear(in, weight, epi, out);
    if (epi.activation != Activation::kGeluErf) {
      absl::Status s = inner().Linear(in, weight, epi, out);
      RoundAll(out);  // cuBLASLt epilogue in fp32, one rounding
      return s;
    }
    // Exact GELU: GEMM (+ bias) rounded, then the epilogue kernel.
    LinearEpilogue plain = epi;
    plain.activation = Activation::kNone;
    absl::Status s = inner().Linear(in, weight, plain, out);
    RoundAll(out);
    for (int64_t r = 0; r < out.rows; ++r) {
      float* row = static_cast<float*>(out.data) + r * out.row_stride;
      for (int64_t c = 0; c < out.cols; ++c) {
        const float x = row[c];
        row[c] = Round(0.5f * x * (1.0f + std::erf(x * 0.70710678f)));
      }
    }
    return s;
  }
  absl::Status PagedAttention(TensorView q, const PagedKvView& kv,
                              const AttentionMeta& meta, const float* slopes,
                              int num_heads, float scale,
                              TensorView out) override {
    absl::Status s =
        inner().PagedAttention(q, kv, meta, slopes, num_heads, scale, out);
    RoundAll(out);
    return s;
  }

 private:
  float Round(float x) const { return RoundTo(dtype_, x); }
  void RoundAll(const TensorView& t) const {
    for (int64_t r = 0; r < t.rows; ++r) {
      float* row = static_cast<float*>(t.data) + r * t.row_stride;
      for (int64_t c = 0; c < t.cols; ++c) row[c] = Round(row[c]);
    }
  }

  DType dtype_;
  int vocab_;
};

}  // namespace alibi::kernels::gpu_test

#endif  // ALIBI_TESTS_GPU_ROUNDING_BACKEND_H_
