#include "server/model/config_json.h"

namespace alibi::model {

absl::Status ConfigError(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", message));
}

// Token ids: an integer, or (eos_token_id) a list of integers.
namespace {

absl::Status ParseTokenIds(const ConfigObject& root, ModelConfig& config) {
  ASSIGN_OR_RETURN(std::optional<int64_t> bos,
                   root.OptInt("bos_token_id", 0, kMaxTokenId));
  ASSIGN_OR_RETURN(std::optional<int64_t> pad,
                   root.OptInt("pad_token_id", 0, kMaxTokenId));
  if (bos.has_value()) config.bos_token_id = static_cast<int>(*bos);
  if (pad.has_value()) config.pad_token_id = static_cast<int>(*pad);
  const nlohmann::json* eos = root.Find("eos_token_id");
  if (eos != nullptr && eos->is_array()) {
    config.eos_token_ids.clear();
    for (size_t i = 0; i < eos->size(); ++i) {
      const nlohmann::json& e = (*eos)[i];
      if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
          e.get<int64_t>() > kMaxTokenId) {
        return ConfigError(absl::StrCat("eos_token_id[", i,
                                        "] must be a token id, got ",
                                        ConfigObject::Dump(e)));
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

}  // namespace

absl::Status ParseCommonKeys(const ConfigObject& root, ModelConfig& config) {
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

absl::Status FinishShapes(const ConfigObject& root,
                          absl::string_view hidden_key,
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

absl::Status RefuseIfTrue(const ConfigObject& obj, absl::string_view key,
                          absl::string_view why) {
  ASSIGN_OR_RETURN(std::optional<bool> v, obj.OptBool(key));
  if (v.value_or(false)) {
    return ConfigError(absl::StrCat(obj.Key(key), " is true: ", why));
  }
  return absl::OkStatus();
}

}  // namespace alibi::model
