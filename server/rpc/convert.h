// Proto <-> frontend types for alibi.v1: the parsing and formatting half of
// the gRPC transport. No validation here (the frontend's input processor does
// it once); response building must never run on the engine thread (checked).
//
// Thread-safety: pure functions.
#ifndef ALIBI_SERVER_RPC_CONVERT_H_
#define ALIBI_SERVER_RPC_CONVERT_H_

#include <string>

#include "absl/types/span.h"
#include "alibi/v1/inference.pb.h"
#include "server/engine/engine.h"
#include "server/frontend/types.h"

namespace alibi::rpc {

frontend::CompletionParams FromProto(const v1::CompletionParams& params);
frontend::ScoreParams FromProto(const v1::ScoreRequest& request);

// Field names of CompletionParams as the gRPC API spells them
// ("params.sampling.top_p"), and of ScoreStreamRequest ("score.text").
std::string CompletionFieldName(absl::string_view canonical);
std::string ScoreFieldName(absl::string_view canonical);

v1::FinishReason ToProto(FinishReason reason);
// A whole response: `all[i]` is completion i with every chunk merged.
void ToProto(absl::Span<const frontend::CompletionChunk> all,
             v1::CompleteResponse* out);
// One streamed chunk.
void ToProto(const frontend::CompletionChunk& chunk,
             v1::CompleteStreamResponse* out);
void ToProto(const frontend::ScoreResult& result, bool with_top_logprobs,
             v1::ScoreResponse* out);
// Builds ScoreStream messages from one call's chunks, in order: positions
// numbered across messages, totals in the last one.
class ScoreStreamFormatter {
 public:
  explicit ScoreStreamFormatter(bool with_top_logprobs)
      : with_top_logprobs_(with_top_logprobs) {}
  // The input's first token (sent in the first message).
  void set_first_token(int32_t token) { first_token_ = token; }
  void Format(const frontend::CompletionChunk& chunk,
              v1::ScoreStreamResponse* out);

 private:
  const bool with_top_logprobs_;
  int32_t first_token_ = -1;
  int64_t offset_ = 0;
  double sum_ = 0.0;
};

void ToProto(const frontend::TokenizeResult& result, v1::TokenizeResponse* out);
void ToProto(const engine::EngineInfo& info,
             const std::string& served_model_name,
             const std::string& server_version, v1::GetModelInfoResponse* out);

}  // namespace alibi::rpc

#endif  // ALIBI_SERVER_RPC_CONVERT_H_
