// Turns public API requests into engine requests, validating every field
// before any work is done. Errors are INVALID_ARGUMENT with a message that
// names the field in proto path form ("params.sampling.top_p: ...").
//
// Thread-safety: pure functions (the tokenizer is thread-safe).
#ifndef ALIBI_SERVER_RPC_VALIDATION_H_
#define ALIBI_SERVER_RPC_VALIDATION_H_

#include "absl/status/statusor.h"
#include "alibi/v1/inference.pb.h"
#include "server/engine/request.h"
#include "server/tokenizer/tokenizer.h"

namespace alibi::rpc {

struct RequestLimits {
  int vocab_size = 0;
  int max_model_len = 0;  // prompt + generated tokens
  int max_logprobs = 20;
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
  int max_stop_token_ids = 256;
  int max_request_id_bytes = 256;
  int default_max_tokens = 16;
};

absl::StatusOr<engine::GenerationRequest> ToGenerationRequest(
    const v1::CompletionParams& params, const tokenizer::Tokenizer& tokenizer,
    const RequestLimits& limits);

absl::StatusOr<engine::GenerationRequest> ToScoreRequest(
    const v1::ScoreRequest& request, const tokenizer::Tokenizer& tokenizer,
    const RequestLimits& limits);

}  // namespace alibi::rpc

#endif  // ALIBI_SERVER_RPC_VALIDATION_H_
