// In process: a CompleteStream client that never reads does not slow the
// engine. Output handling and proto building run on the frontend's output
// threads and gRPC's (every response builder checks it is not on the engine
// thread: a violation aborts this test process), the engine merges what the
// blocked writer has not taken, finishes the request on its own schedule, and
// serves other clients meanwhile.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <thread>

#include "alibi/v1/inference.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/in_process.h"
#include "tests/testing/server_process.h"

namespace alibi {
namespace {

TEST(SlowReaderTest, AWriterBlockedByItsClientDoesNotSlowTheEngine) {
  engine::EngineConfig config;
  config.scheduler.kv.num_blocks = 256;
  auto stack = testing::StartEngine("tiny-bloom", config);
  ASSERT_TRUE(stack.ok()) << stack.status();
  engine::Engine* engine = stack->engine.get();
  auto server = testing::StartRpcServer();
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->SetFrontend(stack->frontend.get());
  // The client's HTTP/2 receive window stays at 16 KiB (no BDP probing
  // grows it), whatever the pace of the server.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  auto channel = testing::ChannelTo(**server, args);
  auto stub = v1::InferenceService::NewStub(channel);

  // A stream whose messages (20 alternatives per token) overflow that window
  // long before the end: the server's writes block.
  constexpr int kTokens = 600;
  grpc::ClientContext slow_context;
  v1::CompleteStreamRequest slow_request;
  slow_request.mutable_params()->set_text("A reader that never reads");
  slow_request.mutable_params()->set_max_tokens(kTokens);
  slow_request.mutable_params()->set_logprobs(20);
  slow_request.mutable_params()->mutable_sampling()->set_temperature(0.0f);
  slow_request.mutable_params()->mutable_sampling()->set_ignore_eos(true);
  auto reader = stub->CompleteStream(&slow_context, slow_request);

  // Another client is served meanwhile.
  {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::CompleteRequest r;
    r.mutable_params()->set_text("Meanwhile");
    r.mutable_params()->set_max_tokens(8);
    r.mutable_params()->mutable_sampling()->set_ignore_eos(true);
    v1::CompleteResponse response;
    ASSERT_TRUE(stub->Complete(&c, r, &response).ok());
    EXPECT_EQ(response.token_ids_size(), 8);
  }
  // The engine generates every token of the unread stream on its own.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(120);
  engine::EngineSnapshot s;
  while (std::chrono::steady_clock::now() < deadline) {
    s = engine->GetSnapshot();
    if (!s.has_work && s.num_live_requests == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(s.has_work) << "the engine waited for the slow reader";
  EXPECT_EQ(s.kv_blocks_used, 0);

  // Then the client reads everything, merged into few messages.
  int tokens = 0, messages = 0;
  v1::CompleteStreamResponse m;
  while (reader->Read(&m)) {
    tokens += m.token_ids_size();
    ++messages;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, kTokens);
  EXPECT_LT(messages, kTokens);
  (*server)->Drain(absl::Seconds(1));
}

}  // namespace
}  // namespace alibi
