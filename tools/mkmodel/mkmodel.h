// Random-weight ALiBi checkpoints in Hugging Face layout (config.json +
// safetensors, optionally sharded, optionally a tokenizer.json), for tests,
// benchmarks and demos at any size: the library behind alibi-mkmodel.
//
// Weights are deterministic in (seed, tensor name, element index): a
// counter-based generator, so a tensor's values do not depend on the dtype,
// on sharding, on the name prefix or on how the data is chunked. They are
// scaled like a trained model's so activations stay sane: embeddings and
// linear weights ~ N(0, 0.02) (output projections 0.02 / sqrt(2 layers)),
// layernorm gains ~ 1 + N(0, 0.05), biases ~ N(0, 0.02). The "normal" is a
// sum of four uniforms (Irwin-Hall), bounded at +-3.46 standard deviations.
//
// Writing streams tensor by tensor in fixed-size chunks: memory use does not
// grow with the model (a 7B-shaped checkpoint needs a few MB of RAM).
//
// Thread-safety: pure functions; WriteCheckpoint writes only under out_dir.
#ifndef ALIBI_TOOLS_MKMODEL_MKMODEL_H_
#define ALIBI_TOOLS_MKMODEL_MKMODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "kernels/backend.h"
#include "server/model/architecture.h"

namespace alibi::mkmodel {

struct MkModelOptions {
  // ---- model shape ----
  std::string family = "bloom";  // an architecture family (architecture.h)
  int hidden = 0;
  int heads = 0;
  int kv_heads = 0;  // 0: = heads (MPT only may differ: MQA / GQA)
  int layers = 0;
  int vocab = 0;
  int ffn = 0;            // 0: 4 * hidden (BLOOM requires exactly that)
  int seq_length = 2048;  // trained length written to config.json
  // MPT: linear and layernorm biases (config no_bias = false). BLOOM always
  // has biases.
  bool mpt_bias = false;
  // Token ids for config.json; -1: the family's usual (BLOOM 1/2/3, MPT
  // eos 0 as in GPT-NeoX-20B's tokenizer, no bos/pad).
  int bos_token_id = -1;
  int eos_token_id = -1;
  int pad_token_id = -1;

  // ---- files ----
  kernels::DType dtype = kernels::DType::kBF16;  // kF32, kF16 or kBF16
  uint64_t seed = 0;
  // 1: model.safetensors; N > 1: model-0000i-of-0000N.safetensors plus
  // model.safetensors.index.json.
  int shards = 1;
  bool prefix = false;         // tensor names start with "transformer."
  std::string tokenizer_path;  // copied to out_dir/tokenizer.json if set
  std::string out_dir;
};

// Names accepted by ApplyPreset: tiny-bloom, tiny-mpt (the fixtures' shapes),
// bloom-560m, bloom-1b1, bloom-1b7, bloom-3b, bloom-7b1, mpt-1b, mpt-7b,
// mpt-30b, replit-code-v1_5-3b.
std::vector<std::string> PresetNames();
// Sets the shape fields (arch .. seq_length) of a known model.
absl::Status ApplyPreset(absl::string_view name, MkModelOptions& options);

// Checks the shape and file options; errors name the option.
absl::Status Validate(const MkModelOptions& options);

// One tensor to generate. `name` has no prefix; BLOOM's fused QKV is in its
// checkpoint layout (rows interleaved per head).
struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  float mean = 0.0f;
  float stddev = 0.0f;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};
// Every tensor of the checkpoint, in file order (options must be valid).
std::vector<TensorPlan> PlanTensors(const MkModelOptions& options);

// Elements [start, start + out.size()) of tensor `plan`, in fp32 before the
// conversion to the file dtype.
void GenerateValues(const TensorPlan& plan, uint64_t seed, int64_t start,
                    absl::Span<float> out);

// config.json text that ParseModelConfig accepts (Hugging Face format).
std::string ConfigJson(const MkModelOptions& options);

// Validates, then writes config.json, the safetensors file(s) (and index),
// and tokenizer.json under options.out_dir (created if needed; stale
// model*.safetensors / index files there are removed first).
absl::Status WriteCheckpoint(const MkModelOptions& options);

}  // namespace alibi::mkmodel

#endif  // ALIBI_TOOLS_MKMODEL_MKMODEL_H_
