// An ALiBi decoder on a compute backend: weights uploaded once at load, a
// paged KV pool, and one forward pass per engine step over a flattened batch
// that mixes prefill chunks and decode tokens of many sequences.
//
// The forward pass is the same for every architecture: the differences
// (BLOOM's embedding layernorm and biases, MPT's GQA, clip_qkv, logit_scale,
// GELU flavour, post-layernorm residual) live in ModelConfig and the
// canonical DecoderWeights.
//
// Thread-safety: not thread-safe. The engine thread owns the Model (and its
// backend); config() may be read from any thread once loading returned.
#ifndef ALIBI_SERVER_MODEL_MODEL_H_
#define ALIBI_SERVER_MODEL_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/backend.h"
#include "server/model/config.h"
#include "server/model/weights.h"

namespace alibi::model {

// One step's work, described on the host. T tokens from S sequences, laid out
// sequence after sequence. Sequence s contributes rows
// [query_start[s], query_start[s+1]), the tokens at positions
// context_lens[s] - (its row count) .. context_lens[s] - 1.
struct ForwardBatch {
  std::vector<int32_t> token_ids;     // [T]
  std::vector<int32_t> query_start;   // [S + 1], query_start[0] = 0
  std::vector<int32_t> context_lens;  // [S]: tokens in the cache after the step
  std::vector<int32_t> block_tables;  // [S, max_blocks_per_seq], row-major
  int max_blocks_per_seq = 0;
  std::vector<int32_t> slot_mapping;  // [T]: where each token's K/V is written
  std::vector<int32_t> logit_rows;    // [R]: rows whose logits are returned
  // Sliding windows, both empty or [S]: sequence s's queries see only the
  // last windows[s] keys (0: all), and its block table starts at logical
  // block first_blocks[s] (kernels::AttentionMeta).
  std::vector<int32_t> windows;
  std::vector<int32_t> first_blocks;

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
  int num_seqs() const { return static_cast<int>(context_lens.size()); }
};

class Model {
 public:
  // Loads config.json and the safetensors weights of a Hugging Face model
  // directory onto `backend` (which must outlive the model).
  static absl::StatusOr<std::unique_ptr<Model>> Load(
      const std::string& model_dir, kernels::Backend* backend);
  // Uploads already-loaded weights (tests, tools).
  static absl::StatusOr<std::unique_ptr<Model>> Create(
      const ModelConfig& config, const DecoderWeights& weights,
      kernels::Backend* backend);

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  // One slope per head (fp32 copy of AlibiSlopes()).
  const std::vector<float>& alibi_slopes() const { return slopes_; }
  kernels::Backend& backend() const { return *backend_; }
  // Bytes of device memory the uploaded weights occupy.
  size_t weight_bytes() const { return weight_bytes_; }

  // Bytes one KV block of `block_size` tokens takes over all layers.
  size_t KvBytesPerBlock(int block_size) const;
  // Allocates the paged KV pool (replacing any previous one).
  absl::Status AllocateKvCache(int num_blocks, int block_size);
  int kv_num_blocks() const { return kv_num_blocks_; }
  int kv_block_size() const { return kv_block_size_; }

  // Pre-sizes the activation workspace for steps of up to `max_tokens`
  // tokens and logit chunks of up to `max_logit_rows` rows, so steps do not
  // allocate.
  absl::Status Reserve(int max_tokens, int max_logit_rows);
  // Bytes of backend memory the activation workspace holds now.
  size_t workspace_bytes() const;

  // Decode-only steps on a backend with graphs replay one recording of the
  // embedding and layer stack per batch bucket (decode_graph.h). On by
  // default.
  void set_decode_graphs(bool enabled) { decode_graphs_ = enabled; }

  // Receives logits of batch.logit_rows[first_row .. first_row + num_rows):
  // host memory, [num_rows, vocab_size] row-major, valid during the call.
  using LogitsSink = std::function<absl::Status(int first_row, int num_rows,
                                                const float* logits)>;

  // Runs the decoder over `batch`, writing K/V of its tokens into the pool,
  // and hands the logits of batch.logit_rows to `sink` in order, at most
  // `rows_per_chunk` rows at a time (bounding memory when every position of a
  // long prompt needs logits). A sink error stops the pass and is returned.
  absl::Status Forward(const ForwardBatch& batch, const LogitsSink& sink,
                       int rows_per_chunk = 128);
  // The same with the logits left in backend memory: `logits` is
  // [num_rows, vocab_size] fp32, valid (and writable) during the call.
  using DeviceLogitsSink = std::function<absl::Status(
      int first_row, int num_rows, const kernels::TensorView& logits)>;
  absl::Status ForwardOnDevice(const ForwardBatch& batch,
                               const DeviceLogitsSink& sink,
                               int rows_per_chunk = 128);
  // The same, returning all logits at once in `logits` (R * vocab_size).
  absl::Status Forward(const ForwardBatch& batch, absl::Span<float> logits);

  // Called during Forward each time a layer's work has been issued: a
  // heartbeat that tells a long step from a stuck one. Set before use.
  void SetLayerCallback(std::function<void()> callback) {
    layer_callback_ = std::move(callback);
  }

 private:
  struct Layer;
  struct DeviceVector {
    kernels::Buffer buffer;
    const float* data() const { return buffer.as<const float>(); }
  };

  Model(const ModelConfig& config, kernels::Backend* backend);
  absl::Status Upload(const DecoderWeights& weights);
  absl::StatusOr<kernels::TensorView> UploadMatrix(const HostTensor& t);
  absl::StatusOr<const float*> UploadVector(const HostTensor& t);
  absl::StatusOr<const float*> UploadOptionalVector(
      const std::optional<HostTensor>& t);
  absl::Status EnsureWorkspace(int tokens, int rows);
  absl::Status ValidateBatch(const ForwardBatch& batch) const;
  kernels::PagedKvView KvView(int layer) const;

  ModelConfig config_;
  kernels::Backend* backend_;
  std::vector<float> slopes_;
  size_t weight_bytes_ = 0;

  std::vector<kernels::Buffer> weight_buffers_;  // owns every weight
  kernels::TensorView embedding_;
  const float* embedding_norm_weight_ = nullptr;
  const float* embedding_norm_bias_ = nullptr;
  std::vector<Layer> layers_;
  const float* final_norm_weight_ = nullptr;
  const float* final_norm_bias_ = nullptr;
  kernels::TensorView lm_head_;
  const float* slopes_device_ = nullptr;

  kernels::Buffer kv_pool_;
  int kv_num_blocks_ = 0;
  int kv_block_size_ = 0;

  // Activation workspace, sized by EnsureWorkspace.
  int workspace_tokens_ = 0;
  int workspace_rows_ = 0;
  kernels::Buffer hidden_;          // [T, H] fp32 residual stream
  kernels::Buffer normed_;          // [T, H] activation dtype
  kernels::Buffer qkv_;             // [T, Q + 2 KV]
  kernels::Buffer attn_;            // [T, Q]
  kernels::Buffer ffn_;             // [T, F]
  kernels::Buffer gathered_;        // [R, H] fp32 (R: one chunk of logit rows)
  kernels::Buffer logits_;          // [R, V] fp32
  std::vector<float> logits_host_;  // [R, V]
  kernels::Buffer metadata_;        // int32 step metadata
  size_t metadata_capacity_ = 0;
  std::vector<int32_t> metadata_host_;
  std::function<void()> layer_callback_;

  bool decode_graphs_ = true;
  uint64_t batch_counter_ = 0;  // AttentionMeta::batch_id of each step
};

}  // namespace alibi::model

#endif  // ALIBI_SERVER_MODEL_MODEL_H_
