// One model configuration for every supported ALiBi architecture, parsed from
// a Hugging Face config.json by the architecture's own parser (the registry,
// architecture.h).
//
// Unsupported options (MPT `alibi: false`, `prefix_lm`, unknown norm or FFN
// types, ...) are refused at parse time with an error naming the option;
// nothing is silently ignored.
//
// Thread-safety: plain data and pure functions.
#ifndef ALIBI_SERVER_MODEL_CONFIG_H_
#define ALIBI_SERVER_MODEL_CONFIG_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/backend.h"

namespace alibi::model {

struct ModelConfig {
  // The architecture (server/model/architecture.h): its family, e.g. "bloom",
  // and its canonical Hugging Face class, e.g. "BloomForCausalLM".
  std::string family;
  std::string architecture_name;

  int vocab_size = 0;   // rows of the embedding (= logits per position)
  int hidden_size = 0;  // BLOOM hidden_size / n_embed; MPT d_model
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;     // = num_heads except MPT GQA / MQA
  int head_dim = 0;         // hidden_size / num_heads
  int ffn_hidden_size = 0;  // BLOOM 4 * hidden; MPT expansion_ratio * d_model

  float layer_norm_eps = 1e-5f;
  // BLOOM: word_embeddings_layernorm after the embedding.
  bool embedding_layernorm = false;
  // BLOOM apply_residual_connection_post_layernorm: the residual of each
  // sub-block is the layernorm output rather than its input.
  bool residual_post_layernorm = false;
  // Linear layers carry biases (BLOOM; MPT unless no_bias).
  bool linear_bias = false;
  // Layernorms carry biases (BLOOM; MPT unless no_bias).
  bool norm_bias = false;
  kernels::Activation activation = kernels::Activation::kGeluTanh;
  // MPT clip_qkv: clamp the fused QKV projection to [-c, c].
  std::optional<float> clip_qkv;
  // Multiplies the logits (MPT logit_scale; "inv_sqrt_d_model" resolved).
  float logit_scale = 1.0f;
  // Attention score scale (1/sqrt(head_dim) unless MPT softmax_scale).
  float softmax_scale = 0.0f;
  // ALiBi max_bias (BLOOM 8; MPT attn_config.alibi_bias_max).
  float alibi_bias_max = 8.0f;

  // The sequence length the checkpoint was trained with (BLOOM seq_length,
  // MPT max_seq_len); 0 when the config does not say. Not a limit: ALiBi
  // extrapolates.
  int trained_context_length = 0;

  // The LM head is the embedding matrix (tie_word_embeddings, true unless the
  // config says false; then the checkpoint must hold lm_head.weight).
  bool tie_word_embeddings = true;

  int bos_token_id = -1;  // -1: none
  int eos_token_id = -1;  // the first of eos_token_ids, -1 when none
  int pad_token_id = -1;
  // Every end-of-sequence id (config.json's eos_token_id may be a list).
  std::vector<int> eos_token_ids;
  // config.json torch_dtype ("float16", "bfloat16", "float32"), may be empty.
  std::string torch_dtype;
};

// Parses config.json text. Errors name the offending key.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text);
// Reads and parses <dir>/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// ALiBi slopes for `num_heads` heads (DESIGN.md section 1): with
// p = 2^floor(log2 n), m_h = 2^(-max_bias (h+1) / p) for h < p, then the odd
// powers 2^(-max_bias (2k+1) / (2p)) for the remaining n - p heads. The same
// list as BLOOM's build_alibi_tensor and MPT's gen_slopes.
std::vector<double> AlibiSlopes(int num_heads, double max_bias = 8.0);

}  // namespace alibi::model

#endif  // ALIBI_SERVER_MODEL_CONFIG_H_
