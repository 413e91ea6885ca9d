// The CUDA backend's plugin entry points. alibi-server and the tests load
// libalibi_cuda.so with dlopen (kernels/backend.cc) instead of linking it:
// cuBLASLt's ~94 KB of static TLS would otherwise be carved out of every
// thread's stack, and threads created with small stacks (civetweb's, behind
// the metrics endpoint) fail to start. A dlopen'ed library's TLS is
// allocated on demand instead. It also keeps the CUDA libraries out of the
// server's own dependencies.
//
// Thread-safety: as CudaDeviceCount / CreateCudaBackend.
#include <cstddef>
#include <cstdio>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"

extern "C" {

__attribute__((visibility("default"))) int alibi_cuda_device_count() {
  return alibi::kernels::cuda::CudaDeviceCount();
}

// Returns a new backend (owned by the caller), or null with a message in
// `error`.
__attribute__((visibility("default"))) alibi::kernels::Backend*
alibi_cuda_create_backend(int dtype, char* error, size_t error_size) {
  auto backend = alibi::kernels::cuda::CreateCudaBackend(
      static_cast<alibi::kernels::DType>(dtype));
  if (!backend.ok()) {
    std::snprintf(error, error_size, "%s",
                  std::string(backend.status().message()).c_str());
    return nullptr;
  }
  return backend->release();
}

}  // extern "C"
