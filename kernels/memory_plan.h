// Device memory planning: how many KV blocks a server can preallocate once
// its weights and workspace are resident, given the device's capacity and
// free memory, the share of it the operator allows (--gpu_memory_fraction),
// the workspace and headroom it must keep. Pure host arithmetic (no device
// calls), so it is built and tested in every configuration.
//
// Thread-safety: pure functions.
#ifndef ALIBI_KERNELS_MEMORY_PLAN_H_
#define ALIBI_KERNELS_MEMORY_PLAN_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace alibi::kernels {

struct MemoryPlanInput {
  // Device capacity (cudaMemGetInfo's total).
  size_t total_bytes = 0;
  // Free memory now, measured AFTER the weights were uploaded (so it already
  // excludes them, the runtime's context and other processes' memory).
  size_t free_bytes = 0;
  // The uploaded weights (Model::weight_bytes()).
  size_t weight_bytes = 0;
  // Workspace allocated already, like the weights (the model's activation
  // buffers, the backend's scratch): counted against the fraction, and
  // already missing from free_bytes.
  size_t workspace_bytes = 0;
  // The share of total_bytes this process may occupy, in (0, 1].
  double memory_fraction = 0.9;
  // Activation workspace still to be allocated at its peak: the model's
  // buffers for the largest step, attention scratch, GEMM workspace, logits.
  size_t activation_bytes = 0;
  // Headroom left free (allocator granularity, library workspaces created
  // lazily, fragmentation).
  size_t reserve_bytes = 0;
  // Bytes of one KV block over all layers (Model::KvBytesPerBlock).
  size_t kv_bytes_per_block = 0;
  // Fewest blocks worth starting with (e.g. one --max_model_len sequence);
  // fewer is an error.
  int64_t min_blocks = 1;
  // At most this many blocks (0: no cap besides INT32_MAX).
  int64_t max_blocks = 0;
};

struct MemoryPlan {
  int32_t num_blocks = 0;
  size_t kv_bytes = 0;  // num_blocks * kv_bytes_per_block
  // The two limits whose minimum gives kv_bytes before rounding to blocks:
  // total * fraction - weights - workspace - activations - reserve, and
  // free - activations - reserve.
  size_t fraction_limit_bytes = 0;
  size_t free_limit_bytes = 0;
  // Which limit bound the plan: "memory fraction", "free memory" or
  // "max_blocks".
  std::string limited_by;

  // One line for the start-up log.
  std::string Summary() const;
};

// Errors: InvalidArgument for a fraction outside (0, 1], a zero block size,
// free > total or min_blocks < 1; ResourceExhausted when the weights,
// workspace, activations and reserve exceed the fraction or the free memory,
// or when fewer than min_blocks blocks fit (the message gives every figure).
absl::StatusOr<MemoryPlan> PlanKvMemory(const MemoryPlanInput& in);

}  // namespace alibi::kernels

#endif  // ALIBI_KERNELS_MEMORY_PLAN_H_
