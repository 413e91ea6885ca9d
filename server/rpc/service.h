// alibi.v1.InferenceService on gRPC's callback API: converts each request
// into the frontend's types (convert.h), hands it to the frontend
// (validation, tokenization, the engine, detokenization), and writes the
// frontend's chunks back as responses. The transport stays thin: no model,
// tokenizer or engine logic here.
//
// Lifecycle: the service answers UNAVAILABLE until SetFrontend() (the model
// is loading) and again after StartDraining() (shutdown). Client
// cancellation, disconnects and deadlines cancel the request (its KV blocks
// are freed within one engine step); the call ends with CANCELLED /
// DEADLINE_EXCEEDED.
//
// Thread-safety: every method is thread-safe; RPC handlers run on gRPC's
// threads, output handling on the frontend's output threads, never on the
// engine thread.
#ifndef ALIBI_SERVER_RPC_SERVICE_H_
#define ALIBI_SERVER_RPC_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/time/time.h"
#include "alibi/v1/inference.grpc.pb.h"
#include "server/frontend/admission.h"
#include "server/frontend/frontend.h"
#include "server/metrics/metrics.h"

namespace alibi::rpc {

struct ServiceOptions {
  std::string served_model_name;
  // Bearer token required in the `authorization` metadata of every
  // InferenceService call; empty: no authentication.
  std::string api_key;
  std::string server_version;
  // One INFO line per finished inference call: method, server id, the
  // caller's request_id and the status code.
  bool log_requests = true;
};

// Every method is raw (request and response bytes): requests are parsed by
// wire.h, so undecodable bytes and invalid UTF-8 get INVALID_ARGUMENT naming
// the field instead of gRPC's bare UNIMPLEMENTED.
using RawInferenceService =
    v1::InferenceService::WithRawCallbackMethod_Complete<
        v1::InferenceService::WithRawCallbackMethod_CompleteStream<
            v1::InferenceService::WithRawCallbackMethod_Score<
                v1::InferenceService::WithRawCallbackMethod_ScoreStream<
                    v1::InferenceService::WithRawCallbackMethod_Tokenize<
                        v1::InferenceService::WithRawCallbackMethod_Detokenize<
                            v1::InferenceService::
                                WithRawCallbackMethod_GetModelInfo<
                                    v1::InferenceService::
                                        CallbackService>>>>>>>;

class InferenceService final : public RawInferenceService {
 public:
  // `metrics` may be null; it must outlive the service.
  InferenceService(ServiceOptions options, metrics::Metrics* metrics);

  // The model is loaded: start serving with `frontend` (must outlive the
  // service's calls).
  void SetFrontend(frontend::Frontend* frontend);
  // New calls get UNAVAILABLE from now on; calls in flight continue.
  void StartDraining();
  // Waits until no call is in flight or `timeout` passes; true when idle.
  bool WaitForIdle(absl::Duration timeout);
  int in_flight() const;

  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* CompleteStream(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Score(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* ScoreStream(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;

 private:
  template <typename GrpcReactor, typename Derived>
  class CallReactor;
  class UnaryReactor;
  template <typename Response>
  class StreamReactor;
  template <typename GrpcReactor, typename Derived>
  friend class CallReactor;
  friend class UnaryReactor;
  template <typename Response>
  friend class StreamReactor;

  // Admission of a new call: authentication, then availability. OK, or the
  // status to answer with; on OK the call counts as in flight and the
  // frontend is returned through `frontend`.
  absl::Status Admit(const grpc::CallbackServerContext& context,
                     frontend::Frontend** frontend);
  // A call admitted earlier ended with `status` (`call`: its request, when
  // it had one).
  void CallDone(absl::string_view rpc, const frontend::InferenceCall* call,
                const grpc::Status& status);
  // Answers a unary call at once.
  grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                      absl::string_view rpc,
                                      const grpc::Status& status,
                                      bool admitted);
  const ServiceOptions options_;
  metrics::Metrics* const metrics_;
  frontend::Admission admission_;
};

}  // namespace alibi::rpc

#endif  // ALIBI_SERVER_RPC_SERVICE_H_
