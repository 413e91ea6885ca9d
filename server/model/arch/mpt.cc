// MPTForCausalLM -> DecoderWeights.
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
#include "server/model/arch/arch.h"

namespace alibi::model::arch {

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

}  // namespace alibi::model::arch
