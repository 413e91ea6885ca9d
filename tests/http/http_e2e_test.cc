// End-to-end tests of the OpenAI-compatible HTTP API against the real
// alibi-server binary on the fixture models, over loopback: a bad-input
// suite (every case an OpenAI error object with the right status, the server
// healthy after), the same results as the gRPC API, client disconnects
// freeing their blocks, n completions sharing one prompt's KV blocks and
// staying reproducible whatever else runs, authentication, a full queue,
// drain, and the request counters. (tests/http/openai_sdk_test.mjs drives
// the API with the official `openai` SDK.)
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "alibi/v1/inference.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/raw_socket.h"
#include "tests/testing/server_process.h"
#include "tests/testing/tls_certificates.h"

namespace alibi {
namespace {

using ::alibi::testing::FixtureModel;
using ::alibi::testing::HttpCall;
using ::alibi::testing::HttpResult;
using ::alibi::testing::RawConnection;
using ::alibi::testing::ServerProcess;
using ::alibi::testing::SseData;
using ::alibi::testing::SumSeries;
using Json = nlohmann::json;

std::unique_ptr<ServerProcess> StartServer(
    const std::string& model, std::vector<std::string> flags = {}) {
  auto server = ServerProcess::Start(FixtureModel(model), std::move(flags));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

HttpResult Post(const ServerProcess& s, const std::string& path,
                const Json& body,
                std::vector<std::pair<std::string, std::string>> headers = {}) {
  auto r = HttpCall(s.http_port(), "POST", path, body.dump(), headers);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : HttpResult();
}

Json ParseJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << text.substr(0, 300);
  return j;
}

// Every error answer is an OpenAI error object.
void ExpectErrorObject(const HttpResult& r, int status,
                       const std::string& param, const std::string& what) {
  EXPECT_EQ(r.status, status) << what << ": " << r.body;
  EXPECT_EQ(r.Header("Content-Type"), "application/json") << what;
  const Json j = ParseJson(r.body);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << what << ": " << r.body;
  const Json& e = j["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].empty()) << what;
  EXPECT_TRUE(e["type"].is_string()) << what;
  if (param.empty()) {
    EXPECT_TRUE(e["param"].is_null()) << what << ": " << r.body;
  } else {
    EXPECT_EQ(e["param"], param) << what << ": " << r.body;
  }
}

// The text of every choice of an SSE completion stream, by index, and
// whether it ended with [DONE].
struct Streamed {
  std::vector<std::string> texts;
  std::vector<std::string> finish_reasons;
  bool done = false;
  Json usage;
};
Streamed ReadEvents(const std::string& body, bool chat = false) {
  Streamed s;
  for (const std::string& data : SseData(body)) {
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    const Json chunk = ParseJson(data);
    if (chunk.contains("usage")) s.usage = chunk["usage"];
    for (const Json& c : chunk["choices"]) {
      const size_t i = c["index"];
      if (s.texts.size() <= i) {
        s.texts.resize(i + 1);
        s.finish_reasons.resize(i + 1);
      }
      s.texts[i] += chat ? c["delta"]["content"].get<std::string>()
                         : c["text"].get<std::string>();
      if (!c["finish_reason"].is_null())
        s.finish_reasons[i] = c["finish_reason"];
    }
  }
  return s;
}

// Opens a connection and sends POST /v1/completions with `body`, leaving
// the response to be read (or abandoned).
RawConnection SendCompletion(int port, const Json& body, bool close = true) {
  auto conn = RawConnection::Connect(port);
  EXPECT_TRUE(conn.ok()) << conn.status();
  const std::string text = body.dump();
  EXPECT_TRUE(conn->Send(absl::StrCat("POST /v1/completions HTTP/1.1\r\n"
                                      "Host: x\r\n",
                                      close ? "Connection: close\r\n" : "",
                                      "Content-Length: ", text.size(),
                                      "\r\n\r\n", text))
                  .ok());
  return *std::move(conn);
}

// Polls the metrics until the engine holds nothing.
bool EngineIdleWithin(const ServerProcess& s, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    auto text = s.ScrapeMetrics();
    if (text.ok() && SumSeries(*text, {"alibi_num_requests_running{"}) == 0 &&
        SumSeries(*text, {"alibi_num_requests_waiting{"}) == 0 &&
        SumSeries(*text, {"alibi_kv_cache_blocks{", "state=\"used\""}) == 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

double Metric(const ServerProcess& s, const std::vector<std::string>& m) {
  auto text = s.ScrapeMetrics();
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? SumSeries(*text, m) : -1;
}

class HttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    mpt_ = StartServer("tiny-mpt",
                       {"--http_max_body_bytes=65536",
                        "--http_header_timeout=1s", "--http_body_timeout=1s"})
               .release();
    bloom_ = StartServer("tiny-bloom").release();
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
ServerProcess* HttpTest::mpt_ = nullptr;
ServerProcess* HttpTest::bloom_ = nullptr;

// One bad request and the answer it must get.
struct BadCase {
  std::string path;
  std::string body;  // raw: may be invalid JSON
  int status;
  std::string param;  // "" : null
};

TEST_F(HttpTest, BadInputGetsAnOpenAiErrorAndTheServerStaysHealthy) {
  const std::string c = "/v1/completions";
  const std::string chat = "/v1/chat/completions";
  const std::vector<BadCase> cases = {
      // Malformed bodies.
      {c, "{\"prompt\": \"x\",", 400, ""},
      {c, "[1, 2]", 400, ""},
      {c, "", 400, ""},
      {c, "{\"prompt\": \"caf\xc3\x28\"}", 400, ""},  // invalid UTF-8
      {c, "{\"prompt\": \"\xff\xfe\"}", 400, ""},
      {c, std::string(64, '[') + std::string(64, ']'), 400, ""},
      {c, std::string("{\"prompt\": \"a\0b\"}", 17), 400, ""},
      // Wrong types.
      {c, R"({"prompt": 5})", 400, "prompt"},
      {c, R"({"prompt": "x", "temperature": "hot"})", 400, "temperature"},
      {c, R"({"prompt": "x", "max_tokens": "5"})", 400, "max_tokens"},
      {c, R"({"prompt": "x", "n": 2.5})", 400, "n"},
      {c, R"({"prompt": "x", "stream": "yes"})", 400, "stream"},
      {c, R"({"prompt": "x", "stop": 5})", 400, "stop"},
      {c, R"({"prompt": "x", "logit_bias": {"x": 1}})", 400, "logit_bias"},
      {c, R"({"prompt": "x", "logit_bias": {"5": "big"}})", 400,
       "logit_bias[5]"},
      {c, R"({"prompt": ["a", [1, "b"]]})", 400, "prompt[1][1]"},
      {c, R"({"prompt": "x", "seed": 1.5})", 400, "seed"},
      {c, R"({"prompt": "x", "model": 7})", 400, "model"},
      {chat, R"({"messages": "hi"})", 400, "messages"},
      {chat, R"({"messages": [{"role": "user", "content": 5}]})", 400,
       "messages[0].content"},
      {chat, R"({"messages": [{"role": "user"}], "logprobs": "yes"})", 400,
       "logprobs"},
      // Unknown model.
      {c, R"({"model": "gpt-4", "prompt": "x"})", 404, "model"},
      {chat,
       R"({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})",
       404, "model"},
      // Out-of-range values.
      {c, R"({"prompt": "x", "temperature": -1})", 400, "temperature"},
      {c, R"({"prompt": "x", "top_p": 1.5})", 400, "top_p"},
      {c, R"({"prompt": "x", "top_k": -2})", 400, "top_k"},
      {c, R"({"prompt": "x", "min_p": 2})", 400, "min_p"},
      {c, R"({"prompt": "x", "max_tokens": 0})", 400, "max_tokens"},
      {c, R"({"prompt": "x", "max_tokens": 1000000})", 400, "max_tokens"},
      {c, R"({"prompt": "x", "max_tokens": 1099511627776})", 400, "max_tokens"},
      {c, R"({"prompt": "x", "n": 0})", 400, "n"},
      {c, R"({"prompt": "x", "n": 1000})", 400, "n"},
      {c, R"({"prompt": "x", "logprobs": 21})", 400, "logprobs"},
      {c, R"({"prompt": "x", "presence_penalty": 3})", 400, "presence_penalty"},
      {c, R"({"prompt": "x", "frequency_penalty": -2.5})", 400,
       "frequency_penalty"},
      {c, R"({"prompt": "x", "repetition_penalty": 0})", 400,
       "repetition_penalty"},
      {c, R"({"prompt": "x", "logit_bias": {"5": 150}})", 400, "logit_bias[5]"},
      {c, R"({"prompt": "x", "logit_bias": {"99999": 1}})", 400,
       "logit_bias[99999]"},
      {c, R"({"prompt": [5, 99999]})", 400, "prompt[1]"},
      {c, R"({"prompt": ["ok", [5, -1]]})", 400, "prompt[1][1]"},
      {c, R"({"prompt": ""})", 400, "prompt"},
      {c, R"({"prompt": "x", "stop": [""]})", 400, "stop[0]"},
      {c, R"({"prompt": "x", "stop_token_ids": [-3]})", 400,
       "stop_token_ids[0]"},
      {c, R"({"prompt": "x", "allowed_token_ids": []})", 400,
       "allowed_token_ids"},
      {c, R"({"prompt": "x", "bad_words": [" "]})", 400, "bad_words[0]"},
      {c, R"({"prompt": "x", "min_tokens": 50, "max_tokens": 5})", 400,
       "min_tokens"},
      {chat,
       R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 30, "logprobs": true})",
       400, "top_logprobs"},
      {chat, R"({"messages": []})", 400, "messages"},
      // Unsupported features.
      {c, R"({"prompt": "x", "suffix": "y"})", 400, "suffix"},
      {c, R"({"prompt": "x", "best_of": 3})", 400, "best_of"},
      {c, R"({"prompt": "x", "stream_options": {"include_usage": true}})", 400,
       "stream_options"},
      {chat,
       R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})",
       400, "tools"},
      // Other endpoints.
      {"/tokenize", R"({"prompt": 5})", 400, "prompt"},
      {"/detokenize", R"({"tokens": [1, 99999]})", 400, "tokens[1]"},
      {"/detokenize", R"({"tokens": "1"})", 400, "tokens"},
  };
  const double before =
      Metric(*mpt_, {"alibi_requests_total{", "rpc=\"/v1/completions\"",
                     "code=\"INVALID_ARGUMENT\""});
  int completion_400s = 0;
  for (const BadCase& b : cases) {
    auto r = HttpCall(mpt_->http_port(), "POST", b.path, b.body);
    ASSERT_TRUE(r.ok()) << b.body << ": " << r.status();
    ExpectErrorObject(*r, b.status, b.param, b.body);
    completion_400s += b.path == c && b.status == 400;
  }
  EXPECT_EQ(Metric(*mpt_, {"alibi_requests_total{", "rpc=\"/v1/completions\"",
                           "code=\"INVALID_ARGUMENT\""}) -
                before,
            completion_400s);

  // Routes and methods.
  auto unknown = HttpCall(mpt_->http_port(), "GET", "/v2/anything");
  ASSERT_TRUE(unknown.ok());
  ExpectErrorObject(*unknown, 404, "", "unknown route");
  auto method = HttpCall(mpt_->http_port(), "GET", "/v1/completions");
  ASSERT_TRUE(method.ok());
  ExpectErrorObject(*method, 405, "", "GET /v1/completions");
  EXPECT_EQ(method->Header("Allow"), "POST");

  // A huge body: 413 as soon as its length is known.
  const std::string huge =
      absl::StrCat(R"({"prompt": ")", std::string(70000, 'a'), "\"}");
  auto too_large = HttpCall(mpt_->http_port(), "POST", c, huge);
  ASSERT_TRUE(too_large.ok());
  ExpectErrorObject(*too_large, 413, "", "huge body");
  // Huge header section: 431.
  auto big_header = HttpCall(mpt_->http_port(), "POST", c, "{}",
                             {{"X-Filler", std::string(20000, 'h')}});
  ASSERT_TRUE(big_header.ok());
  ExpectErrorObject(*big_header, 431, "", "huge header");

  // A body that stops halfway: 408 after the body timeout (1 s here).
  {
    auto conn = RawConnection::Connect(mpt_->http_port());
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE(conn->Send("POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                           "Content-Length: 100\r\n\r\n{\"prompt\": ")
                    .ok());
    const std::string response = conn->ReadUntilClose(absl::Seconds(5));
    ExpectErrorObject(testing::ParseHttpResponse(response), 408, "",
                      "half-sent body");
  }
  // A header section trickled byte by byte: 408 within the header timeout.
  {
    auto conn = RawConnection::Connect(mpt_->http_port());
    ASSERT_TRUE(conn.ok());
    const std::string head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\n";
    const auto start = std::chrono::steady_clock::now();
    for (char ch : head) {
      if (!conn->Send(std::string(1, ch)).ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (std::chrono::steady_clock::now() - start > std::chrono::seconds(2)) {
        break;
      }
    }
    const std::string response = conn->ReadUntilClose(absl::Seconds(3));
    ExpectErrorObject(testing::ParseHttpResponse(response), 408, "",
                      "slow headers");
  }
  // A client that sends half a body and hangs up: nothing to answer, and
  // nothing breaks.
  {
    auto conn = RawConnection::Connect(mpt_->http_port());
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE(conn->Send("POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                           "Content-Length: 50\r\n\r\n{\"pro")
                    .ok());
    conn->ShutdownWrite();
    EXPECT_TRUE(conn->ClosedByPeer(absl::Seconds(3)));
  }
  // Refusals of the HTTP core are counted too.
  EXPECT_GE(Metric(*mpt_, {"alibi_requests_total{", "rpc=\"unparsed\"",
                           "code=\"RESOURCE_EXHAUSTED\""}),
            2);
  EXPECT_GE(Metric(*mpt_, {"alibi_requests_total{", "rpc=\"unparsed\"",
                           "code=\"DEADLINE_EXCEEDED\""}),
            2);

  // Still healthy, and a normal request works.
  auto health = HttpCall(mpt_->http_port(), "GET", "/health");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
  const HttpResult ok =
      Post(*mpt_, c, {{"prompt", "Still alive?"}, {"max_tokens", 3}});
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ParseJson(ok.body)["usage"]["completion_tokens"], 3);
  EXPECT_TRUE(EngineIdleWithin(*mpt_, std::chrono::seconds(5)));
}

TEST_F(HttpTest, ChatWithoutATemplateAnswers400NamingIt) {
  const HttpResult r =
      Post(*bloom_, "/v1/chat/completions",
           {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}});
  ExpectErrorObject(r, 400, "", "chat on tiny-bloom");
  const Json e = ParseJson(r.body)["error"];
  EXPECT_NE(e["message"].get<std::string>().find("no chat template"),
            std::string::npos)
      << e;
  EXPECT_EQ(e["code"], "chat_template_missing");
  // With a template it works, streamed or not, and the two agree.
  Json chat = {{"messages", {{{"role", "user"}, {"content", "Hello there"}}}},
               {"max_tokens", 12},
               {"temperature", 0.7},
               {"seed", 3}};
  const HttpResult whole = Post(*mpt_, "/v1/chat/completions", chat);
  ASSERT_EQ(whole.status, 200) << whole.body;
  const Json w = ParseJson(whole.body);
  EXPECT_EQ(w["object"], "chat.completion");
  EXPECT_EQ(w["choices"][0]["message"]["role"], "assistant");
  chat["stream"] = true;
  const HttpResult streamed = Post(*mpt_, "/v1/chat/completions", chat);
  ASSERT_EQ(streamed.status, 200);
  EXPECT_EQ(streamed.Header("Content-Type"), "text/event-stream");
  const Streamed s = ReadEvents(streamed.body, /*chat=*/true);
  ASSERT_EQ(s.texts.size(), 1u);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.texts[0], w["choices"][0]["message"]["content"]);
  EXPECT_EQ(s.finish_reasons[0], w["choices"][0]["finish_reason"]);
}

TEST_F(HttpTest, SameResultsAsTheGrpcApi) {
  auto stub = v1::InferenceService::NewStub(mpt_->Channel());
  v1::CompleteRequest request;
  v1::CompletionParams& p = *request.mutable_params();
  p.set_text("The quick brown fox");
  p.set_max_tokens(20);
  p.set_n(2);
  p.set_logprobs(2);
  p.mutable_sampling()->set_temperature(0.9f);
  p.mutable_sampling()->set_seed(77);
  p.mutable_sampling()->set_ignore_eos(true);
  (*p.mutable_sampling()->mutable_logit_bias())[1000] = 3.0f;
  grpc::ClientContext context;
  v1::CompleteResponse grpc_response;
  ASSERT_TRUE(stub->Complete(&context, request, &grpc_response).ok());
  const HttpResult r = Post(*mpt_, "/v1/completions",
                            {{"prompt", "The quick brown fox"},
                             {"max_tokens", 20},
                             {"n", 2},
                             {"logprobs", 2},
                             {"temperature", 0.9},
                             {"seed", 77},
                             {"ignore_eos", true},
                             {"logit_bias", {{"1000", 3.0}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  const Json j = ParseJson(r.body);
  ASSERT_EQ(j["choices"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(j["choices"][i]["text"], grpc_response.completions(i).text());
    const Json& lp = j["choices"][i]["logprobs"]["token_logprobs"];
    ASSERT_EQ(lp.size(), 20u);
    for (int t = 0; t < 20; ++t) {
      EXPECT_FLOAT_EQ(lp[t].get<float>(),
                      grpc_response.completions(i).logprobs(t).logprob());
    }
  }
  EXPECT_EQ(j["usage"]["completion_tokens"], 40);
  EXPECT_EQ(j["usage"]["prompt_tokens"], grpc_response.usage().prompt_tokens());
}

TEST_F(HttpTest, ClientDisconnectCancelsTheRequest) {
  for (bool stream : {true, false}) {
    SCOPED_TRACE(stream ? "stream" : "unary");
    const double cancelled_before =
        Metric(*mpt_, {"alibi_requests_total{", "rpc=\"/v1/completions\"",
                       "code=\"CANCELLED\""});
    RawConnection conn = SendCompletion(mpt_->http_port(),
                                        Json({{"prompt", "A very long story"},
                                              {"max_tokens", 6000},
                                              {"ignore_eos", true},
                                              {"stream", stream}}),
                                        /*close=*/false);
    if (stream) {
      ASSERT_NE(conn.ReadUntil("data: ", absl::Seconds(10)).find("data: "),
                std::string::npos);
    } else {
      // Running: KV blocks in use.
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (Metric(*mpt_, {"alibi_kv_cache_blocks{", "state=\"used\""}) == 0 &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    { RawConnection gone = std::move(conn); }  // the client goes away
    EXPECT_TRUE(EngineIdleWithin(*mpt_, std::chrono::seconds(2)));
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (Metric(*mpt_, {"alibi_requests_total{", "rpc=\"/v1/completions\"",
                          "code=\"CANCELLED\""}) == cancelled_before &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(Metric(*mpt_, {"alibi_requests_total{", "rpc=\"/v1/completions\"",
                             "code=\"CANCELLED\""}),
              cancelled_before + 1);
  }
}

TEST_F(HttpTest, ASlowReaderGetsEverything) {
  Json body = {{"prompt", "Once upon a time"},
               {"max_tokens", 600},
               {"ignore_eos", true},
               {"temperature", 0.8},
               {"seed", 5}};
  const HttpResult whole = Post(*mpt_, "/v1/completions", body);
  ASSERT_EQ(whole.status, 200);
  body["stream"] = true;
  RawConnection conn = SendCompletion(mpt_->http_port(), body);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // not reading
  const std::string response = conn.ReadUntilClose(absl::Seconds(60));
  const Streamed s = ReadEvents(testing::ParseHttpResponse(response).body);
  ASSERT_EQ(s.texts.size(), 1u);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.texts[0], ParseJson(whole.body)["choices"][0]["text"]);
}

// Acceptance 3: n = 8 on a 512-token prompt computes and stores the
// prompt's blocks once. The pool (96 blocks) holds the shared 31 full
// prompt blocks plus 8 completions' own 8 blocks each, but not 8 copies of
// the prompt (8 x 33): separate requests would preempt each other.
TEST(HttpGroupTest, NEightAllocatesThePromptBlocksOnce) {
  auto server = StartServer(
      "tiny-mpt",
      {"--kv_blocks=96", "--enable_prefix_caching=false", "--max_num_seqs=8"});
  ASSERT_NE(server, nullptr);
  std::vector<int> prompt;
  for (int i = 0; i < 512; ++i) prompt.push_back(100 + (i * 37) % 20000);
  const double batch_tokens_before =
      Metric(*server, {"alibi_batch_tokens_sum{"});
  RawConnection conn =
      SendCompletion(server->http_port(), Json({{"prompt", prompt},
                                                {"n", 8},
                                                {"max_tokens", 112},
                                                {"ignore_eos", true},
                                                {"temperature", 1.0},
                                                {"seed", 9},
                                                {"stream", true}}));
  // While all eight run, the blocks in use are the shared prompt's and the
  // completions' own.
  double peak_used = 0;
  std::string response;
  std::thread reader(
      [&] { response = conn.ReadUntilClose(absl::Seconds(120)); });
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto text = server->ScrapeMetrics();
    if (!text.ok()) break;
    peak_used = std::max(peak_used, SumSeries(*text, {"alibi_kv_cache_blocks{",
                                                      "state=\"used\""}));
    if (SumSeries(*text, {"alibi_requests_total{", "rpc=\"/v1/completions\"",
                          "code=\"OK\""}) >= 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  reader.join();
  const Streamed s = ReadEvents(testing::ParseHttpResponse(response).body);
  ASSERT_EQ(s.texts.size(), 8u);
  EXPECT_TRUE(s.done);
  for (const std::string& f : s.finish_reasons) EXPECT_EQ(f, "length");
  EXPECT_GT(peak_used, 32);  // the eight ran at once, past the prompt
  EXPECT_LE(peak_used, 31 + 8 * 8);
  EXPECT_EQ(Metric(*server, {"alibi_preemptions_total{"}), 0);
  // Computed once: the prompt (512) and its 111 decode steps, and per other
  // completion the prompt's last partial block (16) and 111 decode steps.
  EXPECT_EQ(Metric(*server, {"alibi_batch_tokens_sum{"}) - batch_tokens_before,
            512 + 111 + 7 * (16 + 111));
  EXPECT_TRUE(EngineIdleWithin(*server, std::chrono::seconds(5)));
}

// n completions with a seed are the same whatever else is in the batch.
TEST(HttpGroupTest, SeededNIsReproducibleUnderLoad) {
  auto server = StartServer("tiny-bloom");
  ASSERT_NE(server, nullptr);
  const Json request = {{"prompt", "And God said, Let there be light"},
                        {"n", 3},
                        {"max_tokens", 24},
                        {"temperature", 1.0},
                        {"top_p", 0.95},
                        {"seed", 2024},
                        {"ignore_eos", true}};
  const HttpResult alone = Post(*server, "/v1/completions", request);
  ASSERT_EQ(alone.status, 200) << alone.body;
  std::atomic<bool> stop{false};
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        HttpCall(server->http_port(), "POST", "/v1/completions",
                 Json({{"prompt", absl::StrCat("Noise ", t, " ", i)},
                       {"max_tokens", 8 + 5 * t},
                       {"temperature", 1.0},
                       {"ignore_eos", true}})
                     .dump())
            .IgnoreError();
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int round = 0; round < 3; ++round) {
    const HttpResult busy = Post(*server, "/v1/completions", request);
    ASSERT_EQ(busy.status, 200) << busy.body;
    const Json a = ParseJson(alone.body)["choices"];
    const Json b = ParseJson(busy.body)["choices"];
    ASSERT_EQ(b.size(), 3u);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(a[i]["text"], b[i]["text"]) << i;
    EXPECT_NE(a[0]["text"], a[1]["text"]);
  }
  stop.store(true);
  for (std::thread& t : load) t.join();
}

TEST(HttpAuthTest, BearerTokenGuardsTheApiButNotHealth) {
  const std::string key_file =
      ::testing::TempDir() + "/http-api-key-" + std::to_string(getpid());
  std::ofstream(key_file) << "s3cret\n";
  auto server = StartServer("tiny-bloom", {"--api_key_file=" + key_file});
  ASSERT_NE(server, nullptr);
  const Json body = {{"prompt", "Hi"}, {"max_tokens", 2}};
  const HttpResult none = Post(*server, "/v1/completions", body);
  ExpectErrorObject(none, 401, "", "no token");
  EXPECT_EQ(none.Header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(ParseJson(none.body)["error"]["code"], "invalid_api_key");
  ExpectErrorObject(Post(*server, "/v1/completions", body,
                         {{"Authorization", "Bearer wrong"}}),
                    401, "", "wrong token");
  // Two credentials are refused, whichever comes first.
  ExpectErrorObject(Post(*server, "/v1/completions", body,
                         {{"Authorization", "Bearer s3cret"},
                          {"Authorization", "Bearer wrong"}}),
                    401, "", "two tokens");
  EXPECT_EQ(Post(*server, "/v1/completions", body,
                 {{"Authorization", "Bearer s3cret"}})
                .status,
            200);
  EXPECT_EQ(Post(*server, "/v1/completions", body,
                 {{"Authorization", "bearer s3cret"}})
                .status,
            200);  // RFC 6750: the scheme is case-insensitive
  auto models = HttpCall(server->http_port(), "GET", "/v1/models");
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(models->status, 401);
  auto health = HttpCall(server->http_port(), "GET", "/health");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
  auto metrics = HttpCall(server->http_port(), "GET", "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("alibi_requests_total"), std::string::npos);
  std::remove(key_file.c_str());
}

TEST(HttpTlsTest, TheApiSpeaksTlsAndMutualTlsWithTheServerFlags) {
  if (!testing::HaveOpenssl()) GTEST_SKIP() << "no openssl command";
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/http_api_tls_", getpid());
  ASSERT_TRUE(testing::WriteTestCertificates(dir).ok());
  const std::string request =
      "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  {
    testing::ServerOptions options;
    options.model_dir = FixtureModel("tiny-bloom");
    options.flags = {"--tls_cert=" + dir + "/server.pem",
                     "--tls_key=" + dir + "/server.key"};
    options.credentials = grpc::SslCredentials(grpc::SslCredentialsOptions{
        testing::ReadFileToString(dir + "/ca.pem"), "", ""});
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    const HttpResult r = testing::ParseHttpResponse(
        testing::HttpsExchange((*server)->http_port(), request, dir, false));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(ParseJson(r.body)["data"][0]["id"], "tiny-bloom");
    // Plaintext on the TLS port gets no HTTP answer.
    auto plain = HttpCall((*server)->http_port(), "GET", "/v1/models");
    EXPECT_FALSE(plain.ok() && plain->status != 0);
  }
  {
    testing::ServerOptions options;
    options.model_dir = FixtureModel("tiny-bloom");
    options.flags = {"--tls_cert=" + dir + "/server.pem",
                     "--tls_key=" + dir + "/server.key",
                     "--tls_client_ca=" + dir + "/ca.pem"};
    options.credentials = grpc::SslCredentials(grpc::SslCredentialsOptions{
        testing::ReadFileToString(dir + "/ca.pem"),
        testing::ReadFileToString(dir + "/client.key"),
        testing::ReadFileToString(dir + "/client.pem")});
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    const int port = (*server)->http_port();
    EXPECT_EQ(
        testing::HttpStatusOf(testing::HttpsExchange(port, request, dir, true)),
        200);
    EXPECT_EQ(testing::HttpStatusOf(
                  testing::HttpsExchange(port, request, dir, false)),
              0);
  }
  std::filesystem::remove_all(dir);
}

TEST(HttpOverloadTest, AFullQueueAnswers429) {
  auto server = StartServer("tiny-bloom",
                            {"--max_num_seqs=1", "--max_queued_requests=1"});
  ASSERT_NE(server, nullptr);
  const Json long_stream = {{"prompt", "Long"},
                            {"max_tokens", 8000},
                            {"ignore_eos", true},
                            {"stream", true}};
  RawConnection running =
      SendCompletion(server->http_port(), long_stream, /*close=*/false);
  ASSERT_NE(running.ReadUntil("data: ", absl::Seconds(10)).find("data: "),
            std::string::npos);
  RawConnection waiting =
      SendCompletion(server->http_port(), long_stream, /*close=*/false);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Metric(*server, {"alibi_num_requests_waiting{"}) < 1 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const HttpResult refused = Post(*server, "/v1/completions",
                                  {{"prompt", "One more"}, {"max_tokens", 2}});
  ExpectErrorObject(refused, 429, "", "queue full");
  EXPECT_EQ(ParseJson(refused.body)["error"]["type"], "rate_limit_error");
  EXPECT_EQ(refused.Header("Retry-After"), "1");
  EXPECT_EQ(Metric(*server, {"alibi_requests_total{", "rpc=\"/v1/completions\"",
                             "code=\"RESOURCE_EXHAUSTED\""}),
            1);
  // More completions than the queue holds: refused by the engine when the
  // request is submitted, an error naming the field like the frontend's.
  const HttpResult too_many =
      Post(*server, "/v1/completions",
           {{"prompt", "Two"}, {"max_tokens", 2}, {"n", 2}});
  ExpectErrorObject(too_many, 400, "n", "n above the queue bound");
}

TEST(HttpDrainTest, SigtermDrainsTheHttpStreamsAndRefusesNewOnes) {
  auto server = StartServer("tiny-bloom", {"--drain_seconds=20"});
  ASSERT_NE(server, nullptr);
  RawConnection conn =
      SendCompletion(server->http_port(), Json({{"prompt", "Drain me"},
                                                {"max_tokens", 400},
                                                {"ignore_eos", true},
                                                {"stream", true}}));
  ASSERT_NE(conn.ReadUntil("data: ", absl::Seconds(10)).find("data: "),
            std::string::npos);
  kill(server->pid(), SIGTERM);
  // New requests and /health: 503 while the stream finishes.
  int health_status = 0;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (health_status != 503 && std::chrono::steady_clock::now() < deadline) {
    auto health = HttpCall(server->http_port(), "GET", "/health");
    health_status = health.ok() ? health->status : 0;
  }
  EXPECT_EQ(health_status, 503);
  const HttpResult refused = Post(*server, "/v1/completions",
                                  {{"prompt", "Too late"}, {"max_tokens", 2}});
  if (refused.status != 0) ExpectErrorObject(refused, 503, "", "draining");
  const std::string response = conn.ReadUntilClose(absl::Seconds(20));
  const Streamed s = ReadEvents(testing::ParseHttpResponse(response).body);
  ASSERT_EQ(s.texts.size(), 1u);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.finish_reasons[0], "length");
  // The one SIGTERM ends the process once the stream is done (a second one
  // would end the drain at once, with exit code 1).
  auto code = server->WaitExit(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

}  // namespace
}  // namespace alibi
