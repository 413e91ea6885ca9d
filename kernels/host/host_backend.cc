#include "kernels/host/host_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "kernels/host/checks.h"

namespace alibi::kernels::host {
namespace {

void FreeAligned(void* ptr, void* /*ctx*/) { std::free(ptr); }

// Large buffers are mapped, with the mapping's length as the context.
void Unmap(void* ptr, void* ctx) { munmap(ptr, reinterpret_cast<size_t>(ctx)); }
constexpr size_t kMapAbove = size_t{1} << 20;
constexpr size_t kHugePage = size_t{2} << 20;

// Elements per parallel piece of a conversion.
constexpr int64_t kConvertGrain = 1 << 16;

}  // namespace

HostBackend::HostBackend(absl::string_view kind, int num_threads)
    : kind_(kind), pool_(num_threads) {}

absl::StatusOr<Buffer> HostBackend::Allocate(size_t bytes) {
  // Memory is committed and zeroed now: the process holds from the start
  // what it will hold (a KV pool's pages are not faulted in one by one as
  // requests first reach them, so RSS does not creep up to the pool's size
  // under load), and nothing reads stale memory. Large buffers come zeroed
  // and populated from the kernel in one call.
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  if (rounded >= kMapAbove) {
    // Mapped on a 2 MiB boundary and offered transparent huge pages (weights
    // and the KV pool are streamed through: fewer TLB misses), then
    // committed; without huge pages it is the same memory in 4 KiB pages.
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t length = (rounded + page - 1) / page * page;
    const size_t span = length + kHugePage;
    void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
      return absl::ResourceExhaustedError(absl::StrCat(
          kind_, " backend: cannot map ", bytes, " bytes: ", strerror(errno)));
    }
    const uintptr_t begin = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (begin + kHugePage - 1) / kHugePage * kHugePage;
    if (aligned > begin) munmap(raw, aligned - begin);
    if (begin + span > aligned + length) {
      munmap(reinterpret_cast<void*>(aligned + length),
             begin + span - (aligned + length));
    }
    void* ptr = reinterpret_cast<void*>(aligned);
    madvise(ptr, length, MADV_HUGEPAGE);  // advice: may be off
    if (madvise(ptr, length, MADV_POPULATE_WRITE) != 0) {
      if (errno != EINVAL) {  // EINVAL: a kernel before 5.14
        const int error = errno;
        munmap(ptr, length);
        return absl::ResourceExhaustedError(
            absl::StrCat(kind_, " backend: cannot commit ", bytes,
                         " bytes: ", strerror(error)));
      }
      volatile char* p = static_cast<volatile char*>(ptr);
      for (size_t i = 0; i < length; i += page) p[i] = 0;
    }
    return Buffer(ptr, bytes, &Unmap, reinterpret_cast<void*>(length));
  }
  void* ptr = std::aligned_alloc(64, rounded);
  if (ptr == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(kind_, " backend: cannot allocate ", bytes, " bytes"));
  }
  std::memset(ptr, 0, rounded);
  return Buffer(ptr, bytes, &FreeAligned, nullptr);
}

absl::Status HostBackend::CopyToDevice(void* dst, const void* src,
                                       size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}

absl::Status HostBackend::CopyToHost(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}

MemoryInfo HostBackend::GetMemoryInfo() const {
  MemoryInfo info;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::ifstream statm("/proc/self/statm");
  size_t total_pages = 0, resident_pages = 0;
  if (statm >> total_pages >> resident_pages) {
    info.used_bytes = resident_pages * page;
  }
  info.total_bytes = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * page;
  return info;
}

absl::Status HostBackend::UploadConvert(const void* src, DType src_dtype,
                                        size_t count, void* dst,
                                        DType dst_dtype) {
  if (dst_dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind_, " backend: UploadConvert writes float32, not ",
                     DTypeName(dst_dtype)));
  }
  float* out = static_cast<float*>(dst);
  const int64_t n = static_cast<int64_t>(count);
  switch (src_dtype) {
    case DType::kF32:
      std::memcpy(out, src, count * sizeof(float));
      return absl::OkStatus();
    case DType::kF16: {
      const uint16_t* in = static_cast<const uint16_t*>(src);
      pool_.ParallelFor(n, kConvertGrain, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) out[i] = Fp16ToFloat(in[i]);
      });
      return absl::OkStatus();
    }
    case DType::kBF16: {
      const uint16_t* in = static_cast<const uint16_t*>(src);
      pool_.ParallelFor(n, kConvertGrain, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) out[i] = Bf16ToFloat(in[i]);
      });
      return absl::OkStatus();
    }
    case DType::kI32:
    case DType::kI8:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      kind_, " backend: cannot convert ", DTypeName(src_dtype), " weights"));
}

absl::Status HostBackend::ExpectF32(const TensorView& view,
                                    absl::string_view what) const {
  if (view.packed) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind_, " backend: ", what, " is a packed weight"));
  }
  return ExpectDType(view, DType::kF32, kind_, what);
}

absl::Status HostBackend::CheckAttention(const TensorView& q,
                                         const PagedKvView& kv, DType kv_dtype,
                                         const AttentionMeta& meta,
                                         int num_heads, const TensorView& out,
                                         std::vector<int32_t>* seq_of,
                                         std::vector<int32_t>* pos_of) const {
  RETURN_IF_ERROR(ExpectF32(q, "attention queries"));
  RETURN_IF_ERROR(ExpectF32(out, "attention output"));
  if (kv.dtype != kv_dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind_, " backend: the KV pool is ", DTypeName(kv_dtype),
                     ", got ", DTypeName(kv.dtype)));
  }
  return ResolveAttentionRows(q, kv, meta, num_heads, out, kind_, seq_of,
                              pos_of);
}

absl::Status HostBackend::GatherRows(TensorView in, const int32_t* rows,
                                     int num_rows, TensorView out) {
  RETURN_IF_ERROR(ExpectF32(in, "gather input"));
  RETURN_IF_ERROR(ExpectF32(out, "gather output"));
  if (out.rows < num_rows || out.cols != in.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind_, " backend: gather shape mismatch"));
  }
  RETURN_IF_ERROR(CheckIndices(rows, num_rows, in.rows, kind_, "gather row"));
  for (int r = 0; r < num_rows; ++r) {
    std::memcpy(static_cast<float*>(out.data) + r * out.row_stride,
                static_cast<const float*>(in.data) + rows[r] * in.row_stride,
                in.cols * sizeof(float));
  }
  return absl::OkStatus();
}

}  // namespace alibi::kernels::host
