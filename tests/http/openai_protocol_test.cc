// OpenAI JSON <-> frontend types: every parameter lands in the right field,
// type errors name the parameter, and responses have OpenAI's shapes
// (legacy completion logprobs with echo, chat logprobs, usage, errors).
#include "server/http/openai_protocol.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace alibi::http {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

TEST(OpenAiProtocolTest, CompletionParametersLandInTheirFields) {
  auto r = ParseCompletionRequest(R"({
      "model": "m", "prompt": "Hello", "max_tokens": 7, "temperature": 0.5,
      "top_p": 0.9, "n": 2, "stream": true,
      "stream_options": {"include_usage": true}, "logprobs": 3,
      "echo": true, "stop": ["a", "b"], "seed": -1,
      "presence_penalty": 0.25, "frequency_penalty": -0.5,
      "logit_bias": {"50": 2.5, "7": -100}, "user": "u",
      "top_k": -1, "min_p": 0.1, "repetition_penalty": 1.2,
      "ignore_eos": true, "min_tokens": 2, "stop_token_ids": [4, 5],
      "include_stop_str_in_output": true, "skip_special_tokens": false,
      "allowed_token_ids": [1, 2], "bad_words": ["x"], "best_of": 2,
      "suffix": null, "priority": 3, "request_id": "r1"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  ASSERT_EQ(r->prompts.size(), 1u);
  EXPECT_EQ(r->prompts[0].text, "Hello");
  const frontend::CompletionParams& p = r->params;
  EXPECT_EQ(p.max_tokens, 7);
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.logprobs, 3);
  EXPECT_TRUE(p.echo);
  EXPECT_EQ(p.priority, 3);
  EXPECT_EQ(p.request_id, "r1");
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  const frontend::SamplingOptions& s = p.sampling;
  EXPECT_FLOAT_EQ(*s.temperature, 0.5f);
  EXPECT_FLOAT_EQ(*s.top_p, 0.9f);
  EXPECT_EQ(s.top_k, 0);  // vLLM's -1: off
  EXPECT_FLOAT_EQ(s.min_p, 0.1f);
  EXPECT_FLOAT_EQ(*s.repetition_penalty, 1.2f);
  EXPECT_FLOAT_EQ(s.presence_penalty, 0.25f);
  EXPECT_FLOAT_EQ(s.frequency_penalty, -0.5f);
  EXPECT_EQ(s.seed, ~uint64_t{0});
  EXPECT_THAT(s.stop, ElementsAre("a", "b"));
  EXPECT_THAT(s.stop_token_ids, ElementsAre(4, 5));
  EXPECT_TRUE(s.ignore_eos);
  EXPECT_EQ(s.min_tokens, 2);
  EXPECT_TRUE(s.include_stop_str_in_output);
  EXPECT_EQ(s.skip_special_tokens, false);
  ASSERT_EQ(s.logit_bias.size(), 2u);
  EXPECT_EQ(s.logit_bias[0], std::make_pair(7, -100.0f));
  EXPECT_EQ(s.logit_bias[1], std::make_pair(50, 2.5f));
  EXPECT_THAT(s.allowed_token_ids, ElementsAre(1, 2));
  EXPECT_THAT(s.bad_words, ElementsAre("x"));
}

TEST(OpenAiProtocolTest, PromptShapes) {
  auto ids = ParseCompletionRequest(R"({"prompt": [1, 2, 3]})");
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->prompts.size(), 1u);
  EXPECT_THAT(ids->prompts[0].token_ids, ElementsAre(1, 2, 3));
  EXPECT_FALSE(ids->prompt_is_list);
  auto several = ParseCompletionRequest(R"({"prompt": ["a", [4, 5], "b"]})");
  ASSERT_TRUE(several.ok());
  ASSERT_EQ(several->prompts.size(), 3u);
  EXPECT_TRUE(several->prompt_is_list);
  EXPECT_EQ(several->prompts[0].text, "a");
  EXPECT_THAT(several->prompts[1].token_ids, ElementsAre(4, 5));
  EXPECT_EQ(several->prompts[2].text, "b");
  EXPECT_EQ(several->params.n, 1);
}

TEST(OpenAiProtocolTest, TypeErrorsNameTheParameter) {
  auto error = [](const std::string& body) {
    auto r = ParseCompletionRequest(body);
    EXPECT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(r.status().message());
  };
  EXPECT_EQ(error(R"({"prompt": "x", "temperature": "hot"})"),
            "temperature: must be a number, got \"hot\"");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "max_tokens": 1.5})")),
            "max_tokens");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "max_tokens": 3000000000})")),
            "max_tokens");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "stream": "yes"})")), "stream");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "stop": 5})")), "stop");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "stop": ["a", 1]})")), "stop[1]");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "logit_bias": {"a": 1}})")),
            "logit_bias");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "logit_bias": {"5": "b"}})")),
            "logit_bias[5]");
  EXPECT_EQ(ParamOf(error(R"({"prompt": 5})")), "prompt");
  EXPECT_EQ(ParamOf(error(R"({"prompt": []})")), "prompt");
  EXPECT_EQ(ParamOf(error(R"({"prompt": ["a", [1, "b"]]})")), "prompt[1][1]");
  EXPECT_EQ(ParamOf(error(R"({})")), "prompt");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "suffix": "y"})")), "suffix");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "best_of": 3})")), "best_of");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "stream_options": {}})")),
            "stream_options");
  EXPECT_EQ(ParamOf(error(R"({"prompt": "x", "seed": "s"})")), "seed");
  EXPECT_THAT(error(R"({"prompt": "x",)"), HasSubstr("not valid JSON"));
  EXPECT_THAT(error("[1]"), HasSubstr("must be a JSON object"));
  EXPECT_THAT(error(""), HasSubstr("empty"));
  EXPECT_THAT(error(std::string(100, '[') + std::string(100, ']')),
              HasSubstr("deeper than"));
  EXPECT_THAT(error("{\"prompt\": \"caf\xc3\x28\"}"), HasSubstr("UTF-8"));
}

TEST(OpenAiProtocolTest, ChatRequests) {
  auto r = ParseChatRequest(R"({
      "messages": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": [{"type": "text", "text": "a"},
                                                {"type": "text", "text": "b"}]},
                   {"role": "assistant", "content": null}],
      "max_completion_tokens": 9, "max_tokens": 3, "logprobs": true,
      "top_logprobs": 2, "tool_choice": "none", "response_format": {"type": "text"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->messages.size(), 3u);
  EXPECT_EQ(r->messages[1].content, "a\nb");
  EXPECT_EQ(r->messages[2].content, "");
  EXPECT_EQ(r->params.max_tokens, 9);
  EXPECT_TRUE(r->params.max_tokens_fills_context);
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->params.logprobs, 2);
  EXPECT_TRUE(r->add_generation_prompt);
  auto param = [](const std::string& body) {
    auto c = ParseChatRequest(body);
    EXPECT_FALSE(c.ok()) << body;
    return ParamOf(c.status().message());
  };
  EXPECT_EQ(param(R"({"messages": "hi"})"), "messages");
  EXPECT_EQ(param(R"({"messages": []})"), "messages");
  EXPECT_EQ(param(R"({"messages": [{"content": "x"}]})"), "messages[0].role");
  EXPECT_EQ(param(R"({"messages": [{"role": "user", "content": 5}]})"),
            "messages[0].content");
  EXPECT_EQ(param(R"({"messages": [{"role": "user", "content":
                     [{"type": "image_url"}]}]})"),
            "messages[0].content[0].type");
  EXPECT_EQ(param(R"({"messages": [{"role": "user", "content": "x"}],
                     "tools": [{"type": "function"}]})"),
            "tools");
  EXPECT_EQ(param(R"({"messages": [{"role": "user", "content": "x"}],
                     "top_logprobs": 2})"),
            "top_logprobs");
  EXPECT_EQ(param(R"({"messages": [{"role": "user", "content": "x"}],
                     "response_format": {"type": "json_object"}})"),
            "response_format");
}

TEST(OpenAiProtocolTest, FieldNamesAndStatuses) {
  EXPECT_EQ(CompletionFieldName("sampling.top_p", 0, false), "top_p");
  EXPECT_EQ(CompletionFieldName("text", 0, false), "prompt");
  EXPECT_EQ(CompletionFieldName("token_ids[3]", 0, false), "prompt[3]");
  EXPECT_EQ(CompletionFieldName("token_ids[3]", 2, true), "prompt[2][3]");
  EXPECT_EQ(CompletionFieldName("max_tokens", 1, true), "max_tokens");
  EXPECT_EQ(ChatFieldName("text"), "messages");
  EXPECT_EQ(ChatFieldName("logprobs"), "top_logprobs");
  EXPECT_EQ(ParamOf("top_p: must be in (0, 1], got 1.5"), "top_p");
  EXPECT_EQ(ParamOf("the body is not valid JSON: x"), "");
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(StatusCodeOf(408), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(StatusCodeOf(413), absl::StatusCode::kResourceExhausted);
  const Json e =
      Json::parse(ErrorBody(429, "the queue is full", "", "rate_limited"));
  EXPECT_EQ(e["error"]["message"], "the queue is full");
  EXPECT_EQ(e["error"]["type"], "rate_limit_error");
  EXPECT_TRUE(e["error"]["param"].is_null());
  EXPECT_EQ(e["error"]["code"], "rate_limited");
}

frontend::LogprobEntry Entry(int32_t token, const std::string& text,
                             float logprob,
                             std::vector<frontend::TokenText> top = {}) {
  frontend::LogprobEntry e;
  e.chosen = {token, text, logprob};
  e.top = std::move(top);
  return e;
}

TEST(OpenAiProtocolTest, LegacyCompletionLogprobsWithEcho) {
  frontend::CompletionChunk c;
  c.text = "Hi there, you";
  c.prompt_token_ids = {1, 2};
  c.prompt_logprobs = {Entry(2, " there", -1.5f)};
  c.logprobs = {Entry(3, ",", -0.5f, {{3, ",", -0.5f}, {4, "!", -1.0f}}),
                Entry(5, " you", -INFINITY, {{3, ",", -0.25f}})};
  c.finished = true;
  c.finish_reason = FinishReason::kStop;
  c.stop_reason = "\n";
  ChoiceState state;
  state.index = 4;
  const Json choice = Json::parse(CompletionChoice(c, true, "Hi", state));
  EXPECT_EQ(choice["index"], 4);
  EXPECT_EQ(choice["text"], "Hi there, you");
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_EQ(choice["stop_reason"], "\n");
  const Json& lp = choice["logprobs"];
  EXPECT_EQ(lp["tokens"], Json({"Hi", " there", ",", " you"}));
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_EQ(lp["token_logprobs"][1], -1.5);
  EXPECT_EQ(lp["token_logprobs"][3], -9999.0);  // JSON has no -inf
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_EQ(lp["top_logprobs"][2], Json({{",", -0.5}, {"!", -1.0}}));
  EXPECT_EQ(lp["top_logprobs"][3].size(), 2u);  // the chosen one is added
  EXPECT_EQ(lp["text_offset"], Json({0, 2, 8, 9}));
  EXPECT_EQ(state.text_offset, 13);
}

TEST(OpenAiProtocolTest, ChatChoicesAndLogprobs) {
  frontend::CompletionChunk c;
  c.text = "é";
  c.logprobs = {Entry(9, "é", -0.1f, {{9, "é", -0.1f}})};
  ChoiceState state;
  const Json first = Json::parse(ChatChoice(c, true, true, state));
  EXPECT_EQ(first["delta"]["role"], "assistant");
  EXPECT_EQ(first["delta"]["content"], "é");
  EXPECT_TRUE(first["finish_reason"].is_null());
  const Json& content = first["logprobs"]["content"][0];
  EXPECT_EQ(content["token"], "é");
  EXPECT_EQ(content["bytes"], Json({0xC3, 0xA9}));
  EXPECT_EQ(content["top_logprobs"][0]["token"], "é");
  c.finished = true;
  c.finish_reason = FinishReason::kLength;
  const Json second = Json::parse(ChatChoice(c, false, true, state));
  EXPECT_FALSE(second["delta"].contains("role"));
  EXPECT_EQ(second["finish_reason"], "length");
  EXPECT_TRUE(second["logprobs"].is_null());
  ChoiceState whole_state;
  const Json whole = Json::parse(ChatChoice(c, false, false, whole_state));
  EXPECT_EQ(whole["message"]["role"], "assistant");

  ResponseMeta meta{"chatcmpl-1", 123, "m"};
  frontend::Usage usage{10, 4, 8};
  const Json response = Json::parse(ResponseJson(
      meta, true, {ChatChoice(c, false, false, whole_state)}, usage));
  EXPECT_EQ(response["object"], "chat.completion");
  EXPECT_EQ(response["usage"]["total_tokens"], 14);
  EXPECT_EQ(response["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
  const Json chunk = Json::parse(StreamChunkJson(meta, false, {}, &usage));
  EXPECT_EQ(chunk["object"], "text_completion");
  EXPECT_EQ(chunk["choices"], Json::array());
  EXPECT_EQ(chunk["usage"]["completion_tokens"], 4);
}

}  // namespace
}  // namespace alibi::http
