#include "tools/mkmodel/mkmodel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tools/mkmodel/safetensors_writer.h"

namespace alibi::mkmodel {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kChunkElements = 1 << 20;
constexpr float kWeightStd = 0.02f;
constexpr float kGainStd = 0.05f;
constexpr float kBiasStd = 0.02f;

struct Preset {
  const char* name;
  const char* family;
  int hidden, heads, kv_heads, layers, vocab, seq_length;
};

constexpr Preset kPresets[] = {
    {"tiny-bloom", "bloom", 96, 6, 6, 3, 50432, 128},
    {"tiny-mpt", "mpt", 128, 8, 8, 2, 50432, 128},
    {"bloom-560m", "bloom", 1024, 16, 16, 24, 250880, 2048},
    {"bloom-1b1", "bloom", 1536, 16, 16, 24, 250880, 2048},
    {"bloom-1b7", "bloom", 2048, 16, 16, 24, 250880, 2048},
    {"bloom-3b", "bloom", 2560, 32, 32, 30, 250880, 2048},
    {"bloom-7b1", "bloom", 4096, 32, 32, 30, 250880, 2048},
    {"mpt-1b", "mpt", 2048, 16, 16, 24, 50432, 2048},
    {"mpt-7b", "mpt", 4096, 32, 32, 32, 50432, 2048},
    {"mpt-30b", "mpt", 7168, 64, 64, 48, 50432, 8192},
    {"replit-code-v1_5-3b", "mpt", 3072, 24, 8, 32, 32768, 4096},
};

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t Fnv1a64(absl::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

int KvHeads(const MkModelOptions& o) {
  return o.kv_heads > 0 ? o.kv_heads : o.heads;
}
int FfnSize(const MkModelOptions& o) {
  return o.ffn > 0 ? o.ffn : 4 * o.hidden;
}

std::string DTypeHeaderName(kernels::DType dtype) {
  switch (dtype) {
    case kernels::DType::kF16:
      return "F16";
    case kernels::DType::kBF16:
      return "BF16";
    default:
      return "F32";
  }
}

std::string TorchDTypeName(kernels::DType dtype) {
  return std::string(kernels::DTypeName(dtype));
}

model::CheckpointShape Shape(const MkModelOptions& o) {
  model::CheckpointShape s;
  s.hidden = o.hidden;
  s.heads = o.heads;
  s.kv_heads = KvHeads(o);
  s.layers = o.layers;
  s.vocab = o.vocab;
  s.ffn = FfnSize(o);
  s.seq_length = o.seq_length;
  s.bias = o.family != "mpt" || o.mpt_bias;
  s.bos_token_id = o.bos_token_id;
  s.eos_token_id = o.eos_token_id;
  s.pad_token_id = o.pad_token_id;
  s.torch_dtype = TorchDTypeName(o.dtype);
  return s;
}

void ConvertChunk(const float* in, size_t n, kernels::DType dtype,
                  uint8_t* out) {
  switch (dtype) {
    case kernels::DType::kF16: {
      auto* p = reinterpret_cast<uint16_t*>(out);
      for (size_t i = 0; i < n; ++i) p[i] = FloatToFp16(in[i]);
      break;
    }
    case kernels::DType::kBF16: {
      auto* p = reinterpret_cast<uint16_t*>(out);
      for (size_t i = 0; i < n; ++i) p[i] = FloatToBf16(in[i]);
      break;
    }
    default:
      std::memcpy(out, in, n * sizeof(float));
      break;
  }
}

std::string ShardName(int index, int count) {
  return absl::StrFormat("model-%05d-of-%05d.safetensors", index, count);
}

// Removes model files a previous run may have left, so the checkpoint in
// out_dir is exactly the one written now.
absl::Status RemoveStaleModelFiles(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::string base = name;
    if (absl::EndsWith(base, ".tmp")) base.resize(base.size() - 4);
    if (base == "model.safetensors" || base == "model.safetensors.index.json" ||
        (absl::StartsWith(base, "model-") &&
         absl::EndsWith(base, ".safetensors") &&
         absl::StrContains(base, "-of-"))) {
      stale.push_back(it->path());
    }
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot list ", dir, ": ", ec.message()));
  }
  for (const fs::path& p : stale) {
    if (!fs::remove(p, ec) && ec) {
      return absl::InternalError(
          absl::StrCat("cannot remove ", p.string(), ": ", ec.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create ", path));
  }
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

absl::Status ApplyPreset(absl::string_view name, MkModelOptions& options) {
  for (const Preset& p : kPresets) {
    if (name == p.name) {
      options.family = p.family;
      options.hidden = p.hidden;
      options.heads = p.heads;
      options.kv_heads = p.kv_heads;
      options.layers = p.layers;
      options.vocab = p.vocab;
      options.ffn = 4 * p.hidden;
      options.seq_length = p.seq_length;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--preset: unknown preset \"", name, "\" (",
                   absl::StrJoin(PresetNames(), ", "), ")"));
}

absl::Status Validate(const MkModelOptions& o) {
  auto bad = [](absl::string_view flag, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
  };
  const model::ArchitectureSpec* spec = model::FindArchitecture(o.family);
  if (spec == nullptr) {
    return bad("arch",
               absl::StrCat("must be one of ", model::ArchitectureFamilies(),
                            ", got \"", o.family, "\""));
  }
  if (o.hidden < 1 || o.hidden > (1 << 20)) {
    return bad("hidden", "must be in 1..1048576");
  }
  if (o.heads < 1 || o.hidden % o.heads != 0) {
    return bad("heads",
               absl::StrCat(o.heads, " must divide --hidden ", o.hidden));
  }
  const int kv = KvHeads(o);
  if (kv < 1 || o.heads % kv != 0) {
    return bad("kv_heads", absl::StrCat(kv, " must divide --heads ", o.heads));
  }
  if (o.layers < 1 || o.layers > (1 << 14)) {
    return bad("layers", "must be in 1..16384");
  }
  if (o.vocab < 1 || o.vocab > (1 << 24)) {
    return bad("vocab", "must be in 1..16777216");
  }
  if (o.ffn < 0 || o.ffn > (1 << 24)) return bad("ffn", "must be in 1..2^24");
  if (o.seq_length < 0) return bad("seq_length", "must be >= 0");
  RETURN_IF_ERROR(spec->check_shape(Shape(o)));
  if (o.dtype != kernels::DType::kF32 && o.dtype != kernels::DType::kF16 &&
      o.dtype != kernels::DType::kBF16) {
    return bad("dtype", "must be f32, f16 or bf16");
  }
  const size_t tensors = PlanTensors(o).size();
  if (o.shards < 1 || static_cast<size_t>(o.shards) > tensors ||
      o.shards > 99999) {
    return bad("shards", absl::StrCat("must be in 1..", tensors,
                                      " (the number of tensors)"));
  }
  if (o.out_dir.empty()) return bad("out", "an output directory is required");
  return absl::OkStatus();
}

std::vector<TensorPlan> PlanTensors(const MkModelOptions& o) {
  const float out_std =
      kWeightStd / std::sqrt(2.0f * static_cast<float>(std::max(o.layers, 1)));
  std::vector<TensorPlan> plan;
  for (model::TensorSpec& t :
       model::FindArchitecture(o.family)->plan_tensors(Shape(o))) {
    float mean = 0.0f, stddev = kWeightStd;
    switch (t.role) {
      case model::TensorRole::kWeight:
        break;
      case model::TensorRole::kOutputWeight:
        stddev = out_std;
        break;
      case model::TensorRole::kGain:
        mean = 1.0f;
        stddev = kGainStd;
        break;
      case model::TensorRole::kBias:
        stddev = kBiasStd;
        break;
    }
    plan.push_back({std::move(t.name), std::move(t.shape), mean, stddev});
  }
  return plan;
}

void GenerateValues(const TensorPlan& plan, uint64_t seed, int64_t start,
                    absl::Span<float> out) {
  const uint64_t key = SplitMix64(seed ^ Fnv1a64(plan.name));
  // Sum of four 16-bit uniforms: mean 2 * 65535 / 65536, variance 4 / 12.
  const double center = 2.0 * 65535.0;
  const double scale = 1.0 / (65536.0 * std::sqrt(4.0 / 12.0));
  for (size_t i = 0; i < out.size(); ++i) {
    const uint64_t r = SplitMix64(
        key + static_cast<uint64_t>(start + static_cast<int64_t>(i)) *
                  0xD1B54A32D192ED03ull);
    const double sum = static_cast<double>(r & 0xFFFF) +
                       static_cast<double>((r >> 16) & 0xFFFF) +
                       static_cast<double>((r >> 32) & 0xFFFF) +
                       static_cast<double>(r >> 48);
    out[i] =
        plan.mean + plan.stddev * static_cast<float>((sum - center) * scale);
  }
}

std::string ConfigJson(const MkModelOptions& o) {
  return model::FindArchitecture(o.family)->config_json(Shape(o));
}

absl::Status WriteCheckpoint(const MkModelOptions& o) {
  RETURN_IF_ERROR(Validate(o));
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", o.out_dir, ": ", ec.message()));
  }
  RETURN_IF_ERROR(RemoveStaleModelFiles(o.out_dir));
  RETURN_IF_ERROR(WriteTextFile(o.out_dir + "/config.json", ConfigJson(o)));
  if (!o.tokenizer_path.empty()) {
    fs::copy_file(o.tokenizer_path, o.out_dir + "/tokenizer.json",
                  fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tokenizer: cannot copy ", o.tokenizer_path, " to ",
                       o.out_dir, ": ", ec.message()));
    }
  }

  const std::vector<TensorPlan> plan = PlanTensors(o);
  const std::string dtype_name = DTypeHeaderName(o.dtype);
  const size_t element = kernels::DTypeSize(o.dtype);
  const std::string prefix = o.prefix ? "transformer." : "";

  // Shards: consecutive tensors, cut when the running size passes the next
  // 1/N of the total, every shard holding at least one tensor.
  uint64_t total_bytes = 0;
  for (const TensorPlan& t : plan) {
    total_bytes += static_cast<uint64_t>(t.numel()) * element;
  }
  std::vector<int> shard_of(plan.size());
  {
    uint64_t running = 0;
    int shard = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      const size_t tensors_left = plan.size() - i;
      const int shards_left = o.shards - shard;  // including the current
      if (shard + 1 < o.shards && i > 0 && shard_of[i - 1] == shard &&
          (running * static_cast<uint64_t>(o.shards) >=
               total_bytes * static_cast<uint64_t>(shard + 1) ||
           tensors_left < static_cast<size_t>(shards_left))) {
        ++shard;
      }
      shard_of[i] = shard;
      running += static_cast<uint64_t>(plan[i].numel()) * element;
    }
  }

  std::vector<float> values(kChunkElements);
  std::vector<uint8_t> bytes(kChunkElements * element);
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  size_t next = 0;
  for (int shard = 0; shard < o.shards; ++shard) {
    const std::string file =
        o.shards == 1 ? "model.safetensors" : ShardName(shard + 1, o.shards);
    std::vector<TensorHeader> headers;
    const size_t first = next;
    while (next < plan.size() && shard_of[next] == shard) {
      headers.push_back(
          TensorHeader{prefix + plan[next].name, dtype_name, plan[next].shape});
      weight_map[prefix + plan[next].name] = file;
      ++next;
    }
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                     SafetensorsWriter::Create(o.out_dir + "/" + file, headers,
                                               {{"format", "pt"}}));
    for (size_t i = first; i < next; ++i) {
      const int64_t n = plan[i].numel();
      for (int64_t start = 0; start < n; start += kChunkElements) {
        const int64_t count = std::min<int64_t>(kChunkElements, n - start);
        GenerateValues(plan[i], o.seed, start,
                       absl::MakeSpan(values.data(), count));
        ConvertChunk(values.data(), static_cast<size_t>(count), o.dtype,
                     bytes.data());
        RETURN_IF_ERROR(
            writer->Append(bytes.data(), static_cast<size_t>(count) * element));
      }
    }
    RETURN_IF_ERROR(writer->Finish());
  }
  if (o.shards > 1) {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total_bytes}};
    index["weight_map"] = weight_map;
    RETURN_IF_ERROR(WriteTextFile(o.out_dir + "/model.safetensors.index.json",
                                  index.dump(2) + "\n"));
  }
  return absl::OkStatus();
}

}  // namespace alibi::mkmodel
