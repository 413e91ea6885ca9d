// What the CPU backends ("ref", "cpu") share: host memory is their device
// memory (64-byte aligned allocations, plain copies, nothing asynchronous),
// one thread pool, fp32 activations, and the ops that only move fp32 rows.
//
// Thread-safety: as every Backend, not thread-safe.
#ifndef ALIBI_KERNELS_HOST_HOST_BACKEND_H_
#define ALIBI_KERNELS_HOST_HOST_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/backend.h"
#include "kernels/host/thread_pool.h"

namespace alibi::kernels::host {

class HostBackend : public Backend {
 public:
  // `kind`: the registry name, also the prefix of error messages.
  HostBackend(absl::string_view kind, int num_threads);

  absl::string_view Kind() const override { return kind_; }
  DType activation_dtype() const override { return DType::kF32; }

  absl::StatusOr<Buffer> Allocate(size_t bytes) override;
  absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) override;
  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override;
  absl::Status Synchronize() override { return absl::OkStatus(); }
  // used: this process's resident memory; total: the machine's RAM.
  MemoryInfo GetMemoryInfo() const override;
  // Converts to float32 only (biases, norms, slopes; the reference's
  // weights).
  absl::Status UploadConvert(const void* src, DType src_dtype, size_t count,
                             void* dst, DType dst_dtype) override;
  absl::Status GatherRows(TensorView in, const int32_t* rows, int num_rows,
                          TensorView out) override;

 protected:
  int num_threads() const { return pool_.num_threads(); }
  ThreadPool& pool() { return pool_; }
  // `view` is a float32 row-major tensor (not a packed weight).
  absl::Status ExpectF32(const TensorView& view, absl::string_view what) const;
  // Calls fn(t, h, dst) for each (token t, KV head h) that WriteKv stores:
  // dst is the element offset of that head's row in the pool
  // [num_blocks, num_kv_heads, block_size, head_dim]; padding rows (slot < 0)
  // are skipped.
  template <typename Fn>
  static void ForEachKvRow(const int32_t* slot_mapping, int num_tokens,
                           const PagedKvView& kv, Fn&& fn) {
    for (int t = 0; t < num_tokens; ++t) {
      const int32_t slot = slot_mapping[t];
      if (slot < 0) continue;
      const int64_t block = slot / kv.block_size;
      const int64_t offset = slot % kv.block_size;
      for (int h = 0; h < kv.num_kv_heads; ++h) {
        fn(t, h,
           ((block * kv.num_kv_heads + h) * kv.block_size + offset) *
               kv.head_dim);
      }
    }
  }
  // Checks a PagedAttention call: float32 q [num_tokens, num_heads * head_dim]
  // and out, a KV pool of `kv_dtype`, the shapes and every sequence's
  // metadata; fills each query row's sequence and absolute position.
  absl::Status CheckAttention(const TensorView& q, const PagedKvView& kv,
                              DType kv_dtype, const AttentionMeta& meta,
                              int num_heads, const TensorView& out,
                              std::vector<int32_t>* seq_of,
                              std::vector<int32_t>* pos_of) const;

 private:
  const std::string kind_;
  ThreadPool pool_;
};

}  // namespace alibi::kernels::host

#endif  // ALIBI_KERNELS_HOST_HOST_BACKEND_H_
