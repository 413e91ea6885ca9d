// The compute backend interface: device memory and the handful of ops an
// ALiBi decoder needs. Backends (kernels/backend.cc holds the table):
// - "ref" (kernels/reference): plain fp32 loops, the numerical oracle every
//   other backend is tested against (tests/kernels/backend_conformance_test);
// - "cpu" (kernels/cpu): the fast CPU backend, weights packed at load in
//   f32, bf16, f16 or int8, SIMD kernels picked at run time;
// - "cuda" (kernels/cuda, a plugin built when nvcc is found).
//
// Conventions:
// - Tensors are row-major 2-D views (`TensorView`) into backend memory.
//   Shape comments read [rows, cols].
// - Ops are enqueued in order on the backend's single stream and may run
//   asynchronously; CopyToHost and Synchronize wait for them.
// - The residual stream is always fp32; GEMM inputs/outputs use
//   activation_dtype() unless an op says otherwise; the KV pool uses
//   kv_dtype(); layernorm gains, biases and ALiBi slopes are fp32.
// - Weight matrices are uploaded once with UploadWeight, which may store them
//   in a layout of the backend's own (packed panels, quantized blocks);
//   Linear and Embedding take the view it returns.
// - ALiBi: query at absolute position i and key at position j of the same
//   sequence get score += -slope[h] * (i - j), computed inside the attention
//   op. No bias tensor is ever materialised.
//
// Thread-safety: a Backend is not thread-safe. alibi-serve's engine thread is
// the only user of the backend it owns; tests use one from one thread.
#ifndef ALIBI_KERNELS_BACKEND_H_
#define ALIBI_KERNELS_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/enum_names.h"
#include "common/half.h"
#include "common/sampling_knobs.h"

namespace alibi::kernels {

// kI8: weight matrices only; symmetric int8 with one scale per group of 32
// consecutive weights of a row (kernels/cpu).
enum class DType : uint8_t { kF32, kF16, kBF16, kI32, kI8 };

// Inline: the CUDA backend plugin uses them without linking alibi_kernels.
inline size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI8:
      return 1;
  }
  return 0;
}
// "float32", "float16", "bfloat16", "int32", "int8".
inline absl::string_view DTypeName(DType dtype) {
  constexpr absl::string_view kNames[] = {"float32", "float16", "bfloat16",
                                          "int32", "int8"};
  static_assert(std::size(kNames) == EnumCount(DType::kI8));
  return EnumName(dtype, kNames, absl::string_view("unknown"));
}
// Parses DTypeName's output (and "f32"/"fp32"/"f16"/"fp16"/"bf16"/"i8").
absl::StatusOr<DType> ParseDType(absl::string_view name);

// A non-owning row-major 2-D view: element (r, c) is at
// data + (r * row_stride + c) * DTypeSize(dtype).
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;  // in elements, >= cols
  // A weight in the private layout of the backend that uploaded it
  // (UploadWeight): then only dtype, rows and cols mean anything outside
  // that backend, and Cols()/Rows() do not apply.
  bool packed = false;

  static TensorView Of(void* data, DType dtype, int64_t rows, int64_t cols) {
    return TensorView{data, dtype, rows, cols, cols};
  }
  // Columns [col, col + ncols) of every row (a strided view).
  TensorView Cols(int64_t col, int64_t ncols) const {
    return TensorView{static_cast<char*>(data) + col * DTypeSize(dtype), dtype,
                      rows, ncols, row_stride};
  }
  // Rows [row, row + nrows).
  TensorView Rows(int64_t row, int64_t nrows) const {
    return TensorView{
        static_cast<char*>(data) + row * row_stride * DTypeSize(dtype), dtype,
        nrows, cols, row_stride};
  }
  bool contiguous() const { return row_stride == cols; }
};

// One layer's paged KV pool. Block b of the pool holds `block_size`
// consecutive tokens of one sequence; a token's slot is
// block * block_size + offset. Keys carry no position (ALiBi), so a block is
// valid wherever a sequence's block table places it.
struct PagedKvView {
  void* k = nullptr;  // [num_blocks, num_kv_heads, block_size, head_dim]
  void* v = nullptr;  // [num_blocks, num_kv_heads, block_size, head_dim]
  DType dtype = DType::kF32;
  int num_blocks = 0;
  int block_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

// Describes the sequences of one flattened batch for attention. Pointers are
// backend memory (int32). Sequence s owns query rows
// [query_start[s], query_start[s+1]); after this step's WriteKv its cache
// holds context_lens[s] tokens, so its last query row is at absolute position
// context_lens[s] - 1 and query row r of s is at position
// context_lens[s] - (query_start[s+1] - query_start[s]) + (r - query_start[s]).
// Each query attends causally to keys 0..its own position, or, with a
// sliding window, to the last `windows[s]` of them.
struct AttentionMeta {
  int num_seqs = 0;
  int num_tokens = 0;
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* context_lens = nullptr;  // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  // Sliding windows; null: none. With windows[s] = W > 0, the query of
  // sequence s at position i attends to keys max(0, i - W + 1) .. i only, each
  // with its true ALiBi distance i - j; W = 0: keys 0 .. i.
  const int32_t* windows = nullptr;  // [num_seqs]
  // Null: entry b of a sequence's block table holds positions
  // [b * block_size, (b + 1) * block_size). Otherwise sequence s's table
  // starts at logical block first_blocks[s]: entry b holds positions
  // [(first_blocks[s] + b) * block_size, ...). The blocks before it were
  // released; its window never reaches them.
  const int32_t* first_blocks = nullptr;  // [num_seqs]
  // Host-side maxima for launch configuration.
  int max_query_len = 0;
  int max_context_len = 0;
  // Host: the most keys any query row sees (with windows, at most the
  // largest window); 0: unknown (max_context_len). Bounds split-KV work.
  int max_keys = 0;
  // Host: nonzero names this batch's metadata. Calls with the same id (and
  // the same pointers and maxima) promise the metadata did not change in
  // between, so a backend may reuse what it derived from it (the CUDA
  // backend's attention work lists): the layers of one step share an id, a
  // new step takes a new one. 0: derive it again.
  uint64_t batch_id = 0;
};

enum class Activation : uint8_t {
  kNone,
  kGeluTanh,  // BLOOM: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
  kGeluErf,   // MPT: 0.5x(1 + erf(x / sqrt(2)))
};

// What Linear applies after the matrix product, in this order:
// y = alpha x W^T; y += bias; y = clamp(y, -clamp, clamp); y = act(y);
// y += residual.
struct LinearEpilogue {
  float alpha = 1.0f;           // MPT logit_scale for the LM head
  const float* bias = nullptr;  // [N] or null
  float clamp = 0.0f;           // 0: none (MPT clip_qkv otherwise)
  Activation activation = Activation::kNone;
  // [T, N] or data == null; may alias `out`. fp32, or the activation dtype
  // when the residual is a layernorm output (BLOOM
  // apply_residual_connection_post_layernorm).
  TensorView residual;
};

// The largest step a server will run, for backends that keep scratch
// memory of their own (the CUDA backend's attention workspace).
struct WorkspaceLimits {
  int max_tokens = 0;  // query rows of one step
  int max_seqs = 0;    // sequences of one step
  int num_heads = 0;
  int head_dim = 0;
  int max_keys = 0;  // keys one query row sees at most (0: any number)
};

// How a keyed sequence of ops runs (Backend::BeginGraph).
enum class GraphMode : uint8_t {
  kEager,     // issue the ops: they run as usual
  kCapture,   // issue the ops: they are recorded, and run by EndGraph
  kReplayed,  // the recording was launched: issue nothing
};

struct MemoryInfo {
  size_t used_bytes = 0;   // by this process on the device (host RSS on CPU)
  size_t total_bytes = 0;  // device capacity (host RAM on CPU)
};

// Move-only owner of a backend allocation.
class Buffer {
 public:
  using Deleter = void (*)(void* ptr, void* ctx);
  Buffer() = default;
  Buffer(void* data, size_t bytes, Deleter deleter, void* ctx)
      : data_(data), bytes_(bytes), deleter_(deleter), ctx_(ctx) {}
  ~Buffer() { Reset(); }
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      Reset();
      data_ = other.data_;
      bytes_ = other.bytes_;
      deleter_ = other.deleter_;
      ctx_ = other.ctx_;
      other.data_ = nullptr;
      other.bytes_ = 0;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  void Reset() {
    if (data_ != nullptr && deleter_ != nullptr) deleter_(data_, ctx_);
    data_ = nullptr;
    bytes_ = 0;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Deleter deleter_ = nullptr;
  void* ctx_ = nullptr;
};

// A weight matrix in backend memory, made by Backend::UploadWeight.
struct Weight {
  Buffer buffer;    // owns the bytes
  TensorView view;  // [rows, cols] of the backend's weight dtype, for ops
};

// One row of logits for Backend::Sample, with the host sampler's semantics
// (server/engine/sampler.h): scored when target >= 0, sampled otherwise.
struct SampleRow {
  int32_t row = 0;  // row of the logits tensor
  int32_t target = -1;
  int32_t top_n = 0;  // top alternatives to return (raw log-probabilities)
  SamplingKnobs knobs;
  // The draw's random numbers depend on (seed, draw, token id) only.
  uint64_t seed = 0;
  uint64_t draw = 0;
  absl::Span<const int32_t> allowed;  // empty: every token
  absl::Span<const int32_t> banned;   // lifted if they would ban everything
  absl::Span<const int32_t> seen;     // distinct prompt and output tokens
  absl::Span<const std::pair<int32_t, float>> logit_bias;
  absl::Span<const std::pair<int32_t, int32_t>> output_counts;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;                        // raw log_softmax at token
  std::vector<std::pair<int32_t, float>> top;  // best first
};

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu (2 threads, avx512_bf16 kernels, bfloat16 weights, float32 KV)" or
  // "cuda:0 (NVIDIA H100 80GB HBM3)".
  virtual std::string Name() const = 0;
  // The registry name: "ref", "cpu" or "cuda".
  virtual absl::string_view Kind() const = 0;
  virtual DType weight_dtype() const = 0;
  virtual DType activation_dtype() const = 0;
  virtual DType kv_dtype() const = 0;

  // ---- memory ----
  virtual absl::StatusOr<Buffer> Allocate(size_t bytes) = 0;
  virtual absl::Status CopyToDevice(void* dst, const void* src,
                                    size_t bytes) = 0;
  // Waits for queued work, then copies.
  virtual absl::Status CopyToHost(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status Synchronize() = 0;
  virtual MemoryInfo GetMemoryInfo() const = 0;
  // Copies `count` host elements of `src_dtype` (kF32/kF16/kBF16) into device
  // memory `dst`, converting to `dst_dtype`. Used once per weight at load.
  virtual absl::Status UploadConvert(const void* src, DType src_dtype,
                                     size_t count, void* dst,
                                     DType dst_dtype) = 0;
  // Allocates the scratch memory steps within `limits` need, so that no op
  // allocates later. Returns the bytes of scratch the backend now holds.
  virtual absl::StatusOr<size_t> ReserveWorkspace(
      const WorkspaceLimits& /*limits*/) {
    return size_t{0};
  }

  // ---- graphs (optional): record a recurring op sequence once, replay it ----
  // A graph key names a sequence of ops: the caller promises that every
  // sequence issued under one key is the same ops on the same buffers with
  // the same sizes and host arguments, only buffer contents differing.
  virtual bool SupportsGraphs() const { return false; }
  // Before issuing the sequence of `key`. kReplayed: its recording was
  // launched (it runs in stream order like any op). kCapture: the ops issued
  // until EndGraph are recorded, not run; ops that cannot be recorded
  // (memory allocation, copies, Synchronize) fail. kEager: run the ops as
  // usual (backends without graphs, keys seen for the first time, keys whose
  // capture failed).
  virtual absl::StatusOr<GraphMode> BeginGraph(uint64_t /*key*/) {
    return GraphMode::kEager;
  }
  // Ends a kCapture. keep: store the recording and launch it (the recorded
  // ops run now); else discard it (the ops issued did not run). On an error
  // nothing of the sequence ran.
  virtual absl::Status EndGraph(bool /*keep*/) { return absl::OkStatus(); }
  // Drops every recording (the buffers they use were reallocated).
  virtual void ClearGraphs() {}

  // Uploads a host matrix `src`: [rows, cols] row-major of `src_dtype`
  // (kF32/kF16/kBF16) as a weight for Linear (and Embedding): stored in
  // weight_dtype(), in whatever layout the backend's kernels read (packed
  // once, here). The default: a row-major matrix through UploadConvert.
  virtual absl::StatusOr<Weight> UploadWeight(const void* src, DType src_dtype,
                                              int64_t rows, int64_t cols) {
    const DType dtype = weight_dtype();
    const size_t count = static_cast<size_t>(rows * cols);
    absl::StatusOr<Buffer> buffer = Allocate(count * DTypeSize(dtype));
    if (!buffer.ok()) return buffer.status();
    absl::Status status =
        UploadConvert(src, src_dtype, count, buffer->data(), dtype);
    if (!status.ok()) return status;
    Weight weight{std::move(*buffer), {}};
    weight.view = TensorView::Of(weight.buffer.data(), dtype, rows, cols);
    return weight;
  }

  // Copies a weight made by UploadWeight back to the host as the fp32
  // values Linear multiplies with ([rows, cols] row-major: widened 16-bit
  // values, dequantized int8), for tests and tools. The default reads a
  // row-major kF32/kF16/kBF16 matrix.
  virtual absl::Status DownloadWeight(TensorView weight, float* dst) {
    if (weight.packed) {
      return absl::InvalidArgumentError(
          "DownloadWeight: a packed weight of another backend");
    }
    const size_t size = DTypeSize(weight.dtype);
    std::vector<char> host(static_cast<size_t>(weight.cols) * size);
    for (int64_t r = 0; r < weight.rows; ++r) {
      absl::Status status = CopyToHost(
          host.data(),
          static_cast<const char*>(weight.data) + r * weight.row_stride * size,
          host.size());
      if (!status.ok()) return status;
      float* out = dst + r * weight.cols;
      for (int64_t c = 0; c < weight.cols; ++c) {
        uint16_t half = 0;
        if (size == 2) std::memcpy(&half, host.data() + c * 2, 2);
        switch (weight.dtype) {
          case DType::kF32:
            std::memcpy(out + c, host.data() + c * 4, 4);
            break;
          case DType::kF16:
            out[c] = Fp16ToFloat(half);
            break;
          case DType::kBF16:
            out[c] = Bf16ToFloat(half);
            break;
          case DType::kI32:
          case DType::kI8:
            return absl::InvalidArgumentError(absl::StrCat(
                "DownloadWeight: cannot read ", DTypeName(weight.dtype)));
        }
      }
    }
    return absl::OkStatus();
  }

  // ---- ops ----
  // out[t, :] = table[ids[t], :].  ids: [T] int32; table: [V, H], a weight
  // from UploadWeight (the values DownloadWeight reads); out: [T, H] fp32.
  virtual absl::Status Embedding(const int32_t* ids, int num_tokens,
                                 TensorView table, TensorView out) = 0;

  // out[t, :] = in[rows[t], :].  rows: [R] int32; in: [T, H]; out: [R, H].
  virtual absl::Status GatherRows(TensorView in, const int32_t* rows,
                                  int num_rows, TensorView out) = 0;

  // out = (in - mean) / sqrt(var + eps) * gamma + beta over each row.
  // in: [T, H] fp32; out: [T, H] fp32 or activation dtype; gamma, beta: [H]
  // fp32 (beta may be null). `out` may alias `in` when dtypes match.
  virtual absl::Status LayerNorm(TensorView in, const float* gamma,
                                 const float* beta, float eps,
                                 TensorView out) = 0;

  // out = epilogue(in W^T).  in: [T, K] activation dtype; weight: [N, K]
  // from UploadWeight (the Hugging Face [out_features, in_features] layout);
  // out: [T, N] activation dtype, or fp32 when a residual is fused or for
  // logits. Each output row depends only on its input row; the CPU backends
  // guarantee that bit for bit whatever T is (batch invariance, tested),
  // the CUDA backend up to rounding (cuBLASLt picks kernels by shape).
  virtual absl::Status Linear(TensorView in, TensorView weight,
                              const LinearEpilogue& epilogue,
                              TensorView out) = 0;

  // Stores each token's key and value rows in the pool:
  // pool[slot / block_size, head, slot % block_size, :] = row[head].
  // k, v: [T, num_kv_heads * head_dim] activation dtype (strided views into
  // the fused QKV output); slot_mapping: [T] int32.
  virtual absl::Status WriteKv(TensorView k, TensorView v,
                               const int32_t* slot_mapping, int num_tokens,
                               const PagedKvView& kv) = 0;

  // Causal attention of the batch's queries against the paged KV cache with
  // the ALiBi bias: softmax_j(scale * q.k_j - slope_h * (i - j)) over keys
  // j <= i (within the sequence's window, if any), then the weighted sum of
  // v_j. Query head h reads KV head
  // h / (num_heads / num_kv_heads).
  // q: [T, num_heads * head_dim] activation dtype; slopes: [num_heads] fp32;
  // out: [T, num_heads * head_dim] activation dtype.
  virtual absl::Status PagedAttention(TensorView q, const PagedKvView& kv,
                                      const AttentionMeta& meta,
                                      const float* slopes, int num_heads,
                                      float scale, TensorView out) = 0;

  // Whether Sample runs here; the model runner then keeps logits on the
  // device and only the chosen ids and log-probabilities come back.
  virtual bool SupportsSampling() const { return false; }
  // Samples or scores rows of `logits` [R, vocab] fp32 (this backend's
  // memory; a sampled row is modified in place): results[i] for rows[i],
  // on the host when it returns.
  virtual absl::Status Sample(const TensorView& /*logits*/,
                              absl::Span<const SampleRow> /*rows*/,
                              std::vector<SampleResult>* /*results*/) {
    return absl::UnimplementedError(
        absl::StrCat(Kind(), " backend: no device sampling"));
  }
};

struct BackendOptions {
  // "auto" (CUDA when a GPU is visible and the CUDA backend was built, else
  // "cpu"), or a name from ListBackends(): "cpu", "ref", "cuda".
  std::string device = "auto";
  // CPU backends: compute threads (0: all cores).
  int num_threads = 0;
  // CUDA: weight/activation dtype, kBF16 or kF16.
  DType cuda_dtype = DType::kBF16;
  // "cpu": how weight matrices are stored: kF32, kBF16, kF16 or kI8. "ref"
  // takes kF32 only.
  DType cpu_weight_dtype = DType::kF32;
  // KV cache dtype; unset: the backend's own (fp32 on CPU backends, the
  // cuda_dtype on CUDA). "cpu" also takes kBF16 and kF16.
  std::optional<DType> kv_dtype;
  // "cpu": the kernel set, "auto" (the best this CPU runs) or a lower one
  // by name (tests and benchmarks; see kernels/cpu/cpu_backend.h).
  std::string cpu_kernels = "auto";
};

// A backend of the table in kernels/backend.cc.
struct BackendInfo {
  std::string name;  // the --device value
  std::string description;
  // Whether CreateBackend can make it here; if not, why.
  bool available = false;
  std::string unavailable_reason;
};

// Every backend this build knows, available or not.
std::vector<BackendInfo> ListBackends();

// The backend "auto" stands for here ("cuda" with a visible GPU, else "cpu");
// other names are returned lower-cased, unchecked.
std::string ResolveDevice(absl::string_view device);

// Creates the backend `options.device` names. Errors: unknown device name
// (InvalidArgument), an option the backend does not take (InvalidArgument,
// naming it), a backend that is not available here (FailedPrecondition).
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(
    const BackendOptions& options);

// Whether this build contains the CUDA backend and a GPU is visible.
bool CudaAvailable();

}  // namespace alibi::kernels

#endif  // ALIBI_KERNELS_BACKEND_H_
