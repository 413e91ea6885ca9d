// The CUDA backend's element-wise and gather kernels (their own source and
// launchers, run on the CPU through the emulator) against the CPU backend or
// a direct host computation: layernorm, embedding, row gather, KV write
// (16-byte and element paths), the Linear epilogue kernel and dtype
// conversion, including the device error word for bad indices.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/half.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/gpu/emulation/emulated_kernels.h"

namespace alibi::kernels {
namespace {

namespace emu = cuda::emulated;
using cuda::ElemType;

class OpsEmulationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    emu::SetEmulationMode(false, false, 1);
    BackendOptions options;
    options.device = "ref";
    options.num_threads = 1;
    auto cpu = CreateBackend(options);
    ASSERT_TRUE(cpu.ok());
    cpu_ = std::move(*cpu);
  }

  std::vector<float> Random(size_t n, float scale = 1.0f, float mean = 0.0f) {
    std::normal_distribution<float> normal(mean, scale);
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng_);
    return v;
  }

  std::unique_ptr<Backend> cpu_;
  std::mt19937 rng_{std::random_device{}()};
};

uint16_t Bits(ElemType t, float x) {
  return t == ElemType::kBF16 ? FloatToBf16(x) : FloatToFp16(x);
}
float Value(ElemType t, uint16_t b) {
  return t == ElemType::kBF16 ? Bf16ToFloat(b) : Fp16ToFloat(b);
}

// Host storage of `n` elements of `type`, read and written as floats.
struct Tensor {
  ElemType type;
  std::vector<float> f32;
  std::vector<uint16_t> b16;

  Tensor(ElemType t, size_t n, float fill = NAN) : type(t) {
    if (t == ElemType::kF32) {
      f32.assign(n, fill);
    } else {
      b16.assign(n, Bits(t, fill));
    }
  }
  static Tensor From(ElemType t, const std::vector<float>& v) {
    Tensor out(t, v.size());
    for (size_t i = 0; i < v.size(); ++i) out.Set(i, v[i]);
    return out;
  }
  void* data() {
    return type == ElemType::kF32 ? static_cast<void*>(f32.data())
                                  : static_cast<void*>(b16.data());
  }
  float Get(size_t i) const {
    return type == ElemType::kF32 ? f32[i] : Value(type, b16[i]);
  }
  void Set(size_t i, float x) {
    if (type == ElemType::kF32) {
      f32[i] = x;
    } else {
      b16[i] = Bits(type, x);
    }
  }
  std::vector<float> Floats() const {
    const size_t n = type == ElemType::kF32 ? f32.size() : b16.size();
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = Get(i);
    return out;
  }
};

double RelErr(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  return std::sqrt(diff / norm);
}

TEST_F(OpsEmulationTest, LayerNorm) {
  const int rows = 5, cols = 300;
  const std::vector<float> x = Random(rows * cols, 2.0f, 30.0f);
  const std::vector<float> gamma = Random(cols, 0.1f, 1.0f),
                           beta = Random(cols);
  for (bool with_beta : {true, false}) {
    std::vector<float> want(rows * cols);
    ASSERT_TRUE(
        cpu_->LayerNorm(TensorView::Of(const_cast<float*>(x.data()),
                                       DType::kF32, rows, cols),
                        gamma.data(), with_beta ? beta.data() : nullptr, 1e-5f,
                        TensorView::Of(want.data(), DType::kF32, rows, cols))
            .ok());
    const float* b = with_beta ? beta.data() : nullptr;
    std::vector<float> inplace = x;
    ASSERT_EQ(emu::LaunchLayerNorm(inplace.data(), cols, rows, cols,
                                   gamma.data(), b, 1e-5f, inplace.data(),
                                   ElemType::kF32, cols, nullptr),
              cudaSuccess);
    EXPECT_LT(RelErr(inplace, want), 1e-5);
    for (ElemType t : {ElemType::kBF16, ElemType::kF16}) {
      Tensor out(t, rows * cols);
      ASSERT_EQ(emu::LaunchLayerNorm(x.data(), cols, rows, cols, gamma.data(),
                                     b, 1e-5f, out.data(), t, cols, nullptr),
                cudaSuccess);
      EXPECT_LT(RelErr(out.Floats(), want), 1e-2);
    }
  }
}

TEST_F(OpsEmulationTest, EmbeddingAndGather) {
  const int vocab = 50, cols = 40, t = 7;
  const Tensor table = Tensor::From(ElemType::kBF16, Random(vocab * cols));
  const std::vector<int32_t> ids = {3, 0, 49, 7, 50, -1, 3};  // 2 invalid
  std::vector<float> out(t * cols, NAN);
  uint32_t error_word = 0;
  ASSERT_EQ(
      emu::LaunchEmbedding(ids.data(), t, const_cast<Tensor&>(table).data(),
                           ElemType::kBF16, vocab, cols, cols, out.data(), cols,
                           &error_word, nullptr),
      cudaSuccess);
  EXPECT_EQ(error_word, cuda::kErrTokenId);
  for (int r = 0; r < t; ++r) {
    const bool valid = ids[r] >= 0 && ids[r] < vocab;
    for (int c = 0; c < cols; ++c) {
      ASSERT_EQ(out[r * cols + c], valid ? table.Get(ids[r] * cols + c) : 0.0f)
          << r << "," << c;
    }
  }
  // Gather rows of the fp32 result, and of a 16-bit matrix.
  const std::vector<int32_t> rows = {6, 0, 2, 2, 9};  // 9 is outside
  std::vector<float> gathered(rows.size() * cols, NAN);
  error_word = 0;
  ASSERT_EQ(
      emu::LaunchGatherRows(out.data(), t, cols, cols, rows.data(), 5,
                            gathered.data(), cols, 4, &error_word, nullptr),
      cudaSuccess);
  EXPECT_EQ(error_word, cuda::kErrGatherRow);
  for (int r = 0; r < 5; ++r) {
    for (int c = 0; c < cols; ++c) {
      ASSERT_EQ(gathered[r * cols + c],
                rows[r] < t ? out[rows[r] * cols + c] : 0.0f);
    }
  }
  std::vector<uint16_t> g16(4 * cols, 0xFFFF);
  ASSERT_EQ(emu::LaunchGatherRows(const_cast<Tensor&>(table).data(), vocab,
                                  cols, cols, rows.data(), 4, g16.data(), cols,
                                  2, nullptr, nullptr),
            cudaSuccess);
  for (int r = 0; r < 4; ++r) {
    ASSERT_EQ(0, std::memcmp(g16.data() + r * cols,
                             table.b16.data() + rows[r] * cols, cols * 2));
  }
}

// k, v: strided views into a fused [t, width] matrix; the pool starts
// random; the expected pool is computed on the host.
void CheckWriteKv(int kv_heads, int d, int q_width, int block_size,
                  ElemType type, std::mt19937& rng) {
  const int t = 19, num_blocks = 6;
  const int kw = kv_heads * d, width = q_width + 2 * kw;
  std::normal_distribution<float> normal;
  std::vector<float> qkv_f(t * width);
  for (float& x : qkv_f) x = normal(rng);
  Tensor qkv = Tensor::From(type, qkv_f);
  const size_t pool = size_t{1} * num_blocks * kv_heads * block_size * d;
  std::vector<float> init(pool);
  for (float& x : init) x = normal(rng);
  Tensor k_pool = Tensor::From(type, init), v_pool = Tensor::From(type, init);
  std::vector<int32_t> slots(t);
  std::vector<int32_t> all(num_blocks * block_size);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
  std::shuffle(all.begin(), all.end(), rng);
  std::copy(all.begin(), all.begin() + t, slots.begin());
  slots[2] = -1;                           // padding: skipped
  slots[5] = num_blocks * block_size + 3;  // outside: skipped and reported
  Tensor k_want = k_pool, v_want = v_pool;
  for (int tok = 0; tok < t; ++tok) {
    const int slot = slots[tok];
    if (slot < 0 || slot >= num_blocks * block_size) continue;
    for (int h = 0; h < kv_heads; ++h) {
      for (int i = 0; i < d; ++i) {
        const size_t dst =
            ((size_t{1} * (slot / block_size) * kv_heads + h) * block_size +
             slot % block_size) *
                d +
            i;
        k_want.Set(dst, qkv.Get(tok * width + q_width + h * d + i));
        v_want.Set(dst, qkv.Get(tok * width + q_width + kw + h * d + i));
      }
    }
  }
  const int es = type == ElemType::kF32 ? 4 : 2;
  char* base = static_cast<char*>(qkv.data());
  uint32_t error_word = 0;
  ASSERT_EQ(emu::LaunchWriteKv(base + size_t{1} * q_width * es, width,
                               base + size_t{1} * (q_width + kw) * es, width,
                               slots.data(), t, k_pool.data(), v_pool.data(),
                               num_blocks, block_size, kv_heads, d, es,
                               &error_word, nullptr),
            cudaSuccess);
  EXPECT_EQ(error_word, cuda::kErrKvSlot);
  EXPECT_EQ(k_pool.Floats(), k_want.Floats());
  EXPECT_EQ(v_pool.Floats(), v_want.Floats());
}

TEST_F(OpsEmulationTest, WriteKvVectorAndElementPaths) {
  // 16-byte path: head rows and strides multiples of 16 bytes.
  CheckWriteKv(3, 40, 6 * 40, 8, ElemType::kBF16, rng_);
  CheckWriteKv(2, 16, 4 * 16, 16, ElemType::kF32, rng_);
  // Element paths: head rows of 20 bf16 (40 bytes), odd strides.
  CheckWriteKv(3, 20, 6 * 20, 4, ElemType::kF16, rng_);
  CheckWriteKv(1, 7, 13, 5, ElemType::kF32, rng_);
}

TEST_F(OpsEmulationTest, LinearEpilogue) {
  const int rows = 9, cols = 37;
  const std::vector<float> src_f = Random(rows * cols, 2.0f);
  const std::vector<float> bias = Random(cols), res_f = Random(rows * cols);
  for (ElemType src_type : {ElemType::kF32, ElemType::kBF16}) {
    for (cuda::EpilogueAct act :
         {cuda::EpilogueAct::kNone, cuda::EpilogueAct::kGeluTanh,
          cuda::EpilogueAct::kGeluErf}) {
      for (bool with_bias : {false, true}) {
        for (float clamp : {0.0f, 1.5f}) {
          for (ElemType res_type :
               {ElemType::kF32, ElemType::kBF16, ElemType::kF16}) {
            const bool with_res = res_type != ElemType::kF16;
            const Tensor src = Tensor::From(src_type, src_f);
            const Tensor res = Tensor::From(res_type, res_f);
            const ElemType out_type = with_res ? ElemType::kF32 : src_type;
            Tensor out(out_type, rows * cols);
            ASSERT_EQ(emu::LaunchLinearEpilogue(
                          const_cast<Tensor&>(src).data(), src_type, cols, rows,
                          cols, with_bias ? bias.data() : nullptr, clamp, act,
                          with_res ? const_cast<Tensor&>(res).data() : nullptr,
                          res_type, cols, out.data(), out_type, cols, nullptr),
                      cudaSuccess);
            std::vector<float> want(rows * cols);
            for (int r = 0; r < rows; ++r) {
              for (int c = 0; c < cols; ++c) {
                double y = src.Get(r * cols + c);
                if (with_bias) y += bias[c];
                if (clamp > 0) y = std::clamp(y, -1.5, 1.5);
                if (act == cuda::EpilogueAct::kGeluTanh) {
                  y = 0.5 * y *
                      (1 + std::tanh(std::sqrt(2 / M_PI) *
                                     (y + 0.044715 * y * y * y)));
                } else if (act == cuda::EpilogueAct::kGeluErf) {
                  y = 0.5 * y * (1 + std::erf(y / std::sqrt(2.0)));
                }
                if (with_res) y += res.Get(r * cols + c);
                want[r * cols + c] = static_cast<float>(y);
              }
            }
            EXPECT_LT(RelErr(out.Floats(), want),
                      out_type == ElemType::kF32 ? 1e-6 : 1e-2);
          }
        }
      }
    }
  }
  // In place (src = out), with a residual in another buffer.
  std::vector<float> io = src_f;
  ASSERT_EQ(emu::LaunchLinearEpilogue(
                io.data(), ElemType::kF32, cols, rows, cols, bias.data(), 0.0f,
                cuda::EpilogueAct::kNone, res_f.data(), ElemType::kF32, cols,
                io.data(), ElemType::kF32, cols, nullptr),
            cudaSuccess);
  for (int i = 0; i < rows * cols; ++i) {
    ASSERT_FLOAT_EQ(io[i], src_f[i] + bias[i % cols] + res_f[i]);
  }
}

TEST_F(OpsEmulationTest, ConvertIsExactRounding) {
  const std::vector<float> x = Random(1000, 5.0f);
  for (ElemType to : {ElemType::kBF16, ElemType::kF16}) {
    Tensor out(to, x.size());
    ASSERT_EQ(emu::LaunchConvert(x.data(), ElemType::kF32, out.data(), to,
                                 static_cast<int64_t>(x.size()), nullptr),
              cudaSuccess);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(out.b16[i], Bits(to, x[i])) << i;
    }
    // And back to fp32, and across the 16-bit types.
    std::vector<float> back(x.size(), NAN);
    ASSERT_EQ(emu::LaunchConvert(out.data(), to, back.data(), ElemType::kF32,
                                 static_cast<int64_t>(x.size()), nullptr),
              cudaSuccess);
    EXPECT_EQ(back, out.Floats());
    const ElemType other =
        to == ElemType::kBF16 ? ElemType::kF16 : ElemType::kBF16;
    Tensor across(other, x.size());
    ASSERT_EQ(emu::LaunchConvert(out.data(), to, across.data(), other,
                                 static_cast<int64_t>(x.size()), nullptr),
              cudaSuccess);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(across.b16[i], Bits(other, out.Get(i))) << i;
    }
  }
}

}  // namespace
}  // namespace alibi::kernels
