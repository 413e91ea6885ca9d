#include "kernels/backend.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

#if ALIBI_HAVE_CPU_BACKEND
#include "kernels/cpu/cpu_backend.h"
#endif
#if ALIBI_HAVE_CUDA_BACKEND
#include "kernels/cuda/cuda_backend.h"
#endif

namespace alibi::kernels {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kBF16:
      return "bfloat16";
    case DType::kI32:
      return "int32";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  std::string n = absl::AsciiStrToLower(name);
  if (n == "float32" || n == "f32" || n == "fp32") return DType::kF32;
  if (n == "float16" || n == "f16" || n == "fp16" || n == "half") {
    return DType::kF16;
  }
  if (n == "bfloat16" || n == "bf16") return DType::kBF16;
  if (n == "int32" || n == "i32") return DType::kI32;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype \"", name, "\""));
}

bool CudaAvailable() {
#if ALIBI_HAVE_CUDA_BACKEND
  return cuda::CudaDeviceCount() > 0;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(
    const BackendOptions& options) {
  std::string device = absl::AsciiStrToLower(options.device);
  if (device == "auto") device = CudaAvailable() ? "cuda" : "cpu";
  if (device == "cpu") {
#if ALIBI_HAVE_CPU_BACKEND
    return cpu::CreateCpuBackend(options.num_threads);
#else
    return absl::UnimplementedError("this build has no CPU backend");
#endif
  }
  if (device == "cuda") {
#if ALIBI_HAVE_CUDA_BACKEND
    if (!CudaAvailable()) {
      return absl::FailedPreconditionError(
          "--device=cuda: no CUDA device is visible");
    }
    return cuda::CreateCudaBackend(options.cuda_dtype);
#else
    return absl::FailedPreconditionError(
        "--device=cuda: this build has no CUDA backend (configure with "
        "-DALIBI_CUDA=ON)");
#endif
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--device: unknown device \"", options.device, "\" (auto, cpu, cuda)"));
}

}  // namespace alibi::kernels
