// MPTForCausalLM: config.json, checkpoint tensors -> DecoderWeights, and
// the checkpoint writer's plan (alibi-mkmodel).
//
// Names (optionally prefixed "transformer."): wte.weight,
// blocks.N.norm_1.weight, blocks.N.attn.Wqkv.weight ([q; k; v] rows already,
// k and v of kv_n_heads heads each), blocks.N.attn.out_proj.weight,
// blocks.N.norm_2.weight, blocks.N.ffn.up_proj.weight,
// blocks.N.ffn.down_proj.weight, norm_f.weight; each with .bias when the
// config's no_bias is false; lm_head.weight only when untied.
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

// MPTForCausalLM: llm-foundry's MPTConfig / transformers' MptConfig. Where
// the two disagree on a default (no_bias, attn_config.alibi) transformers'
// is used: this server loads the Hugging Face layout.
absl::Status ParseMptConfig(const ConfigObject& root, ModelConfig& config) {
  ASSIGN_OR_RETURN(int64_t vocab,
                   root.RequiredIntAlias({"vocab_size"}, 1, kMaxVocab));
  ASSIGN_OR_RETURN(int64_t d_model,
                   root.RequiredIntAlias({"d_model"}, 1, kMaxHidden));
  ASSIGN_OR_RETURN(int64_t heads,
                   root.RequiredIntAlias({"n_heads"}, 1, kMaxHeads));
  ASSIGN_OR_RETURN(int64_t layers,
                   root.RequiredIntAlias({"n_layers"}, 1, kMaxLayers));
  ASSIGN_OR_RETURN(std::optional<int64_t> max_seq_len,
                   root.OptInt("max_seq_len", 0, kMaxSeqLen));
  ASSIGN_OR_RETURN(std::optional<double> eps,
                   root.OptNumber("layer_norm_epsilon", 0.0, 1.0));
  ASSIGN_OR_RETURN(std::optional<bool> no_bias, root.OptBool("no_bias"));
  config.vocab_size = static_cast<int>(vocab);
  config.hidden_size = static_cast<int>(d_model);
  config.num_heads = static_cast<int>(heads);
  config.num_layers = static_cast<int>(layers);
  config.trained_context_length = static_cast<int>(max_seq_len.value_or(0));
  config.layer_norm_eps = static_cast<float>(eps.value_or(1e-5));
  config.linear_bias = !no_bias.value_or(true);
  config.norm_bias = config.linear_bias;
  config.embedding_layernorm = false;
  config.residual_post_layernorm = false;
  config.activation = kernels::Activation::kGeluErf;

  // Normalisation: plain LayerNorm only.
  ASSIGN_OR_RETURN(std::optional<std::string> norm_type,
                   root.OptString("norm_type"));
  if (norm_type.has_value() && *norm_type != "layernorm" &&
      *norm_type != "low_precision_layernorm") {
    return ConfigError(absl::StrCat(
        "norm_type \"", *norm_type,
        "\" is not supported (layernorm, low_precision_layernorm)"));
  }

  // Position information: ALiBi only.
  // learned_pos_emb is type-checked but otherwise ignored, like
  // transformers' MPT port does; a checkpoint that really holds a `wpe`
  // tensor is refused by LoadDecoderWeights.
  ASSIGN_OR_RETURN(std::optional<bool> learned_pos_emb,
                   root.OptBool("learned_pos_emb"));
  (void)learned_pos_emb;
  RETURN_IF_ERROR(RefuseIfTrue(
      root, "rope", "rotary embeddings are not supported (ALiBi only)"));

  // Logits.
  if (const nlohmann::json* ls = root.Find("logit_scale"); ls != nullptr) {
    if (ls->is_string()) {
      if (ls->get<std::string>() != "inv_sqrt_d_model") {
        return ConfigError(
            absl::StrCat("logit_scale \"", ls->get<std::string>(),
                         "\" is not supported (a number, null or "
                         "\"inv_sqrt_d_model\")"));
      }
      config.logit_scale =
          static_cast<float>(1.0 / std::sqrt(static_cast<double>(d_model)));
    } else {
      ASSIGN_OR_RETURN(std::optional<double> scale,
                       root.OptNumber("logit_scale", -1e6, 1e6));
      config.logit_scale = static_cast<float>(*scale);
    }
  }

  // Attention.
  ASSIGN_OR_RETURN(ConfigObject attn, root.SubObject("attn_config"));
  ASSIGN_OR_RETURN(std::optional<bool> alibi, attn.OptBool("alibi"));
  if (!alibi.value_or(true)) {
    return ConfigError(absl::StrCat(attn.Key("alibi"),
                                    " is false: only ALiBi models are "
                                    "supported"));
  }
  RETURN_IF_ERROR(RefuseIfTrue(
      attn, "rope", "rotary embeddings are not supported (ALiBi only)"));
  RETURN_IF_ERROR(
      RefuseIfTrue(attn, "qk_ln", "query/key layernorm is not supported"));
  RETURN_IF_ERROR(
      RefuseIfTrue(attn, "qk_gn", "query/key group norm is not supported"));
  RETURN_IF_ERROR(
      RefuseIfTrue(attn, "prefix_lm",
                   "prefix-LM (bidirectional prefix) attention is not "
                   "supported"));
  // attn_uses_sequence_id only masks between sequences packed into one row
  // during training; inference never packs, so it has no effect here.
  ASSIGN_OR_RETURN(std::optional<bool> uses_seq_id,
                   attn.OptBool("attn_uses_sequence_id"));
  (void)uses_seq_id;
  ASSIGN_OR_RETURN(std::optional<int64_t> window,
                   attn.OptInt("sliding_window_size", -1, kMaxSeqLen));
  if (window.has_value() && *window != -1) {
    return ConfigError(absl::StrCat(attn.Key("sliding_window_size"), " is ",
                                    *window,
                                    ": sliding-window attention is not "
                                    "supported (-1)"));
  }
  ASSIGN_OR_RETURN(std::optional<double> bias_max,
                   attn.OptNumber("alibi_bias_max", 1e-6, 1e6));
  config.alibi_bias_max = static_cast<float>(bias_max.value_or(8.0));
  ASSIGN_OR_RETURN(std::optional<double> clip,
                   attn.OptNumber("clip_qkv", 0.0, 1e30));
  if (clip.has_value()) {
    if (*clip <= 0.0) {
      return ConfigError(
          absl::StrCat(attn.Key("clip_qkv"), " must be positive or null"));
    }
    config.clip_qkv = static_cast<float>(*clip);
  }
  ASSIGN_OR_RETURN(std::optional<double> softmax_scale,
                   attn.OptNumber("softmax_scale", 0.0, 1e30));
  if (softmax_scale.has_value()) {
    if (*softmax_scale <= 0.0) {
      return ConfigError(
          absl::StrCat(attn.Key("softmax_scale"), " must be positive or null"));
    }
    config.softmax_scale = static_cast<float>(*softmax_scale);
  }
  ASSIGN_OR_RETURN(std::optional<std::string> attn_type,
                   attn.OptString("attn_type"));
  const std::string type = attn_type.value_or("multihead_attention");
  if (type == "multihead_attention") {
    // llm-foundry saves kv_n_heads (default 1) even here and ignores it.
    config.num_kv_heads = config.num_heads;
  } else if (type == "multiquery_attention") {
    config.num_kv_heads = 1;
  } else if (type == "grouped_query_attention") {
    // llm-foundry's default kv_n_heads is 1.
    ASSIGN_OR_RETURN(std::optional<int64_t> kv,
                     attn.OptInt("kv_n_heads", 1, kMaxHeads));
    config.num_kv_heads = static_cast<int>(kv.value_or(1));
    if (config.num_heads % config.num_kv_heads != 0) {
      return ConfigError(
          absl::StrCat(attn.Key("kv_n_heads"), " ", config.num_kv_heads,
                       " does not divide n_heads ", config.num_heads));
    }
  } else {
    return ConfigError(absl::StrCat(
        attn.Key("attn_type"), " \"", type,
        "\" is not supported (multihead_attention, multiquery_attention, "
        "grouped_query_attention)"));
  }

  // Feed-forward block.
  ASSIGN_OR_RETURN(ConfigObject ffn, root.SubObject("ffn_config"));
  ASSIGN_OR_RETURN(std::optional<std::string> ffn_type,
                   ffn.OptString("ffn_type"));
  if (ffn_type.has_value() && *ffn_type != "mptmlp") {
    return ConfigError(absl::StrCat(ffn.Key("ffn_type"), " \"", *ffn_type,
                                    "\" is not supported (mptmlp)"));
  }
  if (const nlohmann::json* act = ffn.Find("ffn_act_fn"); act != nullptr) {
    ASSIGN_OR_RETURN(ConfigObject act_obj, ffn.SubObject("ffn_act_fn"));
    ASSIGN_OR_RETURN(std::optional<std::string> name,
                     act_obj.OptString("name"));
    ASSIGN_OR_RETURN(std::optional<std::string> approximate,
                     act_obj.OptString("approximate"));
    if (name.value_or("gelu") != "gelu") {
      return ConfigError(absl::StrCat(act_obj.Key("name"), " \"", *name,
                                      "\" is not supported (gelu)"));
    }
    const std::string approx = approximate.value_or("none");
    if (approx == "none") {
      config.activation = kernels::Activation::kGeluErf;
    } else if (approx == "tanh") {
      config.activation = kernels::Activation::kGeluTanh;
    } else {
      return ConfigError(absl::StrCat(act_obj.Key("approximate"), " \"", approx,
                                      "\" is not supported (none, "
                                      "tanh)"));
    }
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> ffn_hidden,
                   ffn.OptInt("ffn_hidden_size", 1, kMaxFfn));
  if (ffn_hidden.has_value()) {
    // llm-foundry: ffn_hidden_size wins over expansion_ratio.
    config.ffn_hidden_size = static_cast<int>(*ffn_hidden);
  } else {
    ASSIGN_OR_RETURN(std::optional<double> ratio,
                     root.OptNumber("expansion_ratio", 0.0, 1024.0));
    const double f = static_cast<double>(d_model) * ratio.value_or(4.0);
    if (f < 1.0 || f != std::floor(f) || f > static_cast<double>(kMaxFfn)) {
      return ConfigError(absl::StrCat(
          "d_model * expansion_ratio = ", f,
          " must be a positive integer (or set ffn_config.ffn_hidden_size)"));
    }
    config.ffn_hidden_size = static_cast<int>(f);
  }

  RETURN_IF_ERROR(ParseCommonKeys(root, config));
  return FinishShapes(root, "d_model", "n_heads", config);
}

}  // namespace

absl::StatusOr<DecoderWeights> LoadMptWeights(const Checkpoint& checkpoint,
                                              const ModelConfig& config) {
  // transformers' MPT port ignores learned_pos_emb; a checkpoint that really
  // has position embeddings is not an ALiBi model this server can run.
  if (Checkpoint::Entry wpe = checkpoint.Find("wpe.weight");
      wpe.file != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", wpe.info->name,
        ": learned position embeddings are not supported, only ALiBi (in ",
        wpe.file->path(), ")"));
  }
  TensorLoader loader(checkpoint);
  const int64_t v = config.vocab_size;
  const int64_t d = config.hidden_size;
  const int64_t f = config.ffn_hidden_size;
  const int64_t q = static_cast<int64_t>(config.num_heads) * config.head_dim;
  const int64_t kv =
      static_cast<int64_t>(config.num_kv_heads) * config.head_dim;
  const bool lb = config.linear_bias;
  const bool nb = config.norm_bias;

  DecoderWeights w;
  ASSIGN_OR_RETURN(w.embedding, loader.Require("wte.weight", {v, d}));
  w.layers.resize(static_cast<size_t>(config.num_layers));
  for (int i = 0; i < config.num_layers; ++i) {
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = absl::StrCat("blocks.", i, ".");
    ASSIGN_OR_RETURN(l.input_norm_weight,
                     loader.Require(p + "norm_1.weight", {d}));
    ASSIGN_OR_RETURN(l.input_norm_bias,
                     loader.RequireIf(nb, p + "norm_1.bias", {d}));
    ASSIGN_OR_RETURN(l.qkv_weight,
                     loader.Require(p + "attn.Wqkv.weight", {q + 2 * kv, d}));
    ASSIGN_OR_RETURN(l.qkv_bias,
                     loader.RequireIf(lb, p + "attn.Wqkv.bias", {q + 2 * kv}));
    ASSIGN_OR_RETURN(l.out_weight,
                     loader.Require(p + "attn.out_proj.weight", {d, q}));
    ASSIGN_OR_RETURN(l.out_bias,
                     loader.RequireIf(lb, p + "attn.out_proj.bias", {d}));
    ASSIGN_OR_RETURN(l.post_norm_weight,
                     loader.Require(p + "norm_2.weight", {d}));
    ASSIGN_OR_RETURN(l.post_norm_bias,
                     loader.RequireIf(nb, p + "norm_2.bias", {d}));
    ASSIGN_OR_RETURN(l.up_weight,
                     loader.Require(p + "ffn.up_proj.weight", {f, d}));
    ASSIGN_OR_RETURN(l.up_bias,
                     loader.RequireIf(lb, p + "ffn.up_proj.bias", {f}));
    ASSIGN_OR_RETURN(l.down_weight,
                     loader.Require(p + "ffn.down_proj.weight", {d, f}));
    ASSIGN_OR_RETURN(l.down_bias,
                     loader.RequireIf(lb, p + "ffn.down_proj.bias", {d}));
  }
  ASSIGN_OR_RETURN(w.final_norm_weight, loader.Require("norm_f.weight", {d}));
  ASSIGN_OR_RETURN(w.final_norm_bias, loader.RequireIf(nb, "norm_f.bias", {d}));

  if (config.tie_word_embeddings) {
    loader.Ignore("lm_head.weight");
    w.lm_head = w.embedding;
  } else {
    ASSIGN_OR_RETURN(w.lm_head, loader.Require("lm_head.weight", {v, d}));
  }
  RETURN_IF_ERROR(loader.CheckAllUsed(
      absl::StrCat("an MPT model with ", config.num_layers, " layers")));
  return w;
}

namespace {

absl::Status CheckMptShape(const CheckpointShape&) { return absl::OkStatus(); }

std::vector<TensorSpec> PlanMptTensors(const CheckpointShape& s) {
  const int64_t v = s.vocab, h = s.hidden, f = s.ffn;
  const int64_t kv = int64_t{s.kv_heads} * (h / s.heads);
  const bool b = s.bias;
  std::vector<TensorSpec> plan;
  auto add = [&](std::string name, std::vector<int64_t> shape,
                 TensorRole role) {
    plan.push_back({std::move(name), std::move(shape), role});
  };
  add("wte.weight", {v, h}, TensorRole::kWeight);
  for (int i = 0; i < s.layers; ++i) {
    const std::string p = absl::StrCat("blocks.", i, ".");
    add(p + "norm_1.weight", {h}, TensorRole::kGain);
    if (b) add(p + "norm_1.bias", {h}, TensorRole::kBias);
    add(p + "attn.Wqkv.weight", {h + 2 * kv, h}, TensorRole::kWeight);
    if (b) add(p + "attn.Wqkv.bias", {h + 2 * kv}, TensorRole::kBias);
    add(p + "attn.out_proj.weight", {h, h}, TensorRole::kOutputWeight);
    if (b) add(p + "attn.out_proj.bias", {h}, TensorRole::kBias);
    add(p + "norm_2.weight", {h}, TensorRole::kGain);
    if (b) add(p + "norm_2.bias", {h}, TensorRole::kBias);
    add(p + "ffn.up_proj.weight", {f, h}, TensorRole::kWeight);
    if (b) add(p + "ffn.up_proj.bias", {f}, TensorRole::kBias);
    add(p + "ffn.down_proj.weight", {h, f}, TensorRole::kOutputWeight);
    if (b) add(p + "ffn.down_proj.bias", {h}, TensorRole::kBias);
  }
  add("norm_f.weight", {h}, TensorRole::kGain);
  if (b) add("norm_f.bias", {h}, TensorRole::kBias);
  return plan;
}

std::string MptConfigJson(const CheckpointShape& s) {
  nlohmann::ordered_json j;
  j["architectures"] = {"MPTForCausalLM"};
  j["model_type"] = "mpt";
  j["vocab_size"] = s.vocab;
  j["d_model"] = s.hidden;
  j["n_heads"] = s.heads;
  j["n_layers"] = s.layers;
  nlohmann::ordered_json ffn_config = {{"ffn_type", "mptmlp"}};
  if (s.ffn % s.hidden == 0) {
    j["expansion_ratio"] = s.ffn / s.hidden;
  } else {
    ffn_config["ffn_hidden_size"] = s.ffn;
  }
  if (s.seq_length > 0) j["max_seq_len"] = s.seq_length;
  j["no_bias"] = !s.bias;
  j["norm_type"] = "low_precision_layernorm";
  j["layer_norm_epsilon"] = 1e-5;
  j["learned_pos_emb"] = false;
  j["logit_scale"] = nullptr;
  nlohmann::ordered_json attn = {{"alibi", true},
                                 {"alibi_bias_max", 8},
                                 {"attn_impl", "torch"},
                                 {"attn_pdrop", 0},
                                 {"clip_qkv", nullptr},
                                 {"qk_ln", false},
                                 {"softmax_scale", nullptr},
                                 {"prefix_lm", false},
                                 {"attn_uses_sequence_id", false}};
  if (s.kv_heads == s.heads) {
    attn["attn_type"] = "multihead_attention";
  } else if (s.kv_heads == 1) {
    attn["attn_type"] = "multiquery_attention";
  } else {
    attn["attn_type"] = "grouped_query_attention";
    attn["kv_n_heads"] = s.kv_heads;
  }
  j["attn_config"] = attn;
  j["ffn_config"] = ffn_config;
  if (s.bos_token_id >= 0) j["bos_token_id"] = s.bos_token_id;
  j["eos_token_id"] = s.eos_token_id >= 0 ? s.eos_token_id : 0;
  if (s.pad_token_id >= 0) j["pad_token_id"] = s.pad_token_id;
  j["tie_word_embeddings"] = true;
  j["torch_dtype"] = s.torch_dtype;
  j["use_cache"] = false;
  return j.dump(2) + "\n";
}

}  // namespace

const ArchitectureSpec& MptArchitecture() {
  static const ArchitectureSpec* const kSpec = new ArchitectureSpec{
      .family = "mpt",
      .class_names = {"MPTForCausalLM", "MptForCausalLM", "MPTModel",
                      "MptModel"},
      .model_types = {"mpt"},
      .parse_config = ParseMptConfig,
      .load_weights = LoadMptWeights,
      .check_shape = CheckMptShape,
      .plan_tensors = PlanMptTensors,
      .config_json = MptConfigJson,
  };
  return *kSpec;
}

}  // namespace alibi::model::arch
