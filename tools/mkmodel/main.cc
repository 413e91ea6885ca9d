// alibi-mkmodel: writes a random-weight BLOOM or MPT checkpoint directory in
// Hugging Face layout (config.json, safetensors, optional shards and
// tokenizer.json). See mkmodel.h for how the weights are made.
//
//   alibi-mkmodel --preset bloom-560m --out /tmp/bloom-560m
//   alibi-mkmodel --arch mpt --hidden 256 --heads 8 --kv_heads 2
//       --layers 4 --vocab 50432 --dtype f16 --shards 3
//       --prefix transformer. --out /tmp/m
//       --tokenizer tests/data/models/tiny-mpt/tokenizer.json
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/backend.h"
#include "tools/mkmodel/mkmodel.h"

ABSL_FLAG(std::string, out, "", "Output directory (created if missing).");
ABSL_FLAG(std::string, preset, "",
          "Start from a known model's shape; other flags override it.");
ABSL_FLAG(std::string, arch, "",
          "Architecture family, e.g. bloom or mpt (required without "
          "--preset).");
ABSL_FLAG(int, hidden, 0, "Hidden size (d_model).");
ABSL_FLAG(int, heads, 0, "Attention heads.");
ABSL_FLAG(int, kv_heads, 0,
          "Key/value heads (MPT only: 1 = multi-query, otherwise grouped); "
          "0 = --heads.");
ABSL_FLAG(int, layers, 0, "Decoder layers.");
ABSL_FLAG(int, vocab, 0, "Vocabulary size (embedding rows).");
ABSL_FLAG(int, ffn, 0, "FFN hidden size; 0 = 4 * hidden (BLOOM: must be).");
ABSL_FLAG(int, seq_length, -1,
          "Trained sequence length written to config.json (-1: preset or "
          "2048).");
ABSL_FLAG(std::string, dtype, "bf16", "f32, f16 or bf16.");
ABSL_FLAG(uint64_t, seed, 0, "Random seed.");
ABSL_FLAG(int, shards, 1,
          "Number of safetensors files (> 1 writes "
          "model-0000i-of-0000N.safetensors and an index).");
ABSL_FLAG(std::string, prefix, "none",
          "Tensor name prefix: 'transformer.' or 'none'.");
ABSL_FLAG(std::string, tokenizer, "", "tokenizer.json to copy into --out.");
ABSL_FLAG(bool, bias, false, "MPT: write biases (config no_bias = false).");

namespace alibi::mkmodel {
namespace {

absl::StatusOr<MkModelOptions> OptionsFromFlags() {
  MkModelOptions o;
  const std::string preset = absl::GetFlag(FLAGS_preset);
  if (!preset.empty()) RETURN_IF_ERROR(ApplyPreset(preset, o));
  const std::string arch = absl::GetFlag(FLAGS_arch);
  if (model::FindArchitecture(arch) != nullptr) {
    o.family = arch;
  } else if (!arch.empty() || preset.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--arch: must be one of ", model::ArchitectureFamilies(),
                     ", got \"", arch, "\""));
  }
  auto set_if = [](int flag, int& field) {
    if (flag != 0) field = flag;
  };
  set_if(absl::GetFlag(FLAGS_hidden), o.hidden);
  set_if(absl::GetFlag(FLAGS_heads), o.heads);
  set_if(absl::GetFlag(FLAGS_kv_heads), o.kv_heads);
  set_if(absl::GetFlag(FLAGS_layers), o.layers);
  set_if(absl::GetFlag(FLAGS_vocab), o.vocab);
  set_if(absl::GetFlag(FLAGS_ffn), o.ffn);
  if (absl::GetFlag(FLAGS_hidden) != 0 && absl::GetFlag(FLAGS_ffn) == 0) {
    o.ffn = 0;  // a new hidden size: FFN follows it unless given
  }
  if (absl::GetFlag(FLAGS_heads) != 0 && absl::GetFlag(FLAGS_kv_heads) == 0) {
    o.kv_heads = 0;  // new head count: plain multi-head unless given
  }
  if (absl::GetFlag(FLAGS_seq_length) >= 0) {
    o.seq_length = absl::GetFlag(FLAGS_seq_length);
  }
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  absl::StatusOr<kernels::DType> parsed = kernels::ParseDType(dtype);
  if (!parsed.ok() || *parsed == kernels::DType::kI32) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype: must be f32, f16 or bf16, got \"", dtype, "\""));
  }
  o.dtype = *parsed;
  o.seed = absl::GetFlag(FLAGS_seed);
  o.shards = absl::GetFlag(FLAGS_shards);
  const std::string prefix = absl::GetFlag(FLAGS_prefix);
  if (prefix == "transformer." || prefix == "transformer") {
    o.prefix = true;
  } else if (prefix == "none" || prefix.empty()) {
    o.prefix = false;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--prefix: must be 'transformer.' or 'none', got \"", prefix, "\""));
  }
  o.tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  o.mpt_bias = absl::GetFlag(FLAGS_bias);
  o.out_dir = absl::GetFlag(FLAGS_out);
  return o;
}

int Main() {
  absl::StatusOr<MkModelOptions> options = OptionsFromFlags();
  absl::Status status = options.status();
  if (status.ok()) status = Validate(*options);
  if (!status.ok()) {
    std::fprintf(stderr, "alibi-mkmodel: %s\n",
                 std::string(status.message()).c_str());
    return 2;
  }
  uint64_t params = 0;
  for (const TensorPlan& t : PlanTensors(*options)) {
    params += static_cast<uint64_t>(t.numel());
  }
  const auto start = std::chrono::steady_clock::now();
  status = WriteCheckpoint(*options);
  if (!status.ok()) {
    std::fprintf(stderr, "alibi-mkmodel: %s\n",
                 std::string(status.message()).c_str());
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::fprintf(stderr,
               "alibi-mkmodel: wrote %s (%llu parameters, %s, %d file(s)) in "
               "%.1f s\n",
               options->out_dir.c_str(),
               static_cast<unsigned long long>(params),
               std::string(kernels::DTypeName(options->dtype)).c_str(),
               options->shards, seconds);
  return 0;
}

}  // namespace
}  // namespace alibi::mkmodel

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(absl::StrCat(
      "writes a random-weight ALiBi checkpoint (BLOOM or MPT) in Hugging Face "
      "layout.\n  alibi-mkmodel --preset NAME --out DIR [flags]\n  "
      "alibi-mkmodel --arch bloom|mpt --hidden H --heads N --layers L "
      "--vocab V --out DIR [flags]\npresets: ",
      absl::StrJoin(alibi::mkmodel::PresetNames(), ", ")));
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "alibi-mkmodel: unexpected argument %s\n", rest[1]);
    return 2;
  }
  return alibi::mkmodel::Main();
}
