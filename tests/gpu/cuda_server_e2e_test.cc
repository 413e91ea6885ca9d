// The real alibi-server with --device=cuda, end to end: each fixture model
// (tests/data/models) served in bf16 and fp16, every reference sequence
// (tests/data/reference, float64) scored through the Score RPC, each
// position's log-prob within the tolerance of its dtype (logprob_check.h,
// the bounds cuda_model_test holds the model itself to); a greedy
// completion runs too (decode steps through the server's engine, so through
// the decode graphs).
//
// Skips (GTEST_SKIP) when no CUDA device is visible; fails instead with
// ALIBI_REQUIRE_GPU=1.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "alibi/v1/inference.grpc.pb.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "nlohmann/json.hpp"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/logprob_check.h"
#include "tests/testing/server_process.h"

namespace alibi {
namespace {

using Param = std::tuple<std::string, kernels::DType>;

class CudaServerTest : public ::testing::TestWithParam<Param> {};

TEST_P(CudaServerTest, ScoresMatchTheReference) {
  ALIBI_SKIP_WITHOUT_CUDA();
  const std::string name = std::get<0>(GetParam());
  const kernels::DType dtype = std::get<1>(GetParam());
  auto server = testing::ServerProcess::Start(
      testing::FixtureModel(name),
      {"--device=cuda",
       dtype == kernels::DType::kBF16 ? "--dtype=bf16" : "--dtype=f16"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string log = (*server)->ReadLog();
  EXPECT_NE(log.find("backend: cuda:0"), std::string::npos) << log;
  auto stub = v1::InferenceService::NewStub((*server)->Channel());

  std::ifstream in(std::string(ALIBI_TEST_DATA_DIR) + "/reference/" + name +
                   ".json");
  ASSERT_TRUE(in.good());
  const nlohmann::json ref = nlohmann::json::parse(in);
  const double max_tol = kernels::gpu_test::LogprobMaxTolerance(dtype);
  const double mean_tol = kernels::gpu_test::LogprobMeanTolerance(dtype);
  for (const auto& seq : ref["sequences"]) {
    const std::vector<int32_t> ids = seq["token_ids"];
    const std::vector<double> want = seq["prompt_logprobs"];
    v1::ScoreRequest request;
    request.mutable_token_ids()->Add(ids.begin(), ids.end());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
    v1::ScoreResponse response;
    const grpc::Status status = stub->Score(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.token_logprobs_size(), static_cast<int>(want.size()));
    double worst = 0, mean = 0;
    for (int i = 0; i < response.token_logprobs_size(); ++i) {
      const double e = std::abs(response.token_logprobs(i) - want[i]);
      ASSERT_TRUE(std::isfinite(e)) << "position " << i;
      worst = std::max(worst, e);
      mean += e;
    }
    mean /= std::max(1, response.token_logprobs_size());
    EXPECT_LT(worst, max_tol) << seq["name"];
    EXPECT_LT(mean, mean_tol) << seq["name"];
    RecordProperty(seq["name"].get<std::string>() + "_max_logprob_error",
                   std::to_string(worst));
  }

  // Greedy decoding through the engine (decode-only steps: graphs).
  v1::CompleteRequest complete;
  const std::vector<int32_t> prompt = ref["sequences"][0]["token_ids"];
  complete.mutable_params()->mutable_token_ids()->Add(prompt.begin(),
                                                      prompt.end());
  complete.mutable_params()->set_max_tokens(24);
  complete.mutable_params()->mutable_sampling()->set_temperature(0);
  complete.mutable_params()->mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
  v1::CompleteResponse response;
  const grpc::Status status = stub->Complete(&context, complete, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.token_ids_size(), 24);
  EXPECT_EQ((*server)->Stop(SIGTERM, absl::Seconds(30)).value_or(-1), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, CudaServerTest,
    ::testing::Combine(::testing::Values("tiny-bloom", "tiny-mpt"),
                       ::testing::Values(kernels::DType::kBF16,
                                         kernels::DType::kF16)),
    kernels::gpu_test::FixtureParamName);

}  // namespace
}  // namespace alibi
