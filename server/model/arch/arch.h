// Internal to alibi_model: the checked tensor lookup the architecture files
// (arch/<family>.cc, registered in arch/registry.cc) share to map checkpoint
// tensors onto DecoderWeights.
//
// Thread-safety: TensorLoader is used by one thread during one load.
#ifndef ALIBI_SERVER_MODEL_ARCH_ARCH_H_
#define ALIBI_SERVER_MODEL_ARCH_ARCH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/model/checkpoint.h"
#include "server/model/config.h"
#include "server/model/weights.h"

namespace alibi::model::arch {

// Fetches tensors with their checks and remembers which were used, so that a
// checkpoint with tensors the architecture does not know (another layer
// count, a learned position embedding, ...) is refused instead of silently
// half-loaded.
class TensorLoader {
 public:
  explicit TensorLoader(const Checkpoint& checkpoint)
      : checkpoint_(checkpoint) {}

  // Tensor `name` (without the `transformer.` prefix): present, of `shape`,
  // F32/F16/BF16. Errors: "missing tensor NAME ...",
  // "tensor NAME: shape [a,b], expected [c,d] (in FILE)".
  absl::StatusOr<HostTensor> Require(absl::string_view name,
                                     const std::vector<int64_t>& shape);
  // Require when `wanted`, otherwise nullopt.
  absl::StatusOr<std::optional<HostTensor>> RequireIf(
      bool wanted, absl::string_view name, const std::vector<int64_t>& shape);
  // Counts `name` as used without loading it (a tied lm_head.weight).
  void Ignore(absl::string_view name);
  // Error listing the checkpoint's unused tensors, if any; `model` describes
  // what was loaded ("a BLOOM model with 3 layers").
  absl::Status CheckAllUsed(absl::string_view model) const;

  const Checkpoint& checkpoint() const { return checkpoint_; }

 private:
  const Checkpoint& checkpoint_;
  absl::flat_hash_set<std::string> used_;
};

}  // namespace alibi::model::arch

#endif  // ALIBI_SERVER_MODEL_ARCH_ARCH_H_
