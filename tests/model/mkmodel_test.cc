#include "tools/mkmodel/mkmodel.h"

#include <sys/resource.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "common/half.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/model/checkpoint.h"
#include "server/model/config.h"
#include "server/model/weights.h"
#include "tests/model/test_util.h"

namespace alibi::mkmodel {
namespace {

using ::alibi::model::Checkpoint;
using ::alibi::model::DecoderWeights;
using ::alibi::model::HostTensor;
using ::alibi::model::LayerWeights;
using ::alibi::model::ModelConfig;
using ::alibi::model::testing::ReadFile;
using ::alibi::model::testing::TempDir;
using ::alibi::model::testing::TinyMptDir;
using ::testing::HasSubstr;
using json = nlohmann::json;

float RoundTo(float x, kernels::DType dtype) {
  switch (dtype) {
    case kernels::DType::kF16:
      return Fp16ToFloat(FloatToFp16(x));
    case kernels::DType::kBF16:
      return Bf16ToFloat(FloatToBf16(x));
    default:
      return x;
  }
}

std::vector<float> Expected(const TensorPlan& plan, uint64_t seed,
                            kernels::DType dtype) {
  std::vector<float> v(static_cast<size_t>(plan.numel()));
  GenerateValues(plan, seed, 0, absl::MakeSpan(v));
  for (float& x : v) x = RoundTo(x, dtype);
  return v;
}

// BLOOM's file layout [head][q,k,v][head_dim] -> canonical [q; k; v].
std::vector<float> Deinterleave(const std::vector<float>& v, int heads,
                                int head_dim, int cols) {
  std::vector<float> out(v.size());
  const int hidden = heads * head_dim;
  for (int h = 0; h < heads; ++h) {
    for (int part = 0; part < 3; ++part) {
      for (int d = 0; d < head_dim; ++d) {
        const int src = (h * 3 + part) * head_dim + d;
        const int dst = part * hidden + h * head_dim + d;
        for (int c = 0; c < cols; ++c) out[dst * cols + c] = v[src * cols + c];
      }
    }
  }
  return out;
}

struct Loaded {
  ModelConfig config;
  DecoderWeights weights;
};

absl::StatusOr<Loaded> LoadDir(const std::string& dir) {
  absl::StatusOr<ModelConfig> config = model::LoadModelConfig(dir);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  absl::StatusOr<DecoderWeights> w = model::LoadDecoderWeights(**ckpt, *config);
  if (!w.ok()) return w.status();
  return Loaded{*config, std::move(*w)};
}

// The loaded tensor for a planned (checkpoint) name, in canonical layout.
const HostTensor* Lookup(const DecoderWeights& w, const std::string& name) {
  if (name == "word_embeddings.weight" || name == "wte.weight") {
    return &w.embedding;
  }
  if (name == "word_embeddings_layernorm.weight") {
    return &*w.embedding_norm_weight;
  }
  if (name == "word_embeddings_layernorm.bias") return &*w.embedding_norm_bias;
  if (name == "ln_f.weight" || name == "norm_f.weight") {
    return &w.final_norm_weight;
  }
  if (name == "ln_f.bias" || name == "norm_f.bias") return &*w.final_norm_bias;
  int layer = -1;
  char rest[128] = {0};
  if (std::sscanf(name.c_str(), "h.%d.%127s", &layer, rest) != 2 &&
      std::sscanf(name.c_str(), "blocks.%d.%127s", &layer, rest) != 2) {
    return nullptr;
  }
  const LayerWeights& l = w.layers.at(static_cast<size_t>(layer));
  const std::string r = rest;
  if (r == "input_layernorm.weight" || r == "norm_1.weight") {
    return &l.input_norm_weight;
  }
  if (r == "input_layernorm.bias" || r == "norm_1.bias") {
    return &*l.input_norm_bias;
  }
  if (r == "self_attention.query_key_value.weight" || r == "attn.Wqkv.weight") {
    return &l.qkv_weight;
  }
  if (r == "self_attention.query_key_value.bias" || r == "attn.Wqkv.bias") {
    return &*l.qkv_bias;
  }
  if (r == "self_attention.dense.weight" || r == "attn.out_proj.weight") {
    return &l.out_weight;
  }
  if (r == "self_attention.dense.bias" || r == "attn.out_proj.bias") {
    return &*l.out_bias;
  }
  if (r == "post_attention_layernorm.weight" || r == "norm_2.weight") {
    return &l.post_norm_weight;
  }
  if (r == "post_attention_layernorm.bias" || r == "norm_2.bias") {
    return &*l.post_norm_bias;
  }
  if (r == "mlp.dense_h_to_4h.weight" || r == "ffn.up_proj.weight") {
    return &l.up_weight;
  }
  if (r == "mlp.dense_h_to_4h.bias" || r == "ffn.up_proj.bias") {
    return &*l.up_bias;
  }
  if (r == "mlp.dense_4h_to_h.weight" || r == "ffn.down_proj.weight") {
    return &l.down_weight;
  }
  if (r == "mlp.dense_4h_to_h.bias" || r == "ffn.down_proj.bias") {
    return &*l.down_bias;
  }
  return nullptr;
}

MkModelOptions Small(const std::string& arch) {
  MkModelOptions o;
  o.family = arch;
  o.hidden = 32;
  o.heads = 4;
  o.kv_heads = arch == "mpt" ? 2 : 0;
  o.layers = 2;
  o.vocab = 64;
  o.seq_length = 64;
  o.seed = 7;
  return o;
}

using RoundTripParam = std::tuple<std::string, kernels::DType, int, bool>;

class MkModelRoundTripTest : public ::testing::TestWithParam<RoundTripParam> {};

TEST_P(MkModelRoundTripTest, LoadsWhatWasWritten) {
  const auto [arch, dtype, shards, prefix] = GetParam();
  TempDir dir;
  MkModelOptions o = Small(arch);
  o.dtype = dtype;
  o.shards = shards;
  o.prefix = prefix;
  o.mpt_bias = (arch == "mpt" && shards > 1);
  o.out_dir = dir.path();
  ASSERT_TRUE(WriteCheckpoint(o).ok());

  // Files as promised.
  if (shards == 1) {
    EXPECT_TRUE(std::filesystem::exists(dir.File("model.safetensors")));
  } else {
    EXPECT_FALSE(std::filesystem::exists(dir.File("model.safetensors")));
    for (int i = 1; i <= shards; ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", i,
                    shards);
      EXPECT_TRUE(std::filesystem::exists(dir.File(name))) << name;
    }
    const json index =
        json::parse(ReadFile(dir.File("model.safetensors.index.json")));
    EXPECT_EQ(index["weight_map"].size(), PlanTensors(o).size());
  }

  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt =
      Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->files().size(), static_cast<size_t>(shards));
  for (const auto& file : (*ckpt)->files()) {
    for (const auto& info : file->tensors()) {
      EXPECT_EQ(info.name.rfind("transformer.", 0) == 0, prefix) << info.name;
    }
  }

  absl::StatusOr<Loaded> loaded = LoadDir(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const ModelConfig& c = loaded->config;
  EXPECT_EQ(c.family, arch);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, arch == "mpt" ? 2 : 4);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.vocab_size, 64);
  EXPECT_EQ(c.ffn_hidden_size, 128);
  EXPECT_EQ(c.trained_context_length, 64);
  EXPECT_EQ(c.linear_bias, arch == "bloom" || o.mpt_bias);
  EXPECT_EQ(c.torch_dtype, kernels::DTypeName(dtype));

  const DecoderWeights& w = loaded->weights;
  int compared = 0;
  for (const TensorPlan& plan : PlanTensors(o)) {
    const HostTensor* t = Lookup(w, plan.name);
    ASSERT_NE(t, nullptr) << plan.name;
    EXPECT_EQ(t->dtype, dtype) << plan.name;
    EXPECT_EQ(t->shape, plan.shape) << plan.name;
    std::vector<float> want = Expected(plan, o.seed, dtype);
    if (plan.name.find("query_key_value") != std::string::npos) {
      want = Deinterleave(want, 4, 8, plan.shape.size() == 2 ? 32 : 1);
    }
    EXPECT_EQ(model::HostTensorToFloat(*t), want) << plan.name;
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>((*ckpt)->num_tensors()));
}

std::string RoundTripName(
    const ::testing::TestParamInfo<RoundTripParam>& info) {
  const std::string arch = std::get<0>(info.param);
  const kernels::DType dtype = std::get<1>(info.param);
  return arch + "_" + std::string(kernels::DTypeName(dtype)) + "_shards" +
         std::to_string(std::get<2>(info.param)) +
         (std::get<3>(info.param) ? "_prefixed" : "");
}

// Every registered architecture (server/model/architecture.h): a new one is
// covered by adding it to the registry.
std::vector<std::string> Families() {
  std::vector<std::string> out;
  for (const model::ArchitectureSpec* spec : model::Architectures()) {
    out.push_back(spec->family);
  }
  return out;
}

TEST(MkModelTest, TheRegistryHasBothFixtureFamilies) {
  EXPECT_EQ(Families(), (std::vector<std::string>{"bloom", "mpt"}));
  EXPECT_EQ(model::FindArchitecture("gpt2"), nullptr);
}

INSTANTIATE_TEST_SUITE_P(
    AllArchsDtypesLayouts, MkModelRoundTripTest,
    ::testing::Combine(::testing::ValuesIn(Families()),
                       ::testing::Values(kernels::DType::kF32,
                                         kernels::DType::kF16,
                                         kernels::DType::kBF16),
                       ::testing::Values(1, 3), ::testing::Bool()),
    RoundTripName);

TEST(MkModelTest, ValuesAreScaledLikeARealModel) {
  MkModelOptions o = Small("bloom");
  o.hidden = 256;
  o.layers = 8;
  for (const TensorPlan& plan : PlanTensors(o)) {
    std::vector<float> v(static_cast<size_t>(plan.numel()));
    GenerateValues(plan, 3, 0, absl::MakeSpan(v));
    double sum = 0, sq = 0;
    for (float x : v) sum += x;
    const double mean = sum / v.size();
    for (float x : v) sq += (x - mean) * (x - mean);
    const double stddev = std::sqrt(sq / v.size());
    EXPECT_NEAR(mean, plan.mean, 4 * plan.stddev / std::sqrt(v.size()) + 1e-6)
        << plan.name;
    EXPECT_NEAR(stddev, plan.stddev, 0.2 * plan.stddev) << plan.name;
    if (plan.name.find("layernorm.weight") != std::string::npos ||
        plan.name == "ln_f.weight") {
      EXPECT_EQ(plan.mean, 1.0f) << plan.name;
    } else {
      EXPECT_EQ(plan.mean, 0.0f) << plan.name;
      EXPECT_LE(plan.stddev, 0.02f) << plan.name;
    }
  }
}

TEST(MkModelTest, DeterministicAndChunkIndependent) {
  TensorPlan plan{"x.weight", {1000}, 0.0f, 1.0f};
  std::vector<float> whole(1000), a(1000), other(1000);
  GenerateValues(plan, 5, 0, absl::MakeSpan(whole));
  GenerateValues(plan, 5, 0, absl::MakeSpan(a.data(), 300));
  GenerateValues(plan, 5, 300, absl::MakeSpan(a.data() + 300, 700));
  EXPECT_EQ(whole, a);
  GenerateValues(plan, 6, 0, absl::MakeSpan(other));
  EXPECT_NE(whole, other);
  plan.name = "y.weight";
  GenerateValues(plan, 5, 0, absl::MakeSpan(other));
  EXPECT_NE(whole, other);

  // Same options, same bytes.
  TempDir d1, d2;
  MkModelOptions o = Small("mpt");
  o.out_dir = d1.path();
  ASSERT_TRUE(WriteCheckpoint(o).ok());
  o.out_dir = d2.path();
  ASSERT_TRUE(WriteCheckpoint(o).ok());
  EXPECT_EQ(ReadFile(d1.File("model.safetensors")),
            ReadFile(d2.File("model.safetensors")));
  EXPECT_EQ(ReadFile(d1.File("config.json")), ReadFile(d2.File("config.json")));
}

TEST(MkModelTest, RewritingADirectoryRemovesStaleFiles) {
  TempDir dir;
  MkModelOptions o = Small("bloom");
  o.out_dir = dir.path();
  ASSERT_TRUE(WriteCheckpoint(o).ok());
  o.shards = 2;
  o.seed = 8;
  ASSERT_TRUE(WriteCheckpoint(o).ok());
  // The old model.safetensors would win over the new index.
  EXPECT_FALSE(std::filesystem::exists(dir.File("model.safetensors")));
  o.shards = 1;
  ASSERT_TRUE(WriteCheckpoint(o).ok());
  EXPECT_FALSE(
      std::filesystem::exists(dir.File("model.safetensors.index.json")));
  EXPECT_FALSE(
      std::filesystem::exists(dir.File("model-00001-of-00002.safetensors")));
  EXPECT_TRUE(LoadDir(dir.path()).ok());
}

TEST(MkModelTest, ValidationNamesTheFlag) {
  MkModelOptions o = Small("bloom");
  o.out_dir = "/tmp/unused";
  ASSERT_TRUE(Validate(o).ok());
  MkModelOptions bad = o;
  bad.ffn = 100;
  EXPECT_THAT(Validate(bad).message(), HasSubstr("--ffn"));
  bad = o;
  bad.heads = 5;
  EXPECT_THAT(Validate(bad).message(), HasSubstr("--heads"));
  bad = o;
  bad.kv_heads = 2;
  EXPECT_THAT(Validate(bad).message(), HasSubstr("--kv_heads"));
  bad = o;
  bad.shards = 1000;
  EXPECT_THAT(Validate(bad).message(), HasSubstr("--shards"));
  bad = o;
  bad.out_dir = "";
  EXPECT_THAT(Validate(bad).message(), HasSubstr("--out"));
  bad = o;
  bad.dtype = kernels::DType::kI32;
  EXPECT_THAT(Validate(bad).message(), HasSubstr("--dtype"));
  bad = o;
  bad.vocab = 0;
  EXPECT_THAT(Validate(bad).message(), HasSubstr("--vocab"));
  EXPECT_THAT(ApplyPreset("gpt-5", bad).message(), HasSubstr("--preset"));
}

TEST(MkModelTest, PresetsMakeConfigsThatParse) {
  for (const std::string& name : PresetNames()) {
    MkModelOptions o;
    ASSERT_TRUE(ApplyPreset(name, o).ok()) << name;
    o.out_dir = "/tmp/unused";
    ASSERT_TRUE(Validate(o).ok()) << name;
    absl::StatusOr<ModelConfig> c = model::ParseModelConfig(ConfigJson(o));
    ASSERT_TRUE(c.ok()) << name << ": " << c.status();
    EXPECT_EQ(c->hidden_size, o.hidden) << name;
    EXPECT_EQ(c->num_heads, o.heads) << name;
    EXPECT_EQ(c->num_kv_heads, o.kv_heads) << name;
    EXPECT_EQ(c->num_layers, o.layers) << name;
    EXPECT_EQ(c->vocab_size, o.vocab) << name;
    EXPECT_EQ(c->trained_context_length, o.seq_length) << name;
  }
  MkModelOptions o;
  ASSERT_TRUE(ApplyPreset("bloom-7b1", o).ok());
  uint64_t params = 0;
  for (const TensorPlan& t : PlanTensors(o)) params += t.numel();
  EXPECT_NEAR(static_cast<double>(params), 7.07e9, 0.05e9);
  ASSERT_TRUE(ApplyPreset("replit-code-v1_5-3b", o).ok());
  const json mine = json::parse(ConfigJson(o));
  const json real =
      json::parse(ReadFile(std::string(ALIBI_TEST_DATA_DIR) +
                           "/tokenizers/replit-code-v1_5-3b/config.json"));
  for (const char* key : {"d_model", "n_heads", "n_layers", "vocab_size",
                          "max_seq_len", "expansion_ratio"}) {
    EXPECT_EQ(mine[key], real[key]) << key;
  }
  EXPECT_EQ(mine["attn_config"]["kv_n_heads"],
            real["attn_config"]["kv_n_heads"]);
}

TEST(MkModelTest, NonIntegralExpansionRatioUsesFfnHiddenSize) {
  MkModelOptions o = Small("mpt");
  o.ffn = 80;
  absl::StatusOr<ModelConfig> c = model::ParseModelConfig(ConfigJson(o));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ffn_hidden_size, 80);
  o.kv_heads = 1;
  c = model::ParseModelConfig(ConfigJson(o));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 1);
}

// Runs a shell command, returning its exit status.
int RunCommand(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Binary() {
  return std::string(ALIBI_BINARY_DIR) + "/tools/mkmodel/alibi-mkmodel";
}

TEST(MkModelBinaryTest, WritesALoadableCheckpointWithTokenizer) {
  TempDir dir;
  const std::string tokenizer = TinyMptDir() + "/tokenizer.json";
  const std::string cmd =
      Binary() +
      " --arch mpt --hidden 64 --heads 8 --kv_heads 2 --layers 2 --vocab 100 "
      "--dtype f16 --seed 3 --seq_length 256 --shards 2 "
      "--prefix transformer. --bias --tokenizer " +
      tokenizer + " --out " + dir.path() + " 2>/dev/null";
  ASSERT_EQ(RunCommand(cmd), 0) << cmd;
  absl::StatusOr<Loaded> loaded = LoadDir(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.num_kv_heads, 2);
  EXPECT_EQ(loaded->config.trained_context_length, 256);
  EXPECT_TRUE(loaded->config.linear_bias);
  EXPECT_EQ(loaded->weights.layers[0].qkv_weight.shape,
            (std::vector<int64_t>{64 + 2 * 2 * 8, 64}));
  EXPECT_EQ(loaded->weights.embedding.dtype, kernels::DType::kF16);
  EXPECT_EQ(ReadFile(dir.File("tokenizer.json")), ReadFile(tokenizer));

  // Same values as the library with the same options.
  MkModelOptions o;
  o.family = "mpt";
  o.hidden = 64;
  o.heads = 8;
  o.kv_heads = 2;
  o.layers = 2;
  o.vocab = 100;
  o.mpt_bias = true;
  const TensorPlan plan = PlanTensors(o)[0];
  ASSERT_EQ(plan.name, "wte.weight");
  EXPECT_EQ(model::HostTensorToFloat(loaded->weights.embedding),
            Expected(plan, 3, kernels::DType::kF16));
}

TEST(MkModelBinaryTest, PresetWithOverrides) {
  TempDir dir;
  const std::string cmd = Binary() +
                          " --preset tiny-bloom --vocab 300 --dtype f32 "
                          "--out " +
                          dir.path() + " 2>/dev/null";
  ASSERT_EQ(RunCommand(cmd), 0) << cmd;
  absl::StatusOr<Loaded> loaded = LoadDir(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.hidden_size, 96);
  EXPECT_EQ(loaded->config.num_heads, 6);
  EXPECT_EQ(loaded->config.vocab_size, 300);
  EXPECT_EQ(loaded->config.trained_context_length, 128);
  EXPECT_EQ(loaded->weights.embedding.dtype, kernels::DType::kF32);
}

TEST(MkModelBinaryTest, BadFlagsExitNonZero) {
  TempDir dir;
  const std::string out = " --out " + dir.path() + " 2>/dev/null";
  EXPECT_EQ(RunCommand(Binary() +
                       " --arch gpt --hidden 8 --heads 2 --layers 1 "
                       "--vocab 4" +
                       out),
            2);
  EXPECT_EQ(RunCommand(Binary() +
                       " --arch bloom --hidden 8 --heads 3 --layers 1 "
                       "--vocab 4" +
                       out),
            2);
  EXPECT_EQ(RunCommand(Binary() + " --preset tiny-mpt --dtype int8" + out), 2);
  EXPECT_EQ(RunCommand(Binary() + " --preset tiny-mpt --prefix model." + out),
            2);
  EXPECT_EQ(RunCommand(Binary() + " --preset nope" + out), 2);
  EXPECT_EQ(RunCommand(Binary() +
                       " --preset tiny-mpt --tokenizer /nonexistent" + out),
            1);
}

// Writing streams: peak memory stays far below the checkpoint size.
TEST(MkModelBinaryTest, StreamsWithBoundedMemory) {
  TempDir dir;
  // ~64M parameters in BF16: a 128 MB checkpoint.
  const std::string cmd = Binary() +
                          " --arch mpt --hidden 1024 --heads 8 --layers 4 "
                          "--vocab 16384 --dtype bf16 --out " +
                          dir.path() + " 2>/dev/null";
  ASSERT_EQ(RunCommand(cmd), 0);
  struct rusage usage;
  ASSERT_EQ(getrusage(RUSAGE_CHILDREN, &usage), 0);
  const uintmax_t size =
      std::filesystem::file_size(dir.File("model.safetensors"));
  EXPECT_GT(size, 100u << 20);
  // ru_maxrss is in KiB: under 48 MiB for a 100+ MiB file.
  EXPECT_LT(usage.ru_maxrss, 48 * 1024) << "peak RSS KiB";
}

}  // namespace
}  // namespace alibi::mkmodel
