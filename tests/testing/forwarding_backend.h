// A Backend that forwards every call to another one, for tests that inject
// faults or delays by overriding single ops.
//
// Thread-safety: as the wrapped backend.
#ifndef ALIBI_TESTS_TESTING_FORWARDING_BACKEND_H_
#define ALIBI_TESTS_TESTING_FORWARDING_BACKEND_H_

#include <memory>
#include <string>
#include <utility>

#include "kernels/backend.h"

namespace alibi::testing {

class ForwardingBackend : public kernels::Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<kernels::Backend> inner)
      : inner_(std::move(inner)) {}

  std::string Name() const override { return inner_->Name(); }
  absl::string_view Kind() const override { return inner_->Kind(); }
  kernels::DType weight_dtype() const override {
    return inner_->weight_dtype();
  }
  kernels::DType activation_dtype() const override {
    return inner_->activation_dtype();
  }
  kernels::DType kv_dtype() const override { return inner_->kv_dtype(); }
  absl::StatusOr<kernels::Buffer> Allocate(size_t bytes) override {
    return inner_->Allocate(bytes);
  }
  absl::Status CopyToDevice(void* dst, const void* src, size_t n) override {
    return inner_->CopyToDevice(dst, src, n);
  }
  absl::Status CopyToHost(void* dst, const void* src, size_t n) override {
    return inner_->CopyToHost(dst, src, n);
  }
  absl::Status Synchronize() override { return inner_->Synchronize(); }
  kernels::MemoryInfo GetMemoryInfo() const override {
    return inner_->GetMemoryInfo();
  }
  absl::Status UploadConvert(const void* src, kernels::DType src_dtype,
                             size_t count, void* dst,
                             kernels::DType dst_dtype) override {
    return inner_->UploadConvert(src, src_dtype, count, dst, dst_dtype);
  }
  absl::StatusOr<size_t> ReserveWorkspace(
      const kernels::WorkspaceLimits& limits) override {
    return inner_->ReserveWorkspace(limits);
  }
  bool SupportsGraphs() const override { return inner_->SupportsGraphs(); }
  absl::StatusOr<kernels::GraphMode> BeginGraph(uint64_t key) override {
    return inner_->BeginGraph(key);
  }
  absl::Status EndGraph(bool keep) override { return inner_->EndGraph(keep); }
  void ClearGraphs() override { inner_->ClearGraphs(); }
  absl::StatusOr<kernels::Weight> UploadWeight(const void* src,
                                               kernels::DType src_dtype,
                                               int64_t rows,
                                               int64_t cols) override {
    return inner_->UploadWeight(src, src_dtype, rows, cols);
  }
  absl::Status DownloadWeight(kernels::TensorView weight, float* dst) override {
    return inner_->DownloadWeight(weight, dst);
  }
  absl::Status Embedding(const int32_t* ids, int num_tokens,
                         kernels::TensorView table,
                         kernels::TensorView out) override {
    return inner_->Embedding(ids, num_tokens, table, out);
  }
  absl::Status GatherRows(kernels::TensorView in, const int32_t* rows,
                          int num_rows, kernels::TensorView out) override {
    return inner_->GatherRows(in, rows, num_rows, out);
  }
  absl::Status LayerNorm(kernels::TensorView in, const float* gamma,
                         const float* beta, float eps,
                         kernels::TensorView out) override {
    return inner_->LayerNorm(in, gamma, beta, eps, out);
  }
  absl::Status Linear(kernels::TensorView in, kernels::TensorView weight,
                      const kernels::LinearEpilogue& epilogue,
                      kernels::TensorView out) override {
    return inner_->Linear(in, weight, epilogue, out);
  }
  absl::Status WriteKv(kernels::TensorView k, kernels::TensorView v,
                       const int32_t* slot_mapping, int num_tokens,
                       const kernels::PagedKvView& kv) override {
    return inner_->WriteKv(k, v, slot_mapping, num_tokens, kv);
  }
  absl::Status PagedAttention(kernels::TensorView q,
                              const kernels::PagedKvView& kv,
                              const kernels::AttentionMeta& meta,
                              const float* slopes, int num_heads, float scale,
                              kernels::TensorView out) override {
    return inner_->PagedAttention(q, kv, meta, slopes, num_heads, scale, out);
  }
  bool SupportsSampling() const override { return inner_->SupportsSampling(); }
  absl::Status Sample(const kernels::TensorView& logits,
                      absl::Span<const kernels::SampleRow> rows,
                      std::vector<kernels::SampleResult>* results) override {
    return inner_->Sample(logits, rows, results);
  }

 protected:
  kernels::Backend& inner() const { return *inner_; }

 private:
  std::unique_ptr<kernels::Backend> inner_;
};

}  // namespace alibi::testing

#endif  // ALIBI_TESTS_TESTING_FORWARDING_BACKEND_H_
