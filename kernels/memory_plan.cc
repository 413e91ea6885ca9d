#include "kernels/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace alibi::kernels {
namespace {

std::string GiB(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f GiB",
                static_cast<double>(bytes) / (1 << 30));
  return text;
}

}  // namespace

std::string MemoryPlan::Summary() const {
  return absl::StrCat("KV cache: ", num_blocks, " blocks, ", GiB(kv_bytes),
                      " (limited by ", limited_by, "; fraction limit ",
                      GiB(fraction_limit_bytes), ", free-memory limit ",
                      GiB(free_limit_bytes), ")");
}

absl::StatusOr<MemoryPlan> PlanKvMemory(const MemoryPlanInput& in) {
  if (!(in.memory_fraction > 0.0 && in.memory_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--gpu_memory_fraction must be in (0, 1], got ", in.memory_fraction));
  }
  if (in.kv_bytes_per_block == 0) {
    return absl::InvalidArgumentError("KV bytes per block must be > 0");
  }
  if (in.free_bytes > in.total_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("free device memory (", in.free_bytes,
                     " bytes) exceeds the total (", in.total_bytes, ")"));
  }
  if (in.min_blocks < 1 || in.max_blocks < 0) {
    return absl::InvalidArgumentError(
        "min_blocks must be >= 1 and max_blocks >= 0");
  }
  // Budgets in long double: byte counts up to 2^64 and a fraction.
  const long double budget =
      std::floor(static_cast<long double>(in.total_bytes) * in.memory_fraction);
  const long double fixed = static_cast<long double>(in.weight_bytes) +
                            in.workspace_bytes + in.activation_bytes +
                            in.reserve_bytes;
  if (fixed > budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "weights (", GiB(in.weight_bytes), ") + workspace (",
        GiB(in.workspace_bytes + in.activation_bytes), ") + reserve (",
        GiB(in.reserve_bytes),
        ") exceed --gpu_memory_fraction=", in.memory_fraction, " of ",
        GiB(in.total_bytes), " (", GiB(static_cast<size_t>(budget)),
        "): raise the fraction, or lower --max_num_batched_tokens / use a "
        "smaller model"));
  }
  const long double after_free = static_cast<long double>(in.free_bytes) -
                                 in.activation_bytes - in.reserve_bytes;
  if (after_free < 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "only ", GiB(in.free_bytes),
        " of device memory is free after loading the weights; the activation "
        "workspace (",
        GiB(in.activation_bytes), ") and reserve (", GiB(in.reserve_bytes),
        ") do not fit (is another process using the device?)"));
  }
  MemoryPlan plan;
  plan.fraction_limit_bytes = static_cast<size_t>(budget - fixed);
  plan.free_limit_bytes = static_cast<size_t>(after_free);
  size_t kv_limit = plan.fraction_limit_bytes;
  plan.limited_by = "memory fraction";
  if (plan.free_limit_bytes < kv_limit) {
    kv_limit = plan.free_limit_bytes;
    plan.limited_by = "free memory";
  }
  int64_t blocks = static_cast<int64_t>(std::min<size_t>(
      kv_limit / in.kv_bytes_per_block,
      static_cast<size_t>(std::numeric_limits<int32_t>::max())));
  if (in.max_blocks > 0 && blocks > in.max_blocks) {
    blocks = in.max_blocks;
    plan.limited_by = "max_blocks";
  }
  if (blocks < in.min_blocks) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache memory ", GiB(kv_limit), " (limited by ", plan.limited_by,
        ") holds ", blocks, " blocks of ", in.kv_bytes_per_block,
        " bytes; at least ", in.min_blocks,
        " are needed: raise --gpu_memory_fraction or lower --max_model_len"));
  }
  plan.num_blocks = static_cast<int32_t>(blocks);
  plan.kv_bytes = static_cast<size_t>(blocks) * in.kv_bytes_per_block;
  return plan;
}

}  // namespace alibi::kernels
