#include "server/model/weights.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "server/model/arch/arch.h"
#include "server/model/architecture.h"
#include "server/model/checkpoint.h"

namespace alibi::model {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

std::vector<float> HostTensorToFloat(const HostTensor& tensor) {
  const size_t n = static_cast<size_t>(tensor.numel());
  std::vector<float> out(n);
  if (n == 0 || tensor.data == nullptr) return out;
  switch (tensor.dtype) {
    case kernels::DType::kF32:
      std::memcpy(out.data(), tensor.data, n * sizeof(float));
      break;
    case kernels::DType::kF16: {
      const auto* p = static_cast<const uint16_t*>(tensor.data);
      for (size_t i = 0; i < n; ++i) out[i] = Fp16ToFloat(p[i]);
      break;
    }
    case kernels::DType::kBF16: {
      const auto* p = static_cast<const uint16_t*>(tensor.data);
      for (size_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(p[i]);
      break;
    }
    case kernels::DType::kI32: {
      const auto* p = static_cast<const int32_t*>(tensor.data);
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
      break;
    }
    case kernels::DType::kI8:  // no checkpoint tensor is stored as such
      break;
  }
  return out;
}

namespace arch {

absl::StatusOr<HostTensor> TensorLoader::Require(
    absl::string_view name, const std::vector<int64_t>& shape) {
  ASSIGN_OR_RETURN(HostTensor tensor, checkpoint_.Tensor(name));
  used_.insert(std::string(StripCheckpointPrefix(name)));
  if (tensor.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", tensor.name, ": shape ", ShapeString(tensor.shape),
        ", expected ", ShapeString(shape), " (in ",
        checkpoint_.Find(name).file->path(), ")"));
  }
  return tensor;
}

absl::StatusOr<std::optional<HostTensor>> TensorLoader::RequireIf(
    bool wanted, absl::string_view name, const std::vector<int64_t>& shape) {
  if (!wanted) return std::optional<HostTensor>();
  ASSIGN_OR_RETURN(HostTensor tensor, Require(name, shape));
  return std::optional<HostTensor>(std::move(tensor));
}

void TensorLoader::Ignore(absl::string_view name) {
  used_.insert(std::string(StripCheckpointPrefix(name)));
}

absl::Status TensorLoader::CheckAllUsed(absl::string_view model) const {
  std::vector<std::string> unused;
  for (const std::string& name : checkpoint_.TensorNames()) {
    if (!used_.contains(name)) unused.push_back(name);
  }
  if (unused.empty()) return absl::OkStatus();
  const size_t total = unused.size();
  if (unused.size() > 5) {
    unused.resize(5);
    unused.push_back("...");
  }
  return absl::InvalidArgumentError(
      absl::StrCat(checkpoint_.dir(), ": ", total, " tensor(s) that ", model,
                   " does not use: ", absl::StrJoin(unused, ", "),
                   " (do config.json and the weights belong together?)"));
}

}  // namespace arch

absl::StatusOr<DecoderWeights> LoadDecoderWeights(const Checkpoint& checkpoint,
                                                  const ModelConfig& config) {
  if (config.num_heads <= 0 || config.num_kv_heads <= 0 ||
      config.hidden_size <= 0 || config.head_dim <= 0 ||
      config.vocab_size <= 0 || config.num_layers <= 0 ||
      config.ffn_hidden_size <= 0 ||
      config.num_heads % config.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        "LoadDecoderWeights: the model config is incomplete (use "
        "ParseModelConfig)");
  }
  const ArchitectureSpec* spec = FindArchitecture(config.family);
  if (spec == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown architecture \"", config.family, "\" (",
                     ArchitectureFamilies(), ")"));
  }
  return spec->load_weights(checkpoint, config);
}

}  // namespace alibi::model
