// End-to-end tests of the public gRPC API against the real alibi-server
// binary on the fixture models, over loopback: completions (unary and
// streaming), scoring against the reference log-probs, tokenization against
// the Hugging Face vectors, model info, a bad-input suite, cancellation and
// deadlines, overload, graceful drain, authentication and TLS.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "alibi/v1/inference.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/model/config.h"
#include "tests/testing/server_process.h"
#include "tests/testing/tls_certificates.h"

namespace alibi {
namespace {

using ::alibi::testing::CheckHealth;
using ::alibi::testing::FixtureModel;
using ::alibi::testing::ServerOptions;
using ::alibi::testing::ServerProcess;
using ::alibi::testing::SumSeries;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::unique_ptr<ServerProcess> StartServer(
    const std::string& model, std::vector<std::string> flags = {}) {
  auto server = ServerProcess::Start(FixtureModel(model), std::move(flags));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

std::unique_ptr<v1::InferenceService::Stub> Stub(const ServerProcess& s) {
  return v1::InferenceService::NewStub(s.Channel());
}

void SetDeadline(grpc::ClientContext& context, int ms = 30000) {
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(ms));
}

// Reads a whole CompleteStream; returns its status.
grpc::Status ReadStream(v1::InferenceService::Stub& stub,
                        const v1::CompletionParams& params,
                        std::vector<v1::CompleteStreamResponse>* messages) {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::CompleteStreamRequest request;
  *request.mutable_params() = params;
  auto reader = stub.CompleteStream(&context, request);
  v1::CompleteStreamResponse message;
  while (reader->Read(&message)) messages->push_back(message);
  return reader->Finish();
}

// Polls the server's metrics until the engine holds nothing: no running or
// waiting request and no KV block in use. Returns how long it took.
absl::StatusOr<std::chrono::milliseconds> WaitForIdleEngine(
    const ServerProcess& server, std::chrono::milliseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    auto text = server.ScrapeMetrics();
    if (!text.ok()) return text.status();
    const bool idle =
        SumSeries(*text, {"alibi_num_requests_running{"}) == 0 &&
        SumSeries(*text, {"alibi_num_requests_waiting{"}) == 0 &&
        SumSeries(*text, {"alibi_kv_cache_blocks{", "state=\"used\""}) == 0 &&
        SumSeries(*text, {"alibi_kv_cache_usage_ratio{"}) == 0;
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    if (idle) return waited;
    if (waited > limit) {
      return absl::DeadlineExceededError("engine still busy:\n" + *text);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

class RpcTest : public ::testing::Test {
 protected:
  // fp32 weights: Score is compared with the float64 references at 1e-3
  // (the fixtures are stored in BF16 and F16; the reduced widths' own error
  // is held by tests/numerics).
  static void SetUpTestSuite() {
    mpt_ = StartServer("tiny-mpt", {"--cpu_weight_dtype=f32"}).release();
    bloom_ = StartServer("tiny-bloom", {"--cpu_weight_dtype=f32"}).release();
  }
  static void TearDownTestSuite() {
    delete mpt_;
    delete bloom_;
    mpt_ = bloom_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(mpt_, nullptr);
    ASSERT_NE(bloom_, nullptr);
  }
  static ServerProcess* mpt_;
  static ServerProcess* bloom_;
};
ServerProcess* RpcTest::mpt_ = nullptr;
ServerProcess* RpcTest::bloom_ = nullptr;

TEST_F(RpcTest, StreamedTextConcatenatesToUnaryText) {
  auto stub = Stub(*mpt_);
  v1::CompletionParams params;
  params.set_text("The quick brown fox");
  params.set_max_tokens(24);
  params.mutable_sampling()->set_temperature(0.8f);
  params.mutable_sampling()->set_seed(7);
  params.mutable_sampling()->set_ignore_eos(true);

  grpc::ClientContext context;
  SetDeadline(context);
  v1::CompleteRequest request;
  *request.mutable_params() = params;
  v1::CompleteResponse unary;
  ASSERT_TRUE(stub->Complete(&context, request, &unary).ok());
  EXPECT_EQ(unary.token_ids_size(), 24);
  EXPECT_EQ(unary.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(unary.usage().completion_tokens(), 24);
  EXPECT_GT(unary.usage().prompt_tokens(), 0);
  EXPECT_FALSE(unary.id().empty());

  std::vector<v1::CompleteStreamResponse> messages;
  ASSERT_TRUE(ReadStream(*stub, params, &messages).ok());
  ASSERT_GT(messages.size(), 1u);
  std::string text;
  std::vector<int32_t> ids;
  for (size_t i = 0; i < messages.size(); ++i) {
    text += messages[i].text();
    ids.insert(ids.end(), messages[i].token_ids().begin(),
               messages[i].token_ids().end());
    const bool last = i + 1 == messages.size();
    EXPECT_EQ(messages[i].finish_reason() != v1::FINISH_REASON_UNSPECIFIED,
              last);
    EXPECT_EQ(messages[i].has_usage(), last);
  }
  EXPECT_EQ(text, unary.text());
  EXPECT_EQ(ids, std::vector<int32_t>(unary.token_ids().begin(),
                                      unary.token_ids().end()));
  EXPECT_EQ(messages.back().usage().completion_tokens(), 24);
  EXPECT_TRUE(messages.back().timings().has_time_to_first_token());
}

TEST_F(RpcTest, ScoreMatchesReferenceLogprobs) {
  for (auto [name, server] :
       {std::pair{"tiny-mpt", mpt_}, std::pair{"tiny-bloom", bloom_}}) {
    const nlohmann::json ref = ReadJson(std::string(ALIBI_TEST_DATA_DIR) +
                                        "/reference/" + name + ".json");
    auto stub = Stub(*server);
    for (const auto& seq : ref["sequences"]) {
      const std::vector<int32_t> ids = seq["token_ids"];
      const std::vector<double> want = seq["prompt_logprobs"];
      for (bool by_text : {false, true}) {
        if (by_text && seq["text"].is_null()) continue;
        v1::ScoreRequest request;
        if (by_text) {
          request.set_text(seq["text"].get<std::string>());
        } else {
          request.mutable_token_ids()->Add(ids.begin(), ids.end());
        }
        request.set_top_logprobs(5);
        grpc::ClientContext context;
        SetDeadline(context, 120000);
        v1::ScoreResponse response;
        grpc::Status status = stub->Score(&context, request, &response);
        ASSERT_TRUE(status.ok()) << name << ": " << status.error_message();
        ASSERT_EQ(std::vector<int32_t>(response.token_ids().begin(),
                                       response.token_ids().end()),
                  ids)
            << name << " " << seq["name"];
        ASSERT_EQ(response.token_logprobs_size(),
                  static_cast<int>(ids.size()) - 1);
        ASSERT_EQ(response.top_logprobs_size(), response.token_logprobs_size());
        ASSERT_EQ(response.tokens_size(), static_cast<int>(ids.size()));
        double sum = 0;
        for (int i = 0; i < response.token_logprobs_size(); ++i) {
          ASSERT_NEAR(response.token_logprobs(i), want[i], 1e-3)
              << name << " " << seq["name"] << " position " << i;
          sum += response.token_logprobs(i);
          const auto& top = response.top_logprobs(i).top_logprobs();
          ASSERT_EQ(top.size(), 5);
          EXPECT_EQ(top[0].token_id(), seq["top5"][i]["ids"][0].get<int>())
              << "position " << i;
        }
        EXPECT_NEAR(response.sum_logprob(), sum, 1e-3);
        EXPECT_NEAR(response.sum_logprob(), seq["sum_logprob"].get<double>(),
                    1e-2);
        EXPECT_NEAR(response.perplexity(),
                    std::exp(-sum / response.token_logprobs_size()),
                    1e-6 * response.perplexity());
      }
    }
  }
}

TEST_F(RpcTest, TokenizeMatchesHuggingFaceVectors) {
  for (auto [file, server] : {std::pair{"bloom-style.vectors.json", bloom_},
                              std::pair{"gpt-neox-20b.vectors.json", mpt_}}) {
    const nlohmann::json vectors =
        ReadJson(std::string(ALIBI_TEST_DATA_DIR) + "/tokenizers/" + file);
    auto stub = Stub(*server);
    for (const auto& c : vectors["cases"]) {
      v1::TokenizeRequest request;
      request.set_text(c["text"].get<std::string>());
      grpc::ClientContext context;
      SetDeadline(context);
      v1::TokenizeResponse response;
      ASSERT_TRUE(stub->Tokenize(&context, request, &response).ok());
      EXPECT_EQ(std::vector<int32_t>(response.token_ids().begin(),
                                     response.token_ids().end()),
                c["ids"].get<std::vector<int32_t>>())
          << file << ": " << c["text"];
      EXPECT_EQ(response.tokens_size(), response.token_ids_size());
    }
  }
}

TEST_F(RpcTest, ModelInfo) {
  auto stub = Stub(*bloom_);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::GetModelInfoResponse info;
  ASSERT_TRUE(stub->GetModelInfo(&context, {}, &info).ok());
  EXPECT_EQ(info.model(), "tiny-bloom");
  EXPECT_EQ(info.architecture(), "BloomForCausalLM");
  EXPECT_EQ(info.vocab_size(), 50432);
  EXPECT_EQ(info.hidden_size(), 96);
  EXPECT_EQ(info.num_layers(), 3);
  EXPECT_EQ(info.num_heads(), 6);
  EXPECT_EQ(info.num_kv_heads(), 6);
  const std::vector<double> slopes = model::AlibiSlopes(6, 8.0);
  ASSERT_EQ(info.alibi_slopes_size(), 6);
  for (int h = 0; h < 6; ++h) EXPECT_DOUBLE_EQ(info.alibi_slopes(h), slopes[h]);
  EXPECT_EQ(info.trained_context_length(), 128);
  EXPECT_EQ(info.kv_block_size(), 16);
  EXPECT_EQ(info.kv_num_blocks(), 512);
  EXPECT_EQ(info.max_context_length(), 512 * 16);
  EXPECT_EQ(info.dtype(), "float32");
  EXPECT_EQ(info.device().rfind("cpu", 0), 0u);
  EXPECT_EQ(info.max_logprobs(), 20);
  EXPECT_FALSE(info.server_version().empty());
}

// GetModelInfo reports the weight width in use: by default the
// checkpoint's own (tiny-mpt is stored in BF16), or --cpu_weight_dtype.
TEST(RpcWeightWidthTest, ModelInfoReportsTheWidthInUse) {
  for (const auto& [flags, want] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{}, "bfloat16"}, {{"--cpu_weight_dtype=int8"}, "int8"}}) {
    auto server = StartServer("tiny-mpt", flags);
    ASSERT_NE(server, nullptr);
    auto stub = Stub(*server);
    grpc::ClientContext context;
    SetDeadline(context);
    v1::GetModelInfoResponse info;
    ASSERT_TRUE(stub->GetModelInfo(&context, {}, &info).ok());
    EXPECT_EQ(info.dtype(), want);
    EXPECT_NE(info.device().find(want + " weights"), std::string::npos)
        << info.device();
  }
}

TEST_F(RpcTest, EchoAndLogprobs) {
  auto stub = Stub(*mpt_);
  v1::CompleteRequest request;
  v1::CompletionParams& p = *request.mutable_params();
  p.set_text("Hello world, this is");
  p.set_max_tokens(6);
  p.set_echo(true);
  p.set_logprobs(4);
  p.mutable_sampling()->set_temperature(0.0f);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::CompleteResponse response;
  ASSERT_TRUE(stub->Complete(&context, request, &response).ok());
  EXPECT_EQ(response.text().rfind("Hello world, this is", 0), 0u);
  ASSERT_GT(response.prompt_token_ids_size(), 1);
  EXPECT_EQ(response.prompt_logprobs_size(),
            response.prompt_token_ids_size() - 1);
  ASSERT_EQ(response.logprobs_size(), response.token_ids_size());
  for (const auto& lp : response.logprobs()) {
    EXPECT_EQ(lp.top_logprobs_size(), 4);
    // Greedy: the chosen token is the best alternative.
    EXPECT_EQ(lp.top_logprobs(0).token_id(), lp.token_id());
  }
  // Echoed prompt log-probs equal Score's.
  v1::ScoreRequest score;
  score.mutable_token_ids()->CopyFrom(response.prompt_token_ids());
  grpc::ClientContext score_context;
  SetDeadline(score_context);
  v1::ScoreResponse scored;
  ASSERT_TRUE(stub->Score(&score_context, score, &scored).ok());
  for (int i = 0; i < scored.token_logprobs_size(); ++i) {
    EXPECT_FLOAT_EQ(response.prompt_logprobs(i).logprob(),
                    scored.token_logprobs(i));
  }
}

TEST_F(RpcTest, StopStringIsExcludedFromTheStream) {
  auto stub = Stub(*mpt_);
  v1::CompletionParams params;
  params.set_text("Once upon a time");
  params.set_max_tokens(30);
  params.mutable_sampling()->set_temperature(0.0f);
  params.mutable_sampling()->set_ignore_eos(true);
  std::vector<v1::CompleteStreamResponse> free_run;
  ASSERT_TRUE(ReadStream(*stub, params, &free_run).ok());
  std::string full;
  for (const auto& m : free_run) full += m.text();
  ASSERT_GT(full.size(), 20u);
  const std::string stop = full.substr(10, 3);
  params.mutable_sampling()->add_stop(stop);
  std::vector<v1::CompleteStreamResponse> stopped;
  ASSERT_TRUE(ReadStream(*stub, params, &stopped).ok());
  std::string text;
  for (const auto& m : stopped) text += m.text();
  EXPECT_EQ(text, full.substr(0, full.find(stop)));
  EXPECT_EQ(stopped.back().finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(stopped.back().stop_reason(), stop);
}

TEST_F(RpcTest, NCompletionsShareOnePromptUnaryAndStreamed) {
  auto stub = Stub(*mpt_);
  v1::CompletionParams params;
  params.set_text("It was the best of times, it was the worst of times");
  params.set_max_tokens(10);
  params.set_n(3);
  params.set_logprobs(1);
  params.mutable_sampling()->set_temperature(1.0f);
  params.mutable_sampling()->set_seed(42);
  params.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::CompleteRequest request;
  *request.mutable_params() = params;
  v1::CompleteResponse unary;
  ASSERT_TRUE(stub->Complete(&context, request, &unary).ok());
  ASSERT_EQ(unary.completions_size(), 3);
  // The top-level fields are completion 0; usage counts the prompt once.
  EXPECT_EQ(unary.text(), unary.completions(0).text());
  EXPECT_EQ(unary.usage().completion_tokens(), 30);
  EXPECT_EQ(unary.usage().prompt_tokens(),
            unary.completions(1).usage().prompt_tokens());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(unary.completions(i).index(), i);
    EXPECT_EQ(unary.completions(i).token_ids_size(), 10);
    EXPECT_EQ(unary.completions(i).logprobs_size(), 10);
    EXPECT_EQ(unary.completions(i).finish_reason(), v1::FINISH_REASON_LENGTH);
  }
  EXPECT_NE(unary.completions(0).text(), unary.completions(1).text());

  std::vector<v1::CompleteStreamResponse> messages;
  ASSERT_TRUE(ReadStream(*stub, params, &messages).ok());
  std::vector<std::string> texts(3);
  std::vector<int> finishes(3, 0);
  for (const auto& m : messages) {
    ASSERT_GE(m.index(), 0);
    ASSERT_LT(m.index(), 3);
    EXPECT_EQ(finishes[m.index()], 0) << "a message after the last one";
    texts[m.index()] += m.text();
    if (m.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      ++finishes[m.index()];
      EXPECT_EQ(m.usage().completion_tokens(), 10);
    }
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(finishes[i], 1);
    EXPECT_EQ(texts[i], unary.completions(i).text()) << "completion " << i;
  }
}

TEST_F(RpcTest, LogitBiasAndDetokenize) {
  auto stub = Stub(*bloom_);
  v1::CompleteRequest request;
  v1::CompletionParams& p = *request.mutable_params();
  p.set_text("In the beginning");
  p.set_max_tokens(5);
  p.mutable_sampling()->set_temperature(0.0f);
  (*p.mutable_sampling()->mutable_logit_bias())[321] = 100.0f;
  grpc::ClientContext context;
  SetDeadline(context);
  v1::CompleteResponse response;
  ASSERT_TRUE(stub->Complete(&context, request, &response).ok());
  EXPECT_EQ(std::vector<int32_t>(response.token_ids().begin(),
                                 response.token_ids().end()),
            std::vector<int32_t>(5, 321));

  v1::DetokenizeRequest detokenize;
  detokenize.mutable_token_ids()->CopyFrom(response.token_ids());
  grpc::ClientContext d_context;
  SetDeadline(d_context);
  v1::DetokenizeResponse text;
  ASSERT_TRUE(stub->Detokenize(&d_context, detokenize, &text).ok());
  EXPECT_EQ(text.text(), response.text());
  detokenize.add_token_ids(50432);
  grpc::ClientContext bad_context;
  SetDeadline(bad_context);
  const grpc::Status bad = stub->Detokenize(&bad_context, detokenize, &text);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("token_ids[5]"), std::string::npos)
      << bad.error_message();
}

// One bad request: how to build it and what must come back.
struct BadCase {
  std::string name;
  enum Rpc { kComplete, kStream, kScore, kTokenize } rpc = kComplete;
  std::function<void(v1::CompletionParams&)> completion;
  std::function<void(v1::ScoreRequest&)> score;
  std::function<void(v1::TokenizeRequest&)> tokenize;
  grpc::StatusCode code = grpc::StatusCode::INVALID_ARGUMENT;
  std::string field;  // must appear in the message
};

std::vector<BadCase> BadCases() {
  const float nan = std::nanf("");
  const float inf = INFINITY;
  auto c = [](std::string name, std::function<void(v1::CompletionParams&)> f,
              std::string field) {
    BadCase b;
    b.name = std::move(name);
    b.completion = [f](v1::CompletionParams& p) {
      p.set_text("Hello");
      p.set_max_tokens(4);
      f(p);
    };
    b.field = std::move(field);
    return b;
  };
  std::vector<BadCase> cases = {
      c(
          "empty prompt", [](auto& p) { p.clear_text(); }, "params.text"),
      c(
          "both prompts", [](auto& p) { p.add_token_ids(5); },
          "params.text, params.token_ids"),
      c(
          "negative id",
          [](auto& p) {
            p.clear_text();
            p.add_token_ids(-1);
          },
          "params.token_ids[0]"),
      c(
          "id past vocab",
          [](auto& p) {
            p.clear_text();
            p.add_token_ids(3);
            p.add_token_ids(50432);
          },
          "params.token_ids[1]"),
      c(
          "max_tokens 0", [](auto& p) { p.set_max_tokens(0); },
          "params.max_tokens"),
      c(
          "max_tokens negative", [](auto& p) { p.set_max_tokens(-5); },
          "params.max_tokens"),
      c(
          "max_tokens beyond context", [](auto& p) { p.set_max_tokens(9000); },
          "params.max_tokens"),
      c(
          "prompt beyond context",
          [](auto& p) {
            p.clear_text();
            for (int i = 0; i < 8192; ++i) p.add_token_ids(7);
          },
          "params.token_ids"),
      c(
          "temperature nan",
          [nan](auto& p) { p.mutable_sampling()->set_temperature(nan); },
          "params.sampling.temperature"),
      c(
          "temperature inf",
          [inf](auto& p) { p.mutable_sampling()->set_temperature(inf); },
          "params.sampling.temperature"),
      c(
          "temperature negative",
          [](auto& p) { p.mutable_sampling()->set_temperature(-0.5f); },
          "params.sampling.temperature"),
      c(
          "top_p zero", [](auto& p) { p.mutable_sampling()->set_top_p(0.0f); },
          "params.sampling.top_p"),
      c(
          "top_p above one",
          [](auto& p) { p.mutable_sampling()->set_top_p(1.5f); },
          "params.sampling.top_p"),
      c(
          "top_p nan", [nan](auto& p) { p.mutable_sampling()->set_top_p(nan); },
          "params.sampling.top_p"),
      c(
          "top_k negative",
          [](auto& p) { p.mutable_sampling()->set_top_k(-1); },
          "params.sampling.top_k"),
      c(
          "min_p above one",
          [](auto& p) { p.mutable_sampling()->set_min_p(1.5f); },
          "params.sampling.min_p"),
      c(
          "min_p negative",
          [](auto& p) { p.mutable_sampling()->set_min_p(-0.1f); },
          "params.sampling.min_p"),
      c(
          "repetition_penalty zero",
          [](auto& p) { p.mutable_sampling()->set_repetition_penalty(0.0f); },
          "params.sampling.repetition_penalty"),
      c(
          "repetition_penalty nan",
          [nan](auto& p) { p.mutable_sampling()->set_repetition_penalty(nan); },
          "params.sampling.repetition_penalty"),
      c(
          "repetition_penalty huge",
          [](auto& p) { p.mutable_sampling()->set_repetition_penalty(100.0f); },
          "params.sampling.repetition_penalty"),
      c(
          "presence_penalty out of range",
          [](auto& p) { p.mutable_sampling()->set_presence_penalty(3.0f); },
          "params.sampling.presence_penalty"),
      c(
          "frequency_penalty out of range",
          [](auto& p) { p.mutable_sampling()->set_frequency_penalty(-2.5f); },
          "params.sampling.frequency_penalty"),
      c(
          "frequency_penalty inf",
          [inf](auto& p) { p.mutable_sampling()->set_frequency_penalty(inf); },
          "params.sampling.frequency_penalty"),
      c(
          "empty stop string",
          [](auto& p) { p.mutable_sampling()->add_stop(""); },
          "params.sampling.stop[0]"),
      c(
          "oversized stop string",
          [](auto& p) {
            p.mutable_sampling()->add_stop("ok");
            p.mutable_sampling()->add_stop(std::string(300, 'x'));
          },
          "params.sampling.stop[1]"),
      c(
          "too many stops",
          [](auto& p) {
            for (int i = 0; i < 17; ++i) {
              p.mutable_sampling()->add_stop("s" + std::to_string(i));
            }
          },
          "params.sampling.stop"),
      c(
          "stop token outside vocab",
          [](auto& p) { p.mutable_sampling()->add_stop_token_ids(-3); },
          "params.sampling.stop_token_ids[0]"),
      c(
          "min_tokens negative",
          [](auto& p) { p.mutable_sampling()->set_min_tokens(-1); },
          "params.sampling.min_tokens"),
      c(
          "min_tokens above max_tokens",
          [](auto& p) { p.mutable_sampling()->set_min_tokens(5); },
          "params.sampling.min_tokens"),
      c(
          "logprobs above cap", [](auto& p) { p.set_logprobs(21); },
          "params.logprobs"),
      c(
          "logprobs negative", [](auto& p) { p.set_logprobs(-1); },
          "params.logprobs"),
      c(
          "request id too long",
          [](auto& p) { p.set_request_id(std::string(300, 'r')); },
          "params.request_id"),
      c(
          "n negative", [](auto& p) { p.set_n(-2); }, "params.n"),
      c(
          "n above cap", [](auto& p) { p.set_n(129); }, "params.n"),
      c(
          "logit_bias out of range",
          [](auto& p) {
            (*p.mutable_sampling()->mutable_logit_bias())[7] = 101;
          },
          "params.sampling.logit_bias[7]"),
      c(
          "logit_bias token outside vocab",
          [](auto& p) {
            (*p.mutable_sampling()->mutable_logit_bias())[50432] = 1;
          },
          "params.sampling.logit_bias[50432]"),
      c(
          "allowed token outside vocab",
          [](auto& p) { p.mutable_sampling()->add_allowed_token_ids(-4); },
          "params.sampling.allowed_token_ids[0]"),
      c(
          "blank bad word",
          [](auto& p) { p.mutable_sampling()->add_bad_words(" "); },
          "params.sampling.bad_words[0]"),
  };
  BadCase stream = c(
      "stream with bad top_p",
      [](auto& p) { p.mutable_sampling()->set_top_p(2.0f); },
      "params.sampling.top_p");
  stream.rpc = BadCase::kStream;
  cases.push_back(stream);
  BadCase stream_empty = c(
      "stream with empty prompt", [](auto& p) { p.clear_text(); },
      "params.text");
  stream_empty.rpc = BadCase::kStream;
  cases.push_back(stream_empty);
  auto s = [](std::string name, std::function<void(v1::ScoreRequest&)> f,
              std::string field) {
    BadCase b;
    b.name = std::move(name);
    b.rpc = BadCase::kScore;
    b.score = std::move(f);
    b.field = std::move(field);
    return b;
  };
  cases.push_back(s(
      "score empty", [](auto&) {}, "text"));
  cases.push_back(s(
      "score one token", [](auto& r) { r.add_token_ids(5); }, "token_ids"));
  cases.push_back(s(
      "score id outside vocab",
      [](auto& r) {
        r.add_token_ids(5);
        r.add_token_ids(99999);
      },
      "token_ids[1]"));
  cases.push_back(s(
      "score top_logprobs above cap",
      [](auto& r) {
        r.set_text("Hello there");
        r.set_top_logprobs(21);
      },
      "top_logprobs"));
  cases.push_back(s(
      "score both inputs",
      [](auto& r) {
        r.set_text("Hello there");
        r.add_token_ids(5);
      },
      "text, token_ids"));
  cases.push_back(s(
      "score too long",
      [](auto& r) {
        for (int i = 0; i < 8193; ++i) r.add_token_ids(9);
      },
      "token_ids"));
  return cases;
}

grpc::Status RunBadCase(v1::InferenceService::Stub& stub, const BadCase& b) {
  grpc::ClientContext context;
  SetDeadline(context);
  switch (b.rpc) {
    case BadCase::kComplete: {
      v1::CompleteRequest request;
      b.completion(*request.mutable_params());
      v1::CompleteResponse response;
      return stub.Complete(&context, request, &response);
    }
    case BadCase::kStream: {
      v1::CompleteStreamRequest request;
      b.completion(*request.mutable_params());
      auto reader = stub.CompleteStream(&context, request);
      v1::CompleteStreamResponse message;
      while (reader->Read(&message)) {
      }
      return reader->Finish();
    }
    case BadCase::kScore: {
      v1::ScoreRequest request;
      b.score(request);
      v1::ScoreResponse response;
      return stub.Score(&context, request, &response);
    }
    case BadCase::kTokenize: {
      v1::TokenizeRequest request;
      b.tokenize(request);
      v1::TokenizeResponse response;
      return stub.Tokenize(&context, request, &response);
    }
  }
  return grpc::Status::OK;
}

TEST_F(RpcTest, BadInputGetsPreciseStatusAndTheServerCarriesOn) {
  auto stub = Stub(*mpt_);
  const std::vector<BadCase> cases = BadCases();
  ASSERT_GE(cases.size(), 30u);
  for (const BadCase& b : cases) {
    const grpc::Status status = RunBadCase(*stub, b);
    EXPECT_EQ(status.error_code(), b.code)
        << b.name << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(b.field), std::string::npos)
        << b.name << ": message \"" << status.error_message()
        << "\" does not name " << b.field;
  }
  // Then: still healthy, and a normal request works.
  auto health = CheckHealth(*mpt_->Channel());
  ASSERT_TRUE(health.ok() && *health);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::CompleteRequest request;
  request.mutable_params()->set_text("Still alive?");
  request.mutable_params()->set_max_tokens(3);
  v1::CompleteResponse response;
  ASSERT_TRUE(stub->Complete(&context, request, &response).ok());
  EXPECT_EQ(response.token_ids_size(), 3);
}

TEST_F(RpcTest, InvalidUtf8NeverCrashesTheServer) {
  auto stub = Stub(*mpt_);
  const std::string bad = "caf\xc3\x28 \xff\xfe";
  {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::TokenizeRequest request;
    request.set_text(bad);
    v1::TokenizeResponse response;
    const grpc::Status status = stub->Tokenize(&context, request, &response);
    EXPECT_FALSE(status.ok());
    RecordProperty("invalid_utf8_status", status.error_code());
  }
  {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::CompleteRequest request;
    request.mutable_params()->set_text("ok");
    request.mutable_params()->mutable_sampling()->add_stop(bad);
    v1::CompleteResponse response;
    EXPECT_FALSE(stub->Complete(&context, request, &response).ok());
  }
  auto health = CheckHealth(*mpt_->Channel());
  ASSERT_TRUE(health.ok() && *health);
}

TEST_F(RpcTest, CancelAndDeadlineFreeTheRequestWithinAStep) {
  auto stub = Stub(*mpt_);
  ASSERT_TRUE(WaitForIdleEngine(*mpt_, std::chrono::seconds(5)).ok());
  {
    // Client cancel in the middle of a long stream.
    grpc::ClientContext context;
    SetDeadline(context);
    v1::CompleteStreamRequest request;
    request.mutable_params()->set_text("Tell me a long story");
    request.mutable_params()->set_max_tokens(3000);
    request.mutable_params()->mutable_sampling()->set_ignore_eos(true);
    auto reader = stub->CompleteStream(&context, request);
    v1::CompleteStreamResponse message;
    int received = 0;
    while (received < 3 && reader->Read(&message)) ++received;
    ASSERT_EQ(received, 3);
    context.TryCancel();
    while (reader->Read(&message)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
    auto waited = WaitForIdleEngine(*mpt_, std::chrono::milliseconds(100));
    EXPECT_TRUE(waited.ok()) << waited.status();
  }
  {
    // Deadline on a unary call that needs far longer.
    grpc::ClientContext context;
    SetDeadline(context, 150);
    v1::CompleteRequest request;
    request.mutable_params()->set_text("Another long story");
    request.mutable_params()->set_max_tokens(3000);
    request.mutable_params()->mutable_sampling()->set_ignore_eos(true);
    v1::CompleteResponse response;
    EXPECT_EQ(stub->Complete(&context, request, &response).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
    // The server learns of the deadline when it expires; then one step.
    auto waited = WaitForIdleEngine(*mpt_, std::chrono::milliseconds(100));
    EXPECT_TRUE(waited.ok()) << waited.status();
  }
}

TEST_F(RpcTest, SlowReaderGetsEverythingCoalesced) {
  auto stub = Stub(*mpt_);
  v1::CompletionParams params;
  params.set_text("Slowly");
  params.set_max_tokens(200);
  params.mutable_sampling()->set_temperature(0.0f);
  params.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext context;
  SetDeadline(context);
  v1::CompleteStreamRequest request;
  *request.mutable_params() = params;
  auto reader = stub->CompleteStream(&context, request);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // read nothing
  v1::CompleteStreamResponse message;
  int messages = 0;
  std::vector<int32_t> ids;
  while (reader->Read(&message)) {
    ++messages;
    ids.insert(ids.end(), message.token_ids().begin(),
               message.token_ids().end());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(ids.size(), 200u);
  EXPECT_LE(messages, 200);
  grpc::ClientContext unary_context;
  SetDeadline(unary_context);
  v1::CompleteRequest unary_request;
  *unary_request.mutable_params() = params;
  v1::CompleteResponse unary;
  ASSERT_TRUE(stub->Complete(&unary_context, unary_request, &unary).ok());
  EXPECT_EQ(ids, std::vector<int32_t>(unary.token_ids().begin(),
                                      unary.token_ids().end()));
}

TEST(RpcOverloadTest, ExcessIsRefusedFastAndCountersMatch) {
  auto server = StartServer("tiny-bloom",
                            {"--max_queued_requests=4", "--max_num_seqs=2"});
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server);
  v1::CompleteRequest request;
  request.mutable_params()->set_text("Overload");
  request.mutable_params()->set_max_tokens(48);
  request.mutable_params()->mutable_sampling()->set_temperature(0.0f);
  request.mutable_params()->mutable_sampling()->set_ignore_eos(true);
  // The expected answer, alone.
  v1::CompleteResponse expected;
  {
    grpc::ClientContext context;
    SetDeadline(context);
    ASSERT_TRUE(stub->Complete(&context, request, &expected).ok());
  }
  // 10x the queue capacity at once.
  constexpr int kCalls = 60;
  struct Call {
    grpc::ClientContext context;
    v1::CompleteResponse response;
    grpc::Status status;
    std::chrono::steady_clock::time_point start, end;
  };
  std::vector<Call> calls(kCalls);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  for (Call& call : calls) {
    SetDeadline(call.context, 120000);
    call.start = std::chrono::steady_clock::now();
    stub->async()->Complete(&call.context, &request, &call.response,
                            [&, c = &call](grpc::Status status) {
                              c->end = std::chrono::steady_clock::now();
                              c->status = status;
                              std::lock_guard<std::mutex> lock(mu);
                              ++done;
                              cv.notify_all();
                            });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::minutes(2),
                            [&] { return done == kCalls; }));
  }
  int ok = 0, exhausted = 0;
  std::vector<double> refusal_ms;
  for (const Call& call : calls) {
    if (call.status.ok()) {
      ++ok;
      EXPECT_EQ(call.response.text(), expected.text());
      EXPECT_EQ(call.response.token_ids_size(), 48);
    } else {
      ASSERT_EQ(call.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << call.status.error_message();
      ++exhausted;
      refusal_ms.push_back(
          std::chrono::duration<double, std::milli>(call.end - call.start)
              .count());
    }
  }
  // At least the queue's capacity gets in (more when requests reach the 2
  // running slots while the burst arrives); the rest is refused.
  EXPECT_GE(ok, 4);
  EXPECT_GE(exhausted, 40);
  EXPECT_EQ(ok + exhausted, kCalls);
  std::sort(refusal_ms.begin(), refusal_ms.end());
  EXPECT_LT(refusal_ms[refusal_ms.size() / 2], 250.0)
      << "median time to RESOURCE_EXHAUSTED";
  ASSERT_TRUE(WaitForIdleEngine(*server, std::chrono::seconds(10)).ok());
  // Calls are counted when gRPC reports them done, a moment after the client
  // has its status.
  absl::StatusOr<std::string> text;
  for (int attempt = 0; attempt < 200; ++attempt) {
    text = server->ScrapeMetrics();
    ASSERT_TRUE(text.ok());
    if (SumSeries(*text, {"alibi_requests_total{", "rpc=\"Complete\""}) ==
        kCalls + 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(SumSeries(*text, {"alibi_requests_total{", "rpc=\"Complete\"",
                              "code=\"OK\""}),
            ok + 1);
  EXPECT_EQ(SumSeries(*text, {"alibi_requests_total{", "rpc=\"Complete\"",
                              "code=\"RESOURCE_EXHAUSTED\""}),
            exhausted);
  EXPECT_EQ(SumSeries(*text, {"alibi_generation_tokens_total{"}),
            48.0 * (ok + 1));
}

TEST(RpcDrainTest, SigtermDrainsAndExitsZeroInTime) {
  for (bool finishes_in_time : {true, false}) {
    auto server = StartServer("tiny-mpt", {"--drain_seconds=2"});
    ASSERT_NE(server, nullptr);
    auto stub = Stub(*server);
    grpc::ClientContext context;
    SetDeadline(context, 60000);
    v1::CompleteStreamRequest request;
    request.mutable_params()->set_text("Draining");
    // ~1 ms a token here: 200 tokens finish within the drain, 100000 do not.
    request.mutable_params()->set_max_tokens(finishes_in_time ? 200 : 8000);
    request.mutable_params()->mutable_sampling()->set_ignore_eos(true);
    auto reader = stub->CompleteStream(&context, request);
    v1::CompleteStreamResponse message;
    ASSERT_TRUE(reader->Read(&message));
    const auto sent = std::chrono::steady_clock::now();
    ASSERT_EQ(kill(server->pid(), SIGTERM), 0);
    // New calls are refused while draining.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    {
      grpc::ClientContext late;
      SetDeadline(late, 2000);
      v1::TokenizeRequest t;
      t.set_text("late");
      v1::TokenizeResponse r;
      const grpc::Status s = stub->Tokenize(&late, t, &r);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
          << s.error_message();
      auto health = CheckHealth(*server->Channel());
      EXPECT_TRUE(!health.ok() || !*health) << "still SERVING while draining";
    }
    int tokens = message.token_ids_size();
    while (reader->Read(&message)) tokens += message.token_ids_size();
    const grpc::Status status = reader->Finish();
    if (finishes_in_time) {
      EXPECT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(tokens, 200);
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
          << status.error_message();
    }
    auto code = server->Stop(0, absl::Seconds(4));  // signal 0: just wait
    ASSERT_TRUE(code.ok()) << code.status() << server->ReadLog();
    EXPECT_EQ(*code, 0) << server->ReadLog();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - sent)
            .count();
    EXPECT_LT(seconds, 2.0 + 1.0) << "exit took " << seconds << " s";
  }
}

TEST(RpcAuthTest, BearerTokenGuardsTheServiceButNotHealth) {
  const std::string key_file = ::testing::TempDir() + "/alibi-api-key";
  std::ofstream(key_file) << "s3cret-token\n";
  auto server = StartServer("tiny-mpt", {"--api_key_file=" + key_file});
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server);
  auto call = [&](const std::string& authorization) {
    grpc::ClientContext context;
    SetDeadline(context);
    if (!authorization.empty()) {
      context.AddMetadata("authorization", authorization);
    }
    v1::GetModelInfoResponse info;
    return stub->GetModelInfo(&context, {}, &info).error_code();
  };
  EXPECT_EQ(call(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("Bearer wrong"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("s3cret-token"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("Bearer s3cret-token"), grpc::StatusCode::OK);
  auto health = CheckHealth(*server->Channel());
  ASSERT_TRUE(health.ok());
  EXPECT_TRUE(*health);
}

grpc::StatusCode TokenizeWith(std::shared_ptr<grpc::ChannelCredentials> creds,
                              const ServerProcess& server) {
  auto stub = v1::InferenceService::NewStub(
      grpc::CreateChannel(server.address(), creds));
  grpc::ClientContext context;
  SetDeadline(context, 5000);
  v1::TokenizeRequest request;
  request.set_text("secure");
  v1::TokenizeResponse response;
  return stub->Tokenize(&context, request, &response).error_code();
}

TEST(RpcTlsTest, TlsAndMutualTls) {
  if (!testing::HaveOpenssl()) {
    GTEST_SKIP() << "openssl is not installed";
  }
  const std::string dir = ::testing::TempDir() + "/alibi-tls";
  ASSERT_TRUE(testing::WriteTestCertificates(dir).ok());
  grpc::SslCredentialsOptions server_only;
  server_only.pem_root_certs = testing::ReadFileToString(dir + "/ca.pem");
  grpc::SslCredentialsOptions with_client_cert = server_only;
  with_client_cert.pem_private_key =
      testing::ReadFileToString(dir + "/client.key");
  with_client_cert.pem_cert_chain =
      testing::ReadFileToString(dir + "/client.pem");
  {
    ::alibi::testing::ServerOptions options;
    options.model_dir = FixtureModel("tiny-mpt");
    options.flags = {"--tls_cert=" + dir + "/server.pem",
                     "--tls_key=" + dir + "/server.key"};
    options.credentials = grpc::SslCredentials(server_only);
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_EQ(TokenizeWith(grpc::SslCredentials(server_only), **server),
              grpc::StatusCode::OK);
    EXPECT_EQ(TokenizeWith(grpc::InsecureChannelCredentials(), **server),
              grpc::StatusCode::UNAVAILABLE);
  }
  {
    ::alibi::testing::ServerOptions options;
    options.model_dir = FixtureModel("tiny-mpt");
    options.flags = {"--tls_cert=" + dir + "/server.pem",
                     "--tls_key=" + dir + "/server.key",
                     "--tls_client_ca=" + dir + "/ca.pem"};
    options.credentials = grpc::SslCredentials(with_client_cert);
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_EQ(TokenizeWith(grpc::SslCredentials(with_client_cert), **server),
              grpc::StatusCode::OK);
    EXPECT_EQ(TokenizeWith(grpc::SslCredentials(server_only), **server),
              grpc::StatusCode::UNAVAILABLE);
  }
}

}  // namespace
}  // namespace alibi
