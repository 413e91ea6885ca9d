// The decoder's weights in one canonical layout shared by all architectures,
// as host tensors read from a checkpoint. Architecture specifics (tensor
// names, BLOOM's per-head interleaved QKV rows, optional biases, the tied LM
// head) are resolved here, so the forward pass is architecture-agnostic.
//
// Thread-safety: immutable after loading; safe to read from any thread.
#ifndef ALIBI_SERVER_MODEL_WEIGHTS_H_
#define ALIBI_SERVER_MODEL_WEIGHTS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "server/model/config.h"

namespace alibi::model {

class Checkpoint;

// A tensor in host memory: a view into a memory-mapped checkpoint, or an
// owned buffer where the layout had to change (BLOOM QKV). `owner` keeps the
// bytes alive.
struct HostTensor {
  std::string name;  // checkpoint name, for error messages
  kernels::DType dtype = kernels::DType::kF32;  // kF32, kF16 or kBF16
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::shared_ptr<const void> owner;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t nbytes() const {
    return numel() * static_cast<int64_t>(kernels::DTypeSize(dtype));
  }
};

// The tensor's numel() values converted to fp32 (kF32, kF16 or kBF16 input;
// row-major, same order as the data). For tests and the CPU loading path.
std::vector<float> HostTensorToFloat(const HostTensor& tensor);

// "[96,288]": a shape for error messages.
std::string ShapeString(const std::vector<int64_t>& shape);

struct LayerWeights {
  HostTensor input_norm_weight;               // [H]
  std::optional<HostTensor> input_norm_bias;  // [H]
  // Rows [q (num_heads*head_dim); k (num_kv_heads*head_dim); v (same)].
  HostTensor qkv_weight;                     // [Q + 2 KV, H]
  std::optional<HostTensor> qkv_bias;        // [Q + 2 KV]
  HostTensor out_weight;                     // [H, Q]
  std::optional<HostTensor> out_bias;        // [H]
  HostTensor post_norm_weight;               // [H]
  std::optional<HostTensor> post_norm_bias;  // [H]
  HostTensor up_weight;                      // [F, H]
  std::optional<HostTensor> up_bias;         // [F]
  HostTensor down_weight;                    // [H, F]
  std::optional<HostTensor> down_bias;       // [H]
};

struct DecoderWeights {
  HostTensor embedding;                             // [V, H]
  std::optional<HostTensor> embedding_norm_weight;  // [H] (BLOOM)
  std::optional<HostTensor> embedding_norm_bias;    // [H] (BLOOM)
  std::vector<LayerWeights> layers;
  HostTensor final_norm_weight;               // [H]
  std::optional<HostTensor> final_norm_bias;  // [H]
  HostTensor lm_head;  // [V, H]; the embedding itself when tied
};

// Maps a checkpoint's tensors onto the canonical layout for `config`,
// checking every tensor's presence, shape and dtype. Errors name the tensor.
// A tensor the architecture does not use (another layer count, MPT's learned
// position embedding `wpe`) is an error too; `lm_head.weight` is ignored when
// the head is tied, as Hugging Face does. The result's tensors keep their
// memory mappings alive (HostTensor::owner): `checkpoint` may be destroyed
// afterwards.
absl::StatusOr<DecoderWeights> LoadDecoderWeights(const Checkpoint& checkpoint,
                                                  const ModelConfig& config);

}  // namespace alibi::model

#endif  // ALIBI_SERVER_MODEL_WEIGHTS_H_
