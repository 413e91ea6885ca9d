// The CUDA backend as a plugin: libalibi_cuda.so (kernels/cuda/plugin.cc),
// opened with dlopen on first use and never unloaded, so that neither the
// server nor the tests link CUDA. Looked for in $ALIBI_CUDA_PLUGIN, next to
// the executable, in ../lib (the installed layout), in the build tree, then
// on the loader's search path.
//
// Thread-safety: thread-safe (the plugin is loaded once).
#ifndef ALIBI_KERNELS_CUDA_PLUGIN_H_
#define ALIBI_KERNELS_CUDA_PLUGIN_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace alibi::kernels {

// Creates the CUDA backend (options.cuda_dtype; options.kv_dtype must be
// unset or equal to it). FailedPrecondition when the plugin or a GPU is
// missing.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaFromPlugin(
    const BackendOptions& options);

// Why CreateCudaFromPlugin would fail here; empty when it would not.
std::string CudaPluginUnavailableReason();

}  // namespace alibi::kernels

#endif  // ALIBI_KERNELS_CUDA_PLUGIN_H_
