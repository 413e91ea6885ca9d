// Sliding-window KV over the real server: a windowed Score of an input longer
// than the whole KV pool, the same through ScoreStream (bit for bit, in
// chunks, with totals), GetModelInfo and metrics expose the feature, and bad
// windows are INVALID_ARGUMENT naming the field.
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "alibi/v1/inference.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/server_process.h"

namespace alibi {
namespace {

using ::testing::HasSubstr;

void Deadline(grpc::ClientContext& c) {
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
}

class WindowE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // 32 blocks of 16: the pool holds 512 tokens.
    auto server = testing::ServerProcess::Start(
        testing::FixtureModel("tiny-mpt"),
        {"--kv_blocks=32", "--max_num_batched_tokens=64", "--kv_window=0"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::InferenceService::NewStub(server_->Channel());
  }

  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
};

TEST_F(WindowE2eTest, ScoreAndScoreStreamAgreePastThePool) {
  std::mt19937 rng(3);
  v1::ScoreRequest request;
  for (int i = 0; i < 1500; ++i) request.add_token_ids(3 + rng() % 20000);
  request.set_top_logprobs(2);
  {
    grpc::ClientContext c;
    Deadline(c);
    v1::ScoreResponse r;
    const grpc::Status s = stub_->Score(&c, request, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("kv_window"));
  }
  request.set_kv_window(64);
  v1::ScoreResponse whole;
  {
    grpc::ClientContext c;
    Deadline(c);
    const grpc::Status s = stub_->Score(&c, request, &whole);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  ASSERT_EQ(whole.token_logprobs_size(), 1499);
  ASSERT_EQ(whole.top_logprobs_size(), 1499);

  grpc::ClientContext c;
  Deadline(c);
  v1::ScoreStreamRequest stream_request;
  *stream_request.mutable_score() = request;
  auto reader = stub_->ScoreStream(&c, stream_request);
  v1::ScoreStreamResponse m;
  std::vector<float> logprobs;
  int messages = 0;
  bool done = false;
  while (reader->Read(&m)) {
    ++messages;
    EXPECT_EQ(m.offset(), static_cast<int64_t>(logprobs.size()));
        if (m.offset() == 0) {
      EXPECT_EQ(m.first_token_id(), request.token_ids(0));
    }
    for (int k = 0; k < m.token_logprobs_size(); ++k) {
      logprobs.push_back(m.token_logprobs(k));
      EXPECT_EQ(m.token_ids(k), request.token_ids(m.offset() + k + 1));
      ASSERT_EQ(m.top_logprobs(k).top_logprobs_size(), 2);
    }
    if (m.done()) {
      done = true;
      EXPECT_EQ(m.num_tokens(), 1500);
      EXPECT_DOUBLE_EQ(m.sum_logprob(), whole.sum_logprob());
      EXPECT_DOUBLE_EQ(m.perplexity(), whole.perplexity());
      EXPECT_EQ(m.usage().prompt_tokens(), 1500);
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(done);
  EXPECT_GT(messages, 2) << "the results did not come in chunks";
  EXPECT_EQ(logprobs, std::vector<float>(whole.token_logprobs().begin(),
                                         whole.token_logprobs().end()));

  auto metrics = server_->ScrapeMetrics();
  ASSERT_TRUE(metrics.ok());
  EXPECT_GT(testing::SumSeries(
                *metrics, {"alibi_kv_cache_window_released_blocks_total{"}),
            40);
}

TEST_F(WindowE2eTest, WindowedCompletionOutlivesThePoolAndInfoSaysSo) {
  grpc::ClientContext info_context;
  Deadline(info_context);
  v1::GetModelInfoResponse info;
  ASSERT_TRUE(stub_->GetModelInfo(&info_context, {}, &info).ok());
  EXPECT_TRUE(info.supports_kv_window());
  EXPECT_EQ(info.default_kv_window(), 0);
  EXPECT_EQ(info.max_context_length(), 512);

  grpc::ClientContext c;
  Deadline(c);
  v1::CompleteRequest r;
  r.mutable_params()->add_token_ids(11);
  r.mutable_params()->set_max_tokens(900);  // past the 512-token pool
  r.mutable_params()->set_kv_window(48);
  r.mutable_params()->mutable_sampling()->set_ignore_eos(true);
  v1::CompleteResponse response;
  const grpc::Status s = stub_->Complete(&c, r, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.token_ids_size(), 900);
  EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_LENGTH);
}

TEST_F(WindowE2eTest, BadWindowsNameTheField) {
  for (int window : {-1, -100000, 513, 1 << 30}) {
    {
      grpc::ClientContext c;
      Deadline(c);
      v1::CompleteRequest r;
      r.mutable_params()->set_text("hello");
      r.mutable_params()->set_kv_window(window);
      v1::CompleteResponse response;
      const grpc::Status s = stub_->Complete(&c, r, &response);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << window;
      EXPECT_THAT(s.error_message(), HasSubstr("params.kv_window: must be in"));
    }
    {
      grpc::ClientContext c;
      Deadline(c);
      v1::ScoreStreamRequest r;
      r.mutable_score()->set_text("hello there");
      r.mutable_score()->set_kv_window(window);
      auto reader = stub_->ScoreStream(&c, r);
      v1::ScoreStreamResponse m;
      EXPECT_FALSE(reader->Read(&m));
      const grpc::Status s = reader->Finish();
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << window;
      EXPECT_THAT(s.error_message(), HasSubstr("score.kv_window: must be in"));
    }
  }
}

}  // namespace
}  // namespace alibi
