// Helpers for the GPU tests: a CUDA backend next to the CPU oracle, random
// inputs rounded to the device dtype (so both backends see identical
// values), uploads, downloads, poisoning and error norms.
//
// Thread-safety: test-only helpers, one thread.
#ifndef ALIBI_TESTS_GPU_GPU_TEST_UTIL_H_
#define ALIBI_TESTS_GPU_GPU_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "common/half.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"

namespace alibi::kernels::gpu_test {

// Why the CUDA backend cannot be created here ("no CUDA device is visible",
// or why the plugin did not load).
inline std::string NoCudaReason() {
  BackendOptions options;
  options.device = "cuda";
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(options);
  return backend.ok() ? "a CUDA device is visible"
                      : std::string(backend.status().message());
}

// ALIBI_REQUIRE_GPU=1 (scripts/gpu-check.sh on a GPU machine): a test that
// would skip for want of a device fails instead, so a run that tested
// nothing cannot pass.
inline bool GpuRequired() {
  const char* value = std::getenv("ALIBI_REQUIRE_GPU");
  return value != nullptr && std::string(value) == "1";
}

// Skips the calling test when this build or machine has no CUDA device (or
// fails it, with ALIBI_REQUIRE_GPU=1), saying why.
#define ALIBI_SKIP_WITHOUT_CUDA()                                   \
  do {                                                              \
    if (!::alibi::kernels::CudaAvailable()) {                       \
      if (::alibi::kernels::gpu_test::GpuRequired()) {              \
        GTEST_FAIL() << "ALIBI_REQUIRE_GPU=1, but "                 \
                     << ::alibi::kernels::gpu_test::NoCudaReason(); \
      }                                                             \
      GTEST_SKIP() << ::alibi::kernels::gpu_test::NoCudaReason();   \
    }                                                               \
  } while (0)

inline float RoundTo(DType dtype, float x) {
  switch (dtype) {
    case DType::kBF16:
      return Bf16ToFloat(FloatToBf16(x));
    case DType::kF16:
      return Fp16ToFloat(FloatToFp16(x));
    default:
      return x;
  }
}

inline std::vector<float> Rounded(DType dtype, std::vector<float> v) {
  for (float& x : v) x = RoundTo(dtype, x);
  return v;
}

// ||got - want|| / ||want|| over all elements; infinity when any element of
// `got` is not finite (poisoned outputs that were never written are NaN).
inline double RelErr(const std::vector<float>& got,
                     const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = double{got[i]} - want[i];
    diff += d * d;
    norm += double{want[i]} * want[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

// The CUDA backend (dtype `dtype`) and the CPU oracle.
class Backends {
 public:
  explicit Backends(DType dtype) : dtype_(dtype) {
    BackendOptions cpu_options;
    cpu_options.device = "ref";
    cpu_options.num_threads = 0;  // every core: the oracle is the slow side
    auto cpu = CreateBackend(cpu_options);
    EXPECT_TRUE(cpu.ok()) << cpu.status();
    if (cpu.ok()) cpu_ = std::move(*cpu);
    BackendOptions gpu_options;
    gpu_options.device = "cuda";
    gpu_options.cuda_dtype = dtype;
    auto gpu = CreateBackend(gpu_options);
    EXPECT_TRUE(gpu.ok()) << gpu.status();
    if (gpu.ok()) gpu_ = std::move(*gpu);
  }

  Backend& cpu() { return *cpu_; }
  Backend& gpu() { return *gpu_; }
  DType dtype() const { return dtype_; }
  bool ok() const { return cpu_ != nullptr && gpu_ != nullptr; }

  // Device copy of `v` as `dtype` (values must already be representable for
  // an exact copy).
  Buffer Upload(const std::vector<float>& v, DType dtype) {
    auto buffer =
        gpu_->Allocate(std::max<size_t>(v.size(), 1) * DTypeSize(dtype));
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    if (!buffer.ok()) return Buffer();
    if (!v.empty()) {
      absl::Status s = gpu_->UploadConvert(v.data(), DType::kF32, v.size(),
                                           buffer->data(), dtype);
      EXPECT_TRUE(s.ok()) << s;
    }
    return std::move(*buffer);
  }

  Buffer UploadInts(const std::vector<int32_t>& v) {
    auto buffer = gpu_->Allocate(std::max<size_t>(v.size(), 1) * 4);
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    if (!buffer.ok()) return Buffer();
    if (!v.empty()) {
      EXPECT_TRUE(
          gpu_->CopyToDevice(buffer->data(), v.data(), v.size() * 4).ok());
    }
    return std::move(*buffer);
  }

  // A device buffer of `count` elements of `dtype`, every one NaN.
  Buffer Poisoned(size_t count, DType dtype) {
    auto buffer = gpu_->Allocate(std::max<size_t>(count, 1) * DTypeSize(dtype));
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    if (!buffer.ok()) return Buffer();
    Poison(buffer->data(), count, dtype);
    return std::move(*buffer);
  }

  void Poison(void* device, size_t count, DType dtype) {
    if (count == 0) return;
    if (dtype == DType::kF32) {
      std::vector<float> nan(count, std::nanf(""));
      EXPECT_TRUE(gpu_->CopyToDevice(device, nan.data(), count * 4).ok());
    } else {
      const uint16_t bits = dtype == DType::kBF16 ? 0x7FC0 : 0x7E00;
      std::vector<uint16_t> nan(count, bits);
      EXPECT_TRUE(gpu_->CopyToDevice(device, nan.data(), count * 2).ok());
    }
  }

  // `count` elements of `dtype` at `device`, as floats. Fails the test when
  // the copy (or an earlier kernel's error report) fails.
  std::vector<float> Download(const void* device, size_t count, DType dtype) {
    std::vector<float> out(count);
    if (count == 0) return out;
    if (dtype == DType::kF32) {
      absl::Status s = gpu_->CopyToHost(out.data(), device, count * 4);
      EXPECT_TRUE(s.ok()) << s;
      return out;
    }
    std::vector<uint16_t> raw(count);
    absl::Status s = gpu_->CopyToHost(raw.data(), device, count * 2);
    EXPECT_TRUE(s.ok()) << s;
    for (size_t i = 0; i < count; ++i) {
      out[i] =
          dtype == DType::kBF16 ? Bf16ToFloat(raw[i]) : Fp16ToFloat(raw[i]);
    }
    return out;
  }

 private:
  DType dtype_;
  std::unique_ptr<Backend> cpu_, gpu_;
};

inline std::vector<float> RandomVector(std::mt19937& rng, size_t n,
                                       float scale = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> normal(mean, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

inline std::string DTypeParamName(const ::testing::TestParamInfo<DType>& info) {
  return info.param == DType::kBF16 ? "bf16" : "fp16";
}

// "tiny_bloom_bf16" for a (fixture model name, dtype) test parameter.
inline std::string FixtureParamName(
    const ::testing::TestParamInfo<std::tuple<std::string, DType>>& info) {
  std::string name = std::get<0>(info.param);
  std::replace(name.begin(), name.end(), '-', '_');
  return name + (std::get<1>(info.param) == DType::kBF16 ? "_bf16" : "_fp16");
}

}  // namespace alibi::kernels::gpu_test

#endif  // ALIBI_TESTS_GPU_GPU_TEST_UTIL_H_
