// The architecture registry: one line per architecture (arch/<family>.cc).
#include "absl/strings/str_join.h"
#include "server/model/arch/arch.h"
#include "server/model/architecture.h"

namespace alibi::model {
namespace arch {
// Defined in arch/<family>.cc.
const ArchitectureSpec& BloomArchitecture();
const ArchitectureSpec& MptArchitecture();
}  // namespace arch

const std::vector<const ArchitectureSpec*>& Architectures() {
  static const auto* const kArchitectures =
      new std::vector<const ArchitectureSpec*>{
          &arch::BloomArchitecture(),
          &arch::MptArchitecture(),
      };
  return *kArchitectures;
}

const ArchitectureSpec* FindArchitecture(absl::string_view family) {
  for (const ArchitectureSpec* spec : Architectures()) {
    if (family == spec->family) return spec;
  }
  return nullptr;
}

std::string ArchitectureFamilies() {
  std::vector<std::string> names;
  for (const ArchitectureSpec* spec : Architectures()) {
    names.push_back(spec->family);
  }
  return absl::StrJoin(names, ", ");
}

}  // namespace alibi::model
