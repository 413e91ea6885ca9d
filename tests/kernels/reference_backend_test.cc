// The reference backend against naive double-precision references, and its
// batch / chunk invariance (bitwise). (Every other backend is compared with
// it in backend_conformance_test.cc.)
#include "kernels/reference/reference_backend.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"

namespace alibi::kernels {
namespace {

class ReferenceBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BackendOptions options;
    options.device = "ref";
    options.num_threads = 2;
    auto backend = CreateBackend(options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
  }

  std::vector<float> Random(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng_);
    return v;
  }

  std::unique_ptr<Backend> backend_;
  std::mt19937 rng_{1234};
};

TEST_F(ReferenceBackendTest, NameAndDtypes) {
  EXPECT_EQ(backend_->Kind(), "ref");
  EXPECT_EQ(backend_->weight_dtype(), DType::kF32);
  EXPECT_GE(reference::LinearRowTile(), 1);
  EXPECT_GT(backend_->GetMemoryInfo().total_bytes, 0u);
  EXPECT_GT(backend_->GetMemoryInfo().used_bytes, 0u);
}

TEST_F(ReferenceBackendTest, LinearMatchesNaiveWithEpilogue) {
  const int t = 7, k = 33, n = 1500;  // n spans two column blocks
  std::vector<float> x = Random(t * k), w = Random(n * k, 0.2f);
  std::vector<float> bias = Random(n), residual = Random(t * n);
  for (Activation act :
       {Activation::kNone, Activation::kGeluTanh, Activation::kGeluErf}) {
    std::vector<float> out(t * n);
    LinearEpilogue epi;
    epi.alpha = 0.5f;
    epi.bias = bias.data();
    epi.clamp = 1.5f;
    epi.activation = act;
    epi.residual = TensorView::Of(residual.data(), DType::kF32, t, n);
    ASSERT_TRUE(backend_
                    ->Linear(TensorView::Of(x.data(), DType::kF32, t, k),
                             TensorView::Of(w.data(), DType::kF32, n, k), epi,
                             TensorView::Of(out.data(), DType::kF32, t, n))
                    .ok());
    for (int r = 0; r < t; ++r) {
      for (int c = 0; c < n; ++c) {
        double y = 0;
        for (int i = 0; i < k; ++i) y += double{x[r * k + i]} * w[c * k + i];
        y = 0.5 * y + bias[c];
        y = std::clamp(y, -1.5, 1.5);
        if (act == Activation::kGeluTanh) {
          y = 0.5 * y *
              (1 + std::tanh(std::sqrt(2 / M_PI) * (y + 0.044715 * y * y * y)));
        } else if (act == Activation::kGeluErf) {
          y = 0.5 * y * (1 + std::erf(y / std::sqrt(2.0)));
        }
        y += residual[r * n + c];
        ASSERT_NEAR(out[r * n + c], y, 1e-4) << r << "," << c;
      }
    }
  }
}

TEST_F(ReferenceBackendTest, LinearRowsDoNotDependOnTheBatch) {
  const int k = 96, n = 2100, max_t = 41;
  std::vector<float> w = Random(n * k, 0.1f), x = Random(max_t * k);
  std::vector<float> alone(n);
  auto run = [&](const float* in, int t, float* out) {
    ASSERT_TRUE(
        backend_
            ->Linear(TensorView::Of(const_cast<float*>(in), DType::kF32, t, k),
                     TensorView::Of(w.data(), DType::kF32, n, k), {},
                     TensorView::Of(out, DType::kF32, t, n))
            .ok());
  };
  // Row 5 of x computed alone and at every batch size and position.
  run(x.data() + 5 * k, 1, alone.data());
  for (int t = 6; t <= max_t; t += 5) {
    std::vector<float> out(t * n);
    run(x.data(), t, out.data());
    EXPECT_EQ(std::memcmp(out.data() + 5 * n, alone.data(), n * 4), 0)
        << "batch of " << t;
  }
  for (int shift = 0; shift < 5; ++shift) {  // row 5 at position 5 - shift
    std::vector<float> out((max_t - shift) * n);
    run(x.data() + shift * k, max_t - shift, out.data());
    EXPECT_EQ(std::memcmp(out.data() + (5 - shift) * n, alone.data(), n * 4), 0)
        << "position " << 5 - shift;
  }
}

TEST_F(ReferenceBackendTest, LayerNormMatchesNaive) {
  const int t = 5, h = 77;
  std::vector<float> x = Random(t * h, 3.0f), g = Random(h), b = Random(h);
  std::vector<float> out(t * h);
  for (const float* beta : {b.data(), static_cast<float*>(nullptr)}) {
    ASSERT_TRUE(backend_
                    ->LayerNorm(TensorView::Of(x.data(), DType::kF32, t, h),
                                g.data(), beta, 1e-5f,
                                TensorView::Of(out.data(), DType::kF32, t, h))
                    .ok());
    for (int r = 0; r < t; ++r) {
      double mean = 0, var = 0;
      for (int i = 0; i < h; ++i) mean += x[r * h + i];
      mean /= h;
      for (int i = 0; i < h; ++i) var += std::pow(x[r * h + i] - mean, 2);
      var /= h;
      for (int i = 0; i < h; ++i) {
        double y = (x[r * h + i] - mean) / std::sqrt(var + 1e-5) * g[i] +
                   (beta ? beta[i] : 0.0);
        ASSERT_NEAR(out[r * h + i], y, 1e-5);
      }
    }
  }
}

TEST_F(ReferenceBackendTest, EmbeddingAndGatherCheckIndices) {
  std::vector<float> table = Random(10 * 4), out(3 * 4);
  std::vector<int32_t> ids = {3, 0, 9};
  auto table_view = TensorView::Of(table.data(), DType::kF32, 10, 4);
  auto out_view = TensorView::Of(out.data(), DType::kF32, 3, 4);
  ASSERT_TRUE(backend_->Embedding(ids.data(), 3, table_view, out_view).ok());
  EXPECT_EQ(out[4], table[0]);
  EXPECT_EQ(out[8 + 3], table[9 * 4 + 3]);
  std::vector<int32_t> bad = {3, 10, 0};
  EXPECT_EQ(backend_->Embedding(bad.data(), 3, table_view, out_view).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<int32_t> rows = {2, 2};
  std::vector<float> gathered(2 * 4);
  ASSERT_TRUE(
      backend_
          ->GatherRows(out_view, rows.data(), 2,
                       TensorView::Of(gathered.data(), DType::kF32, 2, 4))
          .ok());
  EXPECT_EQ(gathered[4], table[9 * 4]);
  std::vector<int32_t> bad_rows = {3};
  EXPECT_FALSE(
      backend_
          ->GatherRows(out_view, bad_rows.data(), 1,
                       TensorView::Of(gathered.data(), DType::kF32, 1, 4))
          .ok());
}

// A paged attention fixture: sequences of given lengths whose K/V live in a
// pool under shuffled block tables.
struct AttentionCase {
  int num_heads = 6, num_kv_heads = 6, head_dim = 8, block_size = 4;
  std::vector<int> lengths;                 // tokens per sequence
  std::vector<std::vector<float>> q, k, v;  // per sequence [len, heads*d]
  int window = 0;                           // sliding window (0: none)
};

// Dense double-precision ALiBi attention of query position i over keys 0..i
// (the last c.window of them with a window).
std::vector<double> NaiveAttention(const AttentionCase& c, int seq, int pos,
                                   const std::vector<float>& slopes,
                                   float scale) {
  const int d = c.head_dim, group = c.num_heads / c.num_kv_heads;
  const int lo = c.window > 0 ? std::max(0, pos - c.window + 1) : 0;
  std::vector<double> out(c.num_heads * d);
  for (int h = 0; h < c.num_heads; ++h) {
    const int kvh = h / group;
    std::vector<double> s(pos + 1, 0.0);
    double m = -INFINITY;
    for (int j = lo; j <= pos; ++j) {
      double dot = 0;
      for (int i = 0; i < d; ++i) {
        dot += double{c.q[seq][pos * c.num_heads * d + h * d + i]} *
               c.k[seq][j * c.num_kv_heads * d + kvh * d + i];
      }
      s[j] = scale * dot - double{slopes[h]} * (pos - j);
      m = std::max(m, s[j]);
    }
    double z = 0;
    for (int j = lo; j <= pos; ++j) z += (s[j] = std::exp(s[j] - m));
    for (int j = lo; j <= pos; ++j) {
      for (int i = 0; i < d; ++i) {
        out[h * d + i] +=
            s[j] / z * c.v[seq][j * c.num_kv_heads * d + kvh * d + i];
      }
    }
  }
  return out;
}

class PagedAttentionTest : public ReferenceBackendTest,
                           public ::testing::WithParamInterface<int> {};

// Runs every sequence of `c` through WriteKv + PagedAttention in chunks of
// `chunk` tokens (several sequences per step), returning each sequence's
// attention output rows. With a window, each step's block tables start at the
// first block the window still reaches (first_blocks), and blocks that left
// every window are overwritten with NaN, as a released block may be reused.
std::vector<std::vector<float>> RunChunked(Backend& backend,
                                           const AttentionCase& c, int chunk,
                                           const std::vector<float>& slopes,
                                           float scale) {
  const int qw = c.num_heads * c.head_dim, kw = c.num_kv_heads * c.head_dim;
  const int num_seqs = static_cast<int>(c.lengths.size());
  int max_blocks = 0;
  for (int len : c.lengths) {
    max_blocks = std::max(max_blocks, (len + c.block_size - 1) / c.block_size);
  }
  const int num_blocks = max_blocks * num_seqs + 3;
  // Shuffled block tables.
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(7);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> tables(num_seqs * max_blocks);
  for (int i = 0; i < num_seqs * max_blocks; ++i) tables[i] = ids[i];

  const size_t pool_floats =
      size_t{1} * num_blocks * c.num_kv_heads * c.block_size * c.head_dim;
  std::vector<float> kpool(pool_floats, NAN), vpool(pool_floats, NAN);
  PagedKvView kv{kpool.data(), vpool.data(),   DType::kF32, num_blocks,
                 c.block_size, c.num_kv_heads, c.head_dim};
  std::vector<std::vector<float>> out(num_seqs);
  for (int s = 0; s < num_seqs; ++s) out[s].resize(c.lengths[s] * qw);
  std::vector<int> done(num_seqs, 0);
  const int64_t block_floats =
      int64_t{c.num_kv_heads} * c.block_size * c.head_dim;
  while (true) {
    std::vector<int32_t> starts = {0}, ctx, slots, step_tables, windows,
                         first_blocks;
    std::vector<float> q, k, v;
    std::vector<int> seqs;
    for (int s = 0; s < num_seqs; ++s) {
      const int n = std::min(chunk, c.lengths[s] - done[s]);
      if (n == 0) continue;
      seqs.push_back(s);
      for (int p = done[s]; p < done[s] + n; ++p) {
        q.insert(q.end(), c.q[s].begin() + p * qw,
                 c.q[s].begin() + (p + 1) * qw);
        k.insert(k.end(), c.k[s].begin() + p * kw,
                 c.k[s].begin() + (p + 1) * kw);
        v.insert(v.end(), c.v[s].begin() + p * kw,
                 c.v[s].begin() + (p + 1) * kw);
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
    EXPECT_TRUE(backend
                    .WriteKv(TensorView::Of(k.data(), DType::kF32, t, kw),
                             TensorView::Of(v.data(), DType::kF32, t, kw),
                             slots.data(), t, kv)
                    .ok());
    AttentionMeta meta;
    meta.num_seqs = static_cast<int>(seqs.size());
    meta.num_tokens = t;
    meta.query_start = starts.data();
    meta.context_lens = ctx.data();
    meta.block_tables = step_tables.data();
    meta.max_blocks_per_seq = max_blocks;
    if (c.window > 0) {
      meta.windows = windows.data();
      meta.first_blocks = first_blocks.data();
    }
    std::vector<float> o(t * qw);
    EXPECT_TRUE(
        backend
            .PagedAttention(TensorView::Of(q.data(), DType::kF32, t, qw), kv,
                            meta, slopes.data(), c.num_heads, scale,
                            TensorView::Of(o.data(), DType::kF32, t, qw))
            .ok());
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i], n = starts[i + 1] - starts[i];
      std::copy(o.begin() + starts[i] * qw, o.begin() + starts[i + 1] * qw,
                out[s].begin() + done[s] * qw);
      done[s] += n;
      if (c.window > 0) {
        // Blocks no later query of s can see are released.
        const int released = std::max(0, done[s] - c.window + 1) / c.block_size;
        for (int b = 0; b < released; ++b) {
          const int64_t block = tables[s * max_blocks + b];
          std::fill_n(kpool.begin() + block * block_floats, block_floats, NAN);
          std::fill_n(vpool.begin() + block * block_floats, block_floats, NAN);
        }
      }
    }
  }
  return out;
}

TEST_P(PagedAttentionTest, MatchesDenseReferenceAndIsChunkInvariant) {
  AttentionCase c;
  c.num_kv_heads = GetParam();  // 6: MHA, 3 / 2: GQA, 1: MQA
  c.lengths = {1, 5, 23, 40};
  std::normal_distribution<float> normal;
  for (int len : c.lengths) {
    c.q.push_back(Random(len * c.num_heads * c.head_dim));
    c.k.push_back(Random(len * c.num_kv_heads * c.head_dim));
    c.v.push_back(Random(len * c.num_kv_heads * c.head_dim));
  }
  // Slopes for 6 heads (not a power of two), max_bias 8.
  const std::vector<float> slopes = {0.25f,       0.0625f, 0.015625f,
                                     0.00390625f, 0.5f,    0.125f};
  const float scale = 1.0f / std::sqrt(8.0f);
  const auto whole = RunChunked(*backend_, c, 1000, slopes, scale);
  for (size_t s = 0; s < c.lengths.size(); ++s) {
    for (int p = 0; p < c.lengths[s]; ++p) {
      const auto ref = NaiveAttention(c, s, p, slopes, scale);
      for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_NEAR(whole[s][p * ref.size() + i], ref[i], 1e-5)
            << "seq " << s << " pos " << p;
      }
    }
  }
  for (int chunk : {1, 3, 7}) {
    const auto chunked = RunChunked(*backend_, c, chunk, slopes, scale);
    for (size_t s = 0; s < c.lengths.size(); ++s) {
      EXPECT_EQ(chunked[s], whole[s]) << "chunk " << chunk << " seq " << s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(KvHeads, PagedAttentionTest,
                         ::testing::Values(6, 3, 2, 1));

TEST_F(ReferenceBackendTest, SlidingWindowAttentionMatchesBandedReference) {
  const std::vector<float> slopes = {0.25f,       0.0625f, 0.015625f,
                                     0.00390625f, 0.5f,    0.125f};
  const float scale = 1.0f / std::sqrt(8.0f);
  for (int window : {1, 5, 6, 13, 100}) {
    AttentionCase c;
    c.num_kv_heads = 2;
    c.window = window;
    c.lengths = {1, 9, 31, 47};
    for (int len : c.lengths) {
      c.q.push_back(Random(len * c.num_heads * c.head_dim));
      c.k.push_back(Random(len * c.num_kv_heads * c.head_dim));
      c.v.push_back(Random(len * c.num_kv_heads * c.head_dim));
    }
    const auto whole = RunChunked(*backend_, c, 1000, slopes, scale);
    for (size_t s = 0; s < c.lengths.size(); ++s) {
      for (int p = 0; p < c.lengths[s]; ++p) {
        const auto ref = NaiveAttention(c, s, p, slopes, scale);
        for (size_t i = 0; i < ref.size(); ++i) {
          ASSERT_NEAR(whole[s][p * ref.size() + i], ref[i], 1e-5)
              << "window " << window << " seq " << s << " pos " << p;
        }
      }
    }
    // Released blocks hold NaN: any read of them would show.
    for (int chunk : {1, 4, 7}) {
      const auto chunked = RunChunked(*backend_, c, chunk, slopes, scale);
      for (size_t s = 0; s < c.lengths.size(); ++s) {
        EXPECT_EQ(chunked[s], whole[s])
            << "window " << window << " chunk " << chunk << " seq " << s;
      }
    }
  }
}

TEST_F(ReferenceBackendTest, AttentionRejectsBadMetadata) {
  std::vector<float> pool(4 * 2 * 4 * 8), q(2 * 16), out(2 * 16);
  PagedKvView kv{pool.data(), pool.data(), DType::kF32, 4, 4, 2, 8};
  std::vector<int32_t> starts = {0, 2}, ctx = {1}, tables = {0, 1};
  AttentionMeta meta;
  meta.num_seqs = 1;
  meta.num_tokens = 2;
  meta.query_start = starts.data();
  meta.context_lens = ctx.data();  // fewer keys than queries
  meta.block_tables = tables.data();
  meta.max_blocks_per_seq = 2;
  std::vector<float> slopes = {0.5f, 0.25f};
  auto run = [&] {
    return backend_->PagedAttention(
        TensorView::Of(q.data(), DType::kF32, 2, 16), kv, meta, slopes.data(),
        2, 1.0f, TensorView::Of(out.data(), DType::kF32, 2, 16));
  };
  EXPECT_EQ(run().code(), absl::StatusCode::kInvalidArgument);
  ctx[0] = 6;
  tables[1] = 9;  // outside the pool
  EXPECT_EQ(run().code(), absl::StatusCode::kInvalidArgument);
  tables[1] = 1;
  EXPECT_TRUE(run().ok());
}

TEST(BackendFactoryTest, UnknownDeviceIsAnError) {
  BackendOptions options;
  options.device = "tpu";
  EXPECT_EQ(CreateBackend(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.device = "auto";
  auto backend = CreateBackend(options);
  ASSERT_TRUE(backend.ok());
  EXPECT_EQ((*backend)->Kind(), CudaAvailable() ? "cuda" : "cpu");
}

TEST(DTypeTest, NamesRoundTrip) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32}) {
    EXPECT_EQ(*ParseDType(DTypeName(d)), d);
  }
  EXPECT_FALSE(ParseDType("float8").ok());
}

}  // namespace
}  // namespace alibi::kernels
