#include "server/model/weights.h"

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/model/checkpoint.h"
#include "server/model/config.h"
#include "tests/model/test_util.h"
#include "tools/mkmodel/mkmodel.h"
#include "tools/mkmodel/safetensors_writer.h"

namespace alibi::model {
namespace {

using ::alibi::mkmodel::MkModelOptions;
using ::alibi::mkmodel::SafetensorsWriter;
using ::alibi::mkmodel::TensorHeader;
using ::alibi::model::testing::ReadFile;
using ::alibi::model::testing::TempDir;
using ::alibi::model::testing::TinyBloomDir;
using ::alibi::model::testing::TinyMptDir;
using ::alibi::model::testing::WriteFile;
using ::testing::HasSubstr;
using json = nlohmann::json;

absl::StatusOr<DecoderWeights> Load(const std::string& dir) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  return LoadDecoderWeights(**ckpt, *config);
}

void ExpectShape(const HostTensor& t, std::vector<int64_t> shape,
                 kernels::DType dtype) {
  EXPECT_EQ(t.shape, shape) << t.name;
  EXPECT_EQ(t.dtype, dtype) << t.name;
  EXPECT_NE(t.data, nullptr) << t.name;
  EXPECT_NE(t.owner, nullptr) << t.name;
}

TEST(WeightsTest, TinyBloomShapes) {
  absl::StatusOr<DecoderWeights> w = Load(TinyBloomDir());
  ASSERT_TRUE(w.ok()) << w.status();
  const auto f16 = kernels::DType::kF16;
  ExpectShape(w->embedding, {50432, 96}, f16);
  ASSERT_TRUE(w->embedding_norm_weight.has_value());
  ASSERT_TRUE(w->embedding_norm_bias.has_value());
  ExpectShape(*w->embedding_norm_weight, {96}, f16);
  ExpectShape(*w->embedding_norm_bias, {96}, f16);
  ASSERT_EQ(w->layers.size(), 3u);
  for (const LayerWeights& l : w->layers) {
    ExpectShape(l.input_norm_weight, {96}, f16);
    ASSERT_TRUE(l.input_norm_bias && l.qkv_bias && l.out_bias &&
                l.post_norm_bias && l.up_bias && l.down_bias);
    ExpectShape(*l.input_norm_bias, {96}, f16);
    ExpectShape(l.qkv_weight, {288, 96}, f16);
    ExpectShape(*l.qkv_bias, {288}, f16);
    ExpectShape(l.out_weight, {96, 96}, f16);
    ExpectShape(*l.out_bias, {96}, f16);
    ExpectShape(l.post_norm_weight, {96}, f16);
    ExpectShape(*l.post_norm_bias, {96}, f16);
    ExpectShape(l.up_weight, {384, 96}, f16);
    ExpectShape(*l.up_bias, {384}, f16);
    ExpectShape(l.down_weight, {96, 384}, f16);
    ExpectShape(*l.down_bias, {96}, f16);
  }
  ExpectShape(w->final_norm_weight, {96}, f16);
  ASSERT_TRUE(w->final_norm_bias.has_value());
  // Tied head: the embedding itself.
  EXPECT_EQ(w->lm_head.data, w->embedding.data);
  EXPECT_EQ(w->lm_head.shape, w->embedding.shape);
}

TEST(WeightsTest, TinyMptShapesAndZeroCopy) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(TinyMptDir());
  ASSERT_TRUE(config.ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt =
      Checkpoint::Open(TinyMptDir());
  ASSERT_TRUE(ckpt.ok());
  absl::StatusOr<DecoderWeights> w = LoadDecoderWeights(**ckpt, *config);
  ASSERT_TRUE(w.ok()) << w.status();
  const auto bf16 = kernels::DType::kBF16;
  ExpectShape(w->embedding, {50432, 128}, bf16);
  EXPECT_FALSE(w->embedding_norm_weight.has_value());
  EXPECT_FALSE(w->embedding_norm_bias.has_value());
  ASSERT_EQ(w->layers.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const LayerWeights& l = w->layers[i];
    ExpectShape(l.input_norm_weight, {128}, bf16);
    ExpectShape(l.qkv_weight, {384, 128}, bf16);
    ExpectShape(l.out_weight, {128, 128}, bf16);
    ExpectShape(l.post_norm_weight, {128}, bf16);
    ExpectShape(l.up_weight, {512, 128}, bf16);
    ExpectShape(l.down_weight, {128, 512}, bf16);
    EXPECT_FALSE(l.input_norm_bias || l.qkv_bias || l.out_bias ||
                 l.post_norm_bias || l.up_bias || l.down_bias);
    // MPT's QKV is already canonical: a view of the mapped file.
    Checkpoint::Entry e =
        (*ckpt)->Find("blocks." + std::to_string(i) + ".attn.Wqkv.weight");
    EXPECT_EQ(l.qkv_weight.data, e.file->Data(*e.info));
    EXPECT_EQ(l.qkv_weight.name,
              "transformer.blocks." + std::to_string(i) + ".attn.Wqkv.weight");
  }
  ExpectShape(w->final_norm_weight, {128}, bf16);
  EXPECT_FALSE(w->final_norm_bias.has_value());
  EXPECT_EQ(w->lm_head.data, w->embedding.data);
}

// BLOOM's fused QKV is [head][q,k,v][head_dim] in the file; the loaded one
// must be [q of all heads; k; v]. Checked against the file's raw bytes,
// located by parsing the header independently of the reader.
TEST(WeightsTest, BloomQkvReorderMatchesFileBytes) {
  const std::string raw = ReadFile(TinyBloomDir() + "/model.safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<uint8_t>(raw[i]);
  }
  const json header = json::parse(raw.substr(8, header_len));
  const char* data = raw.data() + 8 + header_len;

  absl::StatusOr<DecoderWeights> w = Load(TinyBloomDir());
  ASSERT_TRUE(w.ok()) << w.status();
  const int heads = 6, head_dim = 16, hidden = 96;
  const size_t row_bytes = hidden * 2;  // F16
  for (int layer = 0; layer < 3; ++layer) {
    const std::string p =
        "h." + std::to_string(layer) + ".self_attention.query_key_value.";
    const uint64_t w_begin = header[p + "weight"]["data_offsets"][0];
    const uint64_t b_begin = header[p + "bias"]["data_offsets"][0];
    const auto* loaded_w =
        static_cast<const char*>(w->layers[layer].qkv_weight.data);
    const auto* loaded_b =
        static_cast<const char*>(w->layers[layer].qkv_bias->data);
    EXPECT_NE(static_cast<const void*>(loaded_w),
              static_cast<const void*>(data + w_begin));  // an owned copy
    int mismatches = 0;
    for (int h = 0; h < heads; ++h) {
      for (int part = 0; part < 3; ++part) {
        for (int d = 0; d < head_dim; ++d) {
          const size_t file_row = (h * 3 + part) * head_dim + d;
          const size_t canon_row = part * hidden + h * head_dim + d;
          mismatches += std::memcmp(loaded_w + canon_row * row_bytes,
                                    data + w_begin + file_row * row_bytes,
                                    row_bytes) != 0;
          mismatches += std::memcmp(loaded_b + canon_row * 2,
                                    data + b_begin + file_row * 2, 2) != 0;
        }
      }
    }
    EXPECT_EQ(mismatches, 0) << "layer " << layer;
    // And the reorder is not the identity (the test would be vacuous).
    EXPECT_NE(std::memcmp(loaded_w, data + w_begin, 3 * hidden * row_bytes), 0);
  }
}

// Writes config.json and model.safetensors (zero data) for `options`, after
// `mutate` edits the tensor list.
void WriteCrafted(
    const std::string& dir, const MkModelOptions& options,
    const std::function<void(std::vector<TensorHeader>&)>& mutate) {
  std::vector<TensorHeader> headers;
  for (const auto& t : mkmodel::PlanTensors(options)) {
    headers.push_back(TensorHeader{
        (options.prefix ? "transformer." : "") + t.name, "F16", t.shape});
  }
  mutate(headers);
  auto writer =
      SafetensorsWriter::Create(dir + "/model.safetensors", headers, {});
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (const TensorHeader& h : headers) {
    absl::StatusOr<uint64_t> n = SafetensorsWriter::TensorBytes(h);
    ASSERT_TRUE(n.ok());
    const std::string zeros(*n, '\0');
    ASSERT_TRUE((*writer)->Append(zeros.data(), zeros.size()).ok());
  }
  ASSERT_TRUE((*writer)->Finish().ok());
  WriteFile(dir + "/config.json", mkmodel::ConfigJson(options));
}

MkModelOptions SmallBloom() {
  MkModelOptions o;
  o.family = "bloom";
  o.hidden = 96;
  o.heads = 6;
  o.layers = 3;
  o.vocab = 50;
  return o;
}

MkModelOptions SmallMpt() {
  MkModelOptions o;
  o.family = "mpt";
  o.hidden = 64;
  o.heads = 4;
  o.kv_heads = 2;
  o.layers = 2;
  o.vocab = 50;
  o.prefix = true;
  return o;
}

std::vector<TensorHeader>::iterator FindHeader(std::vector<TensorHeader>& h,
                                               const std::string& name) {
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it->name == name) return it;
  }
  ADD_FAILURE() << "no tensor " << name;
  return h.end();
}

TEST(WeightsTest, CraftedCheckpointsLoad) {
  TempDir dir;
  WriteCrafted(dir.path(), SmallBloom(), [](auto&) {});
  EXPECT_TRUE(Load(dir.path()).ok()) << Load(dir.path()).status();
  WriteCrafted(dir.path(), SmallMpt(), [](auto&) {});
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->layers[0].qkv_weight.shape, (std::vector<int64_t>{128, 64}));
}

TEST(WeightsTest, MissingTensor) {
  TempDir dir;
  WriteCrafted(dir.path(), SmallBloom(), [](auto& h) {
    h.erase(FindHeader(h, "h.2.mlp.dense_4h_to_h.weight"));
  });
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(w.status().message(),
              HasSubstr("missing tensor h.2.mlp.dense_4h_to_h.weight"));
}

TEST(WeightsTest, WrongShape) {
  TempDir dir;
  WriteCrafted(dir.path(), SmallBloom(), [](auto& h) {
    FindHeader(h, "h.0.self_attention.dense.weight")->shape = {96, 95};
  });
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(),
              HasSubstr("tensor h.0.self_attention.dense.weight: shape "
                        "[96,95], expected [96,96]"));
  EXPECT_THAT(w.status().message(), HasSubstr(dir.File("model.safetensors")));
}

TEST(WeightsTest, WrongShapeWithPrefixNamesStoredTensor) {
  TempDir dir;
  WriteCrafted(dir.path(), SmallMpt(), [](auto& h) {
    FindHeader(h, "transformer.blocks.1.attn.Wqkv.weight")->shape = {192, 64};
  });
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(),
              HasSubstr("tensor transformer.blocks.1.attn.Wqkv.weight: shape "
                        "[192,64], expected [128,64]"));
}

TEST(WeightsTest, NonFloatWeight) {
  TempDir dir;
  WriteCrafted(dir.path(), SmallBloom(),
               [](auto& h) { FindHeader(h, "ln_f.weight")->dtype = "I16"; });
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(),
              HasSubstr("tensor ln_f.weight has dtype I16: only F32, F16 and "
                        "BF16"));
}

TEST(WeightsTest, ExtraLayerIsRefused) {
  TempDir dir;
  WriteCrafted(dir.path(), SmallBloom(), [](auto& h) {
    h.push_back(TensorHeader{"h.3.input_layernorm.weight", "F16", {96}});
  });
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(),
              HasSubstr("a BLOOM model with 3 layers does not use: "
                        "h.3.input_layernorm.weight"));
}

TEST(WeightsTest, MptLearnedPositionEmbeddingIsRefused) {
  TempDir dir;
  WriteCrafted(dir.path(), SmallMpt(), [](auto& h) {
    h.push_back(TensorHeader{"transformer.wpe.weight", "F16", {2048, 64}});
  });
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(),
              HasSubstr("tensor transformer.wpe.weight: learned position "
                        "embeddings are not supported"));
}

TEST(WeightsTest, MptBiasesFollowNoBias) {
  TempDir dir;
  MkModelOptions o = SmallMpt();
  o.mpt_bias = true;
  WriteCrafted(dir.path(), o, [](auto&) {});
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->layers[1].qkv_bias.has_value());
  EXPECT_EQ(w->layers[1].qkv_bias->shape, std::vector<int64_t>{128});
  ASSERT_TRUE(w->final_norm_bias.has_value());

  // The config says biases but one is missing.
  WriteCrafted(dir.path(), o, [](auto& h) {
    h.erase(FindHeader(h, "transformer.blocks.0.ffn.up_proj.bias"));
  });
  EXPECT_THAT(Load(dir.path()).status().message(),
              HasSubstr("missing tensor blocks.0.ffn.up_proj.bias"));
}

TEST(WeightsTest, UntiedHead) {
  TempDir dir;
  MkModelOptions o = SmallBloom();
  WriteCrafted(dir.path(), o, [](auto& h) {
    h.push_back(TensorHeader{"lm_head.weight", "F16", {50, 96}});
  });
  // Tied (the default): lm_head.weight is ignored, as transformers does.
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->lm_head.data, w->embedding.data);

  json config = json::parse(ReadFile(dir.File("config.json")));
  config["tie_word_embeddings"] = false;
  WriteFile(dir.File("config.json"), config.dump());
  w = Load(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_NE(w->lm_head.data, w->embedding.data);
  EXPECT_EQ(w->lm_head.name, "lm_head.weight");

  WriteCrafted(dir.path(), o, [](auto&) {});
  WriteFile(dir.File("config.json"), config.dump());
  EXPECT_THAT(Load(dir.path()).status().message(),
              HasSubstr("missing tensor lm_head.weight"));
}

TEST(WeightsTest, ConfigAndWeightsDisagree) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(TinyBloomDir());
  ASSERT_TRUE(config.ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt =
      Checkpoint::Open(TinyBloomDir());
  ASSERT_TRUE(ckpt.ok());
  ModelConfig fewer = *config;
  fewer.num_layers = 2;
  EXPECT_THAT(LoadDecoderWeights(**ckpt, fewer).status().message(),
              HasSubstr("does not use: h.2."));
  ModelConfig more = *config;
  more.num_layers = 4;
  EXPECT_THAT(LoadDecoderWeights(**ckpt, more).status().message(),
              HasSubstr("missing tensor h.3.input_layernorm.weight"));
  ModelConfig vocab = *config;
  vocab.vocab_size = 50000;
  EXPECT_THAT(LoadDecoderWeights(**ckpt, vocab).status().message(),
              HasSubstr("tensor word_embeddings.weight: shape [50432,96], "
                        "expected [50000,96]"));
  // The MPT mapping on BLOOM tensors.
  absl::StatusOr<ModelConfig> mpt = LoadModelConfig(TinyMptDir());
  ASSERT_TRUE(mpt.ok());
  EXPECT_THAT(LoadDecoderWeights(**ckpt, *mpt).status().message(),
              HasSubstr("missing tensor wte.weight"));
  EXPECT_FALSE(LoadDecoderWeights(**ckpt, ModelConfig()).ok());
}

TEST(WeightsTest, TruncatedCheckpoint) {
  TempDir dir;
  const std::string raw = ReadFile(TinyBloomDir() + "/model.safetensors");
  WriteFile(dir.File("model.safetensors"), raw.substr(0, raw.size() / 2));
  WriteFile(dir.File("config.json"), ReadFile(TinyBloomDir() + "/config.json"));
  absl::StatusOr<DecoderWeights> w = Load(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(w.status().message(), HasSubstr("truncated"));
}

TEST(WeightsTest, HostTensorToFloat) {
  const uint16_t h[3] = {0x3C00, 0xC000, 0x3800};  // 1, -2, 0.5 in fp16
  HostTensor t;
  t.dtype = kernels::DType::kF16;
  t.shape = {3};
  t.data = h;
  EXPECT_EQ(HostTensorToFloat(t), (std::vector<float>{1.0f, -2.0f, 0.5f}));
  EXPECT_EQ(t.nbytes(), 6);
  EXPECT_EQ(ShapeString({3, 4}), "[3,4]");
  EXPECT_EQ(ShapeString({}), "[]");
}

}  // namespace
}  // namespace alibi::model
