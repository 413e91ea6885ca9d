// BloomForCausalLM: config.json, checkpoint tensors -> DecoderWeights, and
// the checkpoint writer's plan (alibi-mkmodel).
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
#include "nlohmann/json.hpp"
#include "server/model/arch/arch.h"
#include "server/model/architecture.h"
#include "server/model/config_json.h"

namespace alibi::model::arch {
namespace {

// BloomForCausalLM (transformers BloomConfig).
absl::Status ParseBloomConfig(const ConfigObject& root, ModelConfig& config) {
  // BloomConfig's defaults for the special tokens.
  config.bos_token_id = 1;
  config.eos_token_ids = {2};
  ASSIGN_OR_RETURN(int64_t vocab,
                   root.RequiredIntAlias({"vocab_size"}, 1, kMaxVocab));
  ASSIGN_OR_RETURN(
      int64_t hidden,
      root.RequiredIntAlias({"hidden_size", "n_embed"}, 1, kMaxHidden));
  ASSIGN_OR_RETURN(
      int64_t heads,
      root.RequiredIntAlias({"n_head", "num_attention_heads"}, 1, kMaxHeads));
  ASSIGN_OR_RETURN(
      int64_t layers,
      root.RequiredIntAlias({"n_layer", "num_hidden_layers"}, 1, kMaxLayers));
  ASSIGN_OR_RETURN(std::optional<double> eps,
                   root.OptNumber("layer_norm_epsilon", 0.0, 1.0));
  ASSIGN_OR_RETURN(std::optional<bool> post_ln,
                   root.OptBool("apply_residual_connection_post_layernorm"));
  ASSIGN_OR_RETURN(std::optional<int64_t> seq_length,
                   root.OptInt("seq_length", 0, kMaxSeqLen));
  config.vocab_size = static_cast<int>(vocab);
  config.hidden_size = static_cast<int>(hidden);
  config.num_heads = static_cast<int>(heads);
  config.num_kv_heads = config.num_heads;
  config.num_layers = static_cast<int>(layers);
  config.ffn_hidden_size = 4 * config.hidden_size;
  config.layer_norm_eps = static_cast<float>(eps.value_or(1e-5));
  config.residual_post_layernorm = post_ln.value_or(false);
  config.trained_context_length = static_cast<int>(seq_length.value_or(0));
  config.embedding_layernorm = true;
  config.linear_bias = true;
  config.norm_bias = true;
  config.activation = kernels::Activation::kGeluTanh;
  config.alibi_bias_max = 8.0f;
  config.logit_scale = 1.0f;
  RETURN_IF_ERROR(ParseCommonKeys(root, config));
  return FinishShapes(root, root.Has("hidden_size") ? "hidden_size" : "n_embed",
                      root.Has("n_head") ? "n_head" : "num_attention_heads",
                      config);
}

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

namespace {

absl::Status CheckBloomShape(const CheckpointShape& shape) {
  if (shape.kv_heads != shape.heads) {
    return absl::InvalidArgumentError(
        "--kv_heads: BLOOM has no grouped-query attention");
  }
  if (shape.ffn != 4 * shape.hidden) {
    return absl::InvalidArgumentError(
        "--ffn: BLOOM's FFN is always 4 * hidden");
  }
  return absl::OkStatus();
}

std::vector<TensorSpec> PlanBloomTensors(const CheckpointShape& s) {
  const int64_t v = s.vocab, h = s.hidden, f = s.ffn;
  std::vector<TensorSpec> plan;
  auto add = [&](std::string name, std::vector<int64_t> shape,
                 TensorRole role) {
    plan.push_back({std::move(name), std::move(shape), role});
  };
  add("word_embeddings.weight", {v, h}, TensorRole::kWeight);
  add("word_embeddings_layernorm.weight", {h}, TensorRole::kGain);
  add("word_embeddings_layernorm.bias", {h}, TensorRole::kBias);
  for (int i = 0; i < s.layers; ++i) {
    const std::string p = absl::StrCat("h.", i, ".");
    add(p + "input_layernorm.weight", {h}, TensorRole::kGain);
    add(p + "input_layernorm.bias", {h}, TensorRole::kBias);
    // Rows interleaved per head, [head][q,k,v][head_dim], as BLOOM stores.
    add(p + "self_attention.query_key_value.weight", {3 * h, h},
        TensorRole::kWeight);
    add(p + "self_attention.query_key_value.bias", {3 * h}, TensorRole::kBias);
    add(p + "self_attention.dense.weight", {h, h}, TensorRole::kOutputWeight);
    add(p + "self_attention.dense.bias", {h}, TensorRole::kBias);
    add(p + "post_attention_layernorm.weight", {h}, TensorRole::kGain);
    add(p + "post_attention_layernorm.bias", {h}, TensorRole::kBias);
    add(p + "mlp.dense_h_to_4h.weight", {f, h}, TensorRole::kWeight);
    add(p + "mlp.dense_h_to_4h.bias", {f}, TensorRole::kBias);
    add(p + "mlp.dense_4h_to_h.weight", {h, f}, TensorRole::kOutputWeight);
    add(p + "mlp.dense_4h_to_h.bias", {h}, TensorRole::kBias);
  }
  add("ln_f.weight", {h}, TensorRole::kGain);
  add("ln_f.bias", {h}, TensorRole::kBias);
  return plan;
}

std::string BloomConfigJson(const CheckpointShape& s) {
  nlohmann::ordered_json j;
  j["architectures"] = {"BloomForCausalLM"};
  j["model_type"] = "bloom";
  j["vocab_size"] = s.vocab;
  j["hidden_size"] = s.hidden;
  j["n_head"] = s.heads;
  j["n_layer"] = s.layers;
  j["layer_norm_epsilon"] = 1e-5;
  j["apply_residual_connection_post_layernorm"] = false;
  j["bos_token_id"] = s.bos_token_id >= 0 ? s.bos_token_id : 1;
  j["eos_token_id"] = s.eos_token_id >= 0 ? s.eos_token_id : 2;
  j["pad_token_id"] = s.pad_token_id >= 0 ? s.pad_token_id : 3;
  j["initializer_range"] = 0.02;
  if (s.seq_length > 0) j["seq_length"] = s.seq_length;
  j["tie_word_embeddings"] = true;
  j["torch_dtype"] = s.torch_dtype;
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

}  // namespace

const ArchitectureSpec& BloomArchitecture() {
  static const ArchitectureSpec* const kSpec = new ArchitectureSpec{
      .family = "bloom",
      .class_names = {"BloomForCausalLM", "BloomModel"},
      .model_types = {"bloom"},
      .parse_config = ParseBloomConfig,
      .load_weights = LoadBloomWeights,
      .check_shape = CheckBloomShape,
      .plan_tensors = PlanBloomTensors,
      .config_json = BloomConfigJson,
  };
  return *kSpec;
}

}  // namespace alibi::model::arch
