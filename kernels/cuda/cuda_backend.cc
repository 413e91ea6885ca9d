// The CUDA Backend: argument checking, memory, cuBLASLt GEMMs and the launch
// of the kernels in kernels/cuda/*.cu. Compiled by the host compiler (no
// device code here), so Abseil stays out of nvcc's way.
#include "kernels/cuda/cuda_backend.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.h"
#include "kernels/cuda/epilogue.cuh"
#include "kernels/cuda/gather.cuh"
#include "kernels/cuda/kv_write.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/sample.cuh"
#include "kernels/cuda/sample_pack.h"

namespace alibi::kernels::cuda {
namespace {

// cuBLASLt workspace (what NVIDIA recommends for Hopper).
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
// Largest staging buffer UploadConvert uses.
constexpr size_t kStagingBytes = size_t{64} << 20;
// Heuristic results inspected per GEMM problem.
constexpr int kHeuristicResults = 8;

absl::Status CudaError(cudaError_t err, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  const std::string message =
      absl::StrCat("cuda backend: ", what, ": ", cudaGetErrorName(err), " (",
                   cudaGetErrorString(err), ")");
  if (err == cudaErrorMemoryAllocation) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::InternalError(message);
}

absl::Status CublasError(cublasStatus_t status, absl::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message = absl::StrCat(
      "cuda backend: cuBLASLt ", what, ": ", cublasLtGetStatusString(status));
  if (status == CUBLAS_STATUS_ALLOC_FAILED) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::InternalError(message);
}

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("cuda backend: ", what));
}

std::optional<ElemType> ToElem(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return ElemType::kF32;
    case DType::kF16:
      return ElemType::kF16;
    case DType::kBF16:
      return ElemType::kBF16;
    case DType::kI32:
    case DType::kI8:
      break;
  }
  return std::nullopt;
}

cudaDataType_t ToCudaType(DType dtype) {
  switch (dtype) {
    case DType::kF16:
      return CUDA_R_16F;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF32:
    case DType::kI32:
    case DType::kI8:
      break;
  }
  return CUDA_R_32F;
}

// Largest power of two (<= 256) dividing the address; 256 for null.
uint32_t AlignmentOf(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 1;
  while (a < 256 && v % (2 * a) == 0) a *= 2;
  return a;
}

bool IsAligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// What the backend shares with the Buffers it returned (which may outlive
// it): the stream their memory is freed on (stream-ordered, so a free waits
// for queued work on that stream only, never for the whole device), and a
// count of frees that tells the backend when cached device pointers (16-bit
// bias copies, graphs) may refer to released memory. Reference counted: the
// backend holds one reference, every live Buffer one; the last one destroys
// the stream.
struct DeviceContext {
  cudaStream_t stream = nullptr;
  std::atomic<int64_t> refs{1};
  std::atomic<uint64_t> frees{0};

  void Unref() {
    if (refs.fetch_sub(1) == 1) {
      (void)cudaStreamSynchronize(stream);
      (void)cudaStreamDestroy(stream);
      delete this;
    }
  }
};

void FreeDevice(void* ptr, void* ctx) {
  auto* context = static_cast<DeviceContext*>(ctx);
  (void)cudaFreeAsync(ptr, context->stream);
  context->frees.fetch_add(1);
  context->Unref();
}

std::string ErrorWordMessage(uint32_t bits) {
  std::vector<std::string> parts;
  if (bits & kErrTokenId) parts.push_back("token id outside the table");
  if (bits & kErrGatherRow) parts.push_back("gather row outside the input");
  if (bits & kErrKvSlot) parts.push_back("KV slot outside the pool");
  if (bits & kErrBlockTable) parts.push_back("block id outside the KV pool");
  if (bits & kErrAttentionMeta) {
    parts.push_back(
        "inconsistent attention metadata (query_start / context_lens / "
        "max_blocks_per_seq / max_context_len)");
  }
  return absl::StrCat(
      "cuda backend: a kernel saw invalid input since the last "
      "synchronisation: ",
      absl::StrJoin(parts, "; "));
}

// A growable device buffer owned by the backend.
struct DeviceScratch {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// One cached GEMM problem: descriptors and the chosen algorithm.
struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;

  // C's layout: D's when C and D are one buffer.
  cublasLtMatrixLayout_t c_layout() const { return c != nullptr ? c : d; }

  void Destroy() {
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
    for (cublasLtMatrixLayout_t layout : {a, b, c, d}) {
      if (layout != nullptr) cublasLtMatrixLayoutDestroy(layout);
    }
    desc = nullptr;
    a = b = c = d = nullptr;
  }
};

// Everything a cuBLASLt heuristic depends on.
struct GemmProblem {
  int64_t m = 0, n = 0, k = 0;  // column-major: D[m, n] = op(A)[m, k] B[k, n]
  int64_t lda = 0, ldb = 0, ldc = 0, ldd = 0;
  DType ab_type = DType::kBF16;
  DType d_type = DType::kBF16;
  GemmEpilogue epilogue = GemmEpilogue::kDefault;
  bool in_place = false;  // C and D are one buffer (C layout = D layout)
  uint32_t align_a = 0, align_b = 0, align_c = 0, align_d = 0, align_bias = 0;

  std::array<int64_t, 16> Key() const {
    return {m,
            n,
            k,
            lda,
            ldb,
            ldc,
            ldd,
            static_cast<int64_t>(ab_type),
            static_cast<int64_t>(d_type),
            static_cast<int64_t>(epilogue),
            in_place ? 1 : 0,
            align_a,
            align_b,
            align_c,
            align_d,
            align_bias};
  }
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(DType dtype) : dtype_(dtype) {}

  ~CudaBackend() override {
    if (context_ == nullptr) return;
    if (capturing_) {
      cudaGraph_t graph = nullptr;
      (void)cudaStreamEndCapture(stream_, &graph);
      if (graph != nullptr) (void)cudaGraphDestroy(graph);
    }
    (void)cudaStreamSynchronize(stream_);
    ClearGraphs();
    for (auto& [key, plan] : gemms_) plan.Destroy();
    if (cublas_ != nullptr) cublasLtDestroy(cublas_);
    DropBiasCopies();
    for (DeviceScratch* s : {&cublas_workspace_, &attention_workspace_,
                             &linear_scratch_, &staging_, &sample_scratch_}) {
      ReleaseScratch(*s);
    }
    if (error_word_ != nullptr) (void)cudaFreeAsync(error_word_, stream_);
    (void)cudaStreamSynchronize(stream_);
    if (error_host_ != nullptr) (void)cudaFreeHost(error_host_);
    if (sample_host_ != nullptr) (void)cudaFreeHost(sample_host_);
    context_->Unref();  // the stream goes with the last Buffer
  }

  absl::Status Init() {
    RETURN_IF_ERROR(CudaError(cudaSetDevice(0), "cudaSetDevice(0)"));
    RETURN_IF_ERROR(
        CudaError(cudaGetDeviceProperties(&props_, 0), "device properties"));
    RETURN_IF_ERROR(CudaError(
        cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream"));
    context_ = new DeviceContext;
    context_->stream = stream_;
    RETURN_IF_ERROR(CublasError(cublasLtCreate(&cublas_), "create"));
    RETURN_IF_ERROR(EnsureScratch(cublas_workspace_, kCublasWorkspaceBytes,
                                  "cuBLASLt workspace"));
    RETURN_IF_ERROR(
        CudaError(cudaMallocAsync(reinterpret_cast<void**>(&error_word_),
                                  sizeof(uint32_t), stream_),
                  "error word"));
    RETURN_IF_ERROR(
        CudaError(cudaMemsetAsync(error_word_, 0, sizeof(uint32_t), stream_),
                  "error word"));
    RETURN_IF_ERROR(
        CudaError(cudaMallocHost(reinterpret_cast<void**>(&error_host_),
                                 sizeof(uint32_t)),
                  "pinned error word"));
    *error_host_ = 0;
    seen_frees_ = context_->frees.load();
    return CudaError(cudaStreamSynchronize(stream_), "init");
  }

  std::string Name() const override {
    return absl::StrCat("cuda:0 (", props_.name, ")");
  }
  absl::string_view Kind() const override { return "cuda"; }
  DType weight_dtype() const override { return dtype_; }
  DType activation_dtype() const override { return dtype_; }
  DType kv_dtype() const override { return dtype_; }

  // ---- memory ----

  // Stream-ordered: usable at once by this backend's ops (and by anything
  // after the next Synchronize()).
  absl::StatusOr<Buffer> Allocate(size_t bytes) override {
    RETURN_IF_ERROR(NotCapturing("Allocate"));
    void* ptr = nullptr;
    const cudaError_t err =
        cudaMallocAsync(&ptr, std::max<size_t>(bytes, 1), stream_);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      (void)cudaMemGetInfo(&free_bytes, &total_bytes);
      return absl::ResourceExhaustedError(absl::StrCat(
          "cuda backend: cannot allocate ", bytes, " bytes (", free_bytes,
          " of ", total_bytes, " free): ", cudaGetErrorString(err)));
    }
    context_->refs.fetch_add(1);
    return Buffer(ptr, bytes, &FreeDevice, context_);
  }

  absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) override {
    RETURN_IF_ERROR(NotCapturing("CopyToDevice"));
    if (bytes == 0) return absl::OkStatus();
    return CudaError(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_),
        "copy to device");
  }

  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    RETURN_IF_ERROR(NotCapturing("CopyToHost"));
    if (bytes > 0) {
      RETURN_IF_ERROR(CudaError(
          cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
          "copy to host"));
    }
    return SyncAndCheck();
  }

  absl::Status Synchronize() override {
    RETURN_IF_ERROR(NotCapturing("Synchronize"));
    ReleaseScratch(staging_);  // stream-ordered: after the queued uploads
    return SyncAndCheck();
  }

  MemoryInfo GetMemoryInfo() const override {
    MemoryInfo info;
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      info.total_bytes = total_bytes;
      info.used_bytes = total_bytes - free_bytes;
    } else {
      (void)cudaGetLastError();
    }
    return info;
  }

  absl::Status UploadConvert(const void* src, DType src_dtype, size_t count,
                             void* dst, DType dst_dtype) override {
    const std::optional<ElemType> from = ToElem(src_dtype);
    const std::optional<ElemType> to = ToElem(dst_dtype);
    if (!from.has_value() || !to.has_value()) {
      return Invalid(absl::StrCat("cannot convert ", DTypeName(src_dtype),
                                  " to ", DTypeName(dst_dtype)));
    }
    RETURN_IF_ERROR(NotCapturing("UploadConvert"));
    if (count == 0) return absl::OkStatus();
    const size_t src_size = DTypeSize(src_dtype);
    if (src_dtype == dst_dtype) {
      return CudaError(cudaMemcpyAsync(dst, src, count * src_size,
                                       cudaMemcpyHostToDevice, stream_),
                       "upload");
    }
    RETURN_IF_ERROR(EnsureScratch(
        staging_, std::min(kStagingBytes, count * src_size), "staging"));
    const size_t per_chunk = staging_.bytes / src_size;
    const size_t dst_size = DTypeSize(dst_dtype);
    for (size_t offset = 0; offset < count; offset += per_chunk) {
      const size_t n = std::min(per_chunk, count - offset);
      // Pageable source: returns once the bytes are staged by the driver;
      // the conversion below is ordered after the copy on the stream.
      RETURN_IF_ERROR(CudaError(
          cudaMemcpyAsync(staging_.ptr,
                          static_cast<const char*>(src) + offset * src_size,
                          n * src_size, cudaMemcpyHostToDevice, stream_),
          "upload"));
      RETURN_IF_ERROR(
          CudaError(LaunchConvert(staging_.ptr, *from,
                                  static_cast<char*>(dst) + offset * dst_size,
                                  *to, static_cast<int64_t>(n), stream_),
                    "convert"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> ReserveWorkspace(
      const WorkspaceLimits& limits) override {
    if (limits.max_tokens < 0 || limits.max_seqs < 0 || limits.num_heads <= 0 ||
        limits.head_dim <= 0 || limits.max_keys < 0) {
      return Invalid("ReserveWorkspace: limits must be positive");
    }
    RETURN_IF_ERROR(NotCapturing("ReserveWorkspace"));
    RETURN_IF_ERROR(
        EnsureScratch(attention_workspace_,
                      AttentionWorkspaceBound(limits.max_tokens,
                                              limits.max_seqs, limits.num_heads,
                                              limits.head_dim, limits.max_keys),
                      "attention workspace"));
    return cublas_workspace_.bytes + attention_workspace_.bytes +
           linear_scratch_.bytes;
  }

  // ---- graphs ----

  bool SupportsGraphs() const override { return true; }

  // A key is captured the second time it is seen: the first run is eager,
  // so that everything its ops create lazily (cuBLASLt plans, 16-bit bias
  // copies, scratch) exists before the capture.
  absl::StatusOr<GraphMode> BeginGraph(uint64_t key) override {
    RETURN_IF_ERROR(NotCapturing("BeginGraph"));
    CheckFrees();
    GraphEntry& entry = graphs_[key];
    if (entry.exec != nullptr) {
      RETURN_IF_ERROR(
          CudaError(cudaGraphLaunch(entry.exec, stream_), "graph launch"));
      return GraphMode::kReplayed;
    }
    if (entry.failed || ++entry.seen < 2) return GraphMode::kEager;
    const cudaError_t err =
        cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      entry.failed = true;
      return GraphMode::kEager;
    }
    capturing_ = true;
    capture_key_ = key;
    return GraphMode::kCapture;
  }

  absl::Status EndGraph(bool keep) override {
    if (!capturing_) {
      return absl::FailedPreconditionError(
          "cuda backend: EndGraph without a capture");
    }
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    cudaError_t err = cudaStreamEndCapture(stream_, &graph);
    GraphEntry& entry = graphs_[capture_key_];
    if (err != cudaSuccess || graph == nullptr) {
      (void)cudaGetLastError();
      if (graph != nullptr) (void)cudaGraphDestroy(graph);
      entry.failed = true;
      return CudaError(err != cudaSuccess ? err : cudaErrorUnknown,
                       "graph capture");
    }
    if (!keep) {
      (void)cudaGraphDestroy(graph);
      return absl::OkStatus();
    }
    cudaGraphExec_t exec = nullptr;
    err = cudaGraphInstantiate(&exec, graph, 0);
    (void)cudaGraphDestroy(graph);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      entry.failed = true;
      return CudaError(err, "graph instantiate");
    }
    entry.exec = exec;
    return CudaError(cudaGraphLaunch(exec, stream_), "graph launch");
  }

  void ClearGraphs() override {
    if (graphs_.empty()) return;
    (void)cudaStreamSynchronize(stream_);  // no recording is in flight
    for (auto& [key, entry] : graphs_) {
      if (entry.exec != nullptr) (void)cudaGraphExecDestroy(entry.exec);
    }
    graphs_.clear();
  }

  // ---- ops ----

  absl::Status Embedding(const int32_t* ids, int num_tokens, TensorView table,
                         TensorView out) override {
    const std::optional<ElemType> table_type = ToElem(table.dtype);
    if (!table_type.has_value() || out.dtype != DType::kF32) {
      return Invalid("embedding: table must be float, output float32");
    }
    if (num_tokens < 0 || out.rows < num_tokens || out.cols != table.cols) {
      return Invalid("embedding shape mismatch");
    }
    if (num_tokens == 0) return absl::OkStatus();
    return CudaError(LaunchEmbedding(ids, num_tokens, table.data, *table_type,
                                     table.rows, table.cols, table.row_stride,
                                     static_cast<float*>(out.data),
                                     out.row_stride, error_word_, stream_),
                     "embedding");
  }

  absl::Status GatherRows(TensorView in, const int32_t* rows, int num_rows,
                          TensorView out) override {
    if (in.dtype != out.dtype || !ToElem(in.dtype).has_value()) {
      return Invalid("gather: input and output dtypes differ");
    }
    if (num_rows < 0 || out.rows < num_rows || out.cols != in.cols) {
      return Invalid("gather shape mismatch");
    }
    if (num_rows == 0) return absl::OkStatus();
    return CudaError(LaunchGatherRows(in.data, in.rows, in.cols, in.row_stride,
                                      rows, num_rows, out.data, out.row_stride,
                                      static_cast<int>(DTypeSize(in.dtype)),
                                      error_word_, stream_),
                     "gather rows");
  }

  absl::Status LayerNorm(TensorView in, const float* gamma, const float* beta,
                         float eps, TensorView out) override {
    const std::optional<ElemType> out_type = ToElem(out.dtype);
    if (in.dtype != DType::kF32 || !out_type.has_value()) {
      return Invalid("layernorm: input must be float32, output float");
    }
    if (in.rows != out.rows || in.cols != out.cols || gamma == nullptr) {
      return Invalid("layernorm shape mismatch");
    }
    if (in.data == out.data &&
        (out.dtype != DType::kF32 || out.row_stride != in.row_stride)) {
      return Invalid("layernorm in place needs a float32 output of one layout");
    }
    return CudaError(
        LaunchLayerNorm(static_cast<const float*>(in.data), in.row_stride,
                        in.rows, in.cols, gamma, beta, eps, out.data, *out_type,
                        out.row_stride, stream_),
        "layernorm");
  }

  absl::Status Linear(TensorView in, TensorView weight,
                      const LinearEpilogue& epi, TensorView out) override {
    if (in.dtype != dtype_ || weight.dtype != dtype_ ||
        (out.dtype != dtype_ && out.dtype != DType::kF32)) {
      return Invalid(absl::StrCat(
          "linear: input and weight must be ", DTypeName(dtype_), ", output ",
          DTypeName(dtype_), " or float32; got ", DTypeName(in.dtype), " x ",
          DTypeName(weight.dtype), " -> ", DTypeName(out.dtype)));
    }
    const int64_t rows = in.rows, n = weight.rows, k = weight.cols;
    if (in.cols != k || out.rows != rows || out.cols != n) {
      return Invalid(absl::StrCat("linear shapes [", rows, ",", in.cols,
                                  "] x [", n, ",", k, "]^T -> [", out.rows, ",",
                                  out.cols, "]"));
    }
    const bool has_residual = epi.residual.data != nullptr;
    if (has_residual && (epi.residual.rows != rows || epi.residual.cols != n ||
                         !ToElem(epi.residual.dtype).has_value())) {
      return Invalid("linear residual shape mismatch");
    }
    if (rows == 0 || n == 0) return absl::OkStatus();

    LinearShape shape;
    shape.has_bias = epi.bias != nullptr;
    shape.clamp = epi.clamp;
    shape.act = static_cast<EpilogueAct>(epi.activation);
    shape.has_residual = has_residual;
    if (has_residual) {
      shape.residual_same_dtype = epi.residual.dtype == out.dtype;
      shape.residual_aliases_out = epi.residual.data == out.data;
      shape.residual_same_layout = epi.residual.row_stride == out.row_stride;
    }
    // cuBLASLt's bias epilogue takes the bias in D's dtype: fp32 as given,
    // or the 16-bit copy kept for this bias.
    const void* gemm_bias = epi.bias;
    if (shape.has_bias && out.dtype != DType::kF32) {
      ASSIGN_OR_RETURN(gemm_bias, BiasCopy(epi.bias, n));
    }
    LinearPlan plan;
    GemmPlan* gemm = nullptr;
    void* d_ptr = out.data;
    int64_t ldd = out.row_stride;
    for (const bool bias_epilogue : {true, false}) {
      shape.bias_epilogue_ok = bias_epilogue;
      plan = PlanLinear(shape);
      if (plan.error != nullptr) return Invalid(plan.error);
      d_ptr = out.data;
      ldd = out.row_stride;
      if (plan.gemm_to_scratch) {
        RETURN_IF_ERROR(
            EnsureScratch(linear_scratch_,
                          static_cast<size_t>(rows * n) * DTypeSize(out.dtype),
                          "linear scratch"));
        d_ptr = linear_scratch_.ptr;
        ldd = n;
      }
      GemmProblem p;
      p.m = n;
      p.n = rows;
      p.k = k;
      p.lda = weight.row_stride;
      p.ldb = in.row_stride;
      p.ldd = ldd;
      p.ldc = plan.gemm_beta_residual ? epi.residual.row_stride : ldd;
      p.ab_type = dtype_;
      p.d_type = out.dtype;
      p.epilogue = plan.gemm_epilogue;
      p.in_place = !plan.gemm_beta_residual || epi.residual.data == d_ptr;
      p.align_a = AlignmentOf(weight.data);
      p.align_b = AlignmentOf(in.data);
      p.align_d = AlignmentOf(d_ptr);
      p.align_c =
          plan.gemm_beta_residual ? AlignmentOf(epi.residual.data) : p.align_d;
      p.align_bias = GemmHasBias(p.epilogue) ? AlignmentOf(gemm_bias) : 0;
      ASSIGN_OR_RETURN(gemm, GetGemm(p, gemm_bias));
      if (gemm != nullptr || !shape.has_bias) break;
    }
    if (gemm == nullptr) {
      return absl::InternalError(absl::StrCat(
          "cuda backend: cuBLASLt has no algorithm for [", rows, ",", k,
          "] x [", n, ",", k, "]^T -> ", DTypeName(out.dtype)));
    }
    if (GemmHasBias(plan.gemm_epilogue)) {
      RETURN_IF_ERROR(CublasError(
          cublasLtMatmulDescSetAttribute(gemm->desc,
                                         CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                         &gemm_bias, sizeof(gemm_bias)),
          "bias pointer"));
    }
    const float alpha = epi.alpha;
    const float beta = plan.gemm_beta_residual ? 1.0f : 0.0f;
    const void* c_ptr = plan.gemm_beta_residual ? epi.residual.data : d_ptr;
    RETURN_IF_ERROR(CublasError(
        cublasLtMatmul(cublas_, gemm->desc, &alpha, weight.data, gemm->a,
                       in.data, gemm->b, &beta, c_ptr, gemm->c_layout(), d_ptr,
                       gemm->d, &gemm->algo, cublas_workspace_.ptr,
                       cublas_workspace_.bytes, stream_),
        "matmul"));
    if (!plan.run_kernel) return absl::OkStatus();
    const ElemType out_type = *ToElem(out.dtype);
    const bool residual = plan.kernel_residual;
    return CudaError(
        LaunchLinearEpilogue(
            d_ptr, out_type, ldd, rows, n,
            plan.kernel_bias ? epi.bias : nullptr,
            plan.kernel_clamp ? epi.clamp : 0.0f, plan.kernel_act,
            residual ? epi.residual.data : nullptr,
            residual ? *ToElem(epi.residual.dtype) : ElemType::kF32,
            residual ? epi.residual.row_stride : 0, out.data, out_type,
            out.row_stride, stream_),
        "linear epilogue");
  }

  absl::Status WriteKv(TensorView k, TensorView v, const int32_t* slot_mapping,
                       int num_tokens, const PagedKvView& kv) override {
    const int64_t width = static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim;
    if (kv.dtype != dtype_ || k.dtype != kv.dtype || v.dtype != kv.dtype) {
      return Invalid(absl::StrCat("WriteKv: keys, values and pool must be ",
                                  DTypeName(dtype_)));
    }
    if (num_tokens < 0 || k.cols != width || v.cols != width ||
        k.rows < num_tokens || v.rows < num_tokens || kv.block_size <= 0 ||
        kv.num_blocks < 0) {
      return Invalid("WriteKv shape mismatch");
    }
    if (num_tokens == 0 || width == 0) return absl::OkStatus();
    return CudaError(
        LaunchWriteKv(k.data, k.row_stride, v.data, v.row_stride, slot_mapping,
                      num_tokens, kv.k, kv.v, kv.num_blocks, kv.block_size,
                      kv.num_kv_heads, kv.head_dim,
                      static_cast<int>(DTypeSize(kv.dtype)), error_word_,
                      stream_),
        "write kv");
  }

  absl::Status PagedAttention(TensorView q, const PagedKvView& kv,
                              const AttentionMeta& meta, const float* slopes,
                              int num_heads, float scale,
                              TensorView out) override {
    if (q.dtype != dtype_ || out.dtype != dtype_ || kv.dtype != dtype_) {
      return Invalid(
          absl::StrCat("attention: queries, output and KV pool must be ",
                       DTypeName(dtype_)));
    }
    if (meta.num_tokens <= 0 || meta.num_seqs <= 0) return absl::OkStatus();
    const int64_t width = static_cast<int64_t>(num_heads) * kv.head_dim;
    if (q.cols != width || out.cols != width || q.rows < meta.num_tokens ||
        out.rows < meta.num_tokens || meta.max_blocks_per_seq <= 0 ||
        kv.num_blocks <= 0) {
      return Invalid("attention shape mismatch");
    }
    // The row kernel addresses pool rows (one head of one token) in int32.
    if (static_cast<int64_t>(kv.num_blocks) * kv.num_kv_heads * kv.block_size >
        INT32_MAX) {
      return Invalid("attention: KV pool has more than 2^31 head rows");
    }
    AttentionShape shape;
    shape.num_heads = num_heads;
    shape.num_kv_heads = kv.num_kv_heads;
    shape.head_dim = kv.head_dim;
    shape.block_size = kv.block_size;
    shape.num_tokens = meta.num_tokens;
    shape.num_seqs = meta.num_seqs;
    shape.max_query_len = meta.max_query_len;
    shape.max_context_len = meta.max_context_len;
    shape.max_keys = meta.max_keys;
    shape.q_out_aligned = IsAligned(q.data, 16) && q.row_stride % 8 == 0 &&
                          IsAligned(out.data, 4) && out.row_stride % 2 == 0;
    shape.kv_aligned = IsAligned(kv.k, 16) && IsAligned(kv.v, 16);
    const AttentionPlan plan = PlanAttention(shape);
    if (plan.error != nullptr) {
      return Invalid(absl::StrCat("attention: ", plan.error));
    }
    RETURN_IF_ERROR(EnsureScratch(attention_workspace_, plan.workspace_bytes,
                                  "attention workspace"));
    AttentionArgs args;
    args.q = q.data;
    args.q_stride = q.row_stride;
    args.out = out.data;
    args.out_stride = out.row_stride;
    args.k_pool = kv.k;
    args.v_pool = kv.v;
    args.num_blocks = kv.num_blocks;
    args.block_size = kv.block_size;
    args.num_kv_heads = kv.num_kv_heads;
    args.num_heads = num_heads;
    args.head_dim = kv.head_dim;
    args.query_start = meta.query_start;
    args.context_lens = meta.context_lens;
    args.block_tables = meta.block_tables;
    args.max_blocks_per_seq = meta.max_blocks_per_seq;
    args.windows = meta.windows;
    args.first_blocks = meta.first_blocks;
    args.num_seqs = meta.num_seqs;
    args.num_tokens = meta.num_tokens;
    args.slopes = slopes;
    args.scale = scale;
    args.dtype = *ToElem(dtype_);
    args.workspace = attention_workspace_.ptr;
    args.error_word = error_word_;
    // The work lists depend on the metadata alone: one planning launch per
    // batch (the layers of a step share its batch_id).
    const PlannedBatch batch{
        meta.batch_id,     meta.query_start, meta.context_lens,
        meta.block_tables, meta.windows,     meta.first_blocks,
        meta.num_seqs,     meta.num_tokens,  meta.max_blocks_per_seq,
        kv.block_size,     plan.kernel,      plan.max_tiles,
        plan.max_rows,     plan.max_items,   plan.plan_bytes,
        args.workspace};
    if (meta.batch_id == 0 || !(batch == planned_)) {
      planned_ = PlannedBatch{};
      RETURN_IF_ERROR(CudaError(LaunchAttentionPlan(args, plan, stream_),
                                "attention planning"));
      planned_ = batch;
    }
    if (plan.kernel == AttentionKernel::kPrefillMma) {
      RETURN_IF_ERROR(CudaError(LaunchPrefillAttention(args, plan, stream_),
                                "prefill attention"));
    }
    return CudaError(LaunchRowAttention(args, plan, stream_), "row attention");
  }

  bool SupportsSampling() const override { return true; }

  // The rows' parameters go up and the results come back through one pinned
  // buffer; the logits never leave the device.
  absl::Status Sample(const TensorView& logits,
                      absl::Span<const SampleRow> rows,
                      std::vector<SampleResult>* results) override {
    RETURN_IF_ERROR(NotCapturing("Sample"));
    if (logits.dtype != DType::kF32 || logits.packed) {
      return absl::InvalidArgumentError(
          "cuda backend: Sample needs float32 logits");
    }
    for (const SampleRow& r : rows) {
      if (r.row < 0 || r.row >= logits.rows) {
        return absl::InvalidArgumentError(
            absl::StrCat("cuda backend: Sample row ", r.row, " outside [0, ",
                         logits.rows, ")"));
      }
    }
    results->clear();
    if (rows.empty()) return absl::OkStatus();
    PackedSample& p = sample_pack_;
    p.Pack(rows, logits.cols);
    size_t bytes = 0;
    auto carve = [&](size_t n) {
      const size_t at = bytes;
      bytes = (bytes + n + 255) / 256 * 256;
      return at;
    };
    const size_t params_at = carve(p.params.size() * sizeof(SampleRowParams));
    const size_t ids_at = carve(p.ids.size() * sizeof(int32_t));
    const size_t values_at = carve(p.values.size() * sizeof(float));
    const size_t upload_bytes = bytes;
    const size_t saved_at = carve(p.ids.size() * sizeof(float));
    const size_t out_at = carve(p.params.size() * sizeof(SampledToken));
    const size_t top_ids_at = carve(p.top_total * sizeof(int32_t));
    const size_t top_lp_at = carve(p.top_total * sizeof(float));
    RETURN_IF_ERROR(EnsureScratch(sample_scratch_, bytes, "sampling buffers"));
    if (bytes > sample_host_bytes_) {  // idle: Sample ends synchronised
      if (sample_host_ != nullptr) (void)cudaFreeHost(sample_host_);
      sample_host_ = nullptr;
      sample_host_bytes_ = 0;
      RETURN_IF_ERROR(CudaError(cudaMallocHost(&sample_host_, bytes),
                                "pinned sampling buffer"));
      sample_host_bytes_ = bytes;
    }
    char* host = static_cast<char*>(sample_host_);
    char* dev = static_cast<char*>(sample_scratch_.ptr);
    std::memcpy(host + params_at, p.params.data(),
                p.params.size() * sizeof(SampleRowParams));
    std::memcpy(host + ids_at, p.ids.data(), p.ids.size() * sizeof(int32_t));
    std::memcpy(host + values_at, p.values.data(),
                p.values.size() * sizeof(float));
    RETURN_IF_ERROR(CudaError(cudaMemcpyAsync(dev, host, upload_bytes,
                                              cudaMemcpyHostToDevice, stream_),
                              "sampling parameters"));
    SampleArgs args;
    args.logits = static_cast<float*>(logits.data);
    args.vocab = logits.cols;
    args.stride = logits.row_stride;
    args.rows = reinterpret_cast<const SampleRowParams*>(dev + params_at);
    args.num_rows = static_cast<int>(p.params.size());
    args.ids = reinterpret_cast<const int32_t*>(dev + ids_at);
    args.values = reinterpret_cast<const float*>(dev + values_at);
    args.saved = reinterpret_cast<float*>(dev + saved_at);
    args.out = reinterpret_cast<SampledToken*>(dev + out_at);
    args.top_ids = reinterpret_cast<int32_t*>(dev + top_ids_at);
    args.top_logprobs = reinterpret_cast<float*>(dev + top_lp_at);
    absl::Status queued = CudaError(LaunchSample(args, stream_), "sampling");
    if (queued.ok()) {
      queued =
          CudaError(cudaMemcpyAsync(host + out_at, dev + out_at, bytes - out_at,
                                    cudaMemcpyDeviceToHost, stream_),
                    "sampling results");
    }
    if (!queued.ok()) {
      (void)cudaStreamSynchronize(stream_);  // the upload reads sample_host_
      return queued;
    }
    RETURN_IF_ERROR(SyncAndCheck());
    p.Unpack(reinterpret_cast<const SampledToken*>(host + out_at),
             reinterpret_cast<const int32_t*>(host + top_ids_at),
             reinterpret_cast<const float*>(host + top_lp_at), results);
    return absl::OkStatus();
  }

 private:
  // What a planning launch was for; an equal batch (nonzero id) reuses it.
  struct PlannedBatch {
    uint64_t id = 0;
    const int32_t* query_start = nullptr;
    const int32_t* context_lens = nullptr;
    const int32_t* block_tables = nullptr;
    const int32_t* windows = nullptr;
    const int32_t* first_blocks = nullptr;
    int num_seqs = 0;
    int num_tokens = 0;
    int max_blocks_per_seq = 0;
    int block_size = 0;
    AttentionKernel kernel = AttentionKernel::kNone;
    int64_t max_tiles = 0;
    int64_t max_rows = 0;
    int64_t max_items = 0;
    size_t plan_bytes = 0;
    const void* workspace = nullptr;

    bool operator==(const PlannedBatch&) const = default;
  };

  struct GraphEntry {
    int seen = 0;
    bool failed = false;
    cudaGraphExec_t exec = nullptr;
  };

  static bool GemmHasBias(GemmEpilogue e) {
    return e == GemmEpilogue::kBias || e == GemmEpilogue::kGeluBias;
  }

  absl::Status NotCapturing(absl::string_view what) const {
    if (!capturing_) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "cuda backend: ", what, " is not allowed while capturing a graph"));
  }

  // Grows `s` to at least `bytes` (never shrinks). Stream-ordered: the old
  // buffer is released once the work queued before it is done, without a
  // synchronisation. Recorded graphs may use the old buffer: they are
  // dropped; while capturing, growing is refused.
  absl::Status EnsureScratch(DeviceScratch& s, size_t bytes,
                             absl::string_view what) {
    if (bytes <= s.bytes) return absl::OkStatus();
    RETURN_IF_ERROR(NotCapturing(what));
    if (s.ptr != nullptr) {
      ClearGraphs();
      ReleaseScratch(s);
    }
    const size_t rounded = (bytes + (size_t{1} << 20) - 1) >> 20 << 20;
    RETURN_IF_ERROR(CudaError(cudaMallocAsync(&s.ptr, rounded, stream_), what));
    s.bytes = rounded;
    return absl::OkStatus();
  }

  void ReleaseScratch(DeviceScratch& s) {
    if (s.ptr != nullptr) (void)cudaFreeAsync(s.ptr, stream_);
    s = DeviceScratch{};
  }

  // Buffers were freed since the last look: a cached 16-bit bias copy may
  // belong to a bias that no longer exists (its address reused), and a
  // recorded graph may use freed memory. Drops both.
  void CheckFrees() {
    const uint64_t frees = context_->frees.load();
    if (frees == seen_frees_) return;
    seen_frees_ = frees;
    ClearGraphs();
    DropBiasCopies();
  }

  void DropBiasCopies() {
    for (auto& [key, copy] : bias_copies_) ReleaseScratch(copy);
    bias_copies_.clear();
  }

  // The activation-dtype copy of fp32 bias[0..n), converted on the stream
  // the first time it is asked for (weights do not change once loaded).
  absl::StatusOr<const void*> BiasCopy(const float* bias, int64_t n) {
    CheckFrees();
    const std::pair<const float*, int64_t> key(bias, n);
    auto it = bias_copies_.find(key);
    if (it != bias_copies_.end()) return it->second.ptr;
    RETURN_IF_ERROR(NotCapturing("a new 16-bit bias copy"));
    DeviceScratch copy;
    RETURN_IF_ERROR(CudaError(
        cudaMallocAsync(&copy.ptr, static_cast<size_t>(n) * DTypeSize(dtype_),
                        stream_),
        "bias copy"));
    copy.bytes = static_cast<size_t>(n) * DTypeSize(dtype_);
    const cudaError_t err = LaunchConvert(bias, ElemType::kF32, copy.ptr,
                                          *ToElem(dtype_), n, stream_);
    if (err != cudaSuccess) {
      ReleaseScratch(copy);
      return CudaError(err, "bias copy");
    }
    bias_copies_.emplace(key, copy);
    return copy.ptr;
  }

  absl::Status SyncAndCheck() {
    RETURN_IF_ERROR(
        CudaError(cudaMemcpyAsync(error_host_, error_word_, sizeof(uint32_t),
                                  cudaMemcpyDeviceToHost, stream_),
                  "error word"));
    RETURN_IF_ERROR(
        CudaError(cudaStreamSynchronize(stream_), "stream synchronize"));
    const uint32_t bits = *error_host_;
    if (bits == 0) return absl::OkStatus();
    *error_host_ = 0;
    RETURN_IF_ERROR(
        CudaError(cudaMemsetAsync(error_word_, 0, sizeof(uint32_t), stream_),
                  "error word"));
    return absl::InvalidArgumentError(ErrorWordMessage(bits));
  }

  // The cached plan for `p`, or nullptr when cuBLASLt has no algorithm.
  absl::StatusOr<GemmPlan*> GetGemm(const GemmProblem& p, const void* bias) {
    const auto key = p.Key();
    auto it = gemms_.find(key);
    if (it != gemms_.end()) {
      return it->second.found ? &it->second : nullptr;
    }
    GemmPlan plan;
    absl::Status status = BuildGemm(p, bias, plan);
    if (!status.ok()) {
      plan.Destroy();
      return status;
    }
    if (!plan.found) plan.Destroy();
    GemmPlan& stored = gemms_.emplace(key, plan).first->second;
    return stored.found ? &stored : nullptr;
  }

  absl::Status BuildGemm(const GemmProblem& p, const void* bias,
                         GemmPlan& plan) {
    RETURN_IF_ERROR(CublasError(
        cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
        "matmul desc"));
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    RETURN_IF_ERROR(CublasError(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                       &trans_a, sizeof(trans_a)),
        "transa"));
    RETURN_IF_ERROR(CublasError(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                       &trans_b, sizeof(trans_b)),
        "transb"));
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    switch (p.epilogue) {
      case GemmEpilogue::kDefault:
        break;
      case GemmEpilogue::kBias:
        epilogue = CUBLASLT_EPILOGUE_BIAS;
        break;
      case GemmEpilogue::kGelu:
        epilogue = CUBLASLT_EPILOGUE_GELU;
        break;
      case GemmEpilogue::kGeluBias:
        epilogue = CUBLASLT_EPILOGUE_GELU_BIAS;
        break;
    }
    RETURN_IF_ERROR(CublasError(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                       &epilogue, sizeof(epilogue)),
        "epilogue"));
    if (GemmHasBias(p.epilogue)) {
      // CUDA 13: outside FP8 the bias has D's type.
      const void* bias_ptr = bias;
      const int32_t bias_type = ToCudaType(p.d_type);
      RETURN_IF_ERROR(CublasError(
          cublasLtMatmulDescSetAttribute(plan.desc,
                                         CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                         &bias_ptr, sizeof(bias_ptr)),
          "bias pointer"));
      RETURN_IF_ERROR(CublasError(
          cublasLtMatmulDescSetAttribute(plan.desc,
                                         CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                         &bias_type, sizeof(bias_type)),
          "bias type"));
    }
    const cudaDataType_t ab = ToCudaType(p.ab_type);
    const cudaDataType_t cd = ToCudaType(p.d_type);
    RETURN_IF_ERROR(CublasError(
        cublasLtMatrixLayoutCreate(&plan.a, ab, p.k, p.m, p.lda), "layout A"));
    RETURN_IF_ERROR(CublasError(
        cublasLtMatrixLayoutCreate(&plan.b, ab, p.k, p.n, p.ldb), "layout B"));
    RETURN_IF_ERROR(CublasError(
        cublasLtMatrixLayoutCreate(&plan.d, cd, p.m, p.n, p.ldd), "layout D"));
    if (!p.in_place) {  // in place (C = D), one layout serves both
      RETURN_IF_ERROR(
          CublasError(cublasLtMatrixLayoutCreate(&plan.c, cd, p.m, p.n, p.ldc),
                      "layout C"));
    }

    cublasLtMatmulPreference_t pref = nullptr;
    RETURN_IF_ERROR(
        CublasError(cublasLtMatmulPreferenceCreate(&pref), "preference"));
    const uint64_t workspace = cublas_workspace_.bytes;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
        sizeof(workspace));
    const std::array<std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t>,
                     4>
        aligns = {{{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, p.align_a},
                   {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, p.align_b},
                   {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, p.align_c},
                   {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, p.align_d}}};
    for (const auto& [attr, value] : aligns) {
      if (st == CUBLAS_STATUS_SUCCESS) {
        st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &value,
                                                  sizeof(value));
      }
    }
    cublasLtMatmulHeuristicResult_t results[kHeuristicResults] = {};
    int returned = 0;
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulAlgoGetHeuristic(
          cublas_, plan.desc, plan.a, plan.b, plan.c_layout(), plan.d, pref,
          kHeuristicResults, results, &returned);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) return absl::OkStatus();
    RETURN_IF_ERROR(CublasError(st, "heuristic"));
    // Prefer the fastest algorithm without split-K: its K reduction order
    // does not depend on how many rows the batch has.
    int chosen = -1;
    for (int i = 0; i < returned; ++i) {
      if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
      if (chosen < 0) chosen = i;
      int32_t splits = 1;
      size_t written = 0;
      if (cublasLtMatmulAlgoConfigGetAttribute(
              &results[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits,
              sizeof(splits), &written) == CUBLAS_STATUS_SUCCESS &&
          splits <= 1) {
        chosen = i;
        break;
      }
    }
    if (chosen < 0) return absl::OkStatus();
    plan.algo = results[chosen].algo;
    plan.found = true;
    return absl::OkStatus();
  }

  const DType dtype_;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  DeviceContext* context_ = nullptr;
  uint64_t seen_frees_ = 0;
  cublasLtHandle_t cublas_ = nullptr;
  DeviceScratch cublas_workspace_, attention_workspace_, linear_scratch_,
      staging_, sample_scratch_;
  PackedSample sample_pack_;
  void* sample_host_ = nullptr;  // pinned: sampling parameters and results
  size_t sample_host_bytes_ = 0;
  std::map<std::pair<const float*, int64_t>, DeviceScratch> bias_copies_;
  uint32_t* error_word_ = nullptr;  // device
  uint32_t* error_host_ = nullptr;  // pinned host
  std::map<std::array<int64_t, 16>, GemmPlan> gemms_;
  PlannedBatch planned_;
  std::map<uint64_t, GraphEntry> graphs_;
  bool capturing_ = false;
  uint64_t capture_key_ = 0;
};

}  // namespace

int CudaDeviceCount() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky-free error state
      return 0;
    }
    return n;
  }();
  return count;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(DType dtype) {
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda backend: dtype must be bfloat16 or float16, got ",
                     DTypeName(dtype)));
  }
  if (CudaDeviceCount() <= 0) {
    return absl::FailedPreconditionError("cuda backend: no CUDA device");
  }
  auto backend = std::make_unique<CudaBackend>(dtype);
  RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace alibi::kernels::cuda
