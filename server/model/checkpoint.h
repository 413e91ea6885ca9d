// A Hugging Face checkpoint directory's tensors: either one
// `model.safetensors` or the shards that `model.safetensors.index.json`
// lists in its "weight_map" (the single file wins when both exist, as in
// transformers). Every file is memory-mapped read-only (see safetensors.h).
//
// Tensor names are looked up with or without the `transformer.` prefix
// (checkpoints in the wild have both): Find("h.0.mlp.dense_4h_to_h.weight")
// also finds "transformer.h.0.mlp.dense_4h_to_h.weight" and vice versa. A
// checkpoint holding both spellings of one tensor is refused at Open.
//
// Tensors returned keep their file mapped (HostTensor::owner), so they stay
// valid after the Checkpoint is destroyed.
//
// Thread-safety: immutable after Open; every method is safe from any thread.
#ifndef ALIBI_SERVER_MODEL_CHECKPOINT_H_
#define ALIBI_SERVER_MODEL_CHECKPOINT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/model/safetensors.h"
#include "server/model/weights.h"

namespace alibi::model {

class Checkpoint {
 public:
  // The prefix some checkpoints put in front of every tensor name.
  static constexpr absl::string_view kPrefix = "transformer.";

  // Opens `model_dir`. Errors: NotFound (no model.safetensors nor index),
  // InvalidArgument / DataLoss (a malformed index or safetensors file, an
  // index entry naming a tensor its shard lacks, a shard path leaving the
  // directory, a tensor stored twice).
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(
      const std::string& model_dir);
  // A checkpoint of already opened files (tests; index-free layouts). Every
  // tensor of every file is included.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> FromFiles(
      std::string model_dir,
      std::vector<std::shared_ptr<const SafetensorsFile>> files);

  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  const std::string& dir() const { return dir_; }
  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const {
    return files_;
  }

  // Where a tensor lives.
  struct Entry {
    const SafetensorsFile* file = nullptr;
    const SafetensorsTensorInfo* info = nullptr;  // info->name: stored name
  };
  // nullptr-file Entry when absent. `name` with or without `transformer.`.
  Entry Find(absl::string_view name) const;
  bool Contains(absl::string_view name) const {
    return Find(name).file != nullptr;
  }
  // The tensor as a weight (F32/F16/BF16): NotFound "missing tensor NAME",
  // or the dtype error of SafetensorsFile::Tensor.
  absl::StatusOr<HostTensor> Tensor(absl::string_view name) const;

  // Every tensor's name without the `transformer.` prefix, sorted.
  std::vector<std::string> TensorNames() const;
  // The width most of the weights are stored in, by element count (kF32,
  // kF16 or kBF16): what --cpu_weight_dtype=auto keeps.
  // InvalidArgument when there is none.
  absl::StatusOr<kernels::DType> StoredWeightDType() const;
  size_t num_tensors() const { return by_name_.size(); }

 private:
  Checkpoint() = default;
  // Adds `info` of files_[file_index] under its unprefixed name.
  absl::Status Add(size_t file_index, const SafetensorsTensorInfo& info);

  std::string dir_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  // Unprefixed name -> (file index, tensor info in that file).
  absl::flat_hash_map<std::string,
                      std::pair<size_t, const SafetensorsTensorInfo*>>
      by_name_;
};

// `name` without a leading "transformer.".
absl::string_view StripCheckpointPrefix(absl::string_view name);

}  // namespace alibi::model

#endif  // ALIBI_SERVER_MODEL_CHECKPOINT_H_
