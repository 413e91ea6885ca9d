// Health means progress: while the engine is stuck inside a step with work
// pending, the gRPC health check reports NOT_SERVING; once it moves again,
// SERVING. In process, with an engine whose attention blocks on demand.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "alibi/v1/inference.grpc.pb.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/testing/forwarding_backend.h"
#include "tests/testing/in_process.h"
#include "tests/testing/server_process.h"

namespace alibi {
namespace {

// Attention waits while `blocked` is set.
class StallingBackend : public testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;

  void Block(bool blocked) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      blocked_ = blocked;
    }
    cv_.notify_all();
  }
  bool entered() const { return entered_.load(); }

  absl::Status PagedAttention(kernels::TensorView q,
                              const kernels::PagedKvView& kv,
                              const kernels::AttentionMeta& meta,
                              const float* slopes, int heads, float scale,
                              kernels::TensorView out) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (blocked_) entered_.store(true);
    cv_.wait(lock, [this] { return !blocked_; });
    lock.unlock();
    return ForwardingBackend::PagedAttention(q, kv, meta, slopes, heads, scale,
                                             out);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool blocked_ = false;
  std::atomic<bool> entered_{false};
};

bool WaitForHealth(grpc::Channel& channel, bool serving,
                   std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    auto health = testing::CheckHealth(channel);
    if (health.ok() && *health == serving) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Attention sleeps `delay` per call: a slow step that keeps making progress.
class SlowBackend : public testing::ForwardingBackend {
 public:
  SlowBackend(std::unique_ptr<kernels::Backend> inner,
              std::chrono::milliseconds delay)
      : ForwardingBackend(std::move(inner)), delay_(delay) {}
  absl::Status PagedAttention(kernels::TensorView q,
                              const kernels::PagedKvView& kv,
                              const kernels::AttentionMeta& meta,
                              const float* slopes, int heads, float scale,
                              kernels::TensorView out) override {
    std::this_thread::sleep_for(delay_);
    return ForwardingBackend::PagedAttention(q, kv, meta, slopes, heads, scale,
                                             out);
  }

 private:
  const std::chrono::milliseconds delay_;
};

TEST(HealthStallTest, ALongStepThatProgressesIsNotAStall) {
  // tiny-mpt has 2 layers: each step takes 2 x 700 ms, longer than the 1 s
  // stall timeout, with a layer issued every 700 ms.
  auto stack = testing::StartEngine(
      "tiny-mpt", {},
      std::make_unique<SlowBackend>(testing::CpuBackend(),
                                    std::chrono::milliseconds(700)));
  ASSERT_TRUE(stack.ok()) << stack.status();
  rpc::ServerOptions server_options;
  server_options.stall_timeout = absl::Seconds(1);
  auto server = testing::StartRpcServer(server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->SetFrontend(stack->frontend.get());
  auto channel = testing::ChannelTo(**server);
  engine::Engine* engine = stack->engine.get();
  ASSERT_TRUE(WaitForHealth(*channel, true, std::chrono::seconds(5)));
  engine::EngineRequest request;
  request.prompt = {1, 2, 3};
  request.max_tokens = 4;  // 4 steps of 1.4 s
  auto stream = std::make_shared<engine::OutputStream>();
  ASSERT_TRUE(engine->Submit(request, stream).ok());
  int polls = 0, not_serving = 0;
  while (!stream->finished()) {
    auto health = testing::CheckHealth(*channel);
    ASSERT_TRUE(health.ok()) << health.status();
    ++polls;
    not_serving += !*health;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GT(polls, 30);
  EXPECT_EQ(not_serving, 0) << "a slow, progressing step was reported stalled";
  (*server)->Drain(absl::Seconds(1));
}

TEST(HealthStallTest, NotServingWhileTheEngineIsStuck) {
  auto backend = std::make_unique<StallingBackend>(testing::CpuBackend());
  StallingBackend* stalling = backend.get();
  auto stack = testing::StartEngine("tiny-mpt", {}, std::move(backend));
  ASSERT_TRUE(stack.ok()) << stack.status();
  engine::Engine* engine = stack->engine.get();
  rpc::ServerOptions server_options;
  server_options.stall_timeout = absl::Seconds(1);
  auto server = testing::StartRpcServer(server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = testing::ChannelTo(**server);
    // Loading: NOT_SERVING, and calls UNAVAILABLE, until the engine is set.
  ASSERT_TRUE(WaitForHealth(*channel, false, std::chrono::seconds(5)));
  {
    auto stub = v1::InferenceService::NewStub(channel);
    grpc::ClientContext context;
    v1::CompleteRequest request;
    request.mutable_params()->set_text("x");
    v1::CompleteResponse response;
    const grpc::Status s = stub->Complete(&context, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(s.error_message(), "the model is still loading");
  }
  (*server)->SetFrontend(stack->frontend.get());
  ASSERT_TRUE(WaitForHealth(*channel, true, std::chrono::seconds(5)));

  stalling->Block(true);
  engine::EngineRequest request;
  request.prompt = {1, 2, 3};
  request.max_tokens = 4;
  auto stream = std::make_shared<engine::OutputStream>();
  ASSERT_TRUE(engine->Submit(request, stream).ok());
  EXPECT_TRUE(WaitForHealth(*channel, false, std::chrono::seconds(10)))
      << "health stayed SERVING while the engine was stuck";
  EXPECT_TRUE(stalling->entered());
  stalling->Block(false);
  EXPECT_TRUE(WaitForHealth(*channel, true, std::chrono::seconds(10)));
  auto delta = stream->WaitAndTake(absl::Seconds(10));
  while (delta.has_value() && !delta->finished) {
    auto more = stream->WaitAndTake(absl::Seconds(10));
    if (!more.has_value()) break;
    delta->Merge(std::move(*more));
  }
  ASSERT_TRUE(delta.has_value() && delta->finished);
  EXPECT_TRUE(delta->status.ok());
  (*server)->Drain(absl::Seconds(1));
}

}  // namespace
}  // namespace alibi
