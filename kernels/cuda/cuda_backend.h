// The CUDA backend: weights, activations and the KV pool in bf16 (or fp16),
// fp32 residual stream, layernorm parameters, slopes and logits; fp32
// accumulation everywhere, softmax in fp32.
//
// - GEMMs: cuBLASLt (bf16/fp16 in, fp32 compute), with bias, tanh-GELU and
//   same-dtype residual adds fused into its epilogue where it supports them
//   (the bias in the output's dtype, as CUDA 13 requires: a 16-bit copy of
//   each fp32 bias is made on first use and kept);
//   the rest (exact-erf GELU, clamp, mixed-dtype residual) in one
//   element-wise kernel (kernels/cuda/dispatch.h, PlanLinear). Algorithms
//   come from cuBLASLt's heuristic, cached per problem, preferring ones
//   without split-K so that a row's result depends on as little of the batch
//   as cuBLASLt allows. Bitwise batch invariance (backend.h) is NOT
//   guaranteed on CUDA: cuBLASLt may pick a different kernel for a different
//   number of rows, and a sequence's attention runs in the prefill kernel in
//   a mixed batch but in the row kernel in a decode-only one.
// - Attention: kernels/cuda/attention.cuh (ALiBi bias in-kernel, paged KV,
//   sliding windows, a planning kernel per batch (AttentionMeta::batch_id),
//   prefill kernel on tensor cores, split-KV row kernel for decode). Its
//   workspace grows on demand; ReserveWorkspace sizes it for the largest
//   step up front.
// - Memory: stream-ordered (cudaMallocAsync / cudaFreeAsync on the
//   backend's stream): freeing a Buffer never synchronises the device.
//   Buffers may outlive the backend.
// - Device-resident indices (token ids, gather rows, KV slots, block tables,
//   attention metadata) are checked by the kernels; a bad one sets a device
//   error word that the next Synchronize() or CopyToHost() reports as
//   InvalidArgument (the op itself returns OK, the work being asynchronous).
// - UploadConvert stages conversions through a device buffer of up to
//   64 MiB, released by the next Synchronize().
// - PagedAttention accepts slopes == nullptr here: plain causal attention
//   with no bias (the benchmark's ALiBi-off baseline).
// - GetMemoryInfo: used = total - free of the whole device (cudaMemGetInfo;
//   other processes' allocations included).
// - Graphs (BeginGraph / EndGraph): a key's second run is captured with
//   cudaStreamBeginCapture, later runs replay it; allocations, copies and
//   synchronisation are refused while capturing. Freeing any Buffer or
//   growing a scratch buffer drops the recorded graphs (they may use the
//   memory).
// - One device (0), one stream; device-side sampling is not implemented.
//
// Thread-safety: as every Backend, not thread-safe; CudaDeviceCount() is.
#ifndef ALIBI_KERNELS_CUDA_CUDA_BACKEND_H_
#define ALIBI_KERNELS_CUDA_CUDA_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace alibi::kernels::cuda {

// Number of visible CUDA devices; 0 (never a crash) when there is no driver,
// no device, or the runtime fails to initialise.
int CudaDeviceCount();

// A backend on device 0 keeping weights, activations and KV in `dtype`
// (kBF16 or kF16).
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(DType dtype);

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_CUDA_BACKEND_H_
