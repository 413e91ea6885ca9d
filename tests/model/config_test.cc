#include "server/model/config.h"

#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/model/test_util.h"

namespace alibi::model {
namespace {

using ::alibi::model::testing::DataDir;
using ::alibi::model::testing::ReadFile;
using ::alibi::model::testing::TempDir;
using ::alibi::model::testing::TinyBloomDir;
using ::alibi::model::testing::TinyMptDir;
using ::alibi::model::testing::WriteFile;
using ::testing::HasSubstr;
using json = nlohmann::json;

json TinyMptJson() {
  return json::parse(ReadFile(TinyMptDir() + "/config.json"));
}
json TinyBloomJson() {
  return json::parse(ReadFile(TinyBloomDir() + "/config.json"));
}

absl::StatusOr<ModelConfig> Parse(const json& j) {
  return ParseModelConfig(j.dump());
}

TEST(ModelConfigTest, TinyBloom) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(TinyBloomDir());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, "bloom");
  EXPECT_EQ(c->architecture_name, "BloomForCausalLM");
  EXPECT_EQ(c->vocab_size, 50432);
  EXPECT_EQ(c->hidden_size, 96);
  EXPECT_EQ(c->num_heads, 6);
  EXPECT_EQ(c->num_kv_heads, 6);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->num_layers, 3);
  EXPECT_EQ(c->ffn_hidden_size, 384);
  EXPECT_FLOAT_EQ(c->layer_norm_eps, 1e-5f);
  EXPECT_TRUE(c->embedding_layernorm);
  EXPECT_FALSE(c->residual_post_layernorm);
  EXPECT_TRUE(c->linear_bias);
  EXPECT_TRUE(c->norm_bias);
  EXPECT_EQ(c->activation, kernels::Activation::kGeluTanh);
  EXPECT_FALSE(c->clip_qkv.has_value());
  EXPECT_FLOAT_EQ(c->logit_scale, 1.0f);
  EXPECT_FLOAT_EQ(c->softmax_scale, 0.25f);
  EXPECT_FLOAT_EQ(c->alibi_bias_max, 8.0f);
  EXPECT_EQ(c->trained_context_length, 128);
  EXPECT_EQ(c->bos_token_id, 0);
  EXPECT_EQ(c->eos_token_id, 0);
  EXPECT_EQ(c->pad_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, std::vector<int>{0});
  EXPECT_EQ(c->torch_dtype, "float16");
  EXPECT_TRUE(c->tie_word_embeddings);
}

TEST(ModelConfigTest, TinyMpt) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(TinyMptDir());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, "mpt");
  EXPECT_EQ(c->architecture_name, "MPTForCausalLM");
  EXPECT_EQ(c->vocab_size, 50432);
  EXPECT_EQ(c->hidden_size, 128);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->num_layers, 2);
  EXPECT_EQ(c->ffn_hidden_size, 512);
  EXPECT_FALSE(c->embedding_layernorm);
  EXPECT_FALSE(c->linear_bias);
  EXPECT_FALSE(c->norm_bias);
  EXPECT_EQ(c->activation, kernels::Activation::kGeluErf);
  EXPECT_FALSE(c->clip_qkv.has_value());
  EXPECT_FLOAT_EQ(c->logit_scale, 1.0f);
  EXPECT_FLOAT_EQ(c->softmax_scale, 0.25f);
  EXPECT_FLOAT_EQ(c->alibi_bias_max, 8.0f);
  EXPECT_EQ(c->trained_context_length, 128);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_EQ(c->eos_token_id, -1);
  EXPECT_TRUE(c->eos_token_ids.empty());
  EXPECT_EQ(c->torch_dtype, "bfloat16");
}

TEST(ModelConfigTest, ReplitGroupedQueryAttention) {
  absl::StatusOr<ModelConfig> c =
      LoadModelConfig(DataDir() + "/tokenizers/replit-code-v1_5-3b");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, "mpt");
  EXPECT_EQ(c->vocab_size, 32768);
  EXPECT_EQ(c->hidden_size, 3072);
  EXPECT_EQ(c->num_heads, 24);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->num_layers, 32);
  EXPECT_EQ(c->ffn_hidden_size, 4 * 3072);
  EXPECT_EQ(c->trained_context_length, 4096);
  EXPECT_FALSE(c->linear_bias);
  EXPECT_FLOAT_EQ(c->softmax_scale, static_cast<float>(1.0 / std::sqrt(128.0)));
}

TEST(ModelConfigTest, LoadErrorsNameThePath) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig("/nonexistent/dir");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/dir/config.json"));

  TempDir dir;
  json j = TinyMptJson();
  j["attn_config"]["alibi"] = false;
  WriteFile(dir.File("config.json"), j.dump());
  c = LoadModelConfig(dir.path());
  EXPECT_THAT(c.status().message(),
              HasSubstr(dir.path() + "/config.json: attn_config.alibi"));
}

TEST(ModelConfigTest, RefusesNonAlibiMpt) {
  json j = TinyMptJson();
  j["attn_config"]["alibi"] = false;
  absl::StatusOr<ModelConfig> c = Parse(j);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "config.json: attn_config.alibi is false: only ALiBi models are "
            "supported");
}

struct Mutation {
  const char* name;
  json::json_pointer pointer;  // empty value below: remove the key
  json value;
  bool remove;
  const char* expected;  // substring of the error
};

void PrintTo(const Mutation& m, std::ostream* os) {
  *os << m.name << " " << m.pointer.to_string() << " = " << m.value.dump();
}

class MptRefusalTest : public ::testing::TestWithParam<Mutation> {};

TEST_P(MptRefusalTest, ErrorNamesTheKey) {
  const Mutation& m = GetParam();
  json j = TinyMptJson();
  if (m.remove) {
    j[m.pointer.parent_pointer()].erase(m.pointer.back());
  } else {
    j[m.pointer] = m.value;
  }
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_FALSE(c.ok()) << m.name;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("config.json: "));
  EXPECT_THAT(c.status().message(), HasSubstr(m.expected));
}

INSTANTIATE_TEST_SUITE_P(
    Refusals, MptRefusalTest,
    ::testing::Values(
        Mutation{"qk_ln", "/attn_config/qk_ln"_json_pointer, true, false,
                 "attn_config.qk_ln is true: query/key layernorm is not "
                 "supported"},
        Mutation{"qk_gn", "/attn_config/qk_gn"_json_pointer, true, false,
                 "attn_config.qk_gn is true"},
        Mutation{"prefix_lm", "/attn_config/prefix_lm"_json_pointer, true,
                 false, "attn_config.prefix_lm is true"},
        Mutation{"attn_rope", "/attn_config/rope"_json_pointer, true, false,
                 "attn_config.rope is true: rotary"},
        Mutation{"rope", "/rope"_json_pointer, true, false, "rope is true"},
        Mutation{"attn_type", "/attn_config/attn_type"_json_pointer,
                 "cross_attention", false,
                 "attn_config.attn_type \"cross_attention\" is not supported"},
        Mutation{"window", "/attn_config/sliding_window_size"_json_pointer, 64,
                 false, "attn_config.sliding_window_size is 64"},
        Mutation{"norm", "/norm_type"_json_pointer, "rmsnorm", false,
                 "norm_type \"rmsnorm\" is not supported"},
        Mutation{"ffn_type", "/ffn_config/ffn_type"_json_pointer, "mptglu",
                 false, "ffn_config.ffn_type \"mptglu\" is not supported"},
        Mutation{"ffn_act", "/ffn_config/ffn_act_fn"_json_pointer,
                 json{{"name", "silu"}}, false,
                 "ffn_config.ffn_act_fn.name \"silu\""},
        Mutation{"logit_scale", "/logit_scale"_json_pointer, "sqrt", false,
                 "logit_scale \"sqrt\" is not supported"},
        Mutation{"logit_scale_type", "/logit_scale"_json_pointer, json::array(),
                 false, "logit_scale must be a number"},
        Mutation{"d_model_string", "/d_model"_json_pointer, "128", false,
                 "d_model must be an integer, got string \"128\""},
        Mutation{"d_model_float", "/d_model"_json_pointer, 128.5, false,
                 "d_model must be an integer"},
        Mutation{"d_model_zero", "/d_model"_json_pointer, 0, false,
                 "d_model is 0: must be between 1 and"},
        Mutation{"d_model_huge", "/d_model"_json_pointer,
                 json(uint64_t{1} << 63), false,
                 "d_model is 9223372036854775808"},
        Mutation{"d_model_missing", "/d_model"_json_pointer, nullptr, true,
                 "missing required key d_model"},
        Mutation{"d_model_null", "/d_model"_json_pointer, nullptr, false,
                 "missing required key d_model"},
        Mutation{"n_heads_missing", "/n_heads"_json_pointer, nullptr, true,
                 "missing required key n_heads"},
        Mutation{"n_layers_missing", "/n_layers"_json_pointer, nullptr, true,
                 "missing required key n_layers"},
        Mutation{"vocab_missing", "/vocab_size"_json_pointer, nullptr, true,
                 "missing required key vocab_size"},
        Mutation{"vocab_negative", "/vocab_size"_json_pointer, -5, false,
                 "vocab_size is -5"},
        Mutation{"vocab_float", "/vocab_size"_json_pointer, 1e30, false,
                 "vocab_size must be an integer"},
        Mutation{"heads_divide", "/n_heads"_json_pointer, 7, false,
                 "d_model 128 is not divisible by n_heads 7"},
        Mutation{"expansion", "/expansion_ratio"_json_pointer, 1.3, false,
                 "d_model * expansion_ratio"},
        Mutation{"expansion_string", "/expansion_ratio"_json_pointer, "4",
                 false, "expansion_ratio must be a number"},
        Mutation{"eps", "/layer_norm_epsilon"_json_pointer, "x", false,
                 "layer_norm_epsilon must be a number"},
        Mutation{"no_bias", "/no_bias"_json_pointer, "yes", false,
                 "no_bias must be true or false"},
        Mutation{"clip", "/attn_config/clip_qkv"_json_pointer, -1, false,
                 "attn_config.clip_qkv"},
        Mutation{"softmax_scale", "/attn_config/softmax_scale"_json_pointer,
                 "big", false, "attn_config.softmax_scale must be a number"},
        Mutation{"bias_max", "/attn_config/alibi_bias_max"_json_pointer, 0,
                 false, "attn_config.alibi_bias_max is 0"},
        Mutation{"attn_config_type", "/attn_config"_json_pointer, "x", false,
                 "attn_config must be an object"},
        Mutation{"alibi_type", "/attn_config/alibi"_json_pointer, 1, false,
                 "attn_config.alibi must be true or false"},
        Mutation{"architectures", "/architectures"_json_pointer,
                 json{"LlamaForCausalLM"}, false,
                 "architectures[0] \"LlamaForCausalLM\" is not supported"},
        Mutation{"architectures_type", "/architectures"_json_pointer,
                 "MPTForCausalLM", false, "architectures must be a list"},
        Mutation{"architectures_contradiction", "/model_type"_json_pointer,
                 "bloom", false, "contradicts model_type \"bloom\""},
        Mutation{"eos_list", "/eos_token_id"_json_pointer, json{1, "x"}, false,
                 "eos_token_id[1]"},
        Mutation{"bos_negative", "/bos_token_id"_json_pointer, -3, false,
                 "bos_token_id is -3"},
        Mutation{"dtype", "/torch_dtype"_json_pointer, 16, false,
                 "torch_dtype must be a string"}),
    [](const ::testing::TestParamInfo<Mutation>& info) {
      return std::string(info.param.name);
    });

TEST(ModelConfigTest, RefusesGroupedQueryHeadsThatDoNotDivide) {
  json j = TinyMptJson();
  j["attn_config"]["attn_type"] = "grouped_query_attention";
  j["attn_config"]["kv_n_heads"] = 3;
  absl::StatusOr<ModelConfig> c = Parse(j);
  EXPECT_THAT(c.status().message(),
              HasSubstr("attn_config.kv_n_heads 3 does not divide n_heads 8"));
}

TEST(ModelConfigTest, MptVariants) {
  json j = TinyMptJson();
  j["logit_scale"] = 0.5;
  j["attn_config"]["clip_qkv"] = 6;
  j["attn_config"]["softmax_scale"] = 0.125;
  j["attn_config"]["alibi_bias_max"] = 16;
  j["attn_config"]["attn_type"] = "multiquery_attention";
  j["no_bias"] = false;
  j["learned_pos_emb"] = true;  // accepted; a wpe tensor is refused at load
  j["eos_token_id"] = json{5, 7};
  j["architectures"] = json{"MptForCausalLM"};
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FLOAT_EQ(c->logit_scale, 0.5f);
  ASSERT_TRUE(c->clip_qkv.has_value());
  EXPECT_FLOAT_EQ(*c->clip_qkv, 6.0f);
  EXPECT_FLOAT_EQ(c->softmax_scale, 0.125f);
  EXPECT_FLOAT_EQ(c->alibi_bias_max, 16.0f);
  EXPECT_EQ(c->num_kv_heads, 1);
  EXPECT_TRUE(c->linear_bias);
  EXPECT_TRUE(c->norm_bias);
  EXPECT_EQ(c->eos_token_id, 5);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{5, 7}));

  j["logit_scale"] = "inv_sqrt_d_model";
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FLOAT_EQ(c->logit_scale, static_cast<float>(1.0 / std::sqrt(128.0)));
}

TEST(ModelConfigTest, MptAttentionTypes) {
  json j = TinyMptJson();
  // llm-foundry writes kv_n_heads (default 1) even for multi-head attention.
  j["attn_config"]["kv_n_heads"] = 1;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 8);

  j["attn_config"]["attn_type"] = "grouped_query_attention";
  j["attn_config"]["kv_n_heads"] = 2;
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 2);

  j["attn_config"].erase("kv_n_heads");  // llm-foundry's default: 1
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 1);
}

TEST(ModelConfigTest, MptDefaultsAndFfnSize) {
  json j = {{"model_type", "mpt"},
            {"d_model", 64},
            {"n_heads", 4},
            {"n_layers", 2},
            {"vocab_size", 100}};
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, "mpt");
  EXPECT_EQ(c->ffn_hidden_size, 256);
  EXPECT_EQ(c->trained_context_length, 0);
  EXPECT_FALSE(c->linear_bias);  // transformers' MptConfig: no_bias = true
  EXPECT_FLOAT_EQ(c->alibi_bias_max, 8.0f);

  j["expansion_ratio"] = 2.5;
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ffn_hidden_size, 160);

  j["ffn_config"] = {{"ffn_type", "mptmlp"}, {"ffn_hidden_size", 300}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ffn_hidden_size, 300);

  j["ffn_config"]["ffn_act_fn"] = {{"name", "gelu"}, {"approximate", "tanh"}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->activation, kernels::Activation::kGeluTanh);
}

TEST(ModelConfigTest, BloomAliasesAndOptions) {
  json j = TinyBloomJson();
  j.erase("hidden_size");
  j["n_embed"] = 96;
  j.erase("n_head");
  j["num_attention_heads"] = 6;
  j.erase("n_layer");
  j["num_hidden_layers"] = 3;
  j.erase("seq_length");
  j.erase("architectures");  // model_type alone decides
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";  // newer transformers' spelling
  j["apply_residual_connection_post_layernorm"] = true;
  j["tie_word_embeddings"] = false;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, "bloom");
  EXPECT_EQ(c->hidden_size, 96);
  EXPECT_EQ(c->num_heads, 6);
  EXPECT_EQ(c->num_layers, 3);
  EXPECT_EQ(c->trained_context_length, 0);
  EXPECT_TRUE(c->residual_post_layernorm);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->torch_dtype, "bfloat16");

  j["hidden_size"] = 128;  // disagrees with n_embed
  c = Parse(j);
  EXPECT_THAT(c.status().message(),
              HasSubstr("hidden_size (128) and n_embed (96) disagree"));
}

TEST(ModelConfigTest, BloomRefusals) {
  json j = TinyBloomJson();
  j.erase("n_layer");
  EXPECT_THAT(Parse(j).status().message(),
              HasSubstr("missing required key n_layer or num_hidden_layers"));
  j = TinyBloomJson();
  j["apply_residual_connection_post_layernorm"] = "true";
  EXPECT_THAT(
      Parse(j).status().message(),
      HasSubstr("apply_residual_connection_post_layernorm must be true or "
                "false"));
  j = TinyBloomJson();
  j["n_head"] = 5;
  EXPECT_THAT(Parse(j).status().message(),
              HasSubstr("hidden_size 96 is not divisible by n_head 5"));
  j = TinyBloomJson();
  j["seq_length"] = -1;
  EXPECT_THAT(Parse(j).status().message(), HasSubstr("seq_length is -1"));
  j = TinyBloomJson();
  j.erase("architectures");
  j["model_type"] = "gpt2";
  EXPECT_THAT(Parse(j).status().message(),
              HasSubstr("model_type \"gpt2\" is not supported"));
  j.erase("model_type");
  EXPECT_THAT(Parse(j).status().message(),
              HasSubstr("neither architectures nor model_type"));
}

TEST(ModelConfigTest, GarbageIsAnErrorNotACrash) {
  const std::vector<std::string> inputs = {
      "",
      " ",
      "null",
      "[]",
      "{",
      "}",
      "\"string\"",
      "123",
      "{\"model_type\": }",
      "{\"model_type\": \"mpt\"",
      std::string("{\"model_type\": \"mpt\xff\xfe\"}"),
      std::string("\0\0\0\0", 4),
      "{\"architectures\": [[]]}",
      "{\"architectures\": [], \"model_type\": 5}",
      "{\"model_type\": \"bloom\", \"n_head\": {\"a\": 1}}",
      std::string(100000, '[') + std::string(100000, ']'),
      std::string(100000, '{'),
  };
  for (const std::string& in : inputs) {
    absl::StatusOr<ModelConfig> c = ParseModelConfig(in);
    EXPECT_FALSE(c.ok()) << in.substr(0, 40);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), HasSubstr("config.json"));
  }
}

}  // namespace
}  // namespace alibi::model
