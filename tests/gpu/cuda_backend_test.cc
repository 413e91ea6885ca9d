// Every op of the CUDA backend against the CPU backend (the oracle) on fresh
// random inputs rounded to the device dtype, so that both backends see the
// same values: relative error by norm within 1e-2 for bf16/fp16 results,
// exact for pure data movement. Outputs are poisoned with NaN first, so an
// element never written fails. Attention covers head counts that are not
// powers of two, GQA and MQA, head dims of both kernels (tensor-core prefill
// and the generic split-KV row kernel), block sizes 1..32, contexts past
// 2048 tokens, chunked prefill mixed with decodes in one batch, empty
// sequences, shuffled and shared block tables, and ALiBi off.
//
// Skips (GTEST_SKIP) when no CUDA device is visible.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cuda/dispatch.h"
#include "server/model/config.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/paged_attention_case.h"

namespace alibi::kernels {
namespace {

using gpu_test::AttentionCase;
using gpu_test::Backends;
using gpu_test::RandomVector;
using gpu_test::RelErr;
using gpu_test::Rounded;

class CudaOpsTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    ALIBI_SKIP_WITHOUT_CUDA();
    b_ = std::make_unique<Backends>(GetParam());
    ASSERT_TRUE(b_->ok());
  }

  DType dt() const { return GetParam(); }
  std::vector<float> Random(size_t n, float scale = 1.0f, float mean = 0.0f) {
    return RandomVector(rng_, n, scale, mean);
  }

  std::unique_ptr<Backends> b_;
  std::mt19937 rng_{std::random_device{}()};
};

// "auto" is CUDA when a GPU is visible; without one (or without the CUDA
// backend) it is the CPU and "cuda" a clear error: device discovery never
// crashes. Runs (never skips) on either kind of machine.
TEST(CudaBackendTest, AutoPicksCudaExactlyWhenAGpuIsVisible) {
  BackendOptions options;
  auto backend = CreateBackend(options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->Kind(), CudaAvailable() ? "cuda" : "cpu");
  options.device = "cuda";
  if (!CudaAvailable()) {
    EXPECT_EQ(CreateBackend(options).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

TEST(CudaBackendTest, FactoryAndIdentity) {
  ALIBI_SKIP_WITHOUT_CUDA();
  BackendOptions options;  // device "auto" picks CUDA when it is visible
  auto backend = CreateBackend(options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->Kind(), "cuda");
  EXPECT_EQ((*backend)->Name().rfind("cuda:0 (", 0), 0u) << (*backend)->Name();
  EXPECT_EQ((*backend)->weight_dtype(), DType::kBF16);
  EXPECT_EQ((*backend)->activation_dtype(), DType::kBF16);
  EXPECT_EQ((*backend)->kv_dtype(), DType::kBF16);
  const MemoryInfo info = (*backend)->GetMemoryInfo();
  EXPECT_GT(info.total_bytes, 0u);
  EXPECT_GT(info.used_bytes, 0u);
  EXPECT_LE(info.used_bytes, info.total_bytes);
  options.device = "cuda";
  options.cuda_dtype = DType::kF32;
  EXPECT_EQ(CreateBackend(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(CudaOpsTest, UploadConvertMatchesHostConversion) {
  const size_t n = 100003;  // not a multiple of anything
  const std::vector<float> x = Random(n, 3.0f);
  std::vector<uint16_t> f16(n), bf16(n);
  for (size_t i = 0; i < n; ++i) {
    f16[i] = FloatToFp16(x[i]);
    bf16[i] = FloatToBf16(x[i]);
  }
  struct Case {
    const void* src;
    DType from, to;
  };
  for (const Case& c : {Case{x.data(), DType::kF32, DType::kBF16},
                        Case{x.data(), DType::kF32, DType::kF16},
                        Case{x.data(), DType::kF32, DType::kF32},
                        Case{f16.data(), DType::kF16, DType::kBF16},
                        Case{f16.data(), DType::kF16, DType::kF32},
                        Case{bf16.data(), DType::kBF16, DType::kF32},
                        Case{bf16.data(), DType::kBF16, DType::kF16}}) {
    Buffer dst = b_->Poisoned(n, c.to);
    ASSERT_TRUE(
        b_->gpu().UploadConvert(c.src, c.from, n, dst.data(), c.to).ok());
    const std::vector<float> got = b_->Download(dst.data(), n, c.to);
    for (size_t i = 0; i < n; ++i) {
      float src = x[i];
      if (c.from == DType::kF16) src = Fp16ToFloat(f16[i]);
      if (c.from == DType::kBF16) src = Bf16ToFloat(bf16[i]);
      const float want = gpu_test::RoundTo(c.to, src);
      ASSERT_EQ(got[i], want)
          << DTypeName(c.from) << "->" << DTypeName(c.to) << " at " << i;
    }
  }
  EXPECT_TRUE(b_->gpu().Synchronize().ok());
}

TEST_P(CudaOpsTest, EmbeddingAndGatherAreExact) {
  const int vocab = 1003, hidden = 200, t = 77;
  const std::vector<float> table = Rounded(dt(), Random(vocab * hidden));
  std::vector<int32_t> ids(t);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  for (int& id : ids) id = pick(rng_);
  ids[0] = 0;
  ids[1] = vocab - 1;
  Buffer table_d = b_->Upload(table, dt());
  Buffer ids_d = b_->UploadInts(ids);
  Buffer out_d = b_->Poisoned(t * hidden, DType::kF32);
  std::vector<float> want(t * hidden);
  ASSERT_TRUE(
      b_->cpu()
          .Embedding(ids.data(), t,
                     TensorView::Of(const_cast<float*>(table.data()),
                                    DType::kF32, vocab, hidden),
                     TensorView::Of(want.data(), DType::kF32, t, hidden))
          .ok());
  ASSERT_TRUE(
      b_->gpu()
          .Embedding(ids_d.as<int32_t>(), t,
                     TensorView::Of(table_d.data(), dt(), vocab, hidden),
                     TensorView::Of(out_d.data(), DType::kF32, t, hidden))
          .ok());
  EXPECT_EQ(b_->Download(out_d.data(), t * hidden, DType::kF32), want);

  // Gather rows (repeats allowed) of the fp32 result.
  std::vector<int32_t> rows = {76, 0, 5, 5, 40};
  Buffer rows_d = b_->UploadInts(rows);
  Buffer gathered_d = b_->Poisoned(rows.size() * hidden, DType::kF32);
  ASSERT_TRUE(
      b_->gpu()
          .GatherRows(TensorView::Of(out_d.data(), DType::kF32, t, hidden),
                      rows_d.as<int32_t>(), 5,
                      TensorView::Of(gathered_d.data(), DType::kF32, 5, hidden))
          .ok());
  const std::vector<float> gathered =
      b_->Download(gathered_d.data(), 5 * hidden, DType::kF32);
  for (int r = 0; r < 5; ++r) {
    for (int c = 0; c < hidden; ++c) {
      ASSERT_EQ(gathered[r * hidden + c], want[rows[r] * hidden + c]);
    }
  }
}

TEST_P(CudaOpsTest, BadIndicesAreReportedAtTheNextSync) {
  const int vocab = 10, hidden = 8;
  Buffer table_d = b_->Upload(Random(vocab * hidden), dt());
  Buffer out_d = b_->Poisoned(2 * hidden, DType::kF32);
  Buffer ids_d = b_->UploadInts({3, vocab});  // second id out of range
  ASSERT_TRUE(
      b_->gpu()
          .Embedding(ids_d.as<int32_t>(), 2,
                     TensorView::Of(table_d.data(), dt(), vocab, hidden),
                     TensorView::Of(out_d.data(), DType::kF32, 2, hidden))
          .ok());
  absl::Status s = b_->gpu().Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token id"), std::string::npos) << s;
  EXPECT_TRUE(b_->gpu().Synchronize().ok());  // reported once

  // A KV slot past the pool.
  const int kv_heads = 2, d = 8, blocks = 3, bs = 4;
  Buffer pool = b_->Poisoned(blocks * kv_heads * bs * d, dt());
  Buffer rows = b_->Upload(Random(kv_heads * d), dt());
  Buffer slot = b_->UploadInts({blocks * bs});
  PagedKvView kv{pool.data(), pool.data(), dt(), blocks, bs, kv_heads, d};
  TensorView kv_row = TensorView::Of(rows.data(), dt(), 1, kv_heads * d);
  ASSERT_TRUE(
      b_->gpu().WriteKv(kv_row, kv_row, slot.as<int32_t>(), 1, kv).ok());
  s = b_->gpu().Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("KV slot"), std::string::npos) << s;
}

// Sampling on the device against log_softmax and argmax computed here:
// scored rows, a greedy row with a logit bias, a seeded row drawn twice.
TEST_P(CudaOpsTest, SampleMatchesLogSoftmaxAndRepeatsSeededDraws) {
  ASSERT_TRUE(b_->gpu().SupportsSampling());
  constexpr int64_t kVocab = 50257, kRows = 4;
  const std::vector<float> logits = Random(kRows * kVocab, 4.0f);
  auto run = [&](const std::vector<SampleRow>& rows) {
    Buffer d = b_->Upload(logits, DType::kF32);
    std::vector<SampleResult> results;
    absl::Status s = b_->gpu().Sample(
        TensorView::Of(d.data(), DType::kF32, kRows, kVocab), rows, &results);
    EXPECT_TRUE(s.ok()) << s;
    return results;
  };
  std::vector<double> log_z(kRows);
  for (int64_t r = 0; r < kRows; ++r) {
    const float* row = logits.data() + r * kVocab;
    const double m = *std::max_element(row, row + kVocab);
    double z = 0;
    for (int64_t t = 0; t < kVocab; ++t) z += std::exp(row[t] - m);
    log_z[r] = m + std::log(z);
  }
  const std::pair<int32_t, float> bias[] = {{123, 1000.0f}};
  std::vector<SampleRow> rows(3);
  rows[0].row = 0;
  rows[0].target = 7;
  rows[0].top_n = 5;
  rows[1].row = 1;
  rows[1].knobs.temperature = 0.0f;
  rows[1].logit_bias = bias;
  rows[2].row = 3;
  rows[2].knobs.temperature = 0.9f;
  rows[2].knobs.top_p = 0.9f;
  rows[2].seed = 2024;
  rows[2].draw = 3;
  std::vector<SampleResult> first = run(rows), second = run(rows);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[0].token, 7);
  EXPECT_NEAR(first[0].logprob, logits[7] - log_z[0], 1e-3);
  std::vector<int32_t> order(kVocab);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                    [&](int32_t a, int32_t b) {
                      return logits[a] > logits[b] ||
                             (logits[a] == logits[b] && a < b);
                    });
  ASSERT_EQ(first[0].top.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(first[0].top[i].first, order[i]);
    EXPECT_NEAR(first[0].top[i].second, logits[order[i]] - log_z[0], 1e-3);
  }
  EXPECT_EQ(first[1].token, 123);  // the bias wins; its logprob is raw
  EXPECT_NEAR(first[1].logprob, logits[kVocab + 123] - log_z[1], 1e-3);
  EXPECT_EQ(first[2].token, second[2].token);
  EXPECT_GE(first[2].token, 0);
  EXPECT_LT(first[2].token, kVocab);
}

TEST_P(CudaOpsTest, LayerNormMatchesCpu) {
  const int t = 37, h = 1000;
  // Large offsets: a one-pass variance would lose digits here.
  const std::vector<float> x = Random(t * h, 2.0f, 30.0f);
  const std::vector<float> gamma = Random(h, 0.1f, 1.0f), beta = Random(h);
  Buffer x_d = b_->Upload(x, DType::kF32);
  Buffer gamma_d = b_->Upload(gamma, DType::kF32);
  Buffer beta_d = b_->Upload(beta, DType::kF32);
  for (bool with_beta : {true, false}) {
    std::vector<float> want(t * h);
    ASSERT_TRUE(
        b_->cpu()
            .LayerNorm(
                TensorView::Of(const_cast<float*>(x.data()), DType::kF32, t, h),
                gamma.data(), with_beta ? beta.data() : nullptr, 1e-5f,
                TensorView::Of(want.data(), DType::kF32, t, h))
            .ok());
    const float* beta_ptr = with_beta ? beta_d.as<float>() : nullptr;
    // To the activation dtype.
    Buffer out_d = b_->Poisoned(t * h, dt());
    ASSERT_TRUE(b_->gpu()
                    .LayerNorm(TensorView::Of(x_d.data(), DType::kF32, t, h),
                               gamma_d.as<float>(), beta_ptr, 1e-5f,
                               TensorView::Of(out_d.data(), dt(), t, h))
                    .ok());
    EXPECT_LT(RelErr(b_->Download(out_d.data(), t * h, dt()), want), 1e-2);
    // fp32, in place on a copy of the input.
    Buffer inplace_d = b_->Upload(x, DType::kF32);
    TensorView inplace = TensorView::Of(inplace_d.data(), DType::kF32, t, h);
    ASSERT_TRUE(
        b_->gpu()
            .LayerNorm(inplace, gamma_d.as<float>(), beta_ptr, 1e-5f, inplace)
            .ok());
    EXPECT_LT(RelErr(b_->Download(inplace_d.data(), t * h, DType::kF32), want),
              1e-5);
  }
}

// One Linear call on both backends: inputs rounded to the device dtype,
// results compared by relative error.
struct LinearCase {
  std::string name;
  int t = 7, k = 96, n = 384;
  bool bias = false;
  float clamp = 0.0f;
  Activation act = Activation::kNone;
  float alpha = 1.0f;
  bool out_f32 = false;
  enum Residual {
    kNone,
    kF32InPlace,
    kF32Separate,
    kActDtype
  } residual = kNone;
};

class CudaLinearTest
    : public ::testing::TestWithParam<std::tuple<DType, LinearCase>> {};

TEST_P(CudaLinearTest, MatchesCpu) {
  ALIBI_SKIP_WITHOUT_CUDA();
  const DType dt = std::get<0>(GetParam());
  const LinearCase& c = std::get<1>(GetParam());
  Backends b(dt);
  ASSERT_TRUE(b.ok());
  std::mt19937 rng(std::random_device{}());
  const std::vector<float> x = Rounded(dt, RandomVector(rng, c.t * c.k));
  const std::vector<float> w =
      Rounded(dt, RandomVector(rng, c.n * c.k, 1.0f / std::sqrt(c.k)));
  const std::vector<float> bias = RandomVector(rng, c.n, 0.5f);
  const DType out_dt = c.out_f32 ? DType::kF32 : dt;
  const DType res_dt = c.residual == LinearCase::kActDtype ? dt : DType::kF32;
  const std::vector<float> residual =
      Rounded(res_dt, RandomVector(rng, c.t * c.n));

  // CPU: residual in place when the case says so.
  std::vector<float> want(c.t * c.n);
  std::vector<float> cpu_res = residual;
  LinearEpilogue epi;
  epi.alpha = c.alpha;
  epi.bias = c.bias ? bias.data() : nullptr;
  epi.clamp = c.clamp;
  epi.activation = c.act;
  if (c.residual == LinearCase::kF32InPlace) {
    want = residual;
    epi.residual = TensorView::Of(want.data(), DType::kF32, c.t, c.n);
  } else if (c.residual != LinearCase::kNone) {
    epi.residual = TensorView::Of(cpu_res.data(), DType::kF32, c.t, c.n);
  }
  ASSERT_TRUE(b.cpu()
                  .Linear(TensorView::Of(const_cast<float*>(x.data()),
                                         DType::kF32, c.t, c.k),
                          TensorView::Of(const_cast<float*>(w.data()),
                                         DType::kF32, c.n, c.k),
                          epi,
                          TensorView::Of(want.data(), DType::kF32, c.t, c.n))
                  .ok());

  Buffer x_d = b.Upload(x, dt), w_d = b.Upload(w, dt);
  Buffer bias_d = b.Upload(bias, DType::kF32);
  Buffer res_d = b.Upload(residual, res_dt);
  Buffer out_d = c.residual == LinearCase::kF32InPlace
                     ? b.Upload(residual, DType::kF32)
                     : b.Poisoned(c.t * c.n, out_dt);
  LinearEpilogue gepi;
  gepi.alpha = c.alpha;
  gepi.bias = c.bias ? bias_d.as<float>() : nullptr;
  gepi.clamp = c.clamp;
  gepi.activation = c.act;
  if (c.residual == LinearCase::kF32InPlace) {
    gepi.residual = TensorView::Of(out_d.data(), DType::kF32, c.t, c.n);
  } else if (c.residual != LinearCase::kNone) {
    gepi.residual = TensorView::Of(res_d.data(), res_dt, c.t, c.n);
  }
  ASSERT_TRUE(b.gpu()
                  .Linear(TensorView::Of(x_d.data(), dt, c.t, c.k),
                          TensorView::Of(w_d.data(), dt, c.n, c.k), gepi,
                          TensorView::Of(out_d.data(), out_dt, c.t, c.n))
                  .ok());
  const double err = RelErr(b.Download(out_d.data(), c.t * c.n, out_dt), want);
  EXPECT_LT(err, 1e-2) << c.name;
  ::testing::Test::RecordProperty("rel_err", std::to_string(err));
}

std::vector<LinearCase> LinearCases() {
  std::vector<LinearCase> cases;
  auto add = [&](LinearCase c) { cases.push_back(c); };
  LinearCase c;
  c.name = "plain";
  add(c);
  c.name = "one_row";
  c.t = 1;
  add(c);
  c.name = "many_rows_odd_n";
  c.t = 300;
  c.k = 256;
  c.n = 1000;
  add(c);
  c = LinearCase{};
  c.name = "bias";  // BLOOM qkv
  c.bias = true;
  add(c);
  c.name = "bias_gelu_tanh";  // BLOOM dense_h_to_4h
  c.act = Activation::kGeluTanh;
  add(c);
  c = LinearCase{};
  c.name = "gelu_erf";  // MPT up_proj
  c.act = Activation::kGeluErf;
  c.t = 33;
  add(c);
  c = LinearCase{};
  c.name = "clamp";  // MPT clip_qkv
  c.clamp = 0.5f;
  add(c);
  c.name = "clamp_bias_gelu_tanh";
  c.bias = true;
  c.act = Activation::kGeluTanh;
  add(c);
  c = LinearCase{};
  c.name = "bias_residual_in_place";  // BLOOM dense / dense_4h_to_h
  c.bias = true;
  c.out_f32 = true;
  c.residual = LinearCase::kF32InPlace;
  c.t = 65;
  add(c);
  c.name = "residual_separate";
  c.bias = false;
  c.residual = LinearCase::kF32Separate;
  add(c);
  c.name = "bias_residual_post_layernorm";  // bf16 residual, fp32 output
  c.bias = true;
  c.residual = LinearCase::kActDtype;
  add(c);
  c.name = "gelu_then_residual_in_place";  // needs the scratch output
  c.residual = LinearCase::kF32InPlace;
  c.act = Activation::kGeluErf;
  add(c);
  c = LinearCase{};
  c.name = "logits_scaled";  // LM head: fp32 logits, MPT logit_scale
  c.out_f32 = true;
  c.alpha = 0.37f;
  c.t = 5;
  c.n = 5003;
  add(c);
  return cases;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CudaLinearTest,
    ::testing::Combine(::testing::Values(DType::kBF16, DType::kF16),
                       ::testing::ValuesIn(LinearCases())),
    [](const auto& info) {
      return std::string(std::get<0>(info.param) == DType::kBF16 ? "bf16_"
                                                                 : "fp16_") +
             std::get<1>(info.param).name;
    });

// Rows computed alone and inside larger batches: within tolerance always;
// whether they are bitwise equal is recorded (cuBLASLt may choose another
// kernel for another row count; see cuda_backend.h).
TEST_P(CudaOpsTest, LinearRowsAcrossBatchSizes) {
  const int k = 512, n = 1024, max_t = 257;
  const std::vector<float> w =
      Rounded(dt(), Random(n * k, 1.0f / std::sqrt(k)));
  const std::vector<float> x = Rounded(dt(), Random(max_t * k));
  Buffer w_d = b_->Upload(w, dt()), x_d = b_->Upload(x, dt());
  auto run = [&](int row0, int t) {
    Buffer out = b_->Poisoned(t * n, dt());
    EXPECT_TRUE(
        b_->gpu()
            .Linear(TensorView::Of(x_d.as<char>() + size_t{2} * row0 * k, dt(),
                                   t, k),
                    TensorView::Of(w_d.data(), dt(), n, k), {},
                    TensorView::Of(out.data(), dt(), t, n))
            .ok());
    return b_->Download(out.data(), t * n, dt());
  };
  const std::vector<float> alone = run(5, 1);
  int bitwise = 0, total = 0;
  for (int t : {6, 16, 64, 200, 257}) {
    const std::vector<float> all = run(0, t);
    const std::vector<float> row(all.begin() + 5 * n, all.begin() + 6 * n);
    EXPECT_LT(RelErr(row, alone), 1e-2) << t;
    bitwise += row == alone;
    ++total;
  }
  RecordProperty("bitwise_equal_batches",
                 std::to_string(bitwise) + "/" + std::to_string(total));
}

TEST_P(CudaOpsTest, WriteKvMatchesCpuExactly) {
  const int kv_heads = 3, d = 40, q_width = 6 * d, blocks = 9, bs = 8, t = 21;
  const int kw = kv_heads * d, width = q_width + 2 * kw;
  // K and V are strided column views of a fused QKV matrix.
  const std::vector<float> qkv = Rounded(dt(), Random(t * width));
  std::vector<int32_t> slots(t);
  std::vector<int32_t> all(blocks * bs);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng_);
  std::copy(all.begin(), all.begin() + t, slots.begin());
  slots[3] = -1;  // padding rows are skipped
  slots[10] = -1;
  const size_t pool_elems = size_t{1} * blocks * kv_heads * bs * d;
  const std::vector<float> init_k = Rounded(dt(), Random(pool_elems));
  const std::vector<float> init_v = Rounded(dt(), Random(pool_elems));
  std::vector<float> cpu_k = init_k, cpu_v = init_v;
  PagedKvView cpu_kv{
      cpu_k.data(), cpu_v.data(), DType::kF32, blocks, bs, kv_heads, d};
  TensorView cpu_qkv =
      TensorView::Of(const_cast<float*>(qkv.data()), DType::kF32, t, width);
  ASSERT_TRUE(b_->cpu()
                  .WriteKv(cpu_qkv.Cols(q_width, kw),
                           cpu_qkv.Cols(q_width + kw, kw), slots.data(), t,
                           cpu_kv)
                  .ok());
  Buffer qkv_d = b_->Upload(qkv, dt());
  Buffer k_d = b_->Upload(init_k, dt()), v_d = b_->Upload(init_v, dt());
  Buffer slots_d = b_->UploadInts(slots);
  PagedKvView gpu_kv{k_d.data(), v_d.data(), dt(), blocks, bs, kv_heads, d};
  TensorView gpu_qkv = TensorView::Of(qkv_d.data(), dt(), t, width);
  ASSERT_TRUE(b_->gpu()
                  .WriteKv(gpu_qkv.Cols(q_width, kw),
                           gpu_qkv.Cols(q_width + kw, kw),
                           slots_d.as<int32_t>(), t, gpu_kv)
                  .ok());
  EXPECT_EQ(b_->Download(k_d.data(), pool_elems, dt()), cpu_k);
  EXPECT_EQ(b_->Download(v_d.data(), pool_elems, dt()), cpu_v);
}

// ---------------------------------------------------------------------------
// Paged attention
// ---------------------------------------------------------------------------

class CudaAttentionTest
    : public ::testing::TestWithParam<std::tuple<DType, AttentionCase>> {};

TEST_P(CudaAttentionTest, MatchesCpu) {
  ALIBI_SKIP_WITHOUT_CUDA();
  const DType dt = std::get<0>(GetParam());
  const AttentionCase& spec = std::get<1>(GetParam());
  Backends b(dt);
  ASSERT_TRUE(b.ok());
  std::mt19937 rng(std::random_device{}());
  const int h = spec.num_heads, kvh = spec.num_kv_heads, d = spec.head_dim;
  const int bs = spec.block_size;
  const gpu_test::PagedBatch batch = gpu_test::BuildPagedBatch(spec, rng);
  const int num_blocks = batch.num_blocks, t = batch.num_tokens();
  ASSERT_GT(t, 0);

  // Random pools (NaN where no query may read), queries with a strided
  // layout (a fused QKV matrix).
  const size_t pool_elems = size_t{1} * num_blocks * kvh * bs * d;
  std::vector<float> kpool = Rounded(dt, RandomVector(rng, pool_elems));
  std::vector<float> vpool = Rounded(dt, RandomVector(rng, pool_elems));
  const std::vector<bool> unseen = gpu_test::UnseenPoolRows(spec, batch);
  for (size_t i = 0; i < pool_elems; ++i) {
    if (unseen[i / d]) kpool[i] = vpool[i] = NAN;
  }
  const int qw = h * d, qkv_width = qw + 2 * kvh * d;
  const std::vector<float> qkv = Rounded(dt, RandomVector(rng, t * qkv_width));
  const std::vector<float> slopes = gpu_test::CaseSlopes(spec);
  absl::StatusOr<std::vector<float>> cpu_out = gpu_test::CpuAttention(
      b.cpu(), spec, batch, kpool, vpool, qkv, qkv_width);
  ASSERT_TRUE(cpu_out.ok()) << cpu_out.status();
  const std::vector<float>& want = *cpu_out;

  Buffer k_d = b.Upload(kpool, dt), v_d = b.Upload(vpool, dt);
  Buffer qkv_d = b.Upload(qkv, dt);
  Buffer slopes_d = b.Upload(slopes, DType::kF32);
  Buffer starts_d = b.UploadInts(batch.starts);
  Buffer ctx_d = b.UploadInts(batch.ctx);
  Buffer tables_d = b.UploadInts(batch.tables);
  Buffer windows_d = b.UploadInts(batch.windows);
  Buffer first_blocks_d = b.UploadInts(batch.first_blocks);
  Buffer out_d = b.Poisoned(t * qw, dt);
  AttentionMeta meta = batch.Meta();
  meta.query_start = starts_d.as<int32_t>();
  meta.context_lens = ctx_d.as<int32_t>();
  meta.block_tables = tables_d.as<int32_t>();
  if (!batch.windows.empty()) {
    meta.windows = windows_d.as<int32_t>();
    meta.first_blocks = first_blocks_d.as<int32_t>();
  }
  PagedKvView kv{k_d.data(), v_d.data(), dt, num_blocks, bs, kvh, d};

  ASSERT_EQ(cuda::PlanAttention(batch.Shape(spec)).kernel, spec.expected)
      << "the case no longer exercises the kernel it was written for";

  ASSERT_TRUE(
      b.gpu()
          .PagedAttention(
              TensorView::Of(qkv_d.data(), dt, t, qkv_width).Cols(0, qw), kv,
              meta, spec.alibi ? slopes_d.as<float>() : nullptr, h,
              gpu_test::CaseScale(spec),
              TensorView::Of(out_d.data(), dt, t, qw))
          .ok());
  const std::vector<float> got = b.Download(out_d.data(), t * qw, dt);
  ASSERT_TRUE(b.gpu().Synchronize().ok());
  const double err = RelErr(got, want);
  EXPECT_LT(err, 1e-2) << spec.name;
  RecordProperty("rel_err", std::to_string(err));
  // Every (row, head) on its own, so a single wrong row cannot hide.
  for (int r = 0; r < t; ++r) {
    for (int head = 0; head < h; ++head) {
      const size_t at = static_cast<size_t>(r) * qw + head * d;
      const std::vector<float> g(got.begin() + at, got.begin() + at + d);
      const std::vector<float> w(want.begin() + at, want.begin() + at + d);
      ASSERT_LT(RelErr(g, w), 3e-2)
          << spec.name << ": row " << r << " head " << head;
    }
  }
}

std::vector<AttentionCase> AttentionSpecs() {
  using K = cuda::AttentionKernel;
  std::vector<AttentionCase> specs;
  // Decode: contexts on both sides of block and partition boundaries and
  // past 2048 tokens (several split-KV partitions).
  specs.push_back({"decode_h12_d64",
                   12,
                   12,
                   64,
                   16,
                   {{1, 1},
                    {15, 1},
                    {16, 1},
                    {17, 1},
                    {256, 1},
                    {257, 1},
                    {1000, 1},
                    {2100, 1},
                    {2600, 1}},
                   K::kRowSplitKv});
  // Past 8192 keys the partitions grow (512 keys, 17+ splits).
  specs.push_back({"decode_long_9000_h6_d128",
                   6,
                   6,
                   128,
                   16,
                   {{9000, 1}, {8193, 1}},
                   K::kRowSplitKv});
  specs.push_back({"decode_mqa_h12_d80_bs32",
                   12,
                   1,
                   80,
                   32,
                   {{33, 1}, {700, 1}, {2049, 1}},
                   K::kRowSplitKv});
  specs.push_back({"decode_d256_gqa_bs8",
                   8,
                   2,
                   256,
                   8,
                   {{300, 1}, {5, 1}},
                   K::kRowSplitKv});
  // Short query runs (speculative / tiny chunks), with an empty sequence.
  specs.push_back({"short_runs_q8_h6_d64",
                   6,
                   3,
                   64,
                   16,
                   {{8, 8}, {50, 0}, {600, 5}, {300, 8}},
                   K::kRowSplitKv});
  // Tensor-core prefill: one long prompt past the trained length.
  specs.push_back({"prefill_2300_h6_d128_gqa",
                   6,
                   2,
                   128,
                   16,
                   {{2300, 2300}},
                   K::kPrefillMma});
  // Chunked prefill mixed with decodes and an empty sequence in one batch;
  // sequences 0 and 1 share two prefix blocks.
  specs.push_back({"mixed_h12_gqa4_d80",
                   12,
                   4,
                   80,
                   16,
                   {{700, 200},
                    {690, 1},
                    {1, 1},
                    {2049, 1},
                    {130, 130},
                    {50, 0},
                    {65, 64},
                    {64, 63}},
                   K::kPrefillMma,
                   true,
                   2});
  specs.push_back({"mixed_mqa_h12_d96_bs8",
                   12,
                   1,
                   96,
                   8,
                   {{500, 77}, {3000, 1}, {9, 9}},
                   K::kPrefillMma});
  specs.push_back({"prefill_h16_d64_bs1",
                   16,
                   16,
                   64,
                   1,
                   {{200, 150}, {40, 40}},
                   K::kPrefillMma});
  specs.push_back({"prefill_h32_d128_bs16_chunk_at_2048",
                   32,
                   32,
                   128,
                   16,
                   {{2560, 512}},
                   K::kPrefillMma});
  // Generic head dims (the fixture models' 16, MPT-30B's 112, 32):
  // prefill through the row kernel.
  specs.push_back({"generic_d16_h6_prefill_and_decode",
                   6,
                   6,
                   16,
                   16,
                   {{300, 300}, {2100, 1}, {40, 17}},
                   K::kRowSplitKv});
  specs.push_back({"generic_d32_h8_gqa_bs32",
                   8,
                   2,
                   32,
                   32,
                   {{100, 60}, {1, 1}},
                   K::kRowSplitKv});
  specs.push_back(
      {"generic_d112_h7_prefill", 7, 7, 112, 16, {{260, 260}}, K::kRowSplitKv});
  // ALiBi off (no slopes): plain causal attention, both kernels.
  specs.push_back({"no_alibi_prefill_d64",
                   8,
                   8,
                   64,
                   16,
                   {{333, 333}},
                   K::kPrefillMma,
                   false});
  specs.push_back({"no_alibi_decode_d64",
                   8,
                   8,
                   64,
                   16,
                   {{1333, 1}, {5, 1}},
                   K::kRowSplitKv,
                   false});
  // Decode batches of 64 and 256 sequences with contexts to 32k (the
  // heaviest shapes of the emulator tests' kind).
  gpu_test::AttentionCase b256 =
      gpu_test::BatchCase("decode_batch256_gqa_d128_bs32_to_32k", 256, 8, 128,
                          32, 4096, 5, K::kRowSplitKv);
  b256.num_kv_heads = 2;
  b256.seqs[0] = {32768, 1};
  b256.seqs[1] = {20000, 1};
  specs.push_back(b256);
  specs.push_back(gpu_test::BatchCase("decode_batch64_d64_bs8_to_32k", 64, 4,
                                      64, 8, 32768, 6, K::kRowSplitKv));
  // Sliding windows (released blocks before each table's start, NaN in
  // every position no query may see).
  specs.push_back({"window_decode_h8_d128",
                   8,
                   8,
                   128,
                   16,
                   {{500, 1, 37},
                    {30000, 1, 4096},
                    {40, 1, 64},
                    {1000, 1, 1},
                    {5000, 1, 300},
                    {20, 1, 0}},
                   K::kRowSplitKv});
  specs.push_back(
      {"window_mixed_prefill_gqa_d80_bs8",
       12,
       4,
       80,
       8,
       {{3000, 700, 512}, {900, 130, 37}, {2049, 1, 100}, {64, 64, 0}},
       K::kPrefillMma});
  specs.push_back({"window_generic_d112",
                   7,
                   7,
                   112,
                   32,
                   {{700, 260, 100}, {90, 1, 10}},
                   K::kRowSplitKv});
  return specs;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CudaAttentionTest,
    ::testing::Combine(::testing::Values(DType::kBF16, DType::kF16),
                       ::testing::ValuesIn(AttentionSpecs())),
    [](const auto& info) {
      return std::string(std::get<0>(info.param) == DType::kBF16 ? "bf16_"
                                                                 : "fp16_") +
             std::get<1>(info.param).name;
    });

TEST_P(CudaOpsTest, AttentionReportsBadBlockIds) {
  const int h = 4, d = 64, bs = 16, blocks = 4;
  Buffer pool = b_->Upload(Random(blocks * h * bs * d), dt());
  Buffer q = b_->Upload(Random(h * d), dt());
  Buffer out = b_->Poisoned(h * d, dt());
  Buffer starts = b_->UploadInts({0, 1}), ctx = b_->UploadInts({20});
  Buffer tables = b_->UploadInts({1, blocks + 7});  // second block invalid
  Buffer slopes = b_->Upload({0.5f, 0.25f, 0.125f, 0.0625f}, DType::kF32);
  AttentionMeta meta;
  meta.num_seqs = 1;
  meta.num_tokens = 1;
  meta.query_start = starts.as<int32_t>();
  meta.context_lens = ctx.as<int32_t>();
  meta.block_tables = tables.as<int32_t>();
  meta.max_blocks_per_seq = 2;
  meta.max_query_len = 1;
  meta.max_context_len = 20;
  PagedKvView kv{pool.data(), pool.data(), dt(), blocks, bs, h, d};
  ASSERT_TRUE(b_->gpu()
                  .PagedAttention(TensorView::Of(q.data(), dt(), 1, h * d), kv,
                                  meta, slopes.as<float>(), h, 0.125f,
                                  TensorView::Of(out.data(), dt(), 1, h * d))
                  .ok());
  const absl::Status s = b_->gpu().Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("block id"), std::string::npos) << s;
}

TEST_P(CudaOpsTest, UnsupportedShapesAreRejected) {
  Buffer pool = b_->Poisoned(4 * 2 * 16 * 20, dt());
  Buffer q = b_->Poisoned(2 * 20, dt());
  PagedKvView kv{pool.data(), pool.data(), dt(), 4, 16, 2, 20};  // d = 20
  Buffer ints = b_->UploadInts({0, 1, 1, 0});
  AttentionMeta meta;
  meta.num_seqs = 1;
  meta.num_tokens = 1;
  meta.query_start = ints.as<int32_t>();
  meta.context_lens = ints.as<int32_t>() + 1;
  meta.block_tables = ints.as<int32_t>() + 3;
  meta.max_blocks_per_seq = 1;
  meta.max_query_len = 1;
  meta.max_context_len = 1;
  const absl::Status s = b_->gpu().PagedAttention(
      TensorView::Of(q.data(), dt(), 1, 40), kv, meta, nullptr, 2, 1.0f,
      TensorView::Of(q.data(), dt(), 1, 40));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("head_dim"), std::string::npos) << s;
  // fp32 activations are not this backend's.
  Buffer f = b_->Poisoned(16, DType::kF32);
  EXPECT_EQ(b_->gpu()
                .Linear(TensorView::Of(f.data(), DType::kF32, 4, 4),
                        TensorView::Of(f.data(), DType::kF32, 4, 4), {},
                        TensorView::Of(f.data(), DType::kF32, 4, 4))
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// The fused bias epilogue reads a 16-bit copy of the fp32 bias, kept per
// bias: a bias freed and another allocated at the same address must not be
// served the old copy.
TEST_P(CudaOpsTest, BiasCopiesFollowTheBufferNotTheAddress) {
  const int t = 4, k = 64, n = 96;
  const std::vector<float> x = Rounded(dt(), Random(t * k));
  const std::vector<float> w = Rounded(dt(), Random(n * k, 0.125f));
  Buffer x_d = b_->Upload(x, dt()), w_d = b_->Upload(w, dt());
  Buffer out_d = b_->Poisoned(t * n, dt());
  const TensorView xv = TensorView::Of(x_d.data(), dt(), t, k);
  const TensorView wv = TensorView::Of(w_d.data(), dt(), n, k);
  const TensorView ov = TensorView::Of(out_d.data(), dt(), t, n);
  for (int round = 0; round < 3; ++round) {
    const std::vector<float> bias = Random(n, 4.0f);
    Buffer bias_d = b_->Upload(bias, DType::kF32);
    LinearEpilogue epi;
    epi.bias = bias_d.as<float>();
    epi.activation = Activation::kGeluTanh;
    ASSERT_TRUE(b_->gpu().Linear(xv, wv, epi, ov).ok());
    std::vector<float> want(t * n);
    epi.bias = bias.data();
    ASSERT_TRUE(
        b_->cpu()
            .Linear(
                TensorView::Of(const_cast<float*>(x.data()), DType::kF32, t, k),
                TensorView::Of(const_cast<float*>(w.data()), DType::kF32, n, k),
                epi, TensorView::Of(want.data(), DType::kF32, t, n))
            .ok());
    EXPECT_LT(RelErr(b_->Download(out_d.data(), t * n, dt()), want), 1e-2)
        << "round " << round;
  }  // the bias buffer is freed; the next round's may take its address
}

// After ReserveWorkspace, attention over long contexts within the limits
// allocates nothing more (a step never grows memory mid-way).
TEST_P(CudaOpsTest, ReservedWorkspaceCoversLongContextSteps) {
  const int h = 8, d = 128, seqs = 4;
  WorkspaceLimits limits;
  limits.max_tokens = 16;
  limits.max_seqs = seqs;
  limits.num_heads = h;
  limits.head_dim = d;
  auto reserved = b_->gpu().ReserveWorkspace(limits);
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  gpu_test::AttentionCase c{
      "long", h, h, d, 16, {}, cuda::AttentionKernel::kRowSplitKv};
  c.seqs = {{30000, 1}, {20000, 4}, {9000, 1}, {100000, 1, 2000}};
  std::mt19937 rng(3);
  const gpu_test::PagedBatch batch = gpu_test::BuildPagedBatch(c, rng);
  const size_t pool = size_t{1} * batch.num_blocks * h * 16 * d;
  Buffer k_d = b_->Upload(Rounded(dt(), Random(pool)), dt());
  Buffer q_d =
      b_->Upload(Rounded(dt(), Random(batch.num_tokens() * h * d)), dt());
  Buffer out_d = b_->Poisoned(batch.num_tokens() * h * d, dt());
  Buffer starts = b_->UploadInts(batch.starts), ctx = b_->UploadInts(batch.ctx);
  Buffer tables = b_->UploadInts(batch.tables);
  Buffer windows = b_->UploadInts(batch.windows);
  Buffer first = b_->UploadInts(batch.first_blocks);
  AttentionMeta meta = batch.Meta();
  meta.query_start = starts.as<int32_t>();
  meta.context_lens = ctx.as<int32_t>();
  meta.block_tables = tables.as<int32_t>();
  meta.windows = windows.as<int32_t>();
  meta.first_blocks = first.as<int32_t>();
  meta.max_keys = 0;  // as unknown as it gets
  PagedKvView kv{k_d.data(), k_d.data(), dt(), batch.num_blocks, 16, h, d};
  ASSERT_TRUE(
      b_->gpu()
          .PagedAttention(
              TensorView::Of(q_d.data(), dt(), batch.num_tokens(), h * d), kv,
              meta, nullptr, h, 0.1f,
              TensorView::Of(out_d.data(), dt(), batch.num_tokens(), h * d))
          .ok());
  ASSERT_TRUE(b_->gpu().Synchronize().ok());
  auto after = b_->gpu().ReserveWorkspace(limits);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *reserved);
}

// A graph key's first run is eager, its second captured (ops record, copies
// and synchronisation are refused, EndGraph runs the recording), later ones
// replay it on whatever the buffers hold; freeing a buffer drops it.
TEST_P(CudaOpsTest, GraphsRecordOnTheSecondRunAndReplayNewContents) {
  ASSERT_TRUE(b_->gpu().SupportsGraphs());
  const int rows = 3, cols = 200;
  const std::vector<float> gamma = Random(cols, 0.5f, 1.0f);
  Buffer in_d = b_->Poisoned(rows * cols, DType::kF32);
  Buffer gamma_d = b_->Upload(gamma, DType::kF32);
  Buffer out_d = b_->Poisoned(rows * cols, dt());
  const TensorView in = TensorView::Of(in_d.data(), DType::kF32, rows, cols);
  const TensorView out = TensorView::Of(out_d.data(), dt(), rows, cols);
  const GraphMode expected[] = {GraphMode::kEager, GraphMode::kCapture,
                                GraphMode::kReplayed, GraphMode::kReplayed};
  for (GraphMode want_mode : expected) {
    const std::vector<float> x = Random(rows * cols, 2.0f);
    ASSERT_TRUE(
        b_->gpu().CopyToDevice(in_d.data(), x.data(), x.size() * 4).ok());
    auto mode = b_->gpu().BeginGraph(42);
    ASSERT_TRUE(mode.ok()) << mode.status();
    ASSERT_EQ(*mode, want_mode);
    if (*mode != GraphMode::kReplayed) {
      ASSERT_TRUE(b_->gpu()
                      .LayerNorm(in, gamma_d.as<float>(), nullptr, 1e-5f, out)
                      .ok());
    }
    if (*mode == GraphMode::kCapture) {
      std::vector<float> host(4);
      EXPECT_EQ(b_->gpu().CopyToHost(host.data(), in_d.data(), 16).code(),
                absl::StatusCode::kFailedPrecondition);
      EXPECT_EQ(b_->gpu().Synchronize().code(),
                absl::StatusCode::kFailedPrecondition);
      ASSERT_TRUE(b_->gpu().EndGraph(/*keep=*/true).ok());
    }
    std::vector<float> want(rows * cols);
    ASSERT_TRUE(
        b_->cpu()
            .LayerNorm(TensorView::Of(const_cast<float*>(x.data()), DType::kF32,
                                      rows, cols),
                       gamma.data(), nullptr, 1e-5f,
                       TensorView::Of(want.data(), DType::kF32, rows, cols))
            .ok());
    EXPECT_LT(RelErr(b_->Download(out_d.data(), rows * cols, dt()), want),
              1e-2);
  }
  { Buffer scratch = b_->Poisoned(16, DType::kF32); }  // a free
  auto mode = b_->gpu().BeginGraph(42);
  ASSERT_TRUE(mode.ok());
  EXPECT_EQ(*mode, GraphMode::kEager);
}

INSTANTIATE_TEST_SUITE_P(DTypes, CudaOpsTest,
                         ::testing::Values(DType::kBF16, DType::kF16),
                         gpu_test::DTypeParamName);

}  // namespace
}  // namespace alibi::kernels
