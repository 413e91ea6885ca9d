#include "server/model/config.h"

#include <cmath>
#include <cstdint>
#include <exception>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "common/status_macros.h"

namespace alibi::model {
namespace {

using json = nlohmann::json;

// Upper bounds that keep every derived size (vocab * hidden, 3 * hidden, ...)
// far from overflowing while admitting any real model.
constexpr int64_t kMaxHidden = 1 << 20;
constexpr int64_t kMaxHeads = 1 << 16;
constexpr int64_t kMaxLayers = 1 << 14;
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxFfn = 1 << 24;
constexpr int64_t kMaxSeqLen = int64_t{1} << 30;
constexpr int64_t kMaxTokenId = std::numeric_limits<int32_t>::max();
// A config.json larger than this is not a config.
constexpr std::streamoff kMaxConfigBytes = 16 << 20;

absl::Status ConfigError(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", message));
}

// A JSON object of config.json with the dotted path of its keys, so errors
// name "attn_config.alibi" rather than "alibi".
class Obj {
 public:
  Obj(const json* j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {}

  std::string Key(absl::string_view key) const {
    return absl::StrCat(prefix_, key);
  }

  // The value at `key`; nullptr when absent or null (null means "default"
  // in Hugging Face configs).
  const json* Find(absl::string_view key) const {
    auto it = j_->find(std::string(key));
    if (it == j_->end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Has(absl::string_view key) const { return Find(key) != nullptr; }

  absl::StatusOr<std::optional<int64_t>> OptInt(absl::string_view key,
                                                int64_t min,
                                                int64_t max) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<int64_t>();
    int64_t value = 0;
    if (v->is_number_unsigned()) {
      uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(max)) return OutOfRange(key, *v, min, max);
      value = static_cast<int64_t>(u);
    } else if (v->is_number_integer()) {
      value = v->get<int64_t>();
    } else {
      return TypeError(key, "an integer", *v);
    }
    if (value < min || value > max) return OutOfRange(key, *v, min, max);
    return std::optional<int64_t>(value);
  }

  absl::StatusOr<std::optional<double>> OptNumber(absl::string_view key,
                                                  double min,
                                                  double max) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return TypeError(key, "a number", *v);
    double value = v->get<double>();
    if (!std::isfinite(value) || value < min || value > max) {
      return ConfigError(absl::StrCat(Key(key), " is ", Dump(*v),
                                      ": must be between ", min, " and ", max));
    }
    return std::optional<double>(value);
  }

  absl::StatusOr<std::optional<bool>> OptBool(absl::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<bool>();
    if (!v->is_boolean()) return TypeError(key, "true or false", *v);
    return std::optional<bool>(v->get<bool>());
  }

  absl::StatusOr<std::optional<std::string>> OptString(
      absl::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) return TypeError(key, "a string", *v);
    return std::optional<std::string>(v->get<std::string>());
  }

  // A nested object; absent or null gives an empty object.
  absl::StatusOr<Obj> SubObject(absl::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return Obj(&EmptyObject(), Key(key) + ".");
    if (!v->is_object()) return TypeError(key, "an object", *v);
    return Obj(v, Key(key) + ".");
  }

  // The first present key of `keys` (aliases); both present with different
  // values is an error.
  absl::StatusOr<std::optional<int64_t>> OptIntAlias(
      const std::vector<absl::string_view>& keys, int64_t min,
      int64_t max) const {
    std::optional<int64_t> result;
    absl::string_view result_key;
    for (absl::string_view key : keys) {
      ASSIGN_OR_RETURN(std::optional<int64_t> v, OptInt(key, min, max));
      if (!v.has_value()) continue;
      if (result.has_value() && *result != *v) {
        return ConfigError(absl::StrCat(Key(result_key), " (", *result,
                                        ") and ", Key(key), " (", *v,
                                        ") disagree"));
      }
      result = v;
      result_key = key;
    }
    return result;
  }

  absl::StatusOr<int64_t> RequiredIntAlias(
      const std::vector<absl::string_view>& keys, int64_t min,
      int64_t max) const {
    ASSIGN_OR_RETURN(std::optional<int64_t> v, OptIntAlias(keys, min, max));
    if (!v.has_value()) {
      std::vector<std::string> names;
      for (absl::string_view k : keys) names.push_back(Key(k));
      return ConfigError(
          absl::StrCat("missing required key ", absl::StrJoin(names, " or ")));
    }
    return *v;
  }

  static std::string Dump(const json& v) {
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > 64) s = s.substr(0, 61) + "...";
    return s;
  }

 private:
  static const json& EmptyObject() {
    static const json* const kEmpty = new json(json::object());
    return *kEmpty;
  }

  absl::Status TypeError(absl::string_view key, absl::string_view expected,
                         const json& v) const {
    return ConfigError(absl::StrCat(Key(key), " must be ", expected, ", got ",
                                    v.type_name(), " ", Dump(v)));
  }
  absl::Status OutOfRange(absl::string_view key, const json& v, int64_t min,
                          int64_t max) const {
    return ConfigError(absl::StrCat(Key(key), " is ", Dump(v),
                                    ": must be between ", min, " and ", max));
  }

  const json* j_;
  std::string prefix_;
};

// Token ids: an integer, or (eos_token_id) a list of integers.
absl::Status ParseTokenIds(const Obj& root, ModelConfig& config) {
  ASSIGN_OR_RETURN(std::optional<int64_t> bos,
                   root.OptInt("bos_token_id", 0, kMaxTokenId));
  ASSIGN_OR_RETURN(std::optional<int64_t> pad,
                   root.OptInt("pad_token_id", 0, kMaxTokenId));
  if (bos.has_value()) config.bos_token_id = static_cast<int>(*bos);
  if (pad.has_value()) config.pad_token_id = static_cast<int>(*pad);
  const json* eos = root.Find("eos_token_id");
  if (eos != nullptr && eos->is_array()) {
    config.eos_token_ids.clear();
    for (size_t i = 0; i < eos->size(); ++i) {
      const json& e = (*eos)[i];
      if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
          e.get<int64_t>() > kMaxTokenId) {
        return ConfigError(absl::StrCat(
            "eos_token_id[", i, "] must be a token id, got ", Obj::Dump(e)));
      }
      config.eos_token_ids.push_back(static_cast<int>(e.get<int64_t>()));
    }
  } else {
    ASSIGN_OR_RETURN(std::optional<int64_t> id,
                     root.OptInt("eos_token_id", 0, kMaxTokenId));
    if (id.has_value()) config.eos_token_ids = {static_cast<int>(*id)};
  }
  config.eos_token_id =
      config.eos_token_ids.empty() ? -1 : config.eos_token_ids.front();
  return absl::OkStatus();
}

absl::Status ParseCommon(const Obj& root, ModelConfig& config) {
  // Newer transformers write "dtype" where older ones wrote "torch_dtype".
  ASSIGN_OR_RETURN(std::optional<std::string> dtype,
                   root.OptString("torch_dtype"));
  if (!dtype.has_value()) {
    ASSIGN_OR_RETURN(dtype, root.OptString("dtype"));
  }
  if (dtype.has_value()) config.torch_dtype = *dtype;
  ASSIGN_OR_RETURN(std::optional<bool> tie,
                   root.OptBool("tie_word_embeddings"));
  config.tie_word_embeddings = tie.value_or(true);
  return ParseTokenIds(root, config);
}

absl::Status FinishShapes(const Obj& root, absl::string_view hidden_key,
                          absl::string_view heads_key, ModelConfig& config) {
  if (config.hidden_size % config.num_heads != 0) {
    return ConfigError(absl::StrCat(
        root.Key(hidden_key), " ", config.hidden_size, " is not divisible by ",
        root.Key(heads_key), " ", config.num_heads));
  }
  config.head_dim = config.hidden_size / config.num_heads;
  if (config.softmax_scale == 0.0f) {
    config.softmax_scale = static_cast<float>(
        1.0 / std::sqrt(static_cast<double>(config.head_dim)));
  }
  return absl::OkStatus();
}

// BloomForCausalLM (transformers BloomConfig).
absl::Status ParseBloom(const Obj& root, ModelConfig& config) {
  config.architecture = Architecture::kBloom;
  config.architecture_name = "BloomForCausalLM";
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
  RETURN_IF_ERROR(ParseCommon(root, config));
  return FinishShapes(root, root.Has("hidden_size") ? "hidden_size" : "n_embed",
                      root.Has("n_head") ? "n_head" : "num_attention_heads",
                      config);
}

absl::Status RefuseIfTrue(const Obj& obj, absl::string_view key,
                          absl::string_view why) {
  ASSIGN_OR_RETURN(std::optional<bool> v, obj.OptBool(key));
  if (v.value_or(false)) {
    return ConfigError(absl::StrCat(obj.Key(key), " is true: ", why));
  }
  return absl::OkStatus();
}

// MPTForCausalLM: llm-foundry's MPTConfig / transformers' MptConfig. Where
// the two disagree on a default (no_bias, attn_config.alibi) transformers'
// is used: this server loads the Hugging Face layout.
absl::Status ParseMpt(const Obj& root, ModelConfig& config) {
  config.architecture = Architecture::kMpt;
  config.architecture_name = "MPTForCausalLM";
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
  if (const json* ls = root.Find("logit_scale"); ls != nullptr) {
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
  ASSIGN_OR_RETURN(Obj attn, root.SubObject("attn_config"));
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
  ASSIGN_OR_RETURN(Obj ffn, root.SubObject("ffn_config"));
  ASSIGN_OR_RETURN(std::optional<std::string> ffn_type,
                   ffn.OptString("ffn_type"));
  if (ffn_type.has_value() && *ffn_type != "mptmlp") {
    return ConfigError(absl::StrCat(ffn.Key("ffn_type"), " \"", *ffn_type,
                                    "\" is not supported (mptmlp)"));
  }
  if (const json* act = ffn.Find("ffn_act_fn"); act != nullptr) {
    ASSIGN_OR_RETURN(Obj act_obj, ffn.SubObject("ffn_act_fn"));
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

  RETURN_IF_ERROR(ParseCommon(root, config));
  return FinishShapes(root, "d_model", "n_heads", config);
}

// Which family: architectures[0] if present, else model_type.
absl::StatusOr<Architecture> DetectArchitecture(const Obj& root) {
  std::optional<Architecture> from_type;
  ASSIGN_OR_RETURN(std::optional<std::string> model_type,
                   root.OptString("model_type"));
  if (model_type.has_value()) {
    if (*model_type == "bloom") {
      from_type = Architecture::kBloom;
    } else if (*model_type == "mpt") {
      from_type = Architecture::kMpt;
    }
  }
  if (const json* archs = root.Find("architectures"); archs != nullptr) {
    if (!archs->is_array()) {
      return ConfigError(absl::StrCat("architectures must be a list, got ",
                                      archs->type_name()));
    }
    if (!archs->empty()) {
      const json& first = (*archs)[0];
      if (!first.is_string()) {
        return ConfigError(absl::StrCat(
            "architectures[0] must be a string, got ", Obj::Dump(first)));
      }
      const std::string name = first.get<std::string>();
      std::optional<Architecture> from_name;
      if (name == "BloomForCausalLM" || name == "BloomModel") {
        from_name = Architecture::kBloom;
      } else if (name == "MPTForCausalLM" || name == "MptForCausalLM" ||
                 name == "MPTModel" || name == "MptModel") {
        from_name = Architecture::kMpt;
      } else {
        return ConfigError(absl::StrCat(
            "architectures[0] \"", name,
            "\" is not supported (BloomForCausalLM, MPTForCausalLM)"));
      }
      if (model_type.has_value() && from_type.has_value() &&
          *from_type != *from_name) {
        return ConfigError(absl::StrCat("architectures[0] \"", name,
                                        "\" contradicts model_type \"",
                                        *model_type, "\""));
      }
      return *from_name;
    }
  }
  if (from_type.has_value()) return *from_type;
  if (model_type.has_value()) {
    return ConfigError(absl::StrCat("model_type \"", *model_type,
                                    "\" is not supported (bloom, mpt)"));
  }
  return ConfigError(
      "neither architectures nor model_type says which model this is");
}

absl::StatusOr<ModelConfig> ParseModelConfigImpl(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), /*cb=*/nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded()) return ConfigError("not valid JSON");
  if (!j.is_object()) {
    return ConfigError(
        absl::StrCat("must be a JSON object, got ", j.type_name()));
  }
  Obj root(&j, "");
  ModelConfig config;
  ASSIGN_OR_RETURN(config.architecture, DetectArchitecture(root));
  if (config.architecture == Architecture::kBloom) {
    RETURN_IF_ERROR(ParseBloom(root, config));
  } else {
    RETURN_IF_ERROR(ParseMpt(root, config));
  }
  return config;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text) {
  // The parser runs without exceptions and every access is type-checked
  // first; this catch is the last guard that keeps the library exception-free.
  try {
    return ParseModelConfigImpl(json_text);
  } catch (const std::exception& e) {
    return ConfigError(absl::StrCat("malformed: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0 || size > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot read or too large (", size, " bytes)"));
  }
  in.seekg(0, std::ios::beg);
  std::string text(static_cast<size_t>(size), '\0');
  if (!in.read(text.data(), size)) {
    return absl::DataLossError(absl::StrCat("cannot read ", path));
  }
  absl::StatusOr<ModelConfig> config = ParseModelConfig(text);
  if (!config.ok()) {
    return Annotate(config.status(), absl::StrCat(model_dir, "/"));
  }
  return config;
}

std::vector<double> AlibiSlopes(int num_heads, double max_bias) {
  std::vector<double> slopes;
  if (num_heads <= 0) return slopes;
  slopes.reserve(static_cast<size_t>(num_heads));
  int p = 1;
  while (p * 2 <= num_heads) p *= 2;
  for (int h = 0; h < p; ++h) {
    slopes.push_back(std::exp2(-max_bias * (h + 1) / p));
  }
  for (int k = 0; k < num_heads - p; ++k) {
    slopes.push_back(std::exp2(-max_bias * (2 * k + 1) / (2.0 * p)));
  }
  return slopes;
}

}  // namespace alibi::model
