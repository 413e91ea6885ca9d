// Fuzz target for request validation (the frontend's input processor, fed
// through the gRPC transport's conversion): arbitrary bytes as
// CompletionParams or ScoreRequest wire format, or as raw text fields
// (invalid UTF-8 included). Validation must never crash; what it accepts
// must satisfy every invariant the engine relies on, and what it rejects
// must be INVALID_ARGUMENT naming a field.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "alibi/v1/inference.pb.h"
#include "server/frontend/input_processor.h"
#include "server/rpc/convert.h"
#include "server/tokenizer/tokenizer.h"

namespace {

#define FUZZ_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::fprintf(stderr, "check failed: %s (%s:%d)\n", #cond, __FILE__, \
                   __LINE__);                                             \
      std::abort();                                                       \
    }                                                                     \
  } while (0)

constexpr int kVocab = 50432;
constexpr int kMaxModelLen = 4096;
constexpr int kMaxLogprobs = 20;

const alibi::frontend::InputProcessor& Input() {
  static const alibi::frontend::InputProcessor* input = [] {
    auto t = alibi::tokenizer::Tokenizer::FromFile(
        std::string(ALIBI_TEST_DATA_DIR) + "/models/tiny-mpt/tokenizer.json");
    FUZZ_CHECK(t.ok());
    alibi::engine::EngineInfo info;
    info.vocab_size = kVocab;
    info.max_model_len = kMaxModelLen;
    info.max_logprobs = kMaxLogprobs;
    return new alibi::frontend::InputProcessor(
        std::shared_ptr<const alibi::tokenizer::Tokenizer>(std::move(*t)),
        info);
  }();
  return *input;
}

void CheckRejection(const absl::Status& status, absl::string_view field_root) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  FUZZ_CHECK(absl::StartsWith(status.message(), field_root));
}

void CheckGeneration(const alibi::v1::CompletionParams& params) {
  const alibi::frontend::InputLimits limits;
  auto prepared = Input().PrepareCompletion(alibi::rpc::FromProto(params),
                                            alibi::rpc::CompletionFieldName);
  if (!prepared.ok()) {
    CheckRejection(prepared.status(), "params");
    return;
  }
  const alibi::engine::EngineRequest* r = &prepared->request;
  const int n = static_cast<int>(r->prompt.size());
  FUZZ_CHECK(n >= 1);
  for (int32_t id : r->prompt) FUZZ_CHECK(id >= 0 && id < kVocab);
  FUZZ_CHECK(r->generate);
  FUZZ_CHECK(r->max_tokens >= 1 && n + r->max_tokens <= kMaxModelLen);
  FUZZ_CHECK(r->min_tokens >= 0 && r->min_tokens <= r->max_tokens);
  const auto& s = r->sampling;
  FUZZ_CHECK(std::isfinite(s.temperature) && s.temperature >= 0);
  FUZZ_CHECK(s.top_k >= 0);
  FUZZ_CHECK(s.top_p > 0 && s.top_p <= 1);
  FUZZ_CHECK(s.min_p >= 0 && s.min_p <= 1);
  FUZZ_CHECK(s.repetition_penalty > 0 && s.repetition_penalty <= 10);
  FUZZ_CHECK(std::fabs(s.presence_penalty) <= 2);
  FUZZ_CHECK(std::fabs(s.frequency_penalty) <= 2);
  const auto& stops = prepared->output.stop;
  FUZZ_CHECK(static_cast<int>(stops.size()) <= limits.max_stop_strings);
  for (const std::string& stop : stops) {
    FUZZ_CHECK(!stop.empty() &&
               static_cast<int>(stop.size()) <= limits.max_stop_string_bytes);
  }
  for (int32_t id : r->stop_token_ids) FUZZ_CHECK(id >= 0 && id < kVocab);
  if (r->logprobs.has_value()) {
    FUZZ_CHECK(*r->logprobs >= 0 && *r->logprobs <= kMaxLogprobs);
  }
}

void CheckScore(const alibi::v1::ScoreRequest& request) {
  auto prepared = Input().PrepareScore(alibi::rpc::FromProto(request),
                                       alibi::frontend::SameName);
  if (!prepared.ok()) {
    FUZZ_CHECK(prepared.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(!prepared.status().message().empty());
    return;
  }
  const alibi::engine::EngineRequest* r = &prepared->request;
  const int n = static_cast<int>(r->prompt.size());
  FUZZ_CHECK(n >= 2 && n <= kMaxModelLen);
  for (int32_t id : r->prompt) FUZZ_CHECK(id >= 0 && id < kVocab);
  FUZZ_CHECK(!r->generate && r->prompt_logprobs);
  FUZZ_CHECK(r->prompt_top_logprobs >= 0 &&
             r->prompt_top_logprobs <= kMaxLogprobs);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 4;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (mode) {
    case 0: {  // CompletionParams wire format
      alibi::v1::CompletionParams params;
      if (params.ParseFromString(rest)) CheckGeneration(params);
      break;
    }
    case 1: {  // ScoreRequest wire format
      alibi::v1::ScoreRequest request;
      if (request.ParseFromString(rest)) CheckScore(request);
      break;
    }
    case 2: {  // raw bytes as the prompt, a stop string and the request id
      alibi::v1::CompletionParams params;
      params.set_text(rest);
      params.mutable_sampling()->add_stop(rest.substr(0, rest.size() / 2));
      params.set_request_id(rest.substr(rest.size() / 2));
      params.set_max_tokens(static_cast<int32_t>(size % 64));
      CheckGeneration(params);
      break;
    }
    case 3: {  // raw bytes as score text
      alibi::v1::ScoreRequest request;
      request.set_text(rest);
      request.set_top_logprobs(static_cast<int32_t>(size % 24));
      CheckScore(request);
      break;
    }
  }
  return 0;
}
