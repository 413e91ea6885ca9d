// Runs a known mix of requests against the real server, then scrapes
// /metrics: every family is exported, and counters and histogram counts equal
// what the test did, exactly.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "alibi/v1/inference.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "tests/testing/server_process.h"

namespace alibi {
namespace {

using ::alibi::testing::SumSeries;

TEST(MetricsE2eTest, CountersAndHistogramsMatchTheRequestsMade) {
  auto server = testing::ServerProcess::Start(
      testing::FixtureModel("tiny-mpt"), {"--served_model_name=metrics-test"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::InferenceService::NewStub((*server)->Channel());
  auto deadline = [](grpc::ClientContext& c) {
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  };
  int64_t prompt_tokens = 0, generated = 0;
  int generating = 0, engine_requests = 0;
  // 3 unary completions of different lengths.
  for (int n : {5, 9, 1}) {
    grpc::ClientContext c;
    deadline(c);
    v1::CompleteRequest r;
    r.mutable_params()->set_text("Counting tokens " + std::to_string(n));
    r.mutable_params()->set_max_tokens(n);
    r.mutable_params()->mutable_sampling()->set_ignore_eos(true);
    v1::CompleteResponse response;
    ASSERT_TRUE(stub->Complete(&c, r, &response).ok());
    prompt_tokens += response.usage().prompt_tokens();
    generated += response.usage().completion_tokens();
    ++generating;
    ++engine_requests;
  }
  // 2 streams.
  for (int n : {7, 3}) {
    grpc::ClientContext c;
    deadline(c);
    v1::CompleteStreamRequest r;
    r.mutable_params()->add_token_ids(11);
    r.mutable_params()->add_token_ids(12);
    r.mutable_params()->set_max_tokens(n);
    r.mutable_params()->mutable_sampling()->set_ignore_eos(true);
    auto reader = stub->CompleteStream(&c, r);
    v1::CompleteStreamResponse m, last;
    while (reader->Read(&m)) last = m;
    ASSERT_TRUE(reader->Finish().ok());
    prompt_tokens += last.usage().prompt_tokens();
    generated += last.usage().completion_tokens();
    ++generating;
    ++engine_requests;
  }
  // 2 scores, 1 tokenize, 1 model info, 2 invalid requests.
  for (const char* text : {"Score me please", "And me too, if you would"}) {
    grpc::ClientContext c;
    deadline(c);
    v1::ScoreRequest r;
    r.set_text(text);
    v1::ScoreResponse response;
    ASSERT_TRUE(stub->Score(&c, r, &response).ok());
    prompt_tokens += response.token_ids_size();
    ++engine_requests;
  }
  {
    grpc::ClientContext c;
    deadline(c);
    v1::TokenizeRequest r;
    r.set_text("tokenize");
    v1::TokenizeResponse response;
    ASSERT_TRUE(stub->Tokenize(&c, r, &response).ok());
  }
  {
    grpc::ClientContext c;
    deadline(c);
    v1::GetModelInfoResponse response;
    ASSERT_TRUE(stub->GetModelInfo(&c, {}, &response).ok());
  }
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext c;
    deadline(c);
    v1::CompleteRequest r;  // empty prompt
    v1::CompleteResponse response;
    ASSERT_EQ(stub->Complete(&c, r, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }

  // The RPC counters are recorded when gRPC reports a call done, which can
  // trail the client's view by a moment.
  std::string text;
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto scraped = (*server)->ScrapeMetrics();
    ASSERT_TRUE(scraped.ok()) << scraped.status();
    text = *scraped;
    if (SumSeries(text, {"alibi_requests_total{"}) == 11) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (const metrics::FamilyInfo& family : metrics::Metrics::Families()) {
    EXPECT_NE(text.find("# TYPE " + family.name + " "), std::string::npos)
        << family.name;
  }
  auto requests = [&](const char* rpc, const char* code) {
    return SumSeries(
        text, {"alibi_requests_total{", std::string("rpc=\"") + rpc + "\"",
               std::string("code=\"") + code + "\""});
  };
  EXPECT_EQ(requests("Complete", "OK"), 3);
  EXPECT_EQ(requests("Complete", "INVALID_ARGUMENT"), 2);
  EXPECT_EQ(requests("CompleteStream", "OK"), 2);
  EXPECT_EQ(requests("Score", "OK"), 2);
  EXPECT_EQ(requests("Tokenize", "OK"), 1);
  EXPECT_EQ(requests("GetModelInfo", "OK"), 1);
  EXPECT_EQ(SumSeries(text, {"alibi_prompt_tokens_total{"}), prompt_tokens);
  EXPECT_EQ(SumSeries(text, {"alibi_generation_tokens_total{"}), generated);
  EXPECT_EQ(SumSeries(text, {"alibi_e2e_request_latency_seconds_count{"}),
            engine_requests);
  EXPECT_EQ(SumSeries(text, {"alibi_request_queue_time_seconds_count{"}),
            engine_requests);
  EXPECT_EQ(SumSeries(text, {"alibi_time_to_first_token_seconds_count{"}),
            generating);
  EXPECT_EQ(SumSeries(text, {"alibi_inter_token_latency_seconds_count{"}),
            generated - generating);
  EXPECT_EQ(SumSeries(text, {"alibi_request_finished_total{",
                             "finish_reason=\"length\""}),
            engine_requests);
  EXPECT_GT(SumSeries(text, {"alibi_step_duration_seconds_count{"}), 0);
  EXPECT_EQ(
      SumSeries(text, {"alibi_batch_tokens_sum{"}),
      SumSeries(text, {"alibi_prompt_tokens_total{"}) + generated - generating);
  EXPECT_EQ(SumSeries(text, {"alibi_num_requests_running{"}), 0);
  EXPECT_EQ(SumSeries(text, {"alibi_kv_cache_usage_ratio{"}), 0);
  EXPECT_EQ(SumSeries(text, {"alibi_kv_cache_blocks{", "state=\"used\""}), 0);
  EXPECT_EQ(SumSeries(text, {"alibi_kv_cache_blocks{"}), 512);
  EXPECT_GT(SumSeries(text, {"alibi_device_memory_total_bytes{"}), 0);
  EXPECT_GT(SumSeries(text, {"alibi_device_memory_used_bytes{"}), 0);
  EXPECT_EQ(SumSeries(text, {"alibi_model_info{", "model=\"metrics-test\"",
                             "architecture=\"mpt\"", "device=\"cpu\""}),
            1);
}

}  // namespace
}  // namespace alibi
