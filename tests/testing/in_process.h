// The serving stack in the test's own process: a fixture model on the CPU
// backend (optionally wrapped, e.g. by a ForwardingBackend that injects
// faults or delays), an engine, a frontend, and a gRPC server on a free
// loopback port. For tests that need to reach inside (engine snapshots,
// thread checks) while talking gRPC.
//
// Thread-safety: used from the test thread; the stack itself is thread-safe.
#ifndef ALIBI_TESTS_TESTING_IN_PROCESS_H_
#define ALIBI_TESTS_TESTING_IN_PROCESS_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "server/engine/engine_core.h"
#include "server/frontend/frontend.h"
#include "server/rpc/server.h"

namespace alibi::testing {

// A 2-thread CPU backend.
std::unique_ptr<kernels::Backend> CpuBackend();

struct EngineStack {
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<frontend::Frontend> frontend;
};

// Loads tests/data/models/`model` onto `backend` (null: CpuBackend()) and
// starts an engine (config.scheduler.kv.num_blocks 0: 64) and a frontend.
absl::StatusOr<EngineStack> StartEngine(
    const std::string& model, engine::EngineConfig config,
    std::unique_ptr<kernels::Backend> backend = nullptr);

// A gRPC server on 127.0.0.1, any free port, not serving yet (SetFrontend).
absl::StatusOr<std::unique_ptr<rpc::RpcServer>> StartRpcServer(
    rpc::ServerOptions options = {});
// An insecure channel to `server`, with channel arguments `args`.
std::shared_ptr<grpc::Channel> ChannelTo(
    const rpc::RpcServer& server,
    const grpc::ChannelArguments& args = grpc::ChannelArguments());

}  // namespace alibi::testing

#endif  // ALIBI_TESTS_TESTING_IN_PROCESS_H_
