#include "tests/testing/backend_configs.h"

#include "kernels/cpu/cpu_backend.h"

namespace alibi::testing {
namespace {

using kernels::DType;

struct Width {
  const char* name;
  DType dtype;
};
constexpr Width kWidths[] = {{"f32", DType::kF32},
                             {"bf16", DType::kBF16},
                             {"f16", DType::kF16},
                             {"int8", DType::kI8}};

BackendConfig Cpu(const std::string& name, DType weights) {
  BackendConfig c{name, {}};
  c.options.device = "cpu";
  c.options.cpu_weight_dtype = weights;
  return c;
}

}  // namespace

std::vector<BackendConfig> CpuWeightWidths() {
  std::vector<BackendConfig> out;
  for (const Width& w : kWidths)
    out.push_back(Cpu(std::string("cpu_") + w.name, w.dtype));
  return out;
}

std::vector<BackendConfig> ConformanceConfigs() {
  std::vector<BackendConfig> out = CpuWeightWidths();
  const std::vector<std::string> levels = kernels::cpu::SupportedKernelLevels();
  for (size_t i = 1; i < levels.size(); ++i) {  // [0] is what auto picks
    for (const Width& w : kWidths) {
      BackendConfig c =
          Cpu("cpu_" + std::string(w.name) + "_" + levels[i], w.dtype);
      c.options.cpu_kernels = levels[i];
      out.push_back(c);
    }
  }
  for (DType kv : {DType::kF16, DType::kBF16}) {
    BackendConfig c =
        Cpu(std::string("cpu_f32_kv_") + (kv == DType::kF16 ? "f16" : "bf16"),
            DType::kF32);
    c.options.kv_dtype = kv;
    out.push_back(c);
  }
  for (DType d : {DType::kBF16, DType::kF16}) {
    BackendConfig c{std::string("cuda_") + (d == DType::kBF16 ? "bf16" : "f16"),
                    {}};
    c.options.device = "cuda";
    c.options.cuda_dtype = d;
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateConfigured(
    const BackendConfig& config, int num_threads) {
  kernels::BackendOptions options = config.options;
  options.num_threads = num_threads;
  return kernels::CreateBackend(options);
}

}  // namespace alibi::testing
