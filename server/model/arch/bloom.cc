// BloomForCausalLM -> DecoderWeights.
//
// Names (optionally prefixed "transformer."): word_embeddings.weight,
// word_embeddings_layernorm.{weight,bias}, h.N.input_layernorm.*,
// h.N.self_attention.query_key_value.*, h.N.self_attention.dense.*,
// h.N.post_attention_layernorm.*, h.N.mlp.dense_h_to_4h.*,
// h.N.mlp.dense_4h_to_h.*, ln_f.*; lm_head.weight only when untied.
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/model/arch/arch.h"

namespace alibi::model::arch {
namespace {

// BLOOM's fused QKV rows are interleaved per head, [head][q,k,v][head_dim];
// returns them as [q of all heads; k; v] in a new buffer of the same dtype.
// Works for the weight ([3 H, H]) and the bias ([3 H]) alike: a "row" is
// everything after the first dimension.
HostTensor DeinterleaveQkv(const HostTensor& fused, int num_heads,
                           int head_dim) {
  const int64_t rows = fused.shape[0];  // 3 * num_heads * head_dim
  const size_t row_bytes = static_cast<size_t>(fused.nbytes() / rows);
  const size_t block = static_cast<size_t>(head_dim) * row_bytes;
  const size_t total = static_cast<size_t>(fused.nbytes());
  std::shared_ptr<uint8_t[]> buffer(new uint8_t[total > 0 ? total : 1]);
  const auto* src = static_cast<const uint8_t*>(fused.data);
  for (int h = 0; h < num_heads; ++h) {
    for (int part = 0; part < 3; ++part) {  // q, k, v
      const size_t dst_row = static_cast<size_t>(part) * num_heads * head_dim +
                             static_cast<size_t>(h) * head_dim;
      const size_t src_row = (static_cast<size_t>(h) * 3 + part) * head_dim;
      std::memcpy(buffer.get() + dst_row * row_bytes, src + src_row * row_bytes,
                  block);
    }
  }
  HostTensor out;
  out.name = fused.name;
  out.dtype = fused.dtype;
  out.shape = fused.shape;
  out.data = buffer.get();
  out.owner = std::shared_ptr<const void>(buffer, buffer.get());
  return out;
}

}  // namespace

absl::StatusOr<DecoderWeights> LoadBloomWeights(const Checkpoint& checkpoint,
                                                const ModelConfig& config) {
  TensorLoader loader(checkpoint);
  const int64_t v = config.vocab_size;
  const int64_t h = config.hidden_size;
  const int64_t f = config.ffn_hidden_size;
  const int64_t qkv = 3 * h;
  if (config.num_kv_heads != config.num_heads ||
      static_cast<int64_t>(config.num_heads) * config.head_dim != h) {
    return absl::InvalidArgumentError(
        "BLOOM config: heads * head_dim must equal hidden_size, without "
        "grouped-query attention");
  }
  const bool lb = config.linear_bias;
  const bool nb = config.norm_bias;

  DecoderWeights w;
  ASSIGN_OR_RETURN(w.embedding,
                   loader.Require("word_embeddings.weight", {v, h}));
  ASSIGN_OR_RETURN(HostTensor emb_norm,
                   loader.Require("word_embeddings_layernorm.weight", {h}));
  w.embedding_norm_weight = std::move(emb_norm);
  ASSIGN_OR_RETURN(w.embedding_norm_bias,
                   loader.RequireIf(nb, "word_embeddings_layernorm.bias", {h}));

  w.layers.resize(static_cast<size_t>(config.num_layers));
  for (int i = 0; i < config.num_layers; ++i) {
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = absl::StrCat("h.", i, ".");
    ASSIGN_OR_RETURN(l.input_norm_weight,
                     loader.Require(p + "input_layernorm.weight", {h}));
    ASSIGN_OR_RETURN(l.input_norm_bias,
                     loader.RequireIf(nb, p + "input_layernorm.bias", {h}));
    ASSIGN_OR_RETURN(
        HostTensor fused_w,
        loader.Require(p + "self_attention.query_key_value.weight", {qkv, h}));
    l.qkv_weight = DeinterleaveQkv(fused_w, config.num_heads, config.head_dim);
    ASSIGN_OR_RETURN(
        std::optional<HostTensor> fused_b,
        loader.RequireIf(lb, p + "self_attention.query_key_value.bias", {qkv}));
    if (fused_b.has_value()) {
      l.qkv_bias = DeinterleaveQkv(*fused_b, config.num_heads, config.head_dim);
    }
    ASSIGN_OR_RETURN(l.out_weight,
                     loader.Require(p + "self_attention.dense.weight", {h, h}));
    ASSIGN_OR_RETURN(
        l.out_bias, loader.RequireIf(lb, p + "self_attention.dense.bias", {h}));
    ASSIGN_OR_RETURN(
        l.post_norm_weight,
        loader.Require(p + "post_attention_layernorm.weight", {h}));
    ASSIGN_OR_RETURN(
        l.post_norm_bias,
        loader.RequireIf(nb, p + "post_attention_layernorm.bias", {h}));
    ASSIGN_OR_RETURN(l.up_weight,
                     loader.Require(p + "mlp.dense_h_to_4h.weight", {f, h}));
    ASSIGN_OR_RETURN(l.up_bias,
                     loader.RequireIf(lb, p + "mlp.dense_h_to_4h.bias", {f}));
    ASSIGN_OR_RETURN(l.down_weight,
                     loader.Require(p + "mlp.dense_4h_to_h.weight", {h, f}));
    ASSIGN_OR_RETURN(l.down_bias,
                     loader.RequireIf(lb, p + "mlp.dense_4h_to_h.bias", {h}));
  }
  ASSIGN_OR_RETURN(w.final_norm_weight, loader.Require("ln_f.weight", {h}));
  ASSIGN_OR_RETURN(w.final_norm_bias, loader.RequireIf(nb, "ln_f.bias", {h}));

  if (config.tie_word_embeddings) {
    // transformers ties the head to the embedding, whatever the file holds.
    loader.Ignore("lm_head.weight");
    w.lm_head = w.embedding;
  } else {
    ASSIGN_OR_RETURN(w.lm_head, loader.Require("lm_head.weight", {v, h}));
  }
  RETURN_IF_ERROR(loader.CheckAllUsed(
      absl::StrCat("a BLOOM model with ", config.num_layers, " layers")));
  return w;
}

}  // namespace alibi::model::arch
