// Host-only planning logic of the device backends, runnable without a GPU:
// KV memory planning (kernels/memory_plan.h) and the CUDA backend's dispatch
// decisions (kernels/cuda/dispatch.h: attention kernel choice, split-KV
// partitioning, workspace sizes, Linear epilogue fusion).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cuda/dispatch.h"
#include "kernels/memory_plan.h"

namespace alibi::kernels {
namespace {

constexpr size_t kGiB = size_t{1} << 30;
constexpr size_t kMiB = size_t{1} << 20;

// ---------------------------------------------------------------------------
// Memory planning
// ---------------------------------------------------------------------------

MemoryPlanInput H100Like() {
  MemoryPlanInput in;
  in.total_bytes = 80 * kGiB;
  in.free_bytes = 64 * kGiB;  // after 14 GiB of weights and a context
  in.weight_bytes = 14 * kGiB;
  in.memory_fraction = 0.9;
  in.activation_bytes = 2 * kGiB;
  in.reserve_bytes = 1 * kGiB;
  in.kv_bytes_per_block = 1 * kMiB;
  return in;
}

TEST(MemoryPlanTest, FractionLimitsTheKvPool) {
  auto plan = PlanKvMemory(H100Like());
  ASSERT_TRUE(plan.ok()) << plan.status();
  // 72 GiB budget - 14 weights - 2 activations - 1 reserve = 55 GiB.
  EXPECT_EQ(plan->fraction_limit_bytes, 55 * kGiB);
  EXPECT_EQ(plan->free_limit_bytes, 61 * kGiB);
  EXPECT_EQ(plan->num_blocks, 55 * 1024);
  EXPECT_EQ(plan->kv_bytes, 55 * kGiB);
  EXPECT_EQ(plan->limited_by, "memory fraction");
  EXPECT_NE(plan->Summary().find("55.00 GiB"), std::string::npos)
      << plan->Summary();
}

// Workspace the server allocated before planning (activation buffers, the
// attention workspace for its largest step) counts against the fraction
// like the weights; free memory already lacks it.
TEST(MemoryPlanTest, ResidentWorkspaceCountsAgainstTheFraction) {
  MemoryPlanInput in = H100Like();
  in.activation_bytes = 0;
  in.workspace_bytes = 5 * kGiB;
  in.free_bytes = 59 * kGiB;  // 64 - the 5 just allocated
  auto plan = PlanKvMemory(in);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // 72 - 14 weights - 5 workspace - 1 reserve = 52; 59 - 1 = 58 free.
  EXPECT_EQ(plan->fraction_limit_bytes, 52 * kGiB);
  EXPECT_EQ(plan->free_limit_bytes, 58 * kGiB);
  EXPECT_EQ(plan->num_blocks, 52 * 1024);
  // A step's worst-case attention workspace for a 7B-shaped model (32
  // heads of 128, 2048 tokens, 256 sequences) is part of it.
  const size_t attention =
      cuda::AttentionWorkspaceBound(2048, 256, 32, 128, /*max_keys=*/0);
  EXPECT_GT(attention, 512 * kMiB);
  EXPECT_LT(attention, 2 * kGiB);
  in.workspace_bytes = 70 * kGiB;
  const absl::Status s = PlanKvMemory(in).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("workspace (70.00 GiB)"), std::string::npos) << s;
}

TEST(MemoryPlanTest, FreeMemoryLimitsWhenAnotherProcessHoldsSome) {
  MemoryPlanInput in = H100Like();
  in.free_bytes = 20 * kGiB;
  auto plan = PlanKvMemory(in);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_blocks, 17 * 1024);
  EXPECT_EQ(plan->limited_by, "free memory");
}

TEST(MemoryPlanTest, RoundsDownToWholeBlocksAndCaps) {
  MemoryPlanInput in = H100Like();
  in.kv_bytes_per_block = 3 * kMiB;  // 55 GiB / 3 MiB = 18773.33
  auto plan = PlanKvMemory(in);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->num_blocks, 18773);
  EXPECT_EQ(plan->kv_bytes, size_t{18773} * 3 * kMiB);
  in.max_blocks = 1000;
  plan = PlanKvMemory(in);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->num_blocks, 1000);
  EXPECT_EQ(plan->limited_by, "max_blocks");
  // Tiny blocks: capped at INT32_MAX.
  in = H100Like();
  in.kv_bytes_per_block = 1;
  plan = PlanKvMemory(in);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->num_blocks, std::numeric_limits<int32_t>::max());
}

TEST(MemoryPlanTest, RejectsBadArguments) {
  for (double f : {0.0, -0.5, 1.01, std::nan("")}) {
    MemoryPlanInput in = H100Like();
    in.memory_fraction = f;
    EXPECT_EQ(PlanKvMemory(in).status().code(),
              absl::StatusCode::kInvalidArgument)
        << f;
  }
  MemoryPlanInput in = H100Like();
  in.kv_bytes_per_block = 0;
  EXPECT_EQ(PlanKvMemory(in).status().code(),
            absl::StatusCode::kInvalidArgument);
  in = H100Like();
  in.free_bytes = in.total_bytes + 1;
  EXPECT_EQ(PlanKvMemory(in).status().code(),
            absl::StatusCode::kInvalidArgument);
  in = H100Like();
  in.min_blocks = 0;
  EXPECT_EQ(PlanKvMemory(in).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MemoryPlanTest, SaysWhatDoesNotFit) {
  MemoryPlanInput in = H100Like();
  in.weight_bytes = 70 * kGiB;  // 70 + 3 > 72
  absl::Status s = PlanKvMemory(in).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("weights (70.00 GiB)"), std::string::npos) << s;
  EXPECT_NE(s.message().find("--gpu_memory_fraction"), std::string::npos) << s;

  in = H100Like();
  in.free_bytes = 2 * kGiB;  // workspace + reserve = 3 GiB
  s = PlanKvMemory(in).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("free"), std::string::npos) << s;

  in = H100Like();
  in.min_blocks = 100000;  // only 56320 fit
  s = PlanKvMemory(in).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("56320 blocks"), std::string::npos) << s;
  EXPECT_NE(s.message().find("100000"), std::string::npos) << s;
}

// ---------------------------------------------------------------------------
// Attention dispatch
// ---------------------------------------------------------------------------

namespace cu = ::alibi::kernels::cuda;

TEST(AttentionDispatchTest, PartitionsDependOnTheRowAlone) {
  EXPECT_EQ(cu::RowNumSplits(0), 1);
  EXPECT_EQ(cu::RowNumSplits(1), 1);
  EXPECT_EQ(cu::RowNumSplits(256), 1);
  EXPECT_EQ(cu::RowNumSplits(257), 2);
  EXPECT_EQ(cu::RowNumSplits(2048), 8);
  EXPECT_EQ(cu::RowNumSplits(8192), 32);
  EXPECT_EQ(cu::RowPartitionKeys(8193), 512);
  EXPECT_EQ(cu::RowNumSplits(8193), 17);
  EXPECT_EQ(cu::RowPartitionKeys(100000), 256 * 13);
  for (int keys :
       {1, 2, 255, 256, 257, 1000, 4096, 8191, 8192, 8193, 9999, 65536, 100000,
        1 << 20, 123456789, std::numeric_limits<int>::max()}) {
    const int part = cu::RowPartitionKeys(keys);
    const int splits = cu::RowNumSplits(keys);
    EXPECT_GE(splits, 1) << keys;
    EXPECT_LE(splits, cu::kMaxSplits) << keys;
    EXPECT_EQ(part % cu::kMinPartitionKeys, 0) << keys;
    // The partitions cover the keys, the last one non-empty.
    EXPECT_LT(static_cast<int64_t>(splits - 1) * part, keys) << keys;
    EXPECT_GE(static_cast<int64_t>(splits) * part, keys) << keys;
  }
}

cu::AttentionShape Shape(int heads, int kv_heads, int head_dim, int max_q,
                         int max_ctx) {
  cu::AttentionShape s;
  s.num_heads = heads;
  s.num_kv_heads = kv_heads;
  s.head_dim = head_dim;
  s.block_size = 16;
  s.num_tokens = 300;
  s.num_seqs = 40;
  s.max_query_len = max_q;
  s.max_context_len = max_ctx;
  return s;
}

TEST(AttentionDispatchTest, DispatchTable) {
  // Decode steps and short query runs: the row kernel, any supported dim.
  for (int d : {8, 16, 32, 64, 72, 80, 96, 112, 128, 256}) {
    for (int q : {1, 8}) {
      const cu::AttentionPlan p = cu::PlanAttention(Shape(12, 12, d, q, 4000));
      EXPECT_EQ(p.error, nullptr) << d;
      EXPECT_EQ(p.kernel, cu::AttentionKernel::kRowSplitKv) << d << " " << q;
    }
  }
  // Prefill: tensor cores for the compiled head dims.
  for (int d : {64, 80, 96, 128}) {
    const cu::AttentionPlan p = cu::PlanAttention(Shape(32, 32, d, 9, 2048));
    EXPECT_EQ(p.kernel, cu::AttentionKernel::kPrefillMma) << d;
    EXPECT_TRUE(cu::HasPrefillVariant(d));
  }
  // ... and the generic row kernel for the others (the fixtures' 16).
  for (int d : {8, 16, 32, 48, 112, 256}) {
    const cu::AttentionPlan p = cu::PlanAttention(Shape(6, 6, d, 2048, 2048));
    EXPECT_EQ(p.error, nullptr) << d;
    EXPECT_EQ(p.kernel, cu::AttentionKernel::kRowSplitKv) << d;
    EXPECT_FALSE(cu::HasPrefillVariant(d));
  }
  // Misaligned queries fall back to the row kernel.
  cu::AttentionShape misaligned = Shape(32, 32, 128, 512, 512);
  misaligned.q_out_aligned = false;
  EXPECT_EQ(cu::PlanAttention(misaligned).kernel,
            cu::AttentionKernel::kRowSplitKv);
  // GQA and MQA with head counts that are not powers of two.
  EXPECT_EQ(cu::PlanAttention(Shape(12, 4, 64, 100, 100)).error, nullptr);
  EXPECT_EQ(cu::PlanAttention(Shape(12, 1, 64, 100, 100)).error, nullptr);
  EXPECT_EQ(cu::PlanAttention(Shape(6, 6, 16, 1, 100)).error, nullptr);
  // Block sizes.
  for (int bs : {1, 8, 16, 32, 128}) {
    cu::AttentionShape s = Shape(8, 8, 128, 64, 300);
    s.block_size = bs;
    EXPECT_EQ(cu::PlanAttention(s).error, nullptr) << bs;
  }
}

TEST(AttentionDispatchTest, UnsupportedShapesSayWhy) {
  auto error = [](const cu::AttentionShape& s) {
    const char* e = cu::PlanAttention(s).error;
    return std::string(e == nullptr ? "" : e);
  };
  EXPECT_NE(error(Shape(12, 5, 64, 1, 10)).find("num_kv_heads"),
            std::string::npos);
  EXPECT_NE(error(Shape(0, 1, 64, 1, 10)).find("num_kv_heads"),
            std::string::npos);
  for (int d : {0, 4, 20, 100, 264}) {
    EXPECT_NE(error(Shape(8, 8, d, 1, 10)).find("head_dim"), std::string::npos)
        << d;
  }
  cu::AttentionShape s = Shape(8, 8, 64, 1, 10);
  s.block_size = 0;
  EXPECT_NE(error(s).find("block_size"), std::string::npos);
  s = Shape(8, 8, 64, 1, 10);
  s.kv_aligned = false;
  EXPECT_NE(error(s).find("aligned"), std::string::npos);
  EXPECT_NE(error(Shape(8, 8, 64, 20, 10)).find("inconsistent"),
            std::string::npos);
}

TEST(AttentionDispatchTest, WorkListsAndWorkspace) {
  // Row kernel, contexts up to 2048: 8 partitions per row at most; the work
  // lists (300 rows, 2400 items, counts), then partial results per item and
  // head; about 4096 blocks looping over the items.
  cu::AttentionPlan p = cu::PlanAttention(Shape(32, 32, 128, 1, 2048));
  EXPECT_EQ(p.kernel, cu::AttentionKernel::kRowSplitKv);
  EXPECT_EQ(p.max_splits, 8);
  EXPECT_EQ(p.max_rows, 300);
  EXPECT_EQ(p.max_items, 2400);
  EXPECT_EQ(p.rows_offset, 0u);
  EXPECT_EQ(p.items_offset, 300u * sizeof(cu::RowWork));
  EXPECT_EQ(p.counts_offset, p.items_offset + 2400 * sizeof(cu::RowItem));
  EXPECT_EQ(p.plan_bytes, p.counts_offset + 16);
  const size_t slots = size_t{2400} * 32;
  EXPECT_EQ(p.partial_o_offset, p.plan_bytes);
  EXPECT_EQ(p.partial_ml_offset, p.partial_o_offset + slots * 128 * 4);
  EXPECT_EQ(p.workspace_bytes, p.partial_ml_offset + slots * 2 * 4);
  EXPECT_EQ(p.row_grid_x, 4096 / 32);
  EXPECT_EQ(p.combine_grid_x, 4096 / 32);
  // Short contexts: one partition per row, no partial results.
  p = cu::PlanAttention(Shape(32, 32, 128, 1, 256));
  EXPECT_EQ(p.max_splits, 1);
  EXPECT_EQ(p.max_items, 300);
  EXPECT_EQ(p.workspace_bytes, p.plan_bytes);
  // Few items: no more block columns than items.
  cu::AttentionShape one = Shape(32, 32, 128, 1, 100);
  one.num_tokens = 1;
  one.num_seqs = 1;
  p = cu::PlanAttention(one);
  EXPECT_EQ(p.row_grid_x, 1);
  EXPECT_EQ(p.combine_grid_x, 1);
  // Mixed: ceil(300 / 64) + 40 tiles of two int32 first; rows are the short
  // runs' only: at most min(300, 8 * 40).
  p = cu::PlanAttention(Shape(32, 32, 128, 300, 2048));
  EXPECT_EQ(p.kernel, cu::AttentionKernel::kPrefillMma);
  EXPECT_EQ(p.max_tiles, 5 + 40);
  EXPECT_EQ(p.tiles_offset, 0u);
  EXPECT_EQ(p.rows_offset, cu::AlignUp16(45 * 8));
  EXPECT_EQ(p.max_rows, 300);
  EXPECT_EQ(p.max_items, 300 * 8);
  // Few sequences: the list is bounded by 8 rows per sequence.
  cu::AttentionShape few = Shape(8, 8, 64, 2048, 2048);
  few.num_tokens = 2049;
  few.num_seqs = 2;
  p = cu::PlanAttention(few);
  EXPECT_EQ(p.max_rows, 16);
  EXPECT_EQ(p.max_items, 16 * 8);
  EXPECT_EQ(p.row_grid_x, 16 * 8);
}

TEST(AttentionDispatchTest, WindowsBoundThePartitions) {
  // Rows that see at most 300 keys (sliding windows) need two partitions
  // however long their sequences are.
  cu::AttentionShape s = Shape(32, 32, 128, 1, 1 << 20);
  EXPECT_EQ(cu::PlanAttention(s).max_splits, cu::kMaxSplits);
  s.max_keys = 300;
  const cu::AttentionPlan p = cu::PlanAttention(s);
  EXPECT_EQ(p.max_splits, 2);
  EXPECT_EQ(p.max_items, 600);
  // A bound above the context changes nothing; a negative one is an error.
  s.max_context_len = 100;
  EXPECT_EQ(cu::PlanAttention(s).max_splits, 1);
  s.max_keys = -1;
  EXPECT_NE(cu::PlanAttention(s).error, nullptr);
  EXPECT_EQ(cu::FirstVisibleKey(10, 0), 0);
  EXPECT_EQ(cu::FirstVisibleKey(10, 4), 7);
  EXPECT_EQ(cu::FirstVisibleKey(10, 11), 0);
  EXPECT_EQ(cu::FirstVisibleKey(10, 1), 10);
}

TEST(AttentionDispatchTest, RowLayoutsCoverTheHeadDim) {
  for (int d = 8; d <= cu::kMaxHeadDim; d += 8) {
    const cu::RowLayout l = cu::RowLayoutFor(d);
    EXPECT_GE(l.lanes * l.chunks * 8, d) << d;
    EXPECT_EQ(32 % l.lanes, 0) << d;
    // 16-byte loads of K and V in flight per lane and iteration.
    EXPECT_EQ(l.keys * l.chunks, 4) << d;
  }
}

// The workspace reserved at start (AttentionWorkspaceBound) covers every
// batch within its limits (16-byte aligned queries, as the model's are): no
// step ever grows it.
TEST(AttentionDispatchTest, WorkspaceBoundCoversEveryBatchWithinItsLimits) {
  std::mt19937 rng(17);
  for (int trial = 0; trial < 20000; ++trial) {
    const int max_tokens = 1 + static_cast<int>(rng() % 4096);
    const int max_seqs = 1 + static_cast<int>(rng() % 512);
    const int heads = 1 + static_cast<int>(rng() % 64);
    const int d = 8 * (1 + static_cast<int>(rng() % 32));
    const int max_keys = rng() % 2 ? 0 : 1 + static_cast<int>(rng() % 20000);
    cu::AttentionShape s;
    s.num_heads = heads;
    s.num_kv_heads = heads;
    s.head_dim = d;
    s.block_size = 1 + static_cast<int>(rng() % 32);
    s.num_seqs = 1 + static_cast<int>(rng() % max_seqs);
    // A batch that can exist: its query runs hold its tokens.
    const int64_t max_q = 1 + static_cast<int>(rng() % max_tokens);
    s.num_tokens =
        1 + static_cast<int>(rng() %
                             std::min<int64_t>(max_tokens, s.num_seqs * max_q));
    s.max_query_len = static_cast<int>(std::min<int64_t>(max_q, s.num_tokens));
    if (int64_t{s.max_query_len} * s.num_seqs < s.num_tokens) {
      s.max_query_len = (s.num_tokens + s.num_seqs - 1) / s.num_seqs;
    }
    s.max_context_len =
        s.max_query_len + static_cast<int>(rng() % (1 << (rng() % 21)));
    s.max_keys = max_keys > 0 ? std::min(max_keys, s.max_context_len)
                              : static_cast<int>(rng() % 2);
    const cu::AttentionPlan p = cu::PlanAttention(s);
    ASSERT_EQ(p.error, nullptr);
    ASSERT_LE(p.workspace_bytes, cu::AttentionWorkspaceBound(
                                     max_tokens, max_seqs, heads, d, max_keys))
        << "trial " << trial << ": " << s.num_tokens << " tokens, "
        << s.num_seqs << " seqs, max query " << s.max_query_len;
  }
}

// ---------------------------------------------------------------------------
// Linear epilogue fusion
// ---------------------------------------------------------------------------

TEST(LinearDispatchTest, BloomLayers) {
  cu::LinearShape qkv;  // bias (a bf16 copy for the bf16 output)
  qkv.has_bias = true;
  cu::LinearPlan p = cu::PlanLinear(qkv);
  EXPECT_EQ(p.gemm_epilogue, cu::GemmEpilogue::kBias);
  EXPECT_FALSE(p.run_kernel);
  qkv.bias_epilogue_ok = false;  // cuBLASLt had no algorithm with the bias
  p = cu::PlanLinear(qkv);
  EXPECT_EQ(p.gemm_epilogue, cu::GemmEpilogue::kDefault);
  EXPECT_TRUE(p.run_kernel && p.kernel_bias);

  cu::LinearShape up = qkv;  // bias + tanh GELU: both fused, one kernel
  up.bias_epilogue_ok = true;
  up.act = cu::EpilogueAct::kGeluTanh;
  p = cu::PlanLinear(up);
  EXPECT_EQ(p.gemm_epilogue, cu::GemmEpilogue::kGeluBias);
  EXPECT_FALSE(p.run_kernel);
  up.bias_epilogue_ok = false;  // GELU must follow the bias
  p = cu::PlanLinear(up);
  EXPECT_EQ(p.gemm_epilogue, cu::GemmEpilogue::kDefault);
  EXPECT_TRUE(p.kernel_bias);
  EXPECT_EQ(p.kernel_act, cu::EpilogueAct::kGeluTanh);

  cu::LinearShape dense;  // bias + fp32 residual in place
  dense.has_bias = true;
  dense.has_residual = true;
  dense.residual_same_dtype = true;
  dense.residual_aliases_out = true;
  dense.residual_same_layout = true;
  p = cu::PlanLinear(dense);
  EXPECT_EQ(p.gemm_epilogue, cu::GemmEpilogue::kBias);
  EXPECT_TRUE(p.gemm_beta_residual);
  EXPECT_FALSE(p.run_kernel);
  EXPECT_FALSE(p.gemm_to_scratch);

  // apply_residual_connection_post_layernorm: bf16 residual, fp32 output.
  dense.residual_same_dtype = false;
  dense.residual_aliases_out = false;
  p = cu::PlanLinear(dense);
  EXPECT_FALSE(p.gemm_beta_residual);
  EXPECT_TRUE(p.run_kernel && p.kernel_residual);
  EXPECT_FALSE(p.kernel_bias);  // fused (fp32 output)
  EXPECT_FALSE(p.gemm_to_scratch);
}

TEST(LinearDispatchTest, MptLayers) {
  cu::LinearShape up;  // exact GELU: never fused
  up.act = cu::EpilogueAct::kGeluErf;
  cu::LinearPlan p = cu::PlanLinear(up);
  EXPECT_EQ(p.gemm_epilogue, cu::GemmEpilogue::kDefault);
  EXPECT_EQ(p.kernel_act, cu::EpilogueAct::kGeluErf);
  EXPECT_TRUE(p.run_kernel);

  cu::LinearShape qkv;  // clip_qkv
  qkv.clamp = 6.0f;
  p = cu::PlanLinear(qkv);
  EXPECT_TRUE(p.run_kernel && p.kernel_clamp);

  cu::LinearShape head;  // logits: fp32, logit_scale in alpha
  p = cu::PlanLinear(head);
  EXPECT_EQ(p.gemm_epilogue, cu::GemmEpilogue::kDefault);
  EXPECT_FALSE(p.run_kernel);
}

TEST(LinearDispatchTest, ResidualThatMustSurviveTheGemm) {
  cu::LinearShape s;  // act before an in-place residual: scratch output
  s.act = cu::EpilogueAct::kGeluErf;
  s.has_residual = true;
  s.residual_same_dtype = true;
  s.residual_aliases_out = true;
  s.residual_same_layout = true;
  cu::LinearPlan p = cu::PlanLinear(s);
  EXPECT_EQ(p.error, nullptr);
  EXPECT_TRUE(p.gemm_to_scratch);
  EXPECT_TRUE(p.kernel_residual);
  EXPECT_FALSE(p.gemm_beta_residual);

  s.residual_same_layout = false;
  EXPECT_NE(cu::PlanLinear(s).error, nullptr);
  s.residual_same_layout = true;
  s.residual_same_dtype = false;
  EXPECT_NE(cu::PlanLinear(s).error, nullptr);
}

}  // namespace
}  // namespace alibi::kernels
