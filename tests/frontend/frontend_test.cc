// The frontend over a real engine (CPU backend, fixture models): validation
// names fields the transport's way, streamed text equals the decoded ids,
// stop strings end a request (and free its blocks), echo and log-probability
// texts, and output processing never runs on, or holds up, the engine
// thread.
#include "server/frontend/frontend.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
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

// Polls a call of n completions until done(); returns each one's chunks
// merged, by index.
std::vector<CompletionChunk> RunGroup(InferenceCall& call) {
  std::vector<CompletionChunk> merged(call.n());
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (!call.done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "the call never finished";
      break;
    }
    if (auto c = call.Poll()) {
      EXPECT_GE(c->index, 0);
      EXPECT_LT(c->index, call.n());
      EXPECT_FALSE(merged[c->index].finished) << "a chunk after the last";
      merged[c->index].Merge(*std::move(c));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  EXPECT_FALSE(call.Poll().has_value());
  return merged;
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

TEST(FrontendTest, NCompletionsAreSeededStreamsOfOnePrompt) {
  TestFrontend t = Make("tiny-mpt");
  CompletionParams p;
  p.prompt.text = "The quick brown fox jumps over the lazy dog and then";
  p.max_tokens = 12;
  p.sampling.temperature = 1.0f;
  p.sampling.ignore_eos = true;
  p.sampling.seed = 1234;
  p.n = 3;
  auto call = t.frontend->NewCompletion(p, SameName, nullptr);
  ASSERT_TRUE(call.ok()) << call.status();
  EXPECT_EQ((*call)->n(), 3);
  ASSERT_TRUE((*call)->Submit().ok());
  const std::vector<CompletionChunk> group = RunGroup(**call);
  ASSERT_EQ(group.size(), 3u);
  // Completion i is what a lone request with GroupSeed(seed, i) generates.
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(group[i].status.ok()) << group[i].status;
    EXPECT_EQ(group[i].id, (*call)->id());
    EXPECT_EQ(group[i].token_ids.size(), 12u);
    CompletionParams alone = p;
    alone.n = 1;
    alone.sampling.seed = engine::GroupSeed(1234, i);
    auto single = t.frontend->NewCompletion(alone, SameName, nullptr);
    ASSERT_TRUE(single.ok());
    ASSERT_TRUE((*single)->Submit().ok());
    const CompletionChunk a = Merged(RunToEnd(**single));
    EXPECT_EQ(a.token_ids, group[i].token_ids);
    EXPECT_EQ(a.text, group[i].text);
  }
  EXPECT_NE(group[0].token_ids, group[1].token_ids);
  // The others started from the first one's full prompt blocks.
  const int prompt_len = group[0].usage.prompt_tokens;
  EXPECT_EQ(group[1].usage.cached_prompt_tokens, (prompt_len - 1) / 16 * 16);
  ExpectEngineIdle(*t.engine);
}

TEST(FrontendTest, EveryCompletionOfAGroupEchoesThePromptLogprobs) {
  TestFrontend t = Make("tiny-bloom");
  CompletionParams p = Greedy(
      "Call me Ishmael. Some years ago, never mind how long precisely, having "
      "little or no money in my purse",
      4);
  p.echo = true;
  p.logprobs = 2;
  p.n = 3;
  auto call = t.frontend->NewCompletion(p, SameName, nullptr);
  ASSERT_TRUE(call.ok());
  ASSERT_TRUE((*call)->Submit().ok());
  const std::vector<CompletionChunk> group = RunGroup(**call);
  const size_t prompt_len = (*call)->prompt().size();
  ASSERT_GT(prompt_len, 16u);
  for (const CompletionChunk& c : group) {
    ASSERT_EQ(c.prompt_logprobs.size(), prompt_len - 1);
    for (size_t i = 0; i < prompt_len - 1; ++i) {
      EXPECT_EQ(c.prompt_logprobs[i].chosen.token,
                group[0].prompt_logprobs[i].chosen.token);
      EXPECT_EQ(c.prompt_logprobs[i].chosen.logprob,
                group[0].prompt_logprobs[i].chosen.logprob);
      EXPECT_EQ(c.prompt_logprobs[i].top.size(), 2u);
    }
    EXPECT_EQ(c.token_ids, group[0].token_ids);  // greedy
  }
}

TEST(FrontendTest, TokenConstraintsAreValidated) {
  TestFrontend t = Make("tiny-bloom");
  const int vocab = t.frontend->info().vocab_size;
  auto error = [&](const CompletionParams& p) {
    return std::string(
        t.frontend->NewCompletion(p, Params, nullptr).status().message());
  };
  CompletionParams p = Greedy("hello", 4);
  p.sampling.logit_bias = {{5, 150.0f}};
  EXPECT_EQ(error(p),
            "params.sampling.logit_bias[5]: must be in [-100, 100], got 150");
  p.sampling.logit_bias = {{vocab, 1.0f}};
  EXPECT_THAT(error(p), HasSubstr(absl::StrCat("params.sampling.logit_bias[",
                                               vocab, "]: ", vocab,
                                               " is outside the vocabulary")));
  p = Greedy("hello", 4);
  p.sampling.allowed_token_ids = {3, -1};
  EXPECT_THAT(error(p), HasSubstr("params.sampling.allowed_token_ids[1]: -1 "
                                  "is outside the vocabulary"));
  p = Greedy("hello", 4);
  p.sampling.bad_words = {"fine", "   "};
  EXPECT_EQ(error(p), "params.sampling.bad_words[1]: must not be blank");
  p.sampling.bad_words = {"\xc3"};
  EXPECT_EQ(error(p), "params.sampling.bad_words[0]: is not valid UTF-8");
  p = Greedy("hello", 4);
  p.n = 0;
  EXPECT_EQ(error(p), "params.n: must be in [1, 128], got 0");
  EXPECT_THAT(
      t.frontend->Detokenize({1, vocab}, true, SameName).status().message(),
      HasSubstr("token_ids[1]"));
}

TEST(FrontendTest, LogitBiasAllowedTokensAndBadWordsShapeTheOutput) {
  TestFrontend t = Make("tiny-mpt");
  const tokenizer::Tokenizer& tok = t.frontend->tokenizer();
  auto run = [&](const CompletionParams& p) {
    auto call = t.frontend->NewCompletion(p, SameName, nullptr);
    EXPECT_TRUE(call.ok()) << call.status();
    EXPECT_TRUE((*call)->Submit().ok());
    return Merged(RunToEnd(**call));
  };
  const CompletionParams base = Greedy("It was the best of times, it was", 16);
  const CompletionChunk free_run = run(base);
  ASSERT_EQ(free_run.token_ids.size(), 16u);

  // A +100 bias on one token makes greedy decoding pick it every time.
  CompletionParams biased = base;
  const int32_t forced = 1000;
  biased.sampling.logit_bias = {{forced, 100.0f}};
  EXPECT_EQ(run(biased).token_ids, std::vector<int32_t>(16, forced));

  // allowed_token_ids: only those appear.
  CompletionParams allowed = base;
  allowed.sampling.temperature = 1.0f;
  allowed.sampling.seed = 3;
  allowed.sampling.allowed_token_ids = {free_run.token_ids[0], 11, 12, 13};
  for (int32_t id : run(allowed).token_ids) {
    EXPECT_THAT(allowed.sampling.allowed_token_ids, ::testing::Contains(id));
  }

  // A bad word taken from the free run never appears as its tokens.
  const std::string word = tok.Decode({free_run.token_ids[1]}, true);
  ASSERT_FALSE(absl::StripAsciiWhitespace(word).empty()) << word;
  CompletionParams banned = base;
  banned.sampling.bad_words = {word};
  const CompletionChunk b = run(banned);
  std::vector<std::vector<int32_t>> forms;
  for (const std::string& v :
       {std::string(absl::StripLeadingAsciiWhitespace(word)),
        absl::StrCat(" ", absl::StripLeadingAsciiWhitespace(word))}) {
    forms.push_back(*tok.Encode(v));
  }
  for (const auto& form : forms) {
    EXPECT_EQ(std::search(b.token_ids.begin(), b.token_ids.end(), form.begin(),
                          form.end()),
              b.token_ids.end())
        << "bad word \"" << word << "\" was generated: " << b.text;
  }
  EXPECT_NE(b.token_ids, free_run.token_ids);
}

TEST(FrontendTest, DetokenizeInvertsTokenize) {
  TestFrontend t = Make("tiny-mpt");
  const std::string text = "Tokens, and back again: 42 \u00e9t\u00e9.";
  auto ids = t.frontend->Tokenize(text, SameName);
  ASSERT_TRUE(ids.ok());
  auto back = t.frontend->Detokenize(ids->token_ids, true, SameName);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, text);
}

}  // namespace
}  // namespace alibi::frontend
