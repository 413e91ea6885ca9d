#include "kernels/backend.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda_plugin.h"
#include "kernels/reference/reference_backend.h"

namespace alibi::kernels {

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  std::string n = absl::AsciiStrToLower(name);
  if (n == "float32" || n == "f32" || n == "fp32") return DType::kF32;
  if (n == "float16" || n == "f16" || n == "fp16" || n == "half") {
    return DType::kF16;
  }
  if (n == "bfloat16" || n == "bf16") return DType::kBF16;
  if (n == "int32" || n == "i32") return DType::kI32;
  if (n == "int8" || n == "i8") return DType::kI8;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype \"", name, "\""));
}

namespace {

absl::StatusOr<std::unique_ptr<Backend>> CreateReference(
    const BackendOptions& options) {
  if (options.cpu_weight_dtype != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cpu_weight_dtype: the ref backend computes in float32, not ",
        DTypeName(options.cpu_weight_dtype)));
  }
  if (options.kv_dtype.has_value() && *options.kv_dtype != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv_cache_dtype: the ref backend keeps its KV cache in float32, not ",
        DTypeName(*options.kv_dtype)));
  }
  return reference::CreateReferenceBackend(options.num_threads);
}

std::string Always() { return ""; }

// The backend table: name, description, why it is unavailable ("" when it
// is available), factory.
struct BackendEntry {
  const char* name;
  const char* description;
  std::string (*unavailable)();
  absl::StatusOr<std::unique_ptr<Backend>> (*create)(const BackendOptions&);
};

const BackendEntry kBackends[] = {
    {"cpu",
     "fast CPU backend: packed f32/bf16/f16/int8 weights, SIMD kernels "
     "picked at run time",
     &Always, &cpu::CreateCpuBackend},
    {"ref", "reference CPU backend: plain fp32 loops, the numerical oracle",
     &Always, &CreateReference},
    {"cuda", "CUDA backend (plugin): bf16/fp16, cuBLASLt, paged attention",
     &CudaPluginUnavailableReason, &CreateCudaFromPlugin},
};

}  // namespace

std::vector<BackendInfo> ListBackends() {
  std::vector<BackendInfo> out;
  for (const BackendEntry& entry : kBackends) {
    const std::string reason = entry.unavailable();
    out.push_back({entry.name, entry.description, reason.empty(), reason});
  }
  return out;
}

std::string ResolveDevice(absl::string_view device) {
  std::string name = absl::AsciiStrToLower(device);
  if (name == "auto") name = CudaAvailable() ? "cuda" : "cpu";
  return name;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(
    const BackendOptions& options) {
  const std::string device = ResolveDevice(options.device);
  std::vector<std::string> names;
  for (const BackendEntry& entry : kBackends) {
    if (device == entry.name) return entry.create(options);
    names.push_back(entry.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--device: unknown device \"", options.device, "\" (auto, ",
                   absl::StrJoin(names, ", "), ")"));
}

}  // namespace alibi::kernels
