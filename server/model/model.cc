#include "server/model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/model/checkpoint.h"
#include "server/model/decode_graph.h"

namespace alibi::model {

using kernels::DType;
using kernels::DTypeSize;
using kernels::LinearEpilogue;
using kernels::TensorView;

struct Model::Layer {
  const float* input_norm_weight = nullptr;
  const float* input_norm_bias = nullptr;
  TensorView qkv_weight;  // [Q + 2 KV, H]
  const float* qkv_bias = nullptr;
  TensorView out_weight;  // [H, Q]
  const float* out_bias = nullptr;
  const float* post_norm_weight = nullptr;
  const float* post_norm_bias = nullptr;
  TensorView up_weight;  // [F, H]
  const float* up_bias = nullptr;
  TensorView down_weight;  // [H, F]
  const float* down_bias = nullptr;
};

Model::Model(const ModelConfig& config, kernels::Backend* backend)
    : config_(config), backend_(backend) {
  for (double s : AlibiSlopes(config.num_heads, config.alibi_bias_max)) {
    slopes_.push_back(static_cast<float>(s));
  }
}

Model::~Model() = default;

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& model_dir,
                                                   kernels::Backend* backend) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::Open(model_dir));
  ASSIGN_OR_RETURN(DecoderWeights weights,
                   LoadDecoderWeights(*checkpoint, config));
  return Create(config, weights, backend);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Create(
    const ModelConfig& config, const DecoderWeights& weights,
    kernels::Backend* backend) {
  if (backend == nullptr) return absl::InvalidArgumentError("null backend");
  if (config.num_heads <= 0 || config.num_kv_heads <= 0 ||
      config.num_heads % config.num_kv_heads != 0 || config.head_dim <= 0 ||
      static_cast<int>(weights.layers.size()) != config.num_layers) {
    return absl::InvalidArgumentError("model config and weights disagree");
  }
  std::unique_ptr<Model> model(new Model(config, backend));
  RETURN_IF_ERROR(model->Upload(weights));
  return model;
}

absl::StatusOr<TensorView> Model::UploadMatrix(const HostTensor& t) {
  if (t.shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", t.name, ": expected a matrix"));
  }
  absl::StatusOr<kernels::Weight> weight =
      backend_->UploadWeight(t.data, t.dtype, t.shape[0], t.shape[1]);
  if (!weight.ok()) {
    return Annotate(weight.status(), absl::StrCat("tensor ", t.name, ": "));
  }
  weight_bytes_ += weight->buffer.bytes();
  const TensorView view = weight->view;
  weight_buffers_.push_back(std::move(weight->buffer));
  return view;
}

absl::StatusOr<const float*> Model::UploadVector(const HostTensor& t) {
  const size_t count = static_cast<size_t>(t.numel());
  ASSIGN_OR_RETURN(kernels::Buffer buffer,
                   backend_->Allocate(count * sizeof(float)));
  RETURN_IF_ERROR(Annotate(backend_->UploadConvert(t.data, t.dtype, count,
                                                   buffer.data(), DType::kF32),
                           absl::StrCat("tensor ", t.name, ": ")));
  weight_bytes_ += buffer.bytes();
  const float* data = buffer.as<const float>();
  weight_buffers_.push_back(std::move(buffer));
  return data;
}

absl::StatusOr<const float*> Model::UploadOptionalVector(
    const std::optional<HostTensor>& t) {
  if (!t.has_value()) return nullptr;
  return UploadVector(*t);
}

absl::Status Model::Upload(const DecoderWeights& w) {
  ASSIGN_OR_RETURN(embedding_, UploadMatrix(w.embedding));
  if (w.embedding_norm_weight.has_value()) {
    ASSIGN_OR_RETURN(embedding_norm_weight_,
                     UploadVector(*w.embedding_norm_weight));
  }
  ASSIGN_OR_RETURN(embedding_norm_bias_,
                   UploadOptionalVector(w.embedding_norm_bias));
  layers_.resize(w.layers.size());
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& src = w.layers[i];
    Layer& dst = layers_[i];
    ASSIGN_OR_RETURN(dst.input_norm_weight,
                     UploadVector(src.input_norm_weight));
    ASSIGN_OR_RETURN(dst.input_norm_bias,
                     UploadOptionalVector(src.input_norm_bias));
    ASSIGN_OR_RETURN(dst.qkv_weight, UploadMatrix(src.qkv_weight));
    ASSIGN_OR_RETURN(dst.qkv_bias, UploadOptionalVector(src.qkv_bias));
    ASSIGN_OR_RETURN(dst.out_weight, UploadMatrix(src.out_weight));
    ASSIGN_OR_RETURN(dst.out_bias, UploadOptionalVector(src.out_bias));
    ASSIGN_OR_RETURN(dst.post_norm_weight, UploadVector(src.post_norm_weight));
    ASSIGN_OR_RETURN(dst.post_norm_bias,
                     UploadOptionalVector(src.post_norm_bias));
    ASSIGN_OR_RETURN(dst.up_weight, UploadMatrix(src.up_weight));
    ASSIGN_OR_RETURN(dst.up_bias, UploadOptionalVector(src.up_bias));
    ASSIGN_OR_RETURN(dst.down_weight, UploadMatrix(src.down_weight));
    ASSIGN_OR_RETURN(dst.down_bias, UploadOptionalVector(src.down_bias));
  }
  ASSIGN_OR_RETURN(final_norm_weight_, UploadVector(w.final_norm_weight));
  ASSIGN_OR_RETURN(final_norm_bias_, UploadOptionalVector(w.final_norm_bias));
  if (w.lm_head.data == w.embedding.data) {
    lm_head_ = embedding_;  // tied: one copy
  } else {
    ASSIGN_OR_RETURN(lm_head_, UploadMatrix(w.lm_head));
  }
  HostTensor slopes{"alibi_slopes",
                    DType::kF32,
                    {static_cast<int64_t>(slopes_.size())},
                    slopes_.data(),
                    nullptr};
  ASSIGN_OR_RETURN(slopes_device_, UploadVector(slopes));
  return backend_->Synchronize();
}

size_t Model::KvBytesPerBlock(int block_size) const {
  return size_t{2} * config_.num_layers * config_.num_kv_heads *
         config_.head_dim * block_size * DTypeSize(backend_->kv_dtype());
}

absl::Status Model::AllocateKvCache(int num_blocks, int block_size) {
  if (num_blocks <= 0 || block_size <= 0) {
    return absl::InvalidArgumentError(
        "KV cache needs a positive number of blocks and block size");
  }
  kv_pool_.Reset();
  backend_->ClearGraphs();  // recorded with the old pool
  ASSIGN_OR_RETURN(kv_pool_,
                   backend_->Allocate(KvBytesPerBlock(block_size) *
                                      static_cast<size_t>(num_blocks)));
  kv_num_blocks_ = num_blocks;
  kv_block_size_ = block_size;
  return absl::OkStatus();
}

kernels::PagedKvView Model::KvView(int layer) const {
  const size_t per_tensor =
      KvBytesPerBlock(kv_block_size_) / 2 / config_.num_layers * kv_num_blocks_;
  char* base = kv_pool_.as<char>() + per_tensor * 2 * layer;
  kernels::PagedKvView view;
  view.k = base;
  view.v = base + per_tensor;
  view.dtype = backend_->kv_dtype();
  view.num_blocks = kv_num_blocks_;
  view.block_size = kv_block_size_;
  view.num_kv_heads = config_.num_kv_heads;
  view.head_dim = config_.head_dim;
  return view;
}

absl::Status Model::Reserve(int max_tokens, int max_logit_rows) {
  return EnsureWorkspace(max_tokens, max_logit_rows);
}

size_t Model::workspace_bytes() const {
  size_t bytes = metadata_.bytes();
  for (const kernels::Buffer* b :
       {&hidden_, &normed_, &qkv_, &attn_, &ffn_, &gathered_, &logits_}) {
    bytes += b->bytes();
  }
  return bytes;
}

absl::Status Model::EnsureWorkspace(int tokens, int rows) {
  const DType act = backend_->activation_dtype();
  const size_t a = DTypeSize(act);
  const int64_t h = config_.hidden_size;
  const int64_t q = int64_t{config_.num_heads} * config_.head_dim;
  const int64_t kv = int64_t{config_.num_kv_heads} * config_.head_dim;
  if (tokens > workspace_tokens_ || rows > workspace_rows_) {
    backend_->ClearGraphs();  // recorded with the old buffers
  }
  if (tokens > workspace_tokens_) {
    ASSIGN_OR_RETURN(hidden_, backend_->Allocate(tokens * h * sizeof(float)));
    // `normed_` also holds the gathered rows' final layernorm (R <= T).
    ASSIGN_OR_RETURN(normed_, backend_->Allocate(tokens * h * a));
    ASSIGN_OR_RETURN(qkv_, backend_->Allocate(tokens * (q + 2 * kv) * a));
    ASSIGN_OR_RETURN(attn_, backend_->Allocate(tokens * q * a));
    ASSIGN_OR_RETURN(ffn_, backend_->Allocate(
                               tokens * int64_t{config_.ffn_hidden_size} * a));
    workspace_tokens_ = tokens;
  }
  if (rows > workspace_rows_) {
    ASSIGN_OR_RETURN(gathered_, backend_->Allocate(rows * h * sizeof(float)));
    ASSIGN_OR_RETURN(
        logits_,
        backend_->Allocate(rows * int64_t{config_.vocab_size} * sizeof(float)));
    workspace_rows_ = rows;
  }
  return absl::OkStatus();
}

absl::Status Model::ValidateBatch(const ForwardBatch& b) const {
  const int t = b.num_tokens(), s = b.num_seqs();
  if (kv_num_blocks_ == 0) {
    return absl::FailedPreconditionError("KV cache not allocated");
  }
  if (t == 0 || s == 0 || static_cast<int>(b.query_start.size()) != s + 1 ||
      b.query_start.front() != 0 || b.query_start.back() != t ||
      static_cast<int>(b.slot_mapping.size()) != t ||
      b.max_blocks_per_seq <= 0 ||
      b.block_tables.size() != static_cast<size_t>(s) * b.max_blocks_per_seq) {
    return absl::InvalidArgumentError("forward batch shapes are inconsistent");
  }
  if (b.windows.size() != b.first_blocks.size() ||
      (!b.windows.empty() && static_cast<int>(b.windows.size()) != s)) {
    return absl::InvalidArgumentError(
        "forward batch: windows and first_blocks must both be empty or one "
        "per sequence");
  }
  if (static_cast<int>(b.logit_rows.size()) > t) {
    return absl::InvalidArgumentError("more logit rows than tokens");
  }
  for (int32_t row : b.logit_rows) {
    if (row < 0 || row >= t) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit row ", row, " outside [0, ", t, ")"));
    }
  }
  for (int32_t id : b.token_ids) {
    if (id < 0 || id >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " outside [0, ", config_.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Model::Forward(const ForwardBatch& batch,
                            absl::Span<float> logits) {
  const size_t v = static_cast<size_t>(config_.vocab_size);
  if (logits.size() != batch.logit_rows.size() * v) {
    return absl::InvalidArgumentError("logits buffer has the wrong size");
  }
  return Forward(
      batch,
      [&](int first_row, int num_rows, const float* chunk) {
        std::memcpy(logits.data() + first_row * v, chunk,
                    num_rows * v * sizeof(float));
        return absl::OkStatus();
      },
      std::max<int>(1, static_cast<int>(batch.logit_rows.size())));
}

absl::Status Model::Forward(const ForwardBatch& batch, const LogitsSink& sink,
                            int rows_per_chunk) {
  const int64_t v = config_.vocab_size;
  return ForwardOnDevice(
      batch,
      [&](int first_row, int num_rows, const TensorView& logits) {
        logits_host_.resize(static_cast<size_t>(num_rows) * v);
        RETURN_IF_ERROR(backend_->CopyToHost(logits_host_.data(), logits.data,
                                             num_rows * v * sizeof(float)));
        return sink(first_row, num_rows, logits_host_.data());
      },
      rows_per_chunk);
}

absl::Status Model::ForwardOnDevice(const ForwardBatch& in,
                                    const DeviceLogitsSink& sink,
                                    int rows_per_chunk) {
  RETURN_IF_ERROR(ValidateBatch(in));
  if (rows_per_chunk <= 0) {
    return absl::InvalidArgumentError("rows_per_chunk must be positive");
  }
  // Decode-only steps run padded to their bucket, as one recorded graph.
  std::optional<DecodeBucket> bucket;
  if (decode_graphs_ && backend_->SupportsGraphs()) {
    bucket = ChooseDecodeBucket(in, kv_block_size_);
  }
  const ForwardBatch padded =
      bucket ? PadToBucket(in, *bucket) : ForwardBatch();
  const ForwardBatch& batch = bucket ? padded : in;
  const int t = batch.num_tokens(), s = batch.num_seqs();
  const int r = static_cast<int>(batch.logit_rows.size());
  const int64_t v = config_.vocab_size;
  const int chunk_rows = std::min(r, rows_per_chunk);
  RETURN_IF_ERROR(EnsureWorkspace(t, std::max(chunk_rows, 1)));

  // All int32 metadata in one upload:
  // [ids T][query_start S+1][context_lens S][block_tables S*MB][slots T]
  // [rows R][windows S or 0][first_blocks S or 0]
  metadata_host_.clear();
  auto append = [&](const std::vector<int32_t>& src) {
    const size_t offset = metadata_host_.size();
    metadata_host_.insert(metadata_host_.end(), src.begin(), src.end());
    return offset;
  };
  const size_t ids_at = append(batch.token_ids);
  const size_t starts_at = append(batch.query_start);
  const size_t ctx_at = append(batch.context_lens);
  const size_t tables_at = append(batch.block_tables);
  const size_t slots_at = append(batch.slot_mapping);
  const size_t rows_at = append(batch.logit_rows);
  const size_t windows_at = append(batch.windows);
  const size_t first_blocks_at = append(batch.first_blocks);
  const size_t metadata_bytes = metadata_host_.size() * sizeof(int32_t);
  if (metadata_bytes > metadata_capacity_) {
    backend_->ClearGraphs();  // recorded with the old buffer
    // Doubling: a few reallocations (and graph recordings) in all.
    metadata_capacity_ = std::max(metadata_bytes, 2 * metadata_capacity_);
    ASSIGN_OR_RETURN(metadata_, backend_->Allocate(metadata_capacity_));
  }
  RETURN_IF_ERROR(backend_->CopyToDevice(
      metadata_.data(), metadata_host_.data(), metadata_bytes));
  const int32_t* meta_dev = metadata_.as<const int32_t>();

  kernels::AttentionMeta attention;
  attention.num_seqs = s;
  attention.num_tokens = t;
  attention.query_start = meta_dev + starts_at;
  attention.context_lens = meta_dev + ctx_at;
  attention.block_tables = meta_dev + tables_at;
  attention.max_blocks_per_seq = batch.max_blocks_per_seq;
  if (!batch.windows.empty()) {
    attention.windows = meta_dev + windows_at;
    attention.first_blocks = meta_dev + first_blocks_at;
  }
  attention.batch_id = ++batch_counter_;  // one attention plan per step
  for (int i = 0; i < s; ++i) {
    attention.max_query_len =
        std::max(attention.max_query_len,
                 batch.query_start[i + 1] - batch.query_start[i]);
    attention.max_context_len =
        std::max(attention.max_context_len, batch.context_lens[i]);
  }
  if (bucket) attention.max_context_len = bucket->context;  // recorded

  const DType act = backend_->activation_dtype();
  const int64_t h = config_.hidden_size;
  const int64_t q = int64_t{config_.num_heads} * config_.head_dim;
  const int64_t kv = int64_t{config_.num_kv_heads} * config_.head_dim;
  const int64_t f = config_.ffn_hidden_size;
  TensorView hidden = TensorView::Of(hidden_.data(), DType::kF32, t, h);
  TensorView normed = TensorView::Of(normed_.data(), act, t, h);
  TensorView qkv = TensorView::Of(qkv_.data(), act, t, q + 2 * kv);
  TensorView attn = TensorView::Of(attn_.data(), act, t, q);
  TensorView ffn = TensorView::Of(ffn_.data(), act, t, f);
  const float eps = config_.layer_norm_eps;

  const std::optional<uint64_t> graph_key =
      bucket ? std::optional<uint64_t>(bucket->key) : std::nullopt;
  RETURN_IF_ERROR(RunAsGraph(*backend_, graph_key, [&]() -> absl::Status {
    RETURN_IF_ERROR(
        backend_->Embedding(meta_dev + ids_at, t, embedding_, hidden));
    if (embedding_norm_weight_ != nullptr) {
      RETURN_IF_ERROR(backend_->LayerNorm(hidden, embedding_norm_weight_,
                                          embedding_norm_bias_, eps, hidden));
    }
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (layer_callback_) layer_callback_();
      const Layer& layer = layers_[i];
      const kernels::PagedKvView kv_view = KvView(static_cast<int>(i));
      // Attention block.
      RETURN_IF_ERROR(backend_->LayerNorm(hidden, layer.input_norm_weight,
                                          layer.input_norm_bias, eps, normed));
      LinearEpilogue qkv_epilogue;
      qkv_epilogue.bias = layer.qkv_bias;
      qkv_epilogue.clamp = config_.clip_qkv.value_or(0.0f);
      RETURN_IF_ERROR(
          backend_->Linear(normed, layer.qkv_weight, qkv_epilogue, qkv));
      RETURN_IF_ERROR(backend_->WriteKv(qkv.Cols(q, kv), qkv.Cols(q + kv, kv),
                                        meta_dev + slots_at, t, kv_view));
      RETURN_IF_ERROR(backend_->PagedAttention(
          qkv.Cols(0, q), kv_view, attention, slopes_device_, config_.num_heads,
          config_.softmax_scale, attn));
      LinearEpilogue out_epilogue;
      out_epilogue.bias = layer.out_bias;
      out_epilogue.residual = config_.residual_post_layernorm ? normed : hidden;
      RETURN_IF_ERROR(
          backend_->Linear(attn, layer.out_weight, out_epilogue, hidden));
      // MLP block.
      RETURN_IF_ERROR(backend_->LayerNorm(hidden, layer.post_norm_weight,
                                          layer.post_norm_bias, eps, normed));
      LinearEpilogue up_epilogue;
      up_epilogue.bias = layer.up_bias;
      up_epilogue.activation = config_.activation;
      RETURN_IF_ERROR(
          backend_->Linear(normed, layer.up_weight, up_epilogue, ffn));
      LinearEpilogue down_epilogue;
      down_epilogue.bias = layer.down_bias;
      down_epilogue.residual =
          config_.residual_post_layernorm ? normed : hidden;
      RETURN_IF_ERROR(
          backend_->Linear(ffn, layer.down_weight, down_epilogue, hidden));
    }
    return absl::OkStatus();
  }));
  if (r == 0) return backend_->Synchronize();

  // Logits only for the rows that need them, a chunk at a time.
  LinearEpilogue head_epilogue;
  head_epilogue.alpha = config_.logit_scale;
  for (int first = 0; first < r; first += chunk_rows) {
    const int n = std::min(chunk_rows, r - first);
    TensorView gathered = TensorView::Of(gathered_.data(), DType::kF32, n, h);
    TensorView final_normed = TensorView::Of(normed_.data(), act, n, h);
    TensorView out = TensorView::Of(logits_.data(), DType::kF32, n, v);
    RETURN_IF_ERROR(
        backend_->GatherRows(hidden, meta_dev + rows_at + first, n, gathered));
    RETURN_IF_ERROR(backend_->LayerNorm(gathered, final_norm_weight_,
                                        final_norm_bias_, eps, final_normed));
    RETURN_IF_ERROR(
        backend_->Linear(final_normed, lm_head_, head_epilogue, out));
    RETURN_IF_ERROR(sink(first, n, out));
  }
  return absl::OkStatus();
}

}  // namespace alibi::model
