// The frontend over a real engine (CPU backend, fixture models): validation
// names fields the transport's way, streamed text equals the decoded ids,
// stop strings end a request (and free its blocks), echo and log-probability
// texts, and output processing never runs on, or holds up, the engine
// thread.
#include "server/frontend/frontend.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "server/engine/engine_core.h"
#include "server/metrics/metrics.h"
#include "server/model/model.h"
#include "server/tokenizer/tokenizer.h"

namespace alibi::frontend {
namespace {

using ::testing::HasSubstr;

struct TestFrontend {
  std::unique_ptr<metrics::Metrics> metrics;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<Frontend> frontend;
};

TestFrontend Make(const std::string& name) {
  const std::string dir = std::string(ALIBI_TEST_DATA_DIR) + "/models/" + name;
  TestFrontend t;
  t.metrics = std::make_unique<metrics::Metrics>(metrics::MetricsOptions{});
  kernels::BackendOptions options;
  options.device = "cpu";
  options.num_threads = 2;
  auto backend = kernels::CreateBackend(options);
  EXPECT_TRUE(backend.ok());
  auto model = model::Model::Load(dir, backend->get());
  EXPECT_TRUE(model.ok()) << model.status();
  auto tok = tokenizer::Tokenizer::FromFile(dir + "/tokenizer.json");
  EXPECT_TRUE(tok.ok());
  engine::EngineConfig config;
  config.scheduler.kv.num_blocks = 64;
  auto engine = engine::CreateEngine(config, std::move(*backend),
                                     std::move(*model), t.metrics.get());
  EXPECT_TRUE(engine.ok()) << engine.status();
  t.engine = std::move(*engine);
  t.frontend = std::make_unique<Frontend>(
      t.engine.get(),
      std::shared_ptr<const tokenizer::Tokenizer>(std::move(*tok)));
  return t;
}

std::string Params(absl::string_view canonical) {
  return absl::StrCat("params.", canonical);
}

// Polls `call` (from this thread) until its final chunk; returns every chunk.
std::vector<CompletionChunk> RunToEnd(InferenceCall& call) {
  std::vector<CompletionChunk> chunks;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (chunks.empty() || !chunks.back().finished) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "the call never finished";
      break;
    }
    if (auto c = call.Poll()) {
      chunks.push_back(*std::move(c));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  return chunks;
}

CompletionChunk Merged(std::vector<CompletionChunk> chunks) {
  CompletionChunk all;
  for (CompletionChunk& c : chunks) all.Merge(std::move(c));
  return all;
}

CompletionParams Greedy(std::string text, int max_tokens) {
  CompletionParams p;
  p.prompt.text = std::move(text);
  p.max_tokens = max_tokens;
  p.sampling.temperature = 0.0f;
  p.sampling.ignore_eos = true;
  return p;
}

void ExpectEngineIdle(engine::Engine& engine) {
  engine::EngineSnapshot s;
  for (int i = 0; i < 400; ++i) {
    s = engine.GetSnapshot();
    if (!s.has_work && s.kv_blocks_used == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(s.has_work);
  EXPECT_EQ(s.kv_blocks_used, 0);
}

TEST(FrontendTest, ValidationNamesTheFieldTheTransportsWay) {
  TestFrontend t = Make("tiny-bloom");
  CompletionParams p = Greedy("hello", 4);
  p.sampling.top_p = 1.5f;
  auto call = t.frontend->NewCompletion(p, Params, nullptr);
  EXPECT_EQ(call.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(call.status().message(),
            "params.sampling.top_p: must be in (0, 1], got 1.5");
  p = Greedy("hello", 4);
  p.sampling.stop = {"ok", ""};
  EXPECT_THAT(
      t.frontend->NewCompletion(p, SameName, nullptr).status().message(),
      HasSubstr("sampling.stop[1]: must not be empty"));
  ScoreParams s;
  s.input.token_ids = {5};
  EXPECT_THAT(t.frontend->NewScore(s, SameName, nullptr).status().message(),
              HasSubstr("token_ids: scoring needs at least 2 tokens"));
  EXPECT_THAT(t.frontend->Tokenize("\xff", SameName).status().message(),
              HasSubstr("text: is not valid UTF-8"));
}

TEST(FrontendTest, StreamedTextEqualsDecodeWithLogprobTexts) {
  TestFrontend t = Make("tiny-bloom");
  CompletionParams p = Greedy("In the beginning", 20);
  p.logprobs = 3;
  auto call = t.frontend->NewCompletion(p, SameName, nullptr);
  ASSERT_TRUE(call.ok()) << call.status();
  ASSERT_TRUE((*call)->Submit().ok());
  const std::vector<CompletionChunk> chunks = RunToEnd(**call);
  const CompletionChunk all = Merged(chunks);
  ASSERT_TRUE(all.status.ok()) << all.status;
  ASSERT_EQ(all.token_ids.size(), 20u);
  const tokenizer::Tokenizer& tok = t.frontend->tokenizer();
  EXPECT_EQ(all.text, tok.Decode(all.token_ids, true));
  EXPECT_EQ(all.finish_reason, FinishReason::kLength);
  EXPECT_EQ(all.usage.completion_tokens, 20);
  EXPECT_EQ(all.usage.prompt_tokens,
            static_cast<int>(tok.Encode("In the beginning")->size()));
  EXPECT_EQ(all.id, (*call)->id());
  ASSERT_EQ(all.logprobs.size(), 20u);
  for (size_t i = 0; i < all.logprobs.size(); ++i) {
    EXPECT_EQ(all.logprobs[i].chosen.token, all.token_ids[i]);
    EXPECT_EQ(all.logprobs[i].chosen.text, TokenTextOf(tok, all.token_ids[i]));
    ASSERT_EQ(all.logprobs[i].top.size(), 3u);
    EXPECT_EQ(all.logprobs[i].top[0].token, all.token_ids[i]);
  }
}

TEST(FrontendTest, StopStringsEndTheRequestAndFreeItsBlocks) {
  TestFrontend t = Make("tiny-mpt");
  CompletionParams free_params;
  free_params.prompt.token_ids = {39, 9439, 76, 600};
  free_params.max_tokens = 16;
  free_params.sampling.temperature = 0.0f;
  free_params.sampling.ignore_eos = true;
  auto free_call = t.frontend->NewCompletion(free_params, SameName, nullptr);
  ASSERT_TRUE(free_call.ok());
  ASSERT_TRUE((*free_call)->Submit().ok());
  const CompletionChunk free_run = Merged(RunToEnd(**free_call));
  const std::string full = free_run.text;
  ASSERT_GE(full.size(), 12u);
  const std::string stop = full.substr(6, 4);

  for (bool include : {false, true}) {
    CompletionParams p = free_params;
    p.sampling.stop = {stop};
    p.sampling.include_stop_str_in_output = include;
    auto call = t.frontend->NewCompletion(p, SameName, nullptr);
    ASSERT_TRUE(call.ok());
    ASSERT_TRUE((*call)->Submit().ok());
    const CompletionChunk d = Merged(RunToEnd(**call));
    EXPECT_EQ(d.finish_reason, FinishReason::kStop);
    EXPECT_EQ(d.stop_reason, stop);
    const size_t at = full.find(stop);
    EXPECT_EQ(d.text, full.substr(0, at + (include ? stop.size() : 0)));
    // The tokens up to the one that completed the stop string.
    ASSERT_FALSE(d.token_ids.empty());
    EXPECT_EQ(d.usage.completion_tokens, static_cast<int>(d.token_ids.size()));
    EXPECT_EQ(d.token_ids, std::vector<int32_t>(free_run.token_ids.begin(),
                                                free_run.token_ids.begin() +
                                                    d.token_ids.size()));
    EXPECT_GE(t.frontend->tokenizer().Decode(d.token_ids, true).size(),
              at + stop.size());
  }
  ExpectEngineIdle(*t.engine);
  EXPECT_THAT(t.metrics->SerializeText(),
              HasSubstr("finish_reason=\"stop\"} 2"));
}

TEST(FrontendTest, EchoComesFirst) {
  TestFrontend t = Make("tiny-bloom");
  CompletionParams p = Greedy("Call me Ishmael.", 3);
  p.echo = true;
  p.logprobs = 0;
  auto call = t.frontend->NewCompletion(p, SameName, nullptr);
  ASSERT_TRUE(call.ok());
  ASSERT_TRUE((*call)->Submit().ok());
  const std::vector<CompletionChunk> chunks = RunToEnd(**call);
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks[0].text.rfind("Call me Ishmael.", 0), 0u);
  const CompletionChunk all = Merged(chunks);
  const std::vector<int32_t> prompt =
      *t.frontend->tokenizer().Encode("Call me Ishmael.");
  EXPECT_EQ(all.prompt_token_ids, prompt);
  EXPECT_EQ(all.prompt_logprobs.size(), prompt.size() - 1);
  EXPECT_EQ(all.text, "Call me Ishmael." +
                          t.frontend->tokenizer().Decode(all.token_ids, true));
}

TEST(FrontendTest, OutputHandlingRunsOffTheEngineThread) {
  TestFrontend t = Make("tiny-bloom");
  std::atomic<int> notifications{0};
  std::atomic<int> on_engine_thread{0};
  std::shared_ptr<InferenceCall> call;
  std::mutex mu;
  std::vector<CompletionChunk> chunks;
  auto made =
      t.frontend->NewCompletion(Greedy("Once upon a time", 12), SameName, [&] {
        ++notifications;
        if (engine::OnEngineThread()) {
          ++on_engine_thread;
        }
        std::lock_guard<std::mutex> lock(mu);
        while (auto c = call->Poll()) {
          chunks.push_back(*std::move(c));
        }
      });
  ASSERT_TRUE(made.ok());
  call = *made;
  ASSERT_TRUE(call->Submit().ok());
  for (int i = 0; i < 2000; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!chunks.empty() && chunks.back().finished) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_FALSE(chunks.empty());
  EXPECT_TRUE(chunks.back().finished);
  EXPECT_GT(notifications.load(), 0);
  EXPECT_EQ(on_engine_thread.load(), 0);
}

TEST(FrontendDeathTest, ResponseBuildingOnTheEngineThreadAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TestFrontend t = Make("tiny-bloom");
  auto call = t.frontend->NewCompletion(Greedy("abc", 2), SameName, nullptr);
  ASSERT_TRUE(call.ok());
  EXPECT_DEATH(
      {
        engine::MarkEngineThread();
        (*call)->Poll();
      },
      "ran on the engine thread");
}

TEST(FrontendTest, AConsumerThatNeverReadsDoesNotHoldUpTheEngine) {
  TestFrontend t = Make("tiny-bloom");
  // Nobody polls this one until the end.
  auto slow = t.frontend->NewCompletion(Greedy("A slow reader", 200), SameName,
                                        nullptr);
  ASSERT_TRUE(slow.ok());
  ASSERT_TRUE((*slow)->Submit().ok());
  // Another request is served meanwhile.
  auto fast =
      t.frontend->NewCompletion(Greedy("A fast reader", 8), SameName, nullptr);
  ASSERT_TRUE(fast.ok());
  ASSERT_TRUE((*fast)->Submit().ok());
  EXPECT_EQ(Merged(RunToEnd(**fast)).token_ids.size(), 8u);
  // The engine finishes the unread request on its own: its 200 tokens wait,
  // merged, for the consumer.
  ExpectEngineIdle(*t.engine);
  EXPECT_EQ(t.engine->GetSnapshot().num_live_requests, 0);
  const std::vector<CompletionChunk> chunks = RunToEnd(**slow);
  EXPECT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].token_ids.size(), 200u);
  EXPECT_TRUE(chunks[0].finished);
}

}  // namespace
}  // namespace alibi::frontend
