// Every op of every backend against the reference oracle ("ref") on random
// inputs, one suite parameterised by backend configuration
// (tests/testing/backend_configs.h): the fast CPU backend at every weight
// width and kernel level, with 16-bit KV caches, and CUDA (skipped without a
// GPU).
//
// Inputs are drawn so that the backend under test stores them exactly
// (weights are read back with DownloadWeight and given to the oracle;
// activations and KV rounded to what the backend keeps), so what remains is
// the error of the arithmetic itself, held to tight bounds; the error that
// storing and rounding adds is bounded separately (ReducedWidthError).
// CPU backends must also be bitwise batch- and chunk-invariant, and every
// CPU kernel level must give the same bits as the best one.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/half.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/testing/backend_configs.h"

namespace alibi::kernels {
namespace {

using ::alibi::testing::BackendConfig;

float RoundTo(DType dtype, float x) {
  switch (dtype) {
    case DType::kBF16:
      return Bf16ToFloat(FloatToBf16(x));
    case DType::kF16:
      return Fp16ToFloat(FloatToFp16(x));
    default:
      return x;
  }
}

std::vector<float> Rounded(DType dtype, std::vector<float> v) {
  for (float& x : v) x = RoundTo(dtype, x);
  return v;
}

// ||got - want|| / ||want||; infinity if `got` has a non-finite value.
double RelErr(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = double{got[i]} - want[i];
    diff += d * d;
    norm += double{want[i]} * want[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

// A tensor in a backend's memory.
struct Tensor {
  Buffer buffer;
  TensorView view;
};

Tensor Upload(Backend& b, const std::vector<float>& host, int64_t rows,
              int64_t cols, DType dtype) {
  Tensor t;
  auto buffer = b.Allocate(std::max<size_t>(host.size(), 1) * DTypeSize(dtype));
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  if (!buffer.ok()) return t;
  t.buffer = std::move(*buffer);
  std::vector<char> bytes(host.size() * DTypeSize(dtype));
  for (size_t i = 0; i < host.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(bytes.data() + 4 * i, &host[i], 4);
    } else {
      const uint16_t h =
          dtype == DType::kBF16 ? FloatToBf16(host[i]) : FloatToFp16(host[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  if (!bytes.empty()) {
    EXPECT_TRUE(
        b.CopyToDevice(t.buffer.data(), bytes.data(), bytes.size()).ok());
  }
  t.view = TensorView::Of(t.buffer.data(), dtype, rows, cols);
  return t;
}

std::vector<float> Download(Backend& b, const TensorView& t) {
  const size_t size = DTypeSize(t.dtype);
  std::vector<char> bytes(t.rows * t.row_stride * size);
  EXPECT_TRUE(b.CopyToHost(bytes.data(), t.data, bytes.size()).ok());
  std::vector<float> out;
  out.reserve(t.rows * t.cols);
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      const char* p = bytes.data() + (r * t.row_stride + c) * size;
      float v;
      if (t.dtype == DType::kF32) {
        std::memcpy(&v, p, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, p, 2);
        v = t.dtype == DType::kBF16 ? Bf16ToFloat(h) : Fp16ToFloat(h);
      }
      out.push_back(v);
    }
  }
  return out;
}

Buffer UploadInts(Backend& b, const std::vector<int32_t>& v) {
  auto buffer = b.Allocate(std::max<size_t>(v.size(), 1) * 4);
  EXPECT_TRUE(buffer.ok());
  if (!buffer.ok()) return Buffer();
  if (!v.empty()) {
    EXPECT_TRUE(b.CopyToDevice(buffer->data(), v.data(), v.size() * 4).ok());
  }
  return std::move(*buffer);
}

// ---------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------

struct LinearShape {
  int64_t t, k, n;
};
// Odd shapes on purpose: K and N that are no multiple of 32, one row, 33.
const LinearShape kLinearShapes[] = {{1, 64, 96},    {3, 80, 300},
                                     {7, 96, 33},    {13, 128, 1000},
                                     {33, 257, 130}, {64, 200, 64}};

enum class Epi { kPlain, kEverything, kGeluErfBias };

// Linear on `b`: x [t, k] in its activation dtype; kEverything: alpha 0.5,
// bias, clamp 1.5, tanh GELU and an fp32 residual; returns the output.
std::vector<float> RunLinear(Backend& b, const std::vector<float>& x,
                             const Weight& w, const LinearShape& s, Epi epi,
                             const std::vector<float>& bias,
                             const std::vector<float>& residual) {
  const DType act = b.activation_dtype();
  Tensor in = Upload(b, x, s.t, s.k, act);
  Tensor bias_dev = Upload(b, bias, 1, s.n, DType::kF32);
  const bool fused = epi == Epi::kEverything;
  Tensor res = Upload(b, residual, s.t, s.n, DType::kF32);
  // A fused residual makes the output fp32 (backend.h).
  Tensor out = Upload(b, std::vector<float>(s.t * s.n, NAN), s.t, s.n,
                      fused ? DType::kF32 : act);
  LinearEpilogue e;
  if (epi != Epi::kPlain)
    e.bias = static_cast<const float*>(bias_dev.view.data);
  if (fused) {
    e.alpha = 0.5f;
    e.clamp = 1.5f;
    e.activation = Activation::kGeluTanh;
    e.residual = res.view;
  }
  if (epi == Epi::kGeluErfBias) e.activation = Activation::kGeluErf;
  absl::Status status = b.Linear(in.view, w.view, e, out.view);
  EXPECT_TRUE(status.ok()) << status;
  return Download(b, out.view);
}

// ---------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------

struct AttentionCase {
  std::string name;
  int head_dim = 64, num_heads = 6, num_kv_heads = 6, block_size = 16;
  std::vector<int> lengths;  // tokens per sequence
  int window = 0;            // sliding window (0: none)
  // Query rows of the final step per sequence (the rest is prefilled with
  // WriteKv only, no attention): 0 for an ordinary chunked run.
  int tail_queries = 0;
};

struct AttentionInputs {
  std::vector<std::vector<float>> q, k, v;  // per sequence [len, width]
  std::vector<float> slopes;
  float scale = 0;
};

// Runs every sequence of `c` through WriteKv + PagedAttention on `b`, in
// steps of `chunk` tokens per sequence (several sequences per step); with
// c.tail_queries, all but the last tail_queries tokens of every sequence are
// only written, in one step before the first that attends.
// With a window, each step's block tables start at the first block the
// window still reaches (first_blocks), and blocks that left every window
// are overwritten with NaN, as released blocks may be reused. Returns the
// attention output rows per sequence (NaN where none was computed).
std::vector<std::vector<float>> RunAttention(Backend& b, const AttentionCase& c,
                                             const AttentionInputs& in,
                                             int chunk) {
  const DType act = b.activation_dtype(), kv_dtype = b.kv_dtype();
  const int d = c.head_dim;
  const int qw = c.num_heads * d, kw = c.num_kv_heads * d;
  const int num_seqs = static_cast<int>(c.lengths.size());
  int max_blocks = 0;
  for (int len : c.lengths) {
    max_blocks = std::max(max_blocks, (len + c.block_size - 1) / c.block_size);
  }
  const int num_blocks = max_blocks * num_seqs + 3;
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(7);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> tables(ids.begin(), ids.begin() + num_seqs * max_blocks);

  const int64_t block_elems = int64_t{c.num_kv_heads} * c.block_size * d;
  const int64_t pool_elems = block_elems * num_blocks;
  Tensor kpool =
      Upload(b, std::vector<float>(pool_elems, NAN), 1, pool_elems, kv_dtype);
  Tensor vpool =
      Upload(b, std::vector<float>(pool_elems, NAN), 1, pool_elems, kv_dtype);
  PagedKvView kv{kpool.buffer.data(), vpool.buffer.data(), kv_dtype, num_blocks,
                 c.block_size,        c.num_kv_heads,      d};
  // A released block's bytes: NaN in the pool's dtype.
  const size_t block_bytes = block_elems * DTypeSize(kv_dtype);
  std::vector<char> nan_block(block_bytes);
  for (size_t i = 0; i < nan_block.size(); i += DTypeSize(kv_dtype)) {
    const uint32_t f32_nan = 0x7FC00000u;
    const uint16_t half_nan = kv_dtype == DType::kBF16 ? 0x7FC0 : 0x7E00;
    if (kv_dtype == DType::kF32) {
      std::memcpy(&nan_block[i], &f32_nan, 4);
    } else {
      std::memcpy(&nan_block[i], &half_nan, 2);
    }
  }
  Tensor slopes = Upload(b, in.slopes, 1, c.num_heads, DType::kF32);

  std::vector<std::vector<float>> out(num_seqs);
  for (int s = 0; s < num_seqs; ++s) {
    out[s].assign(static_cast<size_t>(c.lengths[s]) * qw, NAN);
  }
  std::vector<int> done(num_seqs, 0);
  while (true) {
    std::vector<int32_t> starts = {0}, ctx, slots, step_tables, windows,
                         first_blocks;
    std::vector<float> q, k, v;
    std::vector<int> seqs;
    // Tail-query cases write every sequence's prefix first, then attend.
    bool writing = false;
    for (int s = 0; s < num_seqs; ++s) {
      writing |= c.tail_queries > 0 && c.lengths[s] - done[s] > c.tail_queries;
    }
    for (int s = 0; s < num_seqs; ++s) {
      const int left = c.lengths[s] - done[s];
      // (The written prefix in one step: chunking concerns the queries.)
      const int n =
          writing ? std::max(0, left - c.tail_queries) : std::min(chunk, left);
      if (n == 0) continue;
      seqs.push_back(s);
      for (int p = done[s]; p < done[s] + n; ++p) {
        q.insert(q.end(), in.q[s].begin() + p * qw,
                 in.q[s].begin() + (p + 1) * qw);
        k.insert(k.end(), in.k[s].begin() + p * kw,
                 in.k[s].begin() + (p + 1) * kw);
        v.insert(v.end(), in.v[s].begin() + p * kw,
                 in.v[s].begin() + (p + 1) * kw);
        slots.push_back(tables[s * max_blocks + p / c.block_size] *
                            c.block_size +
                        p % c.block_size);
      }
      starts.push_back(starts.back() + n);
      ctx.push_back(done[s] + n);
      const int lo = c.window > 0 ? std::max(0, done[s] - c.window + 1) : 0;
      const int first = lo / c.block_size;
      windows.push_back(c.window);
      first_blocks.push_back(first);
      step_tables.insert(step_tables.end(),
                         tables.begin() + s * max_blocks + first,
                         tables.begin() + (s + 1) * max_blocks);
      step_tables.insert(step_tables.end(), first, -1);
    }
    if (seqs.empty()) break;
    const int t = starts.back();
    Tensor q_dev = Upload(b, q, t, qw, act);
    Tensor k_dev = Upload(b, k, t, kw, act);
    Tensor v_dev = Upload(b, v, t, kw, act);
    Buffer slots_dev = UploadInts(b, slots);
    absl::Status status =
        b.WriteKv(k_dev.view, v_dev.view, slots_dev.as<const int32_t>(), t, kv);
    EXPECT_TRUE(status.ok()) << status;
    if (!writing) {  // the writing steps compute no attention
      Buffer starts_dev = UploadInts(b, starts), ctx_dev = UploadInts(b, ctx),
             tables_dev = UploadInts(b, step_tables),
             windows_dev = UploadInts(b, windows),
             first_dev = UploadInts(b, first_blocks);
      AttentionMeta meta;
      meta.num_seqs = static_cast<int>(seqs.size());
      meta.num_tokens = t;
      meta.query_start = starts_dev.as<const int32_t>();
      meta.context_lens = ctx_dev.as<const int32_t>();
      meta.block_tables = tables_dev.as<const int32_t>();
      meta.max_blocks_per_seq = max_blocks;
      if (c.window > 0) {
        meta.windows = windows_dev.as<const int32_t>();
        meta.first_blocks = first_dev.as<const int32_t>();
      }
      for (size_t i = 0; i < seqs.size(); ++i) {
        meta.max_query_len =
            std::max(meta.max_query_len, starts[i + 1] - starts[i]);
        meta.max_context_len = std::max(meta.max_context_len, ctx[i]);
      }
      Tensor o = Upload(b, std::vector<float>(t * qw, NAN), t, qw, act);
      status = b.PagedAttention(q_dev.view, kv, meta,
                                static_cast<const float*>(slopes.view.data),
                                c.num_heads, in.scale, o.view);
      if (status.code() == absl::StatusCode::kUnimplemented) return {};
      EXPECT_TRUE(status.ok()) << status;
      const std::vector<float> host = Download(b, o.view);
      for (size_t i = 0; i < seqs.size(); ++i) {
        const int s = seqs[i];
        std::copy(host.begin() + starts[i] * qw,
                  host.begin() + starts[i + 1] * qw,
                  out[s].begin() + done[s] * qw);
      }
    }
    EXPECT_TRUE(b.Synchronize().ok());
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i];
      done[s] += starts[i + 1] - starts[i];
      if (c.window > 0) {
        // Blocks no later query of s can see are released.
        const int released = std::max(0, done[s] - c.window + 1) / c.block_size;
        for (int blk = 0; blk < released; ++blk) {
          const int64_t at = tables[s * max_blocks + blk] * block_bytes;
          EXPECT_TRUE(b.CopyToDevice(static_cast<char*>(kv.k) + at,
                                     nan_block.data(), block_bytes)
                          .ok());
          EXPECT_TRUE(b.CopyToDevice(static_cast<char*>(kv.v) + at,
                                     nan_block.data(), block_bytes)
                          .ok());
        }
      }
    }
  }
  return out;
}

// ALiBi slopes of n heads (max_bias 8), as the model computes them.
std::vector<float> Slopes(int n) {
  int p = 1;
  while (p * 2 <= n) p *= 2;
  std::vector<float> out;
  for (int h = 0; h < p; ++h)
    out.push_back(std::pow(2.0f, -8.0f * (h + 1) / p));
  for (int k = 0; k < n - p; ++k) {
    out.push_back(std::pow(2.0f, -8.0f * (2 * k + 1) / (2 * p)));
  }
  return out;
}

std::vector<AttentionCase> AttentionCases() {
  std::vector<AttentionCase> cases;
  // Head dims 64, 80, 96, 128; head counts that are no power of two; MHA,
  // GQA and MQA; odd batches (1, 5, 23, 40 tokens); windows.
  const int dims[] = {64, 80, 96, 128};
  for (int d : dims) {
    AttentionCase mha{"mha_d" + std::to_string(d), d, 6, 6, 16, {1, 5, 23, 40}};
    cases.push_back(mha);
    AttentionCase gqa{
        "gqa_d" + std::to_string(d), d, 12, 4, 16, {3, 17, 40}, 13};
    cases.push_back(gqa);
    AttentionCase mqa{"mqa_d" + std::to_string(d), d, 12, 1, 16, {2, 33}};
    cases.push_back(mqa);
  }
  // The CPU backend walks one row's KV heads together, up to 32 query heads
  // a task: 40 heads take two tasks, 48 heads of one KV head none (one head
  // at a time); head dims past 128 go row by row.
  cases.push_back({"mha_40heads", 64, 40, 40, 16, {1, 6, 21}});
  cases.push_back({"mqa_48heads", 64, 48, 1, 16, {2, 19}});
  cases.push_back({"gqa_d160", 160, 6, 2, 16, {1, 7, 18}, 5});
  // Small blocks, a head dim that is no multiple of 16, a window of one.
  cases.push_back({"blocks4_d40_window1", 40, 6, 2, 4, {1, 9, 31}, 1});
  cases.push_back({"blocks4_d8_window6", 8, 6, 3, 4, {1, 9, 47}, 6});
  // Contexts past 8k: prefilled with WriteKv, the last queries attend (with
  // a short sequence in the same step), whole and through a window whose
  // block table starts past released blocks.
  cases.push_back({"long_8300", 64, 6, 2, 16, {8300, 7}, 0, 3});
  cases.push_back({"long_8300_window4000", 128, 6, 6, 16, {8300, 5}, 4000, 2});
  // Past 1,024 keys the CPU backend gives up to 16 consecutive rows of a
  // sequence one task (each key loaded once for all of them): many tail
  // rows, with and without a window (every row its own first key), blocks
  // of 8 (a key group spans two blocks).
  cases.push_back({"long_2100_tail40_d40", 40, 6, 6, 16, {2100, 50}, 0, 40});
  cases.push_back(
      {"long_2100_window1100_gqa", 64, 12, 4, 16, {2100, 45}, 1100, 37});
  cases.push_back({"long_1500_blocks8_d80", 80, 6, 3, 8, {1500, 30}, 0, 21});
  return cases;
}

// ---------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------

class BackendConformanceTest : public ::testing::TestWithParam<BackendConfig> {
 protected:
  void SetUp() override {
    auto dut = testing::CreateConfigured(GetParam());
    if (dut.status().code() == absl::StatusCode::kFailedPrecondition) {
      GTEST_SKIP() << "not available here: " << dut.status();
    }
    ASSERT_TRUE(dut.ok()) << dut.status();
    dut_ = std::move(*dut);
    BackendOptions ref;
    ref.device = "ref";
    ref.num_threads = 2;
    auto oracle = CreateBackend(ref);
    ASSERT_TRUE(oracle.ok()) << oracle.status();
    ref_ = std::move(*oracle);
  }

  bool IsCpu() const { return dut_->Kind() == "cpu"; }
  DType Act() const { return dut_->activation_dtype(); }
  DType Weights() const { return dut_->weight_dtype(); }

  // Relative error allowed against the oracle on inputs the backend stores
  // exactly: the order of float32 sums on the CPU, 16-bit outputs on CUDA.
  double Tolerance() const {
    if (Act() == DType::kBF16) return 1.5e-2;
    if (Act() == DType::kF16) return 3e-3;
    return 2e-6;
  }

  std::vector<float> Random(size_t n, float scale = 1.0f, float mean = 0.0f) {
    std::normal_distribution<float> normal(mean, scale);
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng_);
    return v;
  }

  // Activations [rows, k] the backend consumes without rounding: in its
  // activation dtype, bf16 values for bf16 weights, and for int8 weights
  // exactly quantizable per group of 32 (a power-of-two step, a +-127 step
  // in every group).
  std::vector<float> ExactActivations(int64_t rows, int64_t k) {
    std::vector<float> x = Random(rows * k);
    if (IsCpu() && Weights() == DType::kI8) {
      std::uniform_int_distribution<int> q(-127, 127), e(-9, -4);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < k; g += 32) {
          const float step = std::ldexp(1.0f, e(rng_));
          for (int64_t i = g; i < std::min(k, g + 32); ++i) {
            x[r * k + i] = step * static_cast<float>(q(rng_));
          }
          x[r * k + g] = step * (q(rng_) < 0 ? -127.0f : 127.0f);
        }
      }
      return x;
    }
    const bool bf16_dots = IsCpu() && Weights() == DType::kBF16;
    return Rounded(bf16_dots ? DType::kBF16 : Act(), std::move(x));
  }

  // Uploads `w` [n, k] to the backend under test and what it stores (read
  // back into `stored`) to the oracle.
  std::pair<Weight, Weight> UploadWeights(const std::vector<float>& w,
                                          int64_t n, int64_t k,
                                          std::vector<float>* stored) {
    auto mine = dut_->UploadWeight(w.data(), DType::kF32, n, k);
    EXPECT_TRUE(mine.ok()) << mine.status();
    stored->assign(n * k, 0.0f);
    if (!mine.ok()) return {};
    EXPECT_TRUE(dut_->DownloadWeight(mine->view, stored->data()).ok());
    auto theirs = ref_->UploadWeight(stored->data(), DType::kF32, n, k);
    EXPECT_TRUE(theirs.ok()) << theirs.status();
    return {std::move(*mine), std::move(*theirs)};
  }

  AttentionInputs MakeAttentionInputs(const AttentionCase& c) {
    AttentionInputs in;
    // K and V as the backend's KV cache stores them, q as its activations.
    for (int len : c.lengths) {
      in.q.push_back(Rounded(Act(), Random(len * c.num_heads * c.head_dim)));
      in.k.push_back(
          Rounded(dut_->kv_dtype(), Random(len * c.num_kv_heads * c.head_dim)));
      in.v.push_back(
          Rounded(dut_->kv_dtype(), Random(len * c.num_kv_heads * c.head_dim)));
    }
    in.slopes = Slopes(c.num_heads);
    in.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    return in;
  }

  std::unique_ptr<Backend> dut_;
  std::unique_ptr<Backend> ref_;
  std::mt19937 rng_{20250220};
};

TEST_P(BackendConformanceTest, UploadWeightKeepsValuesWithinItsWidth) {
  const int64_t n = 70, k = 100;
  const std::vector<float> w = Random(n * k, 0.05f);
  std::vector<float> stored;
  UploadWeights(w, n, k, &stored);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < k; g += 32) {
      float amax = 0;
      for (int64_t i = g; i < std::min(k, g + 32); ++i) {
        amax = std::max(amax, std::fabs(w[r * k + i]));
      }
      for (int64_t i = g; i < std::min(k, g + 32); ++i) {
        const float want = w[r * k + i], got = stored[r * k + i];
        switch (Weights()) {
          case DType::kF32:
            ASSERT_EQ(got, want);
            break;
          case DType::kBF16:
          case DType::kF16:
            ASSERT_EQ(got, RoundTo(Weights(), want));
            break;
          default:  // int8: half a step of the group's scale
            ASSERT_LE(std::fabs(got - want), amax / 127.0f * 0.5f * 1.01f)
                << r << "," << i;
        }
      }
    }
  }
}

TEST_P(BackendConformanceTest, LinearMatchesReference) {
  for (const LinearShape& s : kLinearShapes) {
    std::vector<float> stored;
    auto [mine, theirs] = UploadWeights(
        Random(s.n * s.k, 1.0f / std::sqrt(float(s.k))), s.n, s.k, &stored);
    const std::vector<float> x = ExactActivations(s.t, s.k);
    const std::vector<float> bias = Random(s.n, 0.5f);
    const std::vector<float> residual = Random(s.t * s.n);
    for (Epi epi : {Epi::kPlain, Epi::kEverything, Epi::kGeluErfBias}) {
      const auto got = RunLinear(*dut_, x, mine, s, epi, bias, residual);
      const auto want = RunLinear(*ref_, x, theirs, s, epi, bias, residual);
      EXPECT_LE(RelErr(got, want), Tolerance())
          << "[" << s.t << "," << s.k << "] x [" << s.n << "," << s.k
          << "]^T epilogue " << static_cast<int>(epi);
    }
  }
}

// The error storing weights and rounding activations adds, against fp32
// weights and activations (documented in the README).
TEST_P(BackendConformanceTest, ReducedWidthError) {
  const LinearShape s{16, 1024, 256};
  const std::vector<float> w = Random(s.n * s.k, 0.03f);
  const std::vector<float> x = Random(s.t * s.k);
  auto mine = dut_->UploadWeight(w.data(), DType::kF32, s.n, s.k);
  auto exact = ref_->UploadWeight(w.data(), DType::kF32, s.n, s.k);
  ASSERT_TRUE(mine.ok() && exact.ok());
  const std::vector<float> none;
  const std::vector<float> xr = Rounded(Act(), x);
  const auto got = RunLinear(*dut_, xr, *mine, s, Epi::kPlain, none, none);
  const auto want = RunLinear(*ref_, x, *exact, s, Epi::kPlain, none, none);
  double bound = 2e-6;  // f32
  if (Act() != DType::kF32) {
    bound = Tolerance() * 2;
  } else if (Weights() == DType::kBF16) {
    bound = 6e-3;  // bf16 weights and bf16-rounded activations
  } else if (Weights() == DType::kF16) {
    bound = 6e-4;
  } else if (Weights() == DType::kI8) {
    bound = 1.5e-2;  // weights and activations quantized per group of 32
  }
  const double err = RelErr(got, want);
  EXPECT_LE(err, bound);
  RecordProperty("linear_relative_error", std::to_string(err));
}

TEST_P(BackendConformanceTest, LinearRowsAreBatchInvariantBitwise) {
  if (!IsCpu()) GTEST_SKIP() << "bitwise batch invariance is a CPU promise";
  const LinearShape full{41, 96, 700};
  std::vector<float> stored;
  auto [w, unused] =
      UploadWeights(Random(full.n * full.k, 0.1f), full.n, full.k, &stored);
  const std::vector<float> x = ExactActivations(full.t, full.k);
  const std::vector<float> bias = Random(full.n), residual;
  auto row5 = [&](int64_t first, int64_t t) {
    const std::vector<float> xs(x.begin() + first * full.k,
                                x.begin() + (first + t) * full.k);
    const LinearShape s{t, full.k, full.n};
    std::vector<float> res = Random(t * full.n);
    const auto out = RunLinear(*dut_, xs, w, s, Epi::kGeluErfBias, bias, res);
    const int64_t at = 5 - first;
    return std::vector<float>(out.begin() + at * full.n,
                              out.begin() + (at + 1) * full.n);
  };
  const std::vector<float> alone = row5(5, 1);
  for (int64_t t = 6; t <= full.t; t += 5) {
    EXPECT_EQ(row5(0, t), alone) << "batch of " << t;
  }
  for (int64_t first = 0; first < 5; ++first) {
    EXPECT_EQ(row5(first, full.t - first), alone) << "position " << 5 - first;
  }
}

TEST_P(BackendConformanceTest, LayerNormMatchesReference) {
  for (auto [t, h] : {std::pair<int, int>{5, 77}, {3, 1024}, {1, 240}}) {
    const std::vector<float> x = Random(t * h, 3.0f, 1.0f);
    const std::vector<float> gamma = Random(h), beta = Random(h);
    for (bool with_beta : {true, false}) {
      std::vector<float> results[2];
      Backend* backends[2] = {dut_.get(), ref_.get()};
      for (int i = 0; i < 2; ++i) {
        Backend& b = *backends[i];
        Tensor in = Upload(b, x, t, h, DType::kF32);
        Tensor g = Upload(b, gamma, 1, h, DType::kF32);
        Tensor bt = Upload(b, beta, 1, h, DType::kF32);
        // In place, fp32 (the residual stream's embedding layernorm).
        const float* beta_dev =
            with_beta ? static_cast<const float*>(bt.view.data) : nullptr;
        ASSERT_TRUE(b.LayerNorm(in.view, static_cast<const float*>(g.view.data),
                                beta_dev, 1e-5f, in.view)
                        .ok());
        results[i] = Download(b, in.view);
      }
      EXPECT_LE(RelErr(results[0], results[1]), 1e-6)
          << t << "x" << h << (with_beta ? " beta" : "");
    }
  }
}

TEST_P(BackendConformanceTest, EmbeddingReadsTheStoredRowsAndGatherCopies) {
  const int64_t vocab = 300, h = 96;
  std::vector<float> stored;
  auto [table, unused] =
      UploadWeights(Random(vocab * h, 0.1f), vocab, h, &stored);
  const std::vector<int32_t> ids = {299, 0, 17, 17, 150};
  Buffer ids_dev = UploadInts(*dut_, ids);
  Tensor out = Upload(*dut_, std::vector<float>(ids.size() * h, NAN),
                      ids.size(), h, DType::kF32);
  ASSERT_TRUE(dut_->Embedding(ids_dev.as<const int32_t>(),
                              static_cast<int>(ids.size()), table.view,
                              out.view)
                  .ok());
  const std::vector<float> got = Download(*dut_, out.view);
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int64_t c = 0; c < h; ++c) {
      ASSERT_EQ(got[t * h + c], stored[ids[t] * h + c]) << t << "," << c;
    }
  }
  const std::vector<int32_t> rows = {4, 0, 4};
  Buffer rows_dev = UploadInts(*dut_, rows);
  Tensor gathered = Upload(*dut_, std::vector<float>(rows.size() * h, NAN),
                           rows.size(), h, DType::kF32);
  ASSERT_TRUE(dut_->GatherRows(out.view, rows_dev.as<const int32_t>(),
                               static_cast<int>(rows.size()), gathered.view)
                  .ok());
  const std::vector<float> g = Download(*dut_, gathered.view);
  for (size_t r = 0; r < rows.size(); ++r) {
    EXPECT_TRUE(std::equal(g.begin() + r * h, g.begin() + (r + 1) * h,
                           got.begin() + rows[r] * h));
  }
}

TEST_P(BackendConformanceTest, PagedAttentionMatchesReference) {
  for (const AttentionCase& c : AttentionCases()) {
    SCOPED_TRACE(c.name);
    const AttentionInputs in = MakeAttentionInputs(c);
    const int whole = 1 << 20;
    const auto got = RunAttention(*dut_, c, in, whole);
    if (got.empty()) {  // the backend does not implement this case
      EXPECT_GT(c.window, 0) << "only sliding windows may be unimplemented";
      continue;
    }
    const auto want = RunAttention(*ref_, c, in, whole);
    // The rows that were computed (all of them, or the tail), per sequence.
    const int qw = c.num_heads * c.head_dim;
    auto computed = [&](const std::vector<std::vector<float>>& rows, size_t s) {
      const int from =
          c.tail_queries > 0 ? std::max(0, c.lengths[s] - c.tail_queries) : 0;
      return std::vector<float>(rows[s].begin() + from * qw, rows[s].end());
    };
    for (size_t s = 0; s < c.lengths.size(); ++s) {
      EXPECT_LE(RelErr(computed(got, s), computed(want, s)),
                IsCpu() ? 2e-6 : Tolerance())
          << "seq " << s;
    }
    if (!IsCpu()) continue;
    // Chunked prefill gives the same bits (chunks of 1: one row a task).
    for (int chunk : {1, 3, 7}) {
      const auto chunked = RunAttention(*dut_, c, in, chunk);
      for (size_t s = 0; s < c.lengths.size(); ++s) {
        EXPECT_EQ(computed(chunked, s), computed(got, s))
            << "chunk " << chunk << ", seq " << s;
      }
    }
  }
}

// Every kernel level of the CPU backend gives the bits of the best one.
TEST_P(BackendConformanceTest, KernelLevelsAgreeBitwise) {
  if (!IsCpu() || GetParam().options.cpu_kernels == "auto") {
    GTEST_SKIP() << "compares a lower CPU kernel level with the best one";
  }
  BackendConfig best = GetParam();
  best.options.cpu_kernels = "auto";
  auto twin = testing::CreateConfigured(best);
  ASSERT_TRUE(twin.ok());
  Backend& b = **twin;
  for (const LinearShape& s : kLinearShapes) {
    const std::vector<float> w = Random(s.n * s.k, 0.1f);
    auto mine = dut_->UploadWeight(w.data(), DType::kF32, s.n, s.k);
    auto theirs = b.UploadWeight(w.data(), DType::kF32, s.n, s.k);
    ASSERT_TRUE(mine.ok() && theirs.ok());
    // Random activations: rounding and quantization are part of the spec.
    const std::vector<float> x = Random(s.t * s.k);
    const std::vector<float> bias = Random(s.n), res = Random(s.t * s.n);
    for (Epi epi : {Epi::kPlain, Epi::kEverything, Epi::kGeluErfBias}) {
      EXPECT_EQ(RunLinear(*dut_, x, *mine, s, epi, bias, res),
                RunLinear(b, x, *theirs, s, epi, bias, res))
          << s.t << "x" << s.k << "x" << s.n;
    }
  }
  for (const AttentionCase& c : AttentionCases()) {
    if (c.tail_queries > 0) continue;
    const AttentionInputs in = MakeAttentionInputs(c);
    EXPECT_EQ(RunAttention(*dut_, c, in, 5), RunAttention(b, c, in, 5))
        << c.name;
  }
  const std::vector<float> x = Random(3 * 300, 2.0f, 0.5f), g = Random(300);
  std::vector<float> outs[2];
  Backend* backends[2] = {dut_.get(), &b};
  for (int i = 0; i < 2; ++i) {
    Tensor in = Upload(*backends[i], x, 3, 300, DType::kF32);
    ASSERT_TRUE(backends[i]
                    ->LayerNorm(in.view, g.data(), g.data(), 1e-5f, in.view)
                    .ok());
    outs[i] = Download(*backends[i], in.view);
  }
  EXPECT_EQ(outs[0], outs[1]);
}

TEST_P(BackendConformanceTest, BadInputIsAnError) {
  if (!IsCpu()) GTEST_SKIP() << "CUDA reports bad indices asynchronously";
  // A weight that UploadWeight did not make.
  std::vector<float> w(4 * 8), x(2 * 8), y(2 * 4);
  EXPECT_EQ(dut_->Linear(TensorView::Of(x.data(), DType::kF32, 2, 8),
                         TensorView::Of(w.data(), DType::kF32, 4, 8), {},
                         TensorView::Of(y.data(), DType::kF32, 2, 4))
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Token ids outside the table.
  auto table = dut_->UploadWeight(w.data(), DType::kF32, 4, 8);
  ASSERT_TRUE(table.ok());
  std::vector<int32_t> ids = {1, 4};
  std::vector<float> e(2 * 8);
  EXPECT_EQ(dut_->Embedding(ids.data(), 2, table->view,
                            TensorView::Of(e.data(), DType::kF32, 2, 8))
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Attention metadata: fewer keys than queries, a block outside the pool,
  // a KV pool of another dtype.
  std::vector<float> pool(4 * 2 * 4 * 8), q(2 * 16), out(2 * 16);
  PagedKvView kv{pool.data(), pool.data(), dut_->kv_dtype(), 4, 4, 2, 8};
  std::vector<int32_t> starts = {0, 2}, ctx = {1}, tables = {0, 1};
  AttentionMeta meta;
  meta.num_seqs = 1;
  meta.num_tokens = 2;
  meta.query_start = starts.data();
  meta.context_lens = ctx.data();
  meta.block_tables = tables.data();
  meta.max_blocks_per_seq = 2;
  std::vector<float> slopes = {0.5f, 0.25f};
  auto run = [&] {
    return dut_->PagedAttention(TensorView::Of(q.data(), DType::kF32, 2, 16),
                                kv, meta, slopes.data(), 2, 1.0f,
                                TensorView::Of(out.data(), DType::kF32, 2, 16));
  };
  EXPECT_EQ(run().code(), absl::StatusCode::kInvalidArgument);
  ctx[0] = 6;
  tables[1] = 9;
  EXPECT_EQ(run().code(), absl::StatusCode::kInvalidArgument);
  tables[1] = 1;
  EXPECT_TRUE(run().ok());
  kv.dtype = dut_->kv_dtype() == DType::kF32 ? DType::kF16 : DType::kF32;
  EXPECT_EQ(run().code(), absl::StatusCode::kInvalidArgument);
  // A KV slot outside the pool.
  kv.dtype = dut_->kv_dtype();
  std::vector<int32_t> slots = {0, 16};
  EXPECT_EQ(dut_->WriteKv(TensorView::Of(q.data(), DType::kF32, 2, 16),
                          TensorView::Of(q.data(), DType::kF32, 2, 16),
                          slots.data(), 2, kv)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendConformanceTest,
                         ::testing::ValuesIn(testing::ConformanceConfigs()),
                         testing::BackendConfigName());

TEST(BackendRegistryTest, ListsEveryBackendAndRejectsUnknownOnes) {
  std::vector<std::string> names;
  for (const BackendInfo& info : ListBackends()) {
    names.push_back(info.name);
    if (info.name != "cuda") {
      EXPECT_TRUE(info.available) << info.name;
    } else {
      EXPECT_EQ(info.available, CudaAvailable());
      if (!info.available) {
        EXPECT_FALSE(info.unavailable_reason.empty());
      }
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{"cpu", "ref", "cuda"}));
  BackendOptions options;
  options.device = "tpu";
  EXPECT_EQ(CreateBackend(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveDevice("AUTO"), CudaAvailable() ? "cuda" : "cpu");
  options.device = "ref";
  options.cpu_weight_dtype = DType::kI8;
  EXPECT_EQ(CreateBackend(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.device = "cpu";
  options.cpu_kernels = "sse9";
  EXPECT_EQ(CreateBackend(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.cpu_kernels = "auto";
  options.kv_dtype = DType::kI8;
  EXPECT_EQ(CreateBackend(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.kv_dtype.reset();
  auto cpu = CreateBackend(options);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ((*cpu)->Kind(), "cpu");
  EXPECT_EQ((*cpu)->weight_dtype(), DType::kI8);
  EXPECT_NE((*cpu)->Name().find("int8 weights"), std::string::npos);
}

}  // namespace
}  // namespace alibi::kernels
