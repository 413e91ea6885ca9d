#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/packing.h"
#include "kernels/host/checks.h"
#include "kernels/host/host_backend.h"

namespace alibi::kernels::cpu {
namespace {

constexpr absl::string_view kName = "cpu";

absl::StatusOr<int> KvFormatOf(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return kKvF32;
    case DType::kF16:
      return kKvF16;
    case DType::kBF16:
      return kKvBF16;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cpu backend: KV cache dtype ", DTypeName(dtype),
                   " (float32, float16 or bfloat16)"));
}

template <typename T>
T* At(void* base, int64_t elements) {
  return static_cast<T*>(base) + elements;
}

class CpuBackend final : public host::HostBackend {
 public:
  CpuBackend(const KernelTable* kernels, int num_threads, DType weight_dtype,
             int weight_format, DType kv_dtype, int kv_format)
      : HostBackend(kName, num_threads),
        kernels_(kernels),
        weight_dtype_(weight_dtype),
        weight_format_(weight_format),
        kv_dtype_(kv_dtype),
        kv_format_(kv_format) {}

  std::string Name() const override {
    return absl::StrCat("cpu (", num_threads(), " threads, ", kernels_->name,
                        " kernels, ", DTypeName(weight_dtype_), " weights, ",
                        DTypeName(kv_dtype_), " KV)");
  }
  DType weight_dtype() const override { return weight_dtype_; }
  DType kv_dtype() const override { return kv_dtype_; }

  absl::StatusOr<Weight> UploadWeight(const void* src, DType src_dtype,
                                      int64_t rows, int64_t cols) override {
    if (src_dtype != DType::kF32 && src_dtype != DType::kF16 &&
        src_dtype != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cpu backend: cannot upload ", DTypeName(src_dtype), " weights"));
    }
    if (rows <= 0 || cols <= 0 || src == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("cpu backend: weight [", rows, ",", cols, "] is empty"));
    }
    ASSIGN_OR_RETURN(Buffer buffer,
                     Allocate(PackedWeightBytes(weight_format_, rows, cols)));
    uint8_t* dst = buffer.as<uint8_t>();
    const int64_t panels = (rows + kPanel - 1) / kPanel;
    pool().ParallelFor(panels, 4, [&](int64_t begin, int64_t end, int) {
      PackWeightPanels(src, src_dtype, rows, cols, weight_format_, begin, end,
                       dst);
    });
    Weight weight{std::move(buffer), {}};
    weight.view = TensorView{
        weight.buffer.data(), weight_dtype_, rows, cols, cols, /*packed=*/true};
    return weight;
  }

  absl::Status DownloadWeight(TensorView weight, float* dst) override {
    RETURN_IF_ERROR(CheckWeight(weight, "downloaded weight"));
    for (int64_t r = 0; r < weight.rows; ++r) {
      UnpackWeightRow(static_cast<const uint8_t*>(weight.data), weight_format_,
                      weight.cols, r, dst + r * weight.cols);
    }
    return absl::OkStatus();
  }

  absl::Status Embedding(const int32_t* ids, int num_tokens, TensorView table,
                         TensorView out) override {
    RETURN_IF_ERROR(CheckWeight(table, "embedding table"));
    RETURN_IF_ERROR(host::CheckEmbedding(ids, num_tokens, table, out, kName));
    const int64_t h = table.cols;
    pool().ParallelFor(num_tokens, RowGrain(h), [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        UnpackWeightRow(static_cast<const uint8_t*>(table.data), weight_format_,
                        h, ids[t], At<float>(out.data, t * out.row_stride));
      }
    });
    return absl::OkStatus();
  }

  absl::Status LayerNorm(TensorView in, const float* gamma, const float* beta,
                         float eps, TensorView out) override {
    RETURN_IF_ERROR(host::CheckLayerNorm(in, gamma, out, kName));
    const int64_t h = in.cols;
    pool().ParallelFor(in.rows, RowGrain(h), [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        kernels_->layer_norm(At<float>(in.data, t * in.row_stride), gamma, beta,
                             eps, h, At<float>(out.data, t * out.row_stride));
      }
    });
    return absl::OkStatus();
  }

  absl::Status Linear(TensorView in, TensorView weight,
                      const LinearEpilogue& epi, TensorView out) override {
    RETURN_IF_ERROR(CheckWeight(weight, "linear weight"));
    RETURN_IF_ERROR(host::CheckLinear(in, weight, epi, out, kName));
    const int64_t rows = in.rows, n = weight.rows, k = weight.cols;
    const bool has_residual = epi.residual.data != nullptr;
    if (rows == 0) return absl::OkStatus();

    // Activations into the micro-kernels' order, a block of rows at a time.
    const int format = weight_format_;
    const int64_t a_bytes = kernels_->packed_a_bytes(format, rows, k);
    RETURN_IF_ERROR(EnsureScratch(a_bytes));
    const int64_t block_rows = kernels_->block_rows[format];
    const int64_t blocks = (rows + block_rows - 1) / block_rows;
    void* packed = scratch_.data();
    pool().ParallelFor(blocks, 1, [&](int64_t b, int64_t e, int) {
      kernels_->pack_a(format, static_cast<const float*>(in.data),
                       in.row_stride, rows, k, b, e, packed);
    });

    GemmCall call;
    call.format = format;
    call.a = packed;
    call.rows = rows;
    call.k = k;
    call.w = static_cast<const uint8_t*>(weight.data);
    call.n = n;
    call.panel_bytes = PanelBytes(format, k);
    call.alpha = epi.alpha;
    call.bias = epi.bias;
    call.clamp = epi.clamp;
    call.activation = static_cast<int>(epi.activation);
    if (has_residual) {
      call.residual = static_cast<const float*>(epi.residual.data);
      call.residual_stride = epi.residual.row_stride;
    }
    call.out = static_cast<float*>(out.data);
    call.out_stride = out.row_stride;
    // Threads take slices of whole panels; four slices per thread balance
    // the load when the machine is shared.
    const int64_t panels = (n + kPanel - 1) / kPanel;
    const int64_t slices = int64_t{num_threads()} * 4;
    const int64_t grain =
        std::max<int64_t>(4, ((panels + slices - 1) / slices + 3) / 4 * 4);
    pool().ParallelFor(panels, grain, [&](int64_t b, int64_t e, int) {
      kernels_->gemm(call, b, e);
    });
    return absl::OkStatus();
  }

  absl::Status WriteKv(TensorView k, TensorView v, const int32_t* slot_mapping,
                       int num_tokens, const PagedKvView& kv) override {
    RETURN_IF_ERROR(host::CheckWriteKv(k, v, slot_mapping, num_tokens, kv,
                                       kv_dtype_, kName));
    const int64_t elem = static_cast<int64_t>(DTypeSize(kv.dtype));
    ForEachKvRow(slot_mapping, num_tokens, kv, [&](int t, int h, int64_t dst) {
      const int64_t src = int64_t{h} * kv.head_dim;
      kernels_->store_kv(At<const float>(k.data, t * k.row_stride + src),
                         kv.head_dim, kv_format_,
                         static_cast<char*>(kv.k) + dst * elem);
      kernels_->store_kv(At<const float>(v.data, t * v.row_stride + src),
                         kv.head_dim, kv_format_,
                         static_cast<char*>(kv.v) + dst * elem);
    });
    return absl::OkStatus();
  }

  absl::Status PagedAttention(TensorView q, const PagedKvView& kv,
                              const AttentionMeta& meta, const float* slopes,
                              int num_heads, float scale,
                              TensorView out) override {
    if (kv.head_dim > 256) {
      return absl::InvalidArgumentError(
          "cpu backend: head_dim above 256 is not supported");
    }
    RETURN_IF_ERROR(CheckAttention(q, kv, kv_dtype_, meta, num_heads, out,
                                   &seq_of_, &pos_of_));
    // One task per (rows, KV head), costed by the keys it reads: up to
    // kMaxAttentionRows consecutive rows of a sequence, which load each key
    // once for all of them (a long context is streamed from memory once per
    // task, not once per row; a short one is read from L1, not L2), as long
    // as every thread still gets about 4 tasks.
    const int group = num_heads / kv.num_kv_heads;
    const int d = kv.head_dim;
    const int max_rows = static_cast<int>(std::clamp<int64_t>(
        int64_t{meta.num_tokens} * kv.num_kv_heads / (4 * num_threads()), 1,
        kMaxAttentionRows));
    // A one-row task covers a run of adjacent KV heads of its sequence (up
    // to kMaxInterleavedHeads query heads): it walks the blocks once,
    // reading each block's adjacent head slices in turn. On this 2-core host
    // one thread walking all 16 heads of a sequence reads its KV at 35 GB/s,
    // two threads taking 8 heads each at 21 GB/s together, one head a task at
    // 20-25 GB/s (alibi-microbench, KV from memory): with 2 threads a row's
    // heads stay one task. With more threads, a row's heads are cut into
    // threads / (2 x sequences) parts, for one core cannot draw a larger
    // machine's bandwidth (not measured: this host has 2 cores).
    const int parts = std::clamp(
        num_threads() / (2 * std::max(meta.num_seqs, 1)), 1, kv.num_kv_heads);
    const int kv_heads_per_row =
        d > kMaxInterleavedHeadDim
            ? 1
            : std::clamp((kv.num_kv_heads + parts - 1) / parts, 1,
                         std::max(1, kMaxInterleavedHeads / group));
    tasks_.clear();
    costs_.clear();
    int64_t total = 0;
    for (int t = 0; t < meta.num_tokens;) {
      const int s = seq_of_[t];
      const int32_t pos = pos_of_[t];
      AttentionTask task;
      task.heads = group;
      task.head_dim = d;
      task.scale = scale;
      task.pos = pos;
      task.lo = host::FirstKey(meta, s, pos);
      task.window = meta.windows != nullptr ? meta.windows[s] : 0;
      task.k = kv.k;
      task.v = kv.v;
      task.kv_format = kv_format_;
      task.block_size = kv.block_size;
      task.num_kv_heads = kv.num_kv_heads;
      task.block_table = meta.block_tables + s * meta.max_blocks_per_seq;
      task.first_block = host::FirstBlock(meta, s);
      task.q_stride = q.row_stride;
      task.out_stride = out.row_stride;
      int64_t keys = pos - task.lo + 1;
      while (task.rows < max_rows && t + task.rows < meta.num_tokens &&
             seq_of_[t + task.rows] == s &&
             pos_of_[t + task.rows] == pos + task.rows) {
        keys += pos + task.rows - host::FirstKey(meta, s, pos + task.rows) + 1;
        ++task.rows;
      }
      const int step = task.rows == 1 ? kv_heads_per_row : 1;
      for (int kvh = 0; kvh < kv.num_kv_heads; kvh += step) {
        task.kv_head = kvh;
        task.kv_heads = std::min(step, kv.num_kv_heads - kvh);
        task.q = At<const float>(q.data, t * q.row_stride + kvh * group * d);
        task.out = At<float>(out.data, t * out.row_stride + kvh * group * d);
        task.slopes = slopes + kvh * group;
        tasks_.push_back(task);
        total += keys * group * task.kv_heads;
        costs_.push_back(total);
      }
      t += task.rows;
    }
    // Contiguous pieces of about equal cost, claimed dynamically.
    const int64_t num_tasks = static_cast<int64_t>(tasks_.size());
    const int64_t pieces =
        std::min<int64_t>(num_tasks, int64_t{num_threads()} * 8);
    piece_start_.assign(1, 0);
    for (int64_t p = 1; p < pieces; ++p) {
      const int64_t target = total * p / pieces;
      const int64_t at =
          std::lower_bound(costs_.begin(), costs_.end(), target) -
          costs_.begin();
      if (at > piece_start_.back()) piece_start_.push_back(at);
    }
    piece_start_.push_back(num_tasks);
    const int64_t num_pieces = static_cast<int64_t>(piece_start_.size()) - 1;
    pool().ParallelFor(num_pieces, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t i = piece_start_[b]; i < piece_start_[e]; ++i) {
        kernels_->attention(tasks_[i]);
      }
    });
    return absl::OkStatus();
  }

 private:
  // Rows per parallel piece for row-wise ops over rows of `h` values.
  static int64_t RowGrain(int64_t h) {
    return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(h, 1));
  }

  absl::Status CheckWeight(const TensorView& w, absl::string_view what) const {
    if (!w.packed || w.dtype != weight_dtype_ || w.data == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cpu backend: ", what, " must be a ", DTypeName(weight_dtype_),
          " weight uploaded by this backend (UploadWeight)"));
    }
    return absl::OkStatus();
  }

  // Grows the activation scratch to `bytes` (never shrinks).
  absl::Status EnsureScratch(int64_t bytes) {
    if (static_cast<size_t>(bytes) <= scratch_.bytes()) return absl::OkStatus();
    ASSIGN_OR_RETURN(scratch_, Allocate(static_cast<size_t>(bytes)));
    return absl::OkStatus();
  }

  const KernelTable* const kernels_;
  const DType weight_dtype_;
  const int weight_format_;
  const DType kv_dtype_;
  const int kv_format_;
  Buffer scratch_;  // packed activations
  // Attention bookkeeping, reused across steps.
  std::vector<int32_t> seq_of_, pos_of_;
  std::vector<AttentionTask> tasks_;
  std::vector<int64_t> costs_;  // cumulative
  std::vector<int64_t> piece_start_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(
    const BackendOptions& options) {
  int num_threads = options.num_threads;
  if (num_threads < 0) {
    return absl::InvalidArgumentError("cpu backend: num_threads must be >= 0");
  }
  if (num_threads == 0) {
    num_threads =
        static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  ASSIGN_OR_RETURN(const int weight_format,
                   WeightFormatOf(options.cpu_weight_dtype));
  const DType kv_dtype = options.kv_dtype.value_or(DType::kF32);
  ASSIGN_OR_RETURN(const int kv_format, KvFormatOf(kv_dtype));
  ASSIGN_OR_RETURN(const KernelTable* kernels,
                   SelectKernels(options.cpu_kernels));
  auto backend = std::make_unique<CpuBackend>(
      kernels, num_threads, options.cpu_weight_dtype, weight_format, kv_dtype,
      kv_format);
  ALIBI_LOG(INFO) << backend->Name() << ": " << kernels->description;
  return backend;
}

std::vector<std::string> SupportedKernelLevels() {
  std::vector<std::string> names;
  for (const KernelLevel& level : KernelLevels()) {
    if (level.supported) names.push_back(level.table->name);
  }
  return names;
}

namespace {

// Runs fn(thread) on num_threads threads at once; returns seconds.
template <typename Fn>
double TimedOnThreads(int num_threads, const Fn& fn) {
  using Clock = std::chrono::steady_clock;
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int t = 0; t < num_threads; ++t) threads.emplace_back(fn, t);
  for (std::thread& th : threads) th.join();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

double MeasureReadRate(absl::Span<const absl::Span<const char>> regions,
                       int num_threads) {
  const KernelTable* kernels = *SelectKernels("auto");
  num_threads = std::max(num_threads, 1);
  double bytes = 0;
  for (absl::Span<const char> r : regions) bytes += r.size();
  double best = 0;
  for (int streams : {1, 2, 4, 8}) {
    const double s = TimedOnThreads(num_threads, [&](int t) {
      for (absl::Span<const char> r : regions) {
        const int64_t slice = static_cast<int64_t>(r.size()) / num_threads;
        kernels->read_probe(r.data() + t * slice, slice, streams);
      }
    });
    best = std::max(best, bytes / s / 1e9);
  }
  return best;
}

MachineLimits MeasureMachineLimits(int num_threads) {
  const KernelTable* kernels = *SelectKernels("auto");
  num_threads = std::max(num_threads, 1);
  MachineLimits limits;
  // Reads: 256 MiB per thread (far beyond the caches), the best of 3.
  const size_t floats = (size_t{256} << 20) / 4 * num_threads;
  std::vector<float> buffer(floats);
  // Distinct values on every page (a hypervisor may merge equal pages).
  TimedOnThreads(num_threads, [&](int t) {
    const size_t slice = floats / num_threads;
    for (size_t i = t * slice; i < (t + 1) * slice; ++i) {
      buffer[i] = static_cast<float>(i);
    }
  });
  const absl::Span<const char> region(
      reinterpret_cast<const char*>(buffer.data()), floats * 4);
  for (int rep = 0; rep < 3; ++rep) {
    limits.read_gb_per_s =
        std::max(limits.read_gb_per_s, MeasureReadRate({region}, num_threads));
  }
  buffer = {};
  // Multiply-adds from registers, best of 3.
  auto rate = [&](double (*probe)(int64_t)) {
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
      std::vector<double> ops(num_threads);
      const double s = TimedOnThreads(
          num_threads, [&](int t) { ops[t] = probe(int64_t{1} << 22); });
      double total = 0;
      for (double o : ops) total += o;
      best = std::max(best, total / s / 1e9);
    }
    return best;
  };
  limits.fma_gflop_per_s = rate(kernels->fma_probe);
  limits.bf16_gflop_per_s = rate(kernels->bf16_probe);
  limits.int8_gop_per_s = rate(kernels->int8_probe);
  return limits;
}

}  // namespace alibi::kernels::cpu
