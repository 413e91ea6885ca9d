// The registry of model architectures. Each architecture lives in one file,
// arch/<family>.cc, which defines everything the server and the tools know
// about it: the config.json class names and model types it answers to, how
// its config.json parses into ModelConfig, how its checkpoint tensors map
// onto the canonical DecoderWeights, and, for alibi-mkmodel, the shape rules,
// tensor list and config.json of a checkpoint of any size. Adding an
// architecture is that file plus one line in arch/registry.cc.
//
// Thread-safety: the registry is immutable; specs are plain data.
#ifndef ALIBI_SERVER_MODEL_ARCHITECTURE_H_
#define ALIBI_SERVER_MODEL_ARCHITECTURE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/model/config.h"
#include "server/model/weights.h"

namespace alibi::model {

class Checkpoint;
class ConfigObject;

// The shape of a checkpoint to write (alibi-mkmodel).
struct CheckpointShape {
  int hidden = 0;
  int heads = 0;
  int kv_heads = 0;  // = heads unless grouped-query attention
  int layers = 0;
  int vocab = 0;
  int ffn = 0;
  int seq_length = 0;  // trained length for config.json (0: none)
  bool bias = true;    // linear and layernorm biases, where optional
  // -1: the family's usual ids.
  int bos_token_id = -1;
  int eos_token_id = -1;
  int pad_token_id = -1;
  std::string torch_dtype = "bfloat16";
};

// What a tensor is, for the random values mkmodel gives it.
enum class TensorRole {
  kWeight,        // embeddings and input projections
  kOutputWeight,  // projections back into the residual stream
  kGain,          // layernorm weights (around 1)
  kBias,
};

// One checkpoint tensor, named without the `transformer.` prefix, in the
// layout the checkpoint stores it.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  TensorRole role = TensorRole::kWeight;
};

struct ArchitectureSpec {
  // Short name: flags, metrics labels ("bloom").
  const char* family;
  // config.json `architectures` values; the first is the canonical one.
  std::vector<std::string> class_names;
  // config.json `model_type` values.
  std::vector<std::string> model_types;

  // Reads the architecture's keys of config.json into `config` (family and
  // architecture_name are set by the caller; ParseCommonKeys and
  // FinishShapes are the parser's to call).
  absl::Status (*parse_config)(const ConfigObject& root, ModelConfig& config);
  // Maps checkpoint tensors onto DecoderWeights; refuses tensors it does not
  // use.
  absl::StatusOr<DecoderWeights> (*load_weights)(const Checkpoint& checkpoint,
                                                 const ModelConfig& config);

  // Writer side. Shape rules beyond the generic ones (errors name the
  // alibi-mkmodel flag), the tensors of a checkpoint in file order, and its
  // config.json text (which parse_config accepts).
  absl::Status (*check_shape)(const CheckpointShape& shape);
  std::vector<TensorSpec> (*plan_tensors)(const CheckpointShape& shape);
  std::string (*config_json)(const CheckpointShape& shape);
};

// Every registered architecture, in registry order.
const std::vector<const ArchitectureSpec*>& Architectures();
// By family ("bloom"), or null.
const ArchitectureSpec* FindArchitecture(absl::string_view family);
// The family names, for messages ("bloom, mpt").
std::string ArchitectureFamilies();

}  // namespace alibi::model

#endif  // ALIBI_SERVER_MODEL_ARCHITECTURE_H_
