#include "server/model/safetensors.h"

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "common/half.h"
#include "tests/model/test_util.h"

namespace alibi::model {
namespace {

using ::alibi::model::testing::ReadFile;
using ::alibi::model::testing::SafetensorsBytes;
using ::alibi::model::testing::TempDir;
using ::alibi::model::testing::TinyBloomDir;
using ::alibi::model::testing::TinyMptDir;
using ::alibi::model::testing::WriteFile;
using ::testing::HasSubstr;
using json = nlohmann::json;

absl::StatusOr<std::shared_ptr<const SafetensorsFile>> FromHeader(
    const std::string& header, const std::string& data) {
  return SafetensorsFile::FromBytes("test.safetensors",
                                    SafetensorsBytes(header, data));
}

std::string FloatBytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()),
                     v.size() * sizeof(float));
}

TEST(SafetensorsTest, OpensTinyBloom) {
  auto file = SafetensorsFile::Open(TinyBloomDir() + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 3u + 12u * 3u + 2u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  const SafetensorsTensorInfo* info = (*file)->Find("word_embeddings.weight");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->dtype, SafetensorsDType::kF16);
  EXPECT_EQ(info->shape, (std::vector<int64_t>{50432, 96}));
  EXPECT_EQ(info->begin, 0u);
  EXPECT_EQ(info->end, 50432u * 96u * 2u);
  EXPECT_EQ((*file)->Find("transformer.word_embeddings.weight"), nullptr);

  absl::StatusOr<HostTensor> t = (*file)->Tensor("ln_f.bias");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->dtype, kernels::DType::kF16);
  EXPECT_EQ(t->shape, std::vector<int64_t>{96});
  // A view into the mapping, no copy.
  EXPECT_EQ(t->data, (*file)->Data(*(*file)->Find("ln_f.bias")));

  // The tensor keeps the mapping alive; compare with the file bytes.
  const std::string raw = ReadFile(TinyBloomDir() + "/model.safetensors");
  uint64_t header_len = 0;
  std::memcpy(&header_len, raw.data(), 8);
  const SafetensorsTensorInfo ln_f = *(*file)->Find("ln_f.bias");
  file->reset();
  EXPECT_EQ(std::memcmp(t->data, raw.data() + 8 + header_len + ln_f.begin,
                        ln_f.end - ln_f.begin),
            0);
}

TEST(SafetensorsTest, OpensTinyMptBf16) {
  auto file = SafetensorsFile::Open(TinyMptDir() + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<HostTensor> t =
      (*file)->Tensor("transformer.blocks.1.attn.Wqkv.weight");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->dtype, kernels::DType::kBF16);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{384, 128}));
  EXPECT_EQ(t->name, "transformer.blocks.1.attn.Wqkv.weight");
}

TEST(SafetensorsTest, ReadsValues) {
  const std::vector<float> a = {1.0f, -2.5f, 3.25f, 0.0f, 7.0f, 1e-3f};
  const uint16_t b[2] = {FloatToBf16(0.5f), FloatToBf16(-4.0f)};
  const std::string data =
      FloatBytes(a) + std::string(reinterpret_cast<const char*>(b), 4);
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
      R"("__metadata__":{"format":"pt"}})";
  auto file = FromHeader(header, data);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<HostTensor> ta = (*file)->Tensor("a");
  ASSERT_TRUE(ta.ok());
  EXPECT_EQ(HostTensorToFloat(*ta), a);
  absl::StatusOr<HostTensor> tb = (*file)->Tensor("b");
  ASSERT_TRUE(tb.ok());
  EXPECT_EQ(HostTensorToFloat(*tb), (std::vector<float>{0.5f, -4.0f}));
  EXPECT_EQ((*file)->Tensor("c").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, UnalignedDataIsCopiedAligned) {
  // A 9-byte header puts the data at byte 17: not 4-byte aligned.
  const std::string header =
      R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string padded = header;
  while ((8 + padded.size()) % 4 == 0) padded += ' ';
  const std::vector<float> v = {3.5f, -1.25f};
  auto file = FromHeader(padded, FloatBytes(v));
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<HostTensor> t = (*file)->Tensor("x");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 4, 0u);
  EXPECT_EQ(HostTensorToFloat(*t), v);
}

TEST(SafetensorsTest, EmptyAndZeroSizedTensors) {
  auto file = FromHeader("{}", "");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->tensors().empty());
  file =
      FromHeader(R"({"z":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]},)"
                 R"("s":{"dtype":"F16","shape":[],"data_offsets":[0,2]}})",
                 "ab");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Find("s")->numel(), 1);
  EXPECT_EQ((*file)->Find("z")->numel(), 0);
}

TEST(SafetensorsTest, RecognisesEveryDtypeButUsesOnlyFloats) {
  struct D {
    const char* name;
    int bytes_for_4;
  };
  const std::vector<D> dtypes = {
      {"BOOL", 4},    {"U8", 4},      {"I8", 4},      {"F8_E5M2", 4},
      {"F8_E4M3", 4}, {"F8_E8M0", 4}, {"I16", 8},     {"U16", 8},
      {"F16", 8},     {"BF16", 8},    {"I32", 16},    {"U32", 16},
      {"F32", 16},    {"F64", 32},    {"I64", 32},    {"U64", 32},
      {"F4", 2},      {"F6_E2M3", 3}, {"F6_E3M2", 3},
  };
  json header = json::object();
  uint64_t offset = 0;
  for (const D& d : dtypes) {
    header[std::string("t_") + d.name] = {
        {"dtype", d.name},
        {"shape", {2, 2}},
        {"data_offsets", {offset, offset + d.bytes_for_4}}};
    offset += d.bytes_for_4;
  }
  auto file = FromHeader(header.dump(), std::string(offset, '\x01'));
  ASSERT_TRUE(file.ok()) << file.status();
  for (const D& d : dtypes) {
    const std::string name = std::string("t_") + d.name;
    const SafetensorsTensorInfo* info = (*file)->Find(name);
    ASSERT_NE(info, nullptr) << name;
    EXPECT_EQ(SafetensorsDTypeName(info->dtype), d.name);
    absl::StatusOr<HostTensor> t = (*file)->Tensor(name);
    const std::string n = d.name;
    if (n == "F32" || n == "F16" || n == "BF16") {
      EXPECT_TRUE(t.ok()) << n;
    } else {
      ASSERT_FALSE(t.ok()) << n;
      EXPECT_THAT(t.status().message(),
                  HasSubstr("tensor " + name + " has dtype " + n));
      EXPECT_THAT(t.status().message(), HasSubstr("test.safetensors"));
    }
  }
}

struct BadHeader {
  const char* name;
  std::string header;
  std::string data;
  const char* expected;
};

void PrintTo(const BadHeader& b, std::ostream* os) {
  *os << b.name << ": " << b.header;
}

class SafetensorsRejectTest : public ::testing::TestWithParam<BadHeader> {};

TEST_P(SafetensorsRejectTest, ErrorNamesTheProblem) {
  const BadHeader& b = GetParam();
  auto file = FromHeader(b.header, b.data);
  ASSERT_FALSE(file.ok()) << b.name;
  EXPECT_THAT(file.status().message(), HasSubstr("test.safetensors: "));
  EXPECT_THAT(file.status().message(), HasSubstr(b.expected)) << b.name;
}

const std::string k8(8, '\0');

INSTANTIATE_TEST_SUITE_P(
    Headers, SafetensorsRejectTest,
    ::testing::Values(
        BadHeader{"unknown_dtype",
                  R"({"w":{"dtype":"Q8","shape":[2],"data_offsets":[0,2]}})",
                  "ab", "tensor \"w\": unknown dtype \"Q8\""},
        BadHeader{"not_json", "{\"w\": [1,2", "", "header is not valid JSON"},
        BadHeader{"garbage", "\xff\xfe\x00zz", "", "header is not valid JSON"},
        BadHeader{"array", "[1,2,3]", "", "header must be a JSON object"},
        BadHeader{"entry_not_object", R"({"w":5})", "",
                  "tensor \"w\": entry must be an object"},
        BadHeader{"no_dtype", R"({"w":{"shape":[2],"data_offsets":[0,8]}})", k8,
                  "tensor \"w\": missing or non-string \"dtype\""},
        BadHeader{"dtype_number",
                  R"({"w":{"dtype":3,"shape":[2],"data_offsets":[0,8]}})", k8,
                  "missing or non-string \"dtype\""},
        BadHeader{"no_shape", R"({"w":{"dtype":"F32","data_offsets":[0,8]}})",
                  k8, "missing or non-list \"shape\""},
        BadHeader{"negative_dim",
                  R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                  k8, "dimensions must be non-negative integers"},
        BadHeader{"float_dim",
                  R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})",
                  k8, "dimensions must be non-negative integers"},
        BadHeader{"string_dim",
                  R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})",
                  k8, "dimensions must be non-negative integers"},
        BadHeader{
            "huge_dim",
            R"({"w":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}})",
            k8, "dimensions must be non-negative integers"},
        BadHeader{
            "overflowing_shape",
            R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})",
            k8, "is too large"},
        BadHeader{
            "overflowing_bytes",
            R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})",
            k8, "is too large"},
        BadHeader{"sub_byte",
                  R"({"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})",
                  "ab", "not a whole number of bytes"},
        BadHeader{"offsets_missing", R"({"w":{"dtype":"F32","shape":[2]}})", k8,
                  "\"data_offsets\" must be two non-negative integers"},
        BadHeader{"offsets_three",
                  R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})",
                  k8, "\"data_offsets\" must be two"},
        BadHeader{"offsets_negative",
                  R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})",
                  k8, "\"data_offsets\" must be two"},
        BadHeader{"offsets_reversed",
                  R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
                  k8, "end before begin"},
        BadHeader{"offsets_past_end",
                  R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                  k8, "run past the end of the 8-byte data section"},
        BadHeader{"offsets_vs_shape",
                  R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                  k8, "hold 8 bytes, but shape [3] of F32 needs 12"},
        BadHeader{"overlap",
                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  k8, "overlap tensor \"a\""},
        BadHeader{"gap",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  k8, "tensor \"a\": data_offsets [4, 8] leave a gap of 4"},
        BadHeader{"trailing",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                  k8, "tensors cover 4 bytes but the data section has 8"},
        BadHeader{"duplicate_name",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  k8, "duplicate key \"a\""},
        BadHeader{
            "duplicate_field",
            R"({"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})",
            k8, "duplicate key \"dtype\""},
        BadHeader{"metadata_type", R"({"__metadata__":[1]})", "",
                  "__metadata__ must be an object"},
        BadHeader{"metadata_value", R"({"__metadata__":{"k":1}})", "",
                  "__metadata__ value for \"k\" must be a string"}),
    [](const ::testing::TestParamInfo<BadHeader>& info) {
      return std::string(info.param.name);
    });

TEST(SafetensorsTest, BadLengths) {
  for (size_t n = 0; n < 8; ++n) {
    auto file = SafetensorsFile::FromBytes("short.st", std::string(n, '{'));
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(file.status().message(), HasSubstr("short.st: "));
  }
  // Header length past the end of the file.
  std::string bytes = SafetensorsBytes("{}", "");
  bytes[0] = 3;
  auto file = SafetensorsFile::FromBytes("len.st", bytes);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(file.status().message(),
              HasSubstr("header length 3 runs past the end of the 10-byte "
                        "file"));
  // Absurd header length.
  bytes = std::string(8, '\xff') + "{}";
  file = SafetensorsFile::FromBytes("huge.st", bytes);
  EXPECT_THAT(file.status().message(), HasSubstr("exceeds the limit"));
}

TEST(SafetensorsTest, OpenErrors) {
  auto file = SafetensorsFile::Open("/nonexistent/model.safetensors");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(file.status().message(),
              HasSubstr("/nonexistent/model.safetensors"));
  TempDir dir;
  file = SafetensorsFile::Open(dir.path());
  EXPECT_THAT(file.status().message(), HasSubstr("not a regular file"));
  WriteFile(dir.File("empty.safetensors"), "");
  file = SafetensorsFile::Open(dir.File("empty.safetensors"));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
}

TEST(SafetensorsTest, TruncatedFixtureNamesFileAndTensor) {
  const std::string raw = ReadFile(TinyMptDir() + "/model.safetensors");
  TempDir dir;
  const std::string path = dir.File("model.safetensors");
  WriteFile(path, raw.substr(0, raw.size() - 100));
  auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(file.status().message(), HasSubstr(path));
  EXPECT_THAT(file.status().message(),
              HasSubstr("tensor \"transformer.norm_f.weight\""));
  EXPECT_THAT(file.status().message(), HasSubstr("truncated"));
}

TEST(SafetensorsTest, DtypeNames) {
  for (const char* name : {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                           "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                           "F64", "I64", "U64", "F4", "F6_E2M3", "F6_E3M2"}) {
    std::optional<SafetensorsDType> d = ParseSafetensorsDType(name);
    ASSERT_TRUE(d.has_value()) << name;
    EXPECT_EQ(SafetensorsDTypeName(*d), name);
  }
  EXPECT_FALSE(ParseSafetensorsDType("f32").has_value());
  EXPECT_FALSE(ParseSafetensorsDType("").has_value());
  EXPECT_EQ(ToWeightDType(SafetensorsDType::kBF16), kernels::DType::kBF16);
  EXPECT_FALSE(ToWeightDType(SafetensorsDType::kI32).has_value());
}

}  // namespace
}  // namespace alibi::model
