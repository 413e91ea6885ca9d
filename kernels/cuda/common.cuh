// Types shared by the CUDA launchers (kernels/cuda/*.cuh) and the backend
// that calls them (cuda_backend.cc). Plain C++: no Abseil, no CUDA device
// headers, so both g++ and nvcc include it.
//
// Thread-safety: constants and enums only.
#ifndef ALIBI_KERNELS_CUDA_COMMON_CUH_
#define ALIBI_KERNELS_CUDA_COMMON_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace alibi::kernels::cuda {

// Element types the kernels read and write (a subset of kernels::DType;
// cuda_backend.cc maps between them).
enum class ElemType : int32_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

inline int ElemSize(ElemType type) { return type == ElemType::kF32 ? 4 : 2; }

// Bits a kernel ORs into the backend's device error word when its input is
// invalid (the host cannot check device-resident indices without a sync).
// The backend reads the word at its next synchronisation point
// (Synchronize, CopyToHost) and turns it into an InvalidArgument status.
enum ErrorBits : uint32_t {
  kErrTokenId = 1u << 0,        // Embedding: id outside the table
  kErrGatherRow = 1u << 1,      // GatherRows: row outside the input
  kErrKvSlot = 1u << 2,         // WriteKv: slot past the pool
  kErrBlockTable = 1u << 3,     // attention: block id outside the pool
  kErrAttentionMeta = 1u << 4,  // attention: query_start / context_lens
};

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_COMMON_CUH_
