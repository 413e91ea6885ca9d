#include "kernels/cuda_plugin.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace alibi::kernels {
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
    // Empty when CUDA was not built.
    const std::string build_path = ALIBI_CUDA_PLUGIN_BUILD_PATH;
    if (!build_path.empty()) candidates.push_back(build_path);
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

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaFromPlugin(
    const BackendOptions& options) {
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
  if (options.kv_dtype.has_value() && *options.kv_dtype != options.cuda_dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv_cache_dtype: the CUDA backend keeps its KV cache in its dtype (",
        DTypeName(options.cuda_dtype), ")"));
  }
  char error[512] = {0};
  Backend* backend =
      plugin.create(static_cast<int>(options.cuda_dtype), error, sizeof(error));
  if (backend == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("--device=cuda: ", error));
  }
  return std::unique_ptr<Backend>(backend);
}

std::string CudaPluginUnavailableReason() {
  const CudaPlugin& plugin = GetCudaPlugin();
  if (plugin.create == nullptr) return plugin.load_error;
  if (plugin.device_count() <= 0) return "no CUDA device is visible";
  return "";
}

bool CudaAvailable() {
  const CudaPlugin& plugin = GetCudaPlugin();
  return plugin.device_count != nullptr && plugin.device_count() > 0;
}

}  // namespace alibi::kernels
