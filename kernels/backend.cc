#include "kernels/backend.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

#if ALIBI_HAVE_CPU_BACKEND
#include "kernels/cpu/cpu_backend.h"
#endif

namespace alibi::kernels {

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

namespace {

constexpr char kCudaPluginName[] = "libalibi_cuda.so";

// The CUDA backend plugin (kernels/cuda/plugin.cc), loaded once and never
// unloaded.
struct CudaPlugin {
  int (*device_count)() = nullptr;
  Backend* (*create)(int dtype, char* error, size_t error_size) = nullptr;
  std::string load_error;  // why it is not available
};

std::string ExecutableDir() {
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) return ".";
  std::string exe(path, static_cast<size_t>(n));
  return exe.substr(0, exe.find_last_of('/'));
}

// Looks in $ALIBI_CUDA_PLUGIN, next to the executable, in ../lib (the
// installed layout), in the build tree, then on the loader's search path.
const CudaPlugin& GetCudaPlugin() {
  static const CudaPlugin* plugin = [] {
    auto* p = new CudaPlugin;
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("ALIBI_CUDA_PLUGIN"); env != nullptr) {
      candidates.push_back(env);
    }
    const std::string dir = ExecutableDir();
    candidates.push_back(dir + "/" + kCudaPluginName);
    candidates.push_back(dir + "/../lib/" + kCudaPluginName);
#ifdef ALIBI_CUDA_PLUGIN_BUILD_PATH
    candidates.push_back(ALIBI_CUDA_PLUGIN_BUILD_PATH);
#endif
    candidates.push_back(kCudaPluginName);
    for (const std::string& candidate : candidates) {
      const bool bare = candidate.find('/') == std::string::npos;
      if (!bare && access(candidate.c_str(), F_OK) != 0) continue;
      void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle == nullptr) {
        // A plugin that exists but cannot load (missing CUDA libraries) is
        // worth reporting; a bare name not on the search path is not.
        if (!bare || p->load_error.empty()) {
          p->load_error = absl::StrCat(candidate, ": ", dlerror());
        }
        continue;
      }
      p->device_count =
          reinterpret_cast<int (*)()>(dlsym(handle, "alibi_cuda_device_count"));
      p->create = reinterpret_cast<Backend* (*)(int, char*, size_t)>(
          dlsym(handle, "alibi_cuda_create_backend"));
      if (p->device_count != nullptr && p->create != nullptr) return p;
      p->load_error =
          absl::StrCat(candidate, ": not an alibi-serve CUDA plugin");
    }
    if (p->load_error.empty()) {
      p->load_error = absl::StrCat(
          kCudaPluginName,
          " not found (build with -DALIBI_CUDA=ON, or set ALIBI_CUDA_PLUGIN)");
    }
    return p;
  }();
  return *plugin;
}

}  // namespace

bool CudaAvailable() {
  const CudaPlugin& plugin = GetCudaPlugin();
  return plugin.device_count != nullptr && plugin.device_count() > 0;
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
    const CudaPlugin& plugin = GetCudaPlugin();
    if (plugin.create == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("--device=cuda: the CUDA backend is not available: ",
                       plugin.load_error));
    }
    if (plugin.device_count() <= 0) {
      return absl::FailedPreconditionError(
          "--device=cuda: no CUDA device is visible");
    }
    char error[512] = {0};
    Backend* backend = plugin.create(static_cast<int>(options.cuda_dtype),
                                     error, sizeof(error));
    if (backend == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("--device=cuda: ", error));
    }
    return std::unique_ptr<Backend>(backend);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--device: unknown device \"", options.device, "\" (auto, cpu, cuda)"));
}

}  // namespace alibi::kernels
