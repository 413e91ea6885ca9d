#include "kernels/reference/reference_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "kernels/host/checks.h"
#include "kernels/host/host_backend.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace alibi::kernels::reference {
namespace {

// Columns per sgemm call. Fixed, so that where an output element sits inside
// its sgemm call depends on N alone, never on the batch.
constexpr int64_t kColumnBlock = 1024;

// out[rows, n] = a[rows, k] * w[n, k]^T, single-threaded.
void Sgemm(const float* a, int64_t lda, int64_t rows, const float* w,
           int64_t ldw, int64_t n, int64_t k, float* out, int64_t ldo) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a,
              static_cast<int>(lda), w, static_cast<int>(ldw), 0.0f, out,
              static_cast<int>(ldo));
}

// Whether sgemm's output row for a given input row is bitwise the same at
// every position of a `tile`-row call, whatever the other rows hold.
bool RowsArePositionInvariant(int tile, int64_t n, int64_t k,
                              std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> w(n * k), probe(k), a(tile * k), out(tile * n), ref(n);
  for (float& x : w) x = normal(rng);
  for (float& x : probe) x = normal(rng);
  for (int pos = 0; pos < tile; ++pos) {
    for (float& x : a) x = normal(rng);
    std::copy(probe.begin(), probe.end(), a.begin() + pos * k);
    Sgemm(a.data(), k, tile, w.data(), k, n, k, out.data(), n);
    if (pos == 0) {
      std::copy(out.begin(), out.begin() + n, ref.begin());
    } else if (std::memcmp(out.data() + pos * n, ref.data(),
                           n * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

int ProbeRowTile() {
  openblas_set_num_threads(1);
  std::mt19937 rng(20240607);
  for (int tile : {16, 8, 4, 2}) {
    if (RowsArePositionInvariant(tile, 37, 96, rng) &&
        RowsArePositionInvariant(tile, 300, 1031, rng) &&
        RowsArePositionInvariant(tile, 1024, 64, rng)) {
      return tile;
    }
  }
  return 1;
}

float Gelu(Activation act, float x) {
  switch (act) {
    case Activation::kNone:
      return x;
    case Activation::kGeluTanh:
      return 0.5f * x *
             (1.0f +
              std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case Activation::kGeluErf:
      return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
  }
  return x;
}

inline float* Row(const TensorView& t, int64_t r) {
  return static_cast<float*>(t.data) + r * t.row_stride;
}

class ReferenceBackend final : public host::HostBackend {
 public:
  explicit ReferenceBackend(int num_threads)
      : HostBackend("ref", num_threads) {}

  std::string Name() const override {
    return absl::StrCat("ref (", num_threads(), " threads, fp32)");
  }
  DType weight_dtype() const override { return DType::kF32; }
  DType kv_dtype() const override { return DType::kF32; }

  absl::Status Embedding(const int32_t* ids, int num_tokens, TensorView table,
                         TensorView out) override {
    RETURN_IF_ERROR(ExpectF32(table, "embedding table"));
    RETURN_IF_ERROR(host::CheckEmbedding(ids, num_tokens, table, out, Kind()));
    for (int t = 0; t < num_tokens; ++t) {
      std::memcpy(Row(out, t), Row(table, ids[t]), table.cols * sizeof(float));
    }
    return absl::OkStatus();
  }

  absl::Status LayerNorm(TensorView in, const float* gamma, const float* beta,
                         float eps, TensorView out) override {
    RETURN_IF_ERROR(host::CheckLayerNorm(in, gamma, out, Kind()));
    const int64_t h = in.cols;
    const int64_t grain = std::max<int64_t>(1, kElementGrain / h);
    pool().ParallelFor(in.rows, grain, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = begin; t < end; ++t) {
        const float* x = Row(in, t);
        float* y = Row(out, t);
        double mean = 0.0;
        for (int64_t i = 0; i < h; ++i) mean += x[i];
        mean /= static_cast<double>(h);
        double var = 0.0;
        for (int64_t i = 0; i < h; ++i) {
          const double d = x[i] - mean;
          var += d * d;
        }
        var /= static_cast<double>(h);
        const double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t i = 0; i < h; ++i) {
          double v = (x[i] - mean) * inv * gamma[i];
          if (beta != nullptr) v += beta[i];
          y[i] = static_cast<float>(v);
        }
      }
    });
    return absl::OkStatus();
  }

  absl::Status Linear(TensorView in, TensorView weight,
                      const LinearEpilogue& epi, TensorView out) override {
    RETURN_IF_ERROR(ExpectF32(weight, "linear weight"));
    RETURN_IF_ERROR(host::CheckLinear(in, weight, epi, out, Kind()));
    const int64_t rows = in.rows, n = weight.rows, k = weight.cols;
    const bool has_residual = epi.residual.data != nullptr;
    if (rows == 0) return absl::OkStatus();

    const int64_t tile = row_tile_;
    const int64_t row_tiles = (rows + tile - 1) / tile;
    const int64_t col_blocks = (n + kColumnBlock - 1) / kColumnBlock;
    const float* w = static_cast<const float*>(weight.data);
    // Per-thread scratch: a zero-padded input tile and one product block.
    padded_in_.resize(pool().num_threads());
    product_.resize(pool().num_threads());
    pool().ParallelFor(
        row_tiles * col_blocks, 1, [&](int64_t begin, int64_t end, int thread) {
          std::vector<float>& padded_in = padded_in_[thread];
          std::vector<float>& product = product_[thread];
          padded_in.resize(tile * k);
          product.resize(tile * std::min(n, kColumnBlock));
          for (int64_t task = begin; task < end; ++task) {
            const int64_t rt = task / col_blocks, cb = task % col_blocks;
            const int64_t r0 = rt * tile;
            const int64_t live_rows = std::min(tile, rows - r0);
            const int64_t c0 = cb * kColumnBlock;
            const int64_t cols = std::min(kColumnBlock, n - c0);
            // Always a full tile: copy and zero-pad a partial one.
            const float* a = Row(in, r0);
            int64_t lda = in.row_stride;
            if (live_rows < tile) {
              std::fill(padded_in.begin(), padded_in.end(), 0.0f);
              for (int64_t r = 0; r < live_rows; ++r) {
                std::memcpy(padded_in.data() + r * k, Row(in, r0 + r),
                            k * sizeof(float));
              }
              a = padded_in.data();
              lda = k;
            }
            Sgemm(a, lda, tile, w + c0 * weight.row_stride, weight.row_stride,
                  cols, k, product.data(), cols);
            for (int64_t r = 0; r < live_rows; ++r) {
              const float* p = product.data() + r * cols;
              float* y = Row(out, r0 + r) + c0;
              const float* res =
                  has_residual ? Row(epi.residual, r0 + r) + c0 : nullptr;
              for (int64_t c = 0; c < cols; ++c) {
                float v = epi.alpha * p[c];
                if (epi.bias != nullptr) v += epi.bias[c0 + c];
                if (epi.clamp > 0.0f) v = std::clamp(v, -epi.clamp, epi.clamp);
                v = Gelu(epi.activation, v);
                if (res != nullptr) v += res[c];
                y[c] = v;
              }
            }
          }
        });
    return absl::OkStatus();
  }

  absl::Status WriteKv(TensorView k, TensorView v, const int32_t* slot_mapping,
                       int num_tokens, const PagedKvView& kv) override {
    RETURN_IF_ERROR(host::CheckWriteKv(k, v, slot_mapping, num_tokens, kv,
                                       DType::kF32, Kind()));
    float* kpool = static_cast<float*>(kv.k);
    float* vpool = static_cast<float*>(kv.v);
    ForEachKvRow(slot_mapping, num_tokens, kv, [&](int t, int h, int64_t dst) {
      std::memcpy(kpool + dst, Row(k, t) + h * kv.head_dim,
                  kv.head_dim * sizeof(float));
      std::memcpy(vpool + dst, Row(v, t) + h * kv.head_dim,
                  kv.head_dim * sizeof(float));
    });
    return absl::OkStatus();
  }

  absl::Status PagedAttention(TensorView q, const PagedKvView& kv,
                              const AttentionMeta& meta, const float* slopes,
                              int num_heads, float scale,
                              TensorView out) override {
    // Which sequence each query row belongs to, and its absolute position.
    std::vector<int32_t> seq_of, pos_of;
    RETURN_IF_ERROR(CheckAttention(q, kv, DType::kF32, meta, num_heads, out,
                                   &seq_of, &pos_of));
    const int d = kv.head_dim;
    const int group = num_heads / kv.num_kv_heads;
    const float* kpool = static_cast<const float*>(kv.k);
    const float* vpool = static_cast<const float*>(kv.v);
    const int64_t tasks = int64_t{meta.num_tokens} * num_heads;
    scores_.resize(pool().num_threads());
    acc_.resize(pool().num_threads());
    pool().ParallelFor(tasks, 4, [&](int64_t begin, int64_t end, int thread) {
      std::vector<float>& scores = scores_[thread];
      std::vector<double>& acc = acc_[thread];
      acc.resize(d);
      for (int64_t task = begin; task < end; ++task) {
        const int t = static_cast<int>(task / num_heads);
        const int h = static_cast<int>(task % num_heads);
        const int s = seq_of[t];
        const int32_t pos = pos_of[t];
        const int32_t first_block = host::FirstBlock(meta, s);
        const int32_t lo = host::FirstKey(meta, s, pos);
        const int32_t* table = meta.block_tables + s * meta.max_blocks_per_seq;
        const int kvh = h / group;
        const float* qv = Row(q, t) + h * d;
        const float slope = slopes[h];
        auto key_offset = [&](int32_t j) {
          const int64_t block = table[j / kv.block_size - first_block];
          return ((block * kv.num_kv_heads + kvh) * kv.block_size +
                  j % kv.block_size) *
                 d;
        };
        // Scores of keys lo..pos, with the ALiBi bias -slope * distance.
        scores.resize(pos + 1 - lo);
        float max_score = -INFINITY;
        for (int32_t j = lo; j <= pos; ++j) {
          const float* kp = kpool + key_offset(j);
          float dot = 0.0f;
          for (int i = 0; i < d; ++i) dot += qv[i] * kp[i];
          const float score = scale * dot - slope * static_cast<float>(pos - j);
          scores[j - lo] = score;
          max_score = std::max(max_score, score);
        }
        double sum = 0.0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int32_t j = lo; j <= pos; ++j) {
          const double w =
              std::exp(static_cast<double>(scores[j - lo] - max_score));
          sum += w;
          const float* vp = vpool + key_offset(j);
          for (int i = 0; i < d; ++i) acc[i] += w * vp[i];
        }
        float* o = Row(out, t) + h * d;
        for (int i = 0; i < d; ++i) o[i] = static_cast<float>(acc[i] / sum);
      }
    });
    return absl::OkStatus();
  }

  void set_row_tile(int tile) { row_tile_ = tile; }

 private:
  // Elements per parallel piece for cheap element-wise loops.
  static constexpr int64_t kElementGrain = 1 << 16;

  int row_tile_ = 1;
  // Per-thread scratch.
  std::vector<std::vector<float>> padded_in_, product_, scores_;
  std::vector<std::vector<double>> acc_;
};

}  // namespace

int LinearRowTile() {
  static const int tile = ProbeRowTile();
  return tile;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateReferenceBackend(
    int num_threads) {
  if (num_threads < 0) {
    return absl::InvalidArgumentError("ref backend: num_threads must be >= 0");
  }
  if (num_threads == 0) {
    num_threads = std::max(1u, std::thread::hardware_concurrency());
  }
  openblas_set_num_threads(1);  // Linear parallelises over tiles itself
  auto backend = std::make_unique<ReferenceBackend>(num_threads);
  backend->set_row_tile(LinearRowTile());
  return backend;
}

}  // namespace alibi::kernels::reference
