#include "tests/testing/in_process.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/model/model.h"
#include "server/tokenizer/tokenizer.h"
#include "tests/testing/server_process.h"

namespace alibi::testing {

std::unique_ptr<kernels::Backend> CpuBackend() {
  kernels::BackendOptions options;
  options.device = "cpu";
  options.num_threads = 2;
  auto backend = kernels::CreateBackend(options);
  return backend.ok() ? *std::move(backend) : nullptr;
}

absl::StatusOr<EngineStack> StartEngine(
    const std::string& model, engine::EngineConfig config,
    std::unique_ptr<kernels::Backend> backend) {
  if (backend == nullptr) backend = CpuBackend();
  if (backend == nullptr) return absl::InternalError("no CPU backend");
  const std::string dir = FixtureModel(model);
  ASSIGN_OR_RETURN(std::unique_ptr<model::Model> loaded,
                   model::Model::Load(dir, backend.get()));
  ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::Tokenizer> tokenizer,
                   tokenizer::Tokenizer::FromFile(dir + "/tokenizer.json"));
  if (config.scheduler.kv.num_blocks <= 0) config.scheduler.kv.num_blocks = 64;
  EngineStack stack;
  ASSIGN_OR_RETURN(stack.engine,
                   engine::CreateEngine(config, std::move(backend),
                                        std::move(loaded), nullptr));
  stack.frontend = std::make_unique<frontend::Frontend>(
      stack.engine.get(),
      std::shared_ptr<const tokenizer::Tokenizer>(std::move(tokenizer)));
  return stack;
}

absl::StatusOr<std::unique_ptr<rpc::RpcServer>> StartRpcServer(
    rpc::ServerOptions options) {
  options.host = "127.0.0.1";
  options.port = 0;
  return rpc::RpcServer::Start(options, nullptr);
}

std::shared_ptr<grpc::Channel> ChannelTo(const rpc::RpcServer& server,
                                         const grpc::ChannelArguments& args) {
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server.port()),
                                   grpc::InsecureChannelCredentials(), args);
}

}  // namespace alibi::testing
