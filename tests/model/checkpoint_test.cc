#include "server/model/checkpoint.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/model/test_util.h"

namespace alibi::model {
namespace {

using ::alibi::model::testing::SafetensorsBytes;
using ::alibi::model::testing::TempDir;
using ::alibi::model::testing::TinyBloomDir;
using ::alibi::model::testing::TinyMptDir;
using ::alibi::model::testing::WriteFile;
using ::testing::HasSubstr;
using json = nlohmann::json;

// A safetensors file of F32 tensors named `names`, each [2] = {i, -i}.
std::string SmallFile(const std::vector<std::string>& names, float base) {
  json header = json::object();
  std::string data;
  for (size_t i = 0; i < names.size(); ++i) {
    header[names[i]] = {
        {"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {i * 8, i * 8 + 8}}};
    const float v[2] = {base + static_cast<float>(i),
                        -(base + static_cast<float>(i))};
    data.append(reinterpret_cast<const char*>(v), 8);
  }
  return SafetensorsBytes(header.dump(), data);
}

TEST(CheckpointTest, NamesWithAndWithoutPrefix) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> bloom =
      Checkpoint::Open(TinyBloomDir());
  ASSERT_TRUE(bloom.ok()) << bloom.status();
  EXPECT_EQ((*bloom)->num_tensors(), 41u);
  EXPECT_TRUE((*bloom)->Contains("h.0.input_layernorm.weight"));
  EXPECT_TRUE((*bloom)->Contains("transformer.h.0.input_layernorm.weight"));
  EXPECT_FALSE((*bloom)->Contains("h.3.input_layernorm.weight"));
  EXPECT_EQ((*bloom)->Find("transformer.ln_f.weight").info->name,
            "ln_f.weight");

  absl::StatusOr<std::unique_ptr<Checkpoint>> mpt =
      Checkpoint::Open(TinyMptDir());
  ASSERT_TRUE(mpt.ok()) << mpt.status();
  EXPECT_EQ((*mpt)->num_tensors(), 14u);
  EXPECT_TRUE((*mpt)->Contains("wte.weight"));
  EXPECT_TRUE((*mpt)->Contains("transformer.wte.weight"));
  EXPECT_EQ((*mpt)->Find("norm_f.weight").info->name,
            "transformer.norm_f.weight");
  std::vector<std::string> names = (*mpt)->TensorNames();
  EXPECT_EQ(names.front(), "blocks.0.attn.Wqkv.weight");
  EXPECT_EQ(names.back(), "wte.weight");

  absl::StatusOr<HostTensor> missing = (*mpt)->Tensor("blocks.5.norm_1.weight");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("missing tensor blocks.5.norm_1.weight"));
}

TEST(CheckpointTest, TensorsOutliveTheCheckpoint) {
  HostTensor t;
  {
    absl::StatusOr<std::unique_ptr<Checkpoint>> mpt =
        Checkpoint::Open(TinyMptDir());
    ASSERT_TRUE(mpt.ok());
    absl::StatusOr<HostTensor> r = (*mpt)->Tensor("norm_f.weight");
    ASSERT_TRUE(r.ok());
    t = *r;
  }
  std::vector<float> v = HostTensorToFloat(t);
  ASSERT_EQ(v.size(), 128u);
  // Layernorm gains near 1 (fixtures/README.md).
  for (float x : v) EXPECT_NEAR(x, 1.0f, 0.5f);
}

TEST(CheckpointTest, ShardedWithIndex) {
  TempDir dir;
  WriteFile(dir.File("a.safetensors"), SmallFile({"transformer.x", "y"}, 1));
  WriteFile(dir.File("b.safetensors"), SmallFile({"z", "unlisted"}, 10));
  WriteFile(dir.File("model.safetensors.index.json"),
            R"({"metadata":{"total_size":32},"weight_map":{
              "transformer.x":"a.safetensors","y":"a.safetensors",
              "z":"b.safetensors"}})");
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->files().size(), 2u);
  EXPECT_EQ((*c)->TensorNames(), (std::vector<std::string>{"x", "y", "z"}));
  absl::StatusOr<HostTensor> z = (*c)->Tensor("transformer.z");
  ASSERT_TRUE(z.ok()) << z.status();
  EXPECT_EQ(HostTensorToFloat(*z), (std::vector<float>{10.0f, -10.0f}));
  absl::StatusOr<HostTensor> x = (*c)->Tensor("x");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(HostTensorToFloat(*x), (std::vector<float>{1.0f, -1.0f}));
  // Only what the index lists belongs to the model.
  EXPECT_FALSE((*c)->Contains("unlisted"));

  // A single model.safetensors wins over the index (as in transformers).
  WriteFile(dir.File("model.safetensors"), SmallFile({"only"}, 5));
  c = Checkpoint::Open(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->TensorNames(), std::vector<std::string>{"only"});
}

TEST(CheckpointTest, IndexErrors) {
  TempDir dir;
  WriteFile(dir.File("a.safetensors"), SmallFile({"x"}, 1));
  const std::string index = dir.File("model.safetensors.index.json");
  struct Case {
    std::string text;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"{", "model.safetensors.index.json: not valid JSON"},
      {"[]", "must be a JSON object"},
      {"{}", "missing \"weight_map\" object"},
      {R"({"weight_map":{}})", "\"weight_map\" is empty"},
      {R"({"weight_map":{"x":3}})", "weight_map[\"x\"] must be a file name"},
      {R"({"weight_map":{"x":"../a.safetensors"}})",
       "is not a file inside the model directory"},
      {R"({"weight_map":{"x":"/etc/passwd"}})",
       "is not a file inside the model directory"},
      {R"({"weight_map":{"x":"missing.safetensors"}})", "missing.safetensors"},
      {R"({"weight_map":{"q":"a.safetensors"}})",
       "weight_map puts tensor q in a.safetensors, which has no such tensor"},
  };
  for (const Case& c : cases) {
    WriteFile(index, c.text);
    absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt =
        Checkpoint::Open(dir.path());
    ASSERT_FALSE(ckpt.ok()) << c.text;
    EXPECT_THAT(ckpt.status().message(), HasSubstr(c.expected)) << c.text;
  }
}

TEST(CheckpointTest, BothSpellingsOfOneTensorAreRefused) {
  TempDir dir;
  WriteFile(dir.File("model.safetensors"),
            SmallFile({"transformer.wte.weight", "wte.weight"}, 1));
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("is stored twice"));
  EXPECT_THAT(c.status().message(), HasSubstr("wte.weight"));
}

TEST(CheckpointTest, MissingFiles) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("neither model.safetensors nor "
                                              "model.safetensors.index.json"));
  WriteFile(dir.File("pytorch_model.bin"), "x");
  c = Checkpoint::Open(dir.path());
  EXPECT_THAT(c.status().message(), HasSubstr("pytorch_model.bin"));
  EXPECT_EQ(Checkpoint::Open("/nonexistent").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, MalformedSafetensorsFails) {
  TempDir dir;
  WriteFile(dir.File("model.safetensors"), "this is not a safetensors file");
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(dir.File("model.safetensors")));
}

}  // namespace
}  // namespace alibi::model
