// alibi-server: flags and wiring. Starts the gRPC server and the
// OpenAI-compatible HTTP API at once (health NOT_SERVING / 503, calls
// UNAVAILABLE / 503 while the model loads), loads the model onto the chosen
// backend, sizes the KV pool, starts the engine and reports SERVING; on
// SIGTERM/SIGINT drains both and exits 0.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "kernels/backend.h"
#include "kernels/memory_plan.h"
#include "server/engine/engine_core.h"
#include "server/frontend/chat_template.h"
#include "server/frontend/frontend.h"
#include "server/http/openai_api.h"
#include "server/http_server/http_server.h"
#include "server/metrics/metrics.h"
#include "server/metrics/metrics_endpoint.h"
#include "server/model/checkpoint.h"
#include "server/model/config.h"
#include "server/model/decode_graph.h"
#include "server/model/model.h"
#include "server/rpc/server.h"
#include "server/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "models/alibi-tiny-en",
          "Hugging Face model directory (config.json, *.safetensors, "
          "tokenizer.json)");
ABSL_FLAG(std::string, served_model_name, "",
          "Model name reported by GetModelInfo and in metrics labels "
          "(default: the model directory's name)");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address the gRPC server binds");
ABSL_FLAG(int, port, 50051, "gRPC port (0: any free port)");
ABSL_FLAG(std::string, metrics_host, "0.0.0.0",
          "Address the Prometheus endpoint binds");
ABSL_FLAG(int, metrics_port, 9464,
          "Prometheus /metrics port (0: any free port, -1: off)");
ABSL_FLAG(std::string, http_host, "0.0.0.0",
          "Address the OpenAI-compatible HTTP API binds");
ABSL_FLAG(int, http_port, 8000,
          "OpenAI-compatible HTTP API port (/v1/completions, "
          "/v1/chat/completions, /v1/models, /health, /metrics, ...; 0: any "
          "free port, -1: off)");
ABSL_FLAG(std::string, chat_template, "",
          "Chat template for /v1/chat/completions: a file, or the Jinja2 "
          "text itself (default: tokenizer_config.json's chat_template)");
ABSL_FLAG(int64_t, http_max_body_bytes, 8 << 20,
          "HTTP API: largest request body; larger ones get 413");
ABSL_FLAG(std::string, port_file, "",
          "Write {\"port\":..,\"metrics_port\":..,\"http_port\":..} to "
          "this file once listening (for supervisors and tests using port 0)");
ABSL_FLAG(absl::Duration, http_header_timeout, absl::Seconds(10),
          "HTTP ports (metrics; OpenAI API): a request's header section (and "
          "a new connection's first one, TLS handshake included) must arrive "
          "within this time, else 408 and close");
ABSL_FLAG(absl::Duration, http_body_timeout, absl::Seconds(30),
          "HTTP ports: a request body must arrive within this time of its "
          "headers, else 408 and close");
ABSL_FLAG(absl::Duration, http_idle_timeout, absl::Seconds(60),
          "HTTP ports: keep-alive connections idle this long are closed");
ABSL_FLAG(absl::Duration, http_write_timeout, absl::Seconds(30),
          "HTTP ports: a response the client stops reading for this long is "
          "abandoned (its request cancelled) and the connection closed");
ABSL_FLAG(int, http_max_connections, 1024,
          "HTTP ports: open connections at most, each; more get 503");
ABSL_FLAG(std::string, device, "auto",
          "Compute backend: auto (cuda when a GPU is visible, else cpu), "
          "cpu, ref (the reference backend: fp32 plain loops, slow) or cuda");
ABSL_FLAG(std::string, dtype, "bf16",
          "CUDA weight/activation dtype: bf16 or f16 (the CPU backend: "
          "--cpu_weight_dtype)");
ABSL_FLAG(std::string, cpu_weight_dtype, "auto",
          "CPU backend weight storage: auto (the checkpoint's width: F32 "
          "stays f32, F16 f16, BF16 bf16), f32, bf16, f16 or int8 (symmetric, "
          "a scale per 32 weights); activations are always fp32");
ABSL_FLAG(std::string, kv_cache_dtype, "auto",
          "KV cache dtype: auto (f32 on the CPU backends, --dtype on CUDA), "
          "f32, bf16 or f16 (bf16/f16 on --device=cpu)");
ABSL_FLAG(int, num_threads, 0, "CPU backends: compute threads (0: every core)");
ABSL_FLAG(int, max_num_seqs,
          alibi::engine::EngineConfig().scheduler.max_num_seqs,
          "Most sequences in one engine step");
ABSL_FLAG(int, max_num_batched_tokens,
          alibi::engine::EngineConfig().scheduler.max_num_batched_tokens,
          "Token budget of one engine step (prefill chunks + decodes)");
ABSL_FLAG(int, max_model_len,
          alibi::engine::EngineConfig().scheduler.max_model_len,
          "Longest prompt + completion in tokens (0: what the KV pool holds; "
          "ALiBi has no position limit)");
ABSL_FLAG(int, max_queued_requests,
          alibi::engine::EngineConfig().scheduler.max_queued_requests,
          "Waiting requests at most; beyond it RESOURCE_EXHAUSTED");
ABSL_FLAG(int, long_prefill_token_threshold,
          alibi::engine::EngineConfig().scheduler.long_prefill_token_threshold,
          "Most prompt tokens one request computes per step (0: no cap)");
ABSL_FLAG(int64_t, max_step_attention_pairs,
          alibi::engine::EngineConfig().scheduler.max_step_attention_pairs,
          "Attention work of one engine step, in query-key pairs (0: no "
          "cap): long prompts are prefilled in chunks that shrink as their "
          "context grows, so every step stays short");
ABSL_FLAG(double, step_target_ms,
          alibi::engine::EngineConfig().step_target_seconds * 1000.0,
          "Engine step time to hold: the attention budget of a step adapts "
          "(up to --max_step_attention_pairs) to the measured attention "
          "throughput (0: fixed at that ceiling)");
ABSL_FLAG(int, max_step_logit_rows,
          alibi::engine::EngineConfig().scheduler.max_step_logit_rows,
          "Prompt log-probability rows (scoring, echo) one step computes "
          "(0: no cap)");
ABSL_FLAG(int, block_size,
          alibi::engine::EngineConfig().scheduler.kv.block_size,
          "Tokens per KV block");
ABSL_FLAG(int, kv_blocks, 0, "KV pool size in blocks (0: from the budget)");
ABSL_FLAG(int64_t, kv_cache_memory_bytes, 0,
          "KV pool budget in bytes (0: CUDA uses --gpu_memory_fraction, CPU "
          "min(2 GiB, 20% of RAM))");
ABSL_FLAG(double, gpu_memory_fraction, 0.9,
          "CUDA: fraction of device memory alibi-server may use in all");
ABSL_FLAG(bool, decode_graphs, true,
          "Replay decode-only steps as graphs recorded per batch bucket, where "
          "the backend has them (CUDA)");
ABSL_FLAG(bool, enable_prefix_caching,
          alibi::engine::EngineConfig().scheduler.kv.enable_prefix_caching,
          "Reuse KV blocks of shared prompt prefixes");
ABSL_FLAG(int, kv_window, alibi::engine::EngineConfig().default_kv_window,
          "Sliding KV window of requests that set none (tokens; 0: off): "
          "each position attends to the last kv_window positions and older "
          "KV blocks are released, so a request's memory stays bounded");
ABSL_FLAG(int, max_logprobs, alibi::engine::EngineConfig().max_logprobs,
          "Most log-probability alternatives per token");
ABSL_FLAG(int, drain_seconds, 10,
          "On SIGTERM: seconds in-flight calls get to finish before exit");
ABSL_FLAG(int, health_stall_seconds, 60,
          "Health reports NOT_SERVING when the engine makes no progress with "
          "work pending for this long");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate (enables TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: require and verify client certificates (mTLS)");
ABSL_FLAG(std::string, api_key_file, "",
          "File holding a bearer token that InferenceService calls must "
          "send as `authorization: Bearer <token>` (health stays open)");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error");
ABSL_FLAG(bool, log_requests, true,
          "One log line per finished inference call (method, id, the "
          "caller's request_id, status)");
ABSL_FLAG(std::string, reflection, "auto",
          "gRPC server reflection: on, off, or auto (on unless "
          "--api_key_file is set: reflection cannot check tokens)");
ABSL_FLAG(absl::Duration, grpc_handshake_timeout,
          alibi::rpc::ServerOptions().handshake_timeout,
          "gRPC: a connection's handshake (TLS included) must finish within "
          "this time");
ABSL_FLAG(absl::Duration, grpc_max_connection_idle,
          alibi::rpc::ServerOptions().max_connection_idle,
          "gRPC: a connection with no call in progress this long is closed "
          "(half-open connections included)");
ABSL_FLAG(absl::Duration, grpc_max_connection_age,
          alibi::rpc::ServerOptions().max_connection_age,
          "gRPC: connections are asked to go after this long (0: never); "
          "calls in flight get --grpc_max_connection_age_grace");
ABSL_FLAG(absl::Duration, grpc_max_connection_age_grace,
          alibi::rpc::ServerOptions().max_connection_age_grace,
          "gRPC: how long calls in flight on an aged connection may finish");
ABSL_FLAG(int, grpc_max_concurrent_streams,
          alibi::rpc::ServerOptions().max_concurrent_streams,
          "gRPC: calls in progress on one connection at most");
ABSL_FLAG(absl::Duration, grpc_keepalive_time,
          alibi::rpc::ServerOptions().keepalive_time,
          "gRPC: the server pings a connection this often to find dead peers");
ABSL_FLAG(int64_t, grpc_memory_limit_bytes,
          alibi::rpc::ServerOptions().memory_limit_bytes,
          "gRPC: memory its connection buffers may use (0: unlimited)");

namespace alibi {
namespace {

constexpr char kVersion[] = ALIBI_VERSION;

absl::StatusOr<LogSeverity> ParseLogLevel(absl::string_view level) {
  const std::string l = absl::AsciiStrToLower(level);
  if (l == "debug") return LogSeverity::kDebug;
  if (l == "info") return LogSeverity::kInfo;
  if (l == "warning") return LogSeverity::kWarning;
  if (l == "error") return LogSeverity::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("--log_level: unknown level \"", level, "\""));
}

absl::StatusOr<std::string> ReadApiKey(const std::string& path) {
  if (path.empty()) return std::string();
  std::ifstream in(path);
  std::string key;
  if (!in || !std::getline(in, key)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--api_key_file: cannot read \"", path, "\""));
  }
  key = std::string(absl::StripAsciiWhitespace(key));
  if (key.empty()) {
    return absl::InvalidArgumentError("--api_key_file: the file is empty");
  }
  return key;
}

// SIGTERM/SIGINT: the handler writes the signal number to a pipe (async-
// signal-safe, whichever thread takes the signal: some libraries start threads
// before main); one thread reads it.
int g_signal_pipe[2] = {-1, -1};
std::mutex g_signal_mu;
std::condition_variable g_signal_cv;
int g_signal = 0;
std::atomic<bool> g_ready{false};

void OnSignal(int signal) {
  const char c = static_cast<char>(signal);
  [[maybe_unused]] ssize_t written = write(g_signal_pipe[1], &c, 1);
}

void WaitForSignals() {
  char c = 0;
  while (read(g_signal_pipe[0], &c, 1) != 1) {
  }
  if (!g_ready.load()) {
    // Nothing to drain yet: stop loading and leave.
    ALIBI_LOG(INFO) << "signal " << int{c} << " while loading: exiting";
    std::fflush(stderr);
    std::_Exit(0);
  }
  {
    std::lock_guard<std::mutex> lock(g_signal_mu);
    g_signal = c;
  }
  g_signal_cv.notify_all();
  // A second signal during the drain ends the process at once.
  while (read(g_signal_pipe[0], &c, 1) != 1) {
  }
  ALIBI_LOG(WARNING) << "signal " << int{c} << " during the drain: exiting now";
  std::fflush(stderr);
  std::_Exit(1);
}

void InstallSignalHandlers() {
  ALIBI_CHECK(pipe2(g_signal_pipe, O_CLOEXEC) == 0);
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  std::thread(WaitForSignals).detach();
}

// The KV pool size in blocks: --kv_blocks, or a byte budget
// (--kv_cache_memory_bytes; CUDA: what --gpu_memory_fraction leaves once the
// weights and `workspace_bytes` of workspace are resident; CPU: min(2 GiB,
// 20% of RAM)).
absl::StatusOr<int> KvBlocks(const model::Model& model,
                             kernels::Backend& backend,
                             size_t workspace_bytes) {
  const int block_size = absl::GetFlag(FLAGS_block_size);
  if (absl::GetFlag(FLAGS_kv_blocks) > 0) return absl::GetFlag(FLAGS_kv_blocks);
  const size_t per_block = model.KvBytesPerBlock(block_size);
  const kernels::MemoryInfo memory = backend.GetMemoryInfo();
  int64_t budget = absl::GetFlag(FLAGS_kv_cache_memory_bytes);
  if (budget <= 0 && backend.Kind() == "cuda") {
    kernels::MemoryPlanInput in;
    in.total_bytes = memory.total_bytes;
    in.free_bytes = memory.total_bytes - memory.used_bytes;
    in.weight_bytes = model.weight_bytes();
    in.workspace_bytes = workspace_bytes;
    in.memory_fraction = absl::GetFlag(FLAGS_gpu_memory_fraction);
    in.reserve_bytes = size_t{256} << 20;  // cuBLASLt and allocator headroom
    in.kv_bytes_per_block = per_block;
    const int max_len = absl::GetFlag(FLAGS_max_model_len);
    in.min_blocks = max_len > 0 ? (max_len + block_size - 1) / block_size : 1;
    ASSIGN_OR_RETURN(kernels::MemoryPlan plan, kernels::PlanKvMemory(in));
    ALIBI_LOG(INFO) << plan.Summary();
    return plan.num_blocks;
  }
  if (budget <= 0) {
    budget = std::min<int64_t>(int64_t{2} << 30, memory.total_bytes / 5);
  }
  const int64_t blocks = budget / static_cast<int64_t>(per_block);
  if (blocks < 1) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "no room for a KV pool: budget ", budget, " bytes, one block of ",
        block_size, " tokens takes ", per_block, " bytes"));
  }
  return static_cast<int>(std::min<int64_t>(blocks, 1 << 30));
}

// A dtype flag: "auto" (nullopt) or one of `allowed`.
absl::StatusOr<std::optional<kernels::DType>> ParseDTypeFlag(
    absl::string_view flag, absl::string_view value,
    std::initializer_list<kernels::DType> allowed) {
  if (absl::AsciiStrToLower(value) == "auto") return std::nullopt;
  absl::StatusOr<kernels::DType> dtype = kernels::ParseDType(value);
  if (dtype.ok() &&
      std::find(allowed.begin(), allowed.end(), *dtype) != allowed.end()) {
    return *dtype;
  }
  std::vector<std::string> names;
  for (kernels::DType d : allowed) names.emplace_back(kernels::DTypeName(d));
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": \"", value,
                                                 "\" is not auto, ",
                                                 absl::StrJoin(names, ", ")));
}

// --device, --num_threads, --dtype, --cpu_weight_dtype, --kv_cache_dtype.
absl::StatusOr<kernels::BackendOptions> BackendOptionsFromFlags(
    const std::string& model_dir) {
  using kernels::DType;
  kernels::BackendOptions options;
  options.device = kernels::ResolveDevice(absl::GetFlag(FLAGS_device));
  options.num_threads = absl::GetFlag(FLAGS_num_threads);
  ASSIGN_OR_RETURN(std::optional<DType> cuda_dtype,
                   ParseDTypeFlag("dtype", absl::GetFlag(FLAGS_dtype),
                                  {DType::kBF16, DType::kF16}));
  options.cuda_dtype = cuda_dtype.value_or(DType::kBF16);
  ASSIGN_OR_RETURN(
      std::optional<DType> weights,
      ParseDTypeFlag("cpu_weight_dtype", absl::GetFlag(FLAGS_cpu_weight_dtype),
                     {DType::kF32, DType::kBF16, DType::kF16, DType::kI8}));
  if (weights.has_value() && options.device == "cuda") {
    return absl::InvalidArgumentError(
        "--cpu_weight_dtype: the CUDA backend stores weights in --dtype");
  }
  if (!weights.has_value() && options.device == "cpu") {
    // The checkpoint's own width.
    absl::StatusOr<std::unique_ptr<model::Checkpoint>> checkpoint =
        model::Checkpoint::Open(model_dir);
    if (!checkpoint.ok()) return Annotate(checkpoint.status(), "--model: ");
    ASSIGN_OR_RETURN(weights, (*checkpoint)->StoredWeightDType());
  }
  options.cpu_weight_dtype = weights.value_or(DType::kF32);
  ASSIGN_OR_RETURN(
      options.kv_dtype,
      ParseDTypeFlag("kv_cache_dtype", absl::GetFlag(FLAGS_kv_cache_dtype),
                     {DType::kF32, DType::kBF16, DType::kF16}));
  return options;
}

absl::Status WritePortFile(const std::string& path, int port, int metrics_port,
                           int http_port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << "{\"port\": " << port << ", \"metrics_port\": " << metrics_port
        << ", \"http_port\": " << http_port << "}\n";
    if (!out) {
      return absl::InvalidArgumentError(
          absl::StrCat("--port_file: cannot write \"", path, "\""));
    }
  }
  std::filesystem::rename(tmp, path);
  return absl::OkStatus();
}

// The limits every HTTP port shares (--http_* flags).
http_server::HttpServerOptions HttpOptions(const std::string& name) {
  http_server::HttpServerOptions options;
  options.name = name;
  options.max_connections = absl::GetFlag(FLAGS_http_max_connections);
  options.header_timeout = absl::GetFlag(FLAGS_http_header_timeout);
  options.body_timeout = absl::GetFlag(FLAGS_http_body_timeout);
  options.idle_timeout = absl::GetFlag(FLAGS_http_idle_timeout);
  options.write_timeout = absl::GetFlag(FLAGS_http_write_timeout);
  return options;
}

absl::Status Run() {
  ASSIGN_OR_RETURN(LogSeverity severity,
                   ParseLogLevel(absl::GetFlag(FLAGS_log_level)));
  SetMinLogSeverity(severity);
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  absl::StatusOr<model::ModelConfig> loaded = model::LoadModelConfig(model_dir);
  if (!loaded.ok()) return Annotate(loaded.status(), "--model: ");
  const model::ModelConfig config = *std::move(loaded);
  ASSIGN_OR_RETURN(std::string api_key,
                   ReadApiKey(absl::GetFlag(FLAGS_api_key_file)));

  ASSIGN_OR_RETURN(kernels::BackendOptions backend_options,
                   BackendOptionsFromFlags(model_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<kernels::Backend> backend,
                   kernels::CreateBackend(backend_options));
  ALIBI_LOG(INFO) << "backend: " << backend->Name()
                  << " (--device=" << absl::GetFlag(FLAGS_device) << ")";

  std::string served_name = absl::GetFlag(FLAGS_served_model_name);
  if (served_name.empty()) {
    served_name =
        std::filesystem::path(model_dir).lexically_normal().filename().string();
    if (served_name.empty()) {
      served_name = std::filesystem::path(model_dir)
                        .lexically_normal()
                        .parent_path()
                        .filename()
                        .string();
    }
  }
  metrics::MetricsOptions metrics_options;
  metrics_options.model = {
      served_name, config.family,
      std::string(kernels::DTypeName(backend->weight_dtype())),
      std::string(backend->Kind()), kVersion};
    metrics_options.rpc_names = {"Complete",   "CompleteStream", "Score",
                               "ScoreStream", "Tokenize",      "Detokenize",
                               "GetModelInfo"};
  for (const std::string& route : http::OpenAiApi::MetricRoutes()) {
    metrics_options.rpc_names.push_back(route);
  }
  auto metrics = std::make_unique<metrics::Metrics>(metrics_options);
  int metrics_port = -1;
  std::unique_ptr<metrics::MetricsEndpoint> metrics_endpoint;
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    http_server::HttpServerOptions endpoint_options = HttpOptions("metrics");
    endpoint_options.host = absl::GetFlag(FLAGS_metrics_host);
    endpoint_options.port = absl::GetFlag(FLAGS_metrics_port);
    endpoint_options.max_body_bytes = 0;
    auto endpoint =
        metrics::MetricsEndpoint::Start(metrics.get(), endpoint_options);
    if (!endpoint.ok()) return Annotate(endpoint.status(), "--metrics_port: ");
    metrics_endpoint = *std::move(endpoint);
    metrics_port = metrics_endpoint->port();
    ALIBI_LOG(INFO) << "metrics on http://" << absl::GetFlag(FLAGS_metrics_host)
                    << ":" << metrics_port << "/metrics";
  }

  rpc::ServerOptions server_options;
  server_options.host = absl::GetFlag(FLAGS_host);
  server_options.port = absl::GetFlag(FLAGS_port);
  server_options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  server_options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  server_options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  server_options.stall_timeout =
      absl::Seconds(absl::GetFlag(FLAGS_health_stall_seconds));
  const std::string reflection = absl::GetFlag(FLAGS_reflection);
  if (reflection != "auto" && reflection != "on" && reflection != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--reflection: \"", reflection, "\" is not auto, on or off"));
  }
  server_options.enable_reflection =
      reflection == "on" || (reflection == "auto" && api_key.empty());
  if (reflection == "on" && !api_key.empty()) {
    ALIBI_LOG(WARNING) << "--reflection=on with --api_key_file: reflection "
                          "answers without a token";
  }
  server_options.handshake_timeout =
      absl::GetFlag(FLAGS_grpc_handshake_timeout);
  server_options.max_connection_idle =
      absl::GetFlag(FLAGS_grpc_max_connection_idle);
  server_options.max_connection_age =
      absl::GetFlag(FLAGS_grpc_max_connection_age);
  server_options.max_connection_age_grace =
      absl::GetFlag(FLAGS_grpc_max_connection_age_grace);
  server_options.max_concurrent_streams =
      absl::GetFlag(FLAGS_grpc_max_concurrent_streams);
  server_options.keepalive_time = absl::GetFlag(FLAGS_grpc_keepalive_time);
  server_options.memory_limit_bytes =
      absl::GetFlag(FLAGS_grpc_memory_limit_bytes);
  server_options.service.log_requests = absl::GetFlag(FLAGS_log_requests);
  server_options.service.served_model_name = served_name;
  server_options.service.api_key = api_key;
  server_options.service.server_version = kVersion;
  ASSIGN_OR_RETURN(std::unique_ptr<rpc::RpcServer> server,
                   rpc::RpcServer::Start(server_options, metrics.get()));

  // The OpenAI-compatible API, with /metrics beside it (the Gateway API
  // Inference Extension's endpoint picker scrapes the serving port).
  std::unique_ptr<http::OpenAiApi> http_api;
  std::unique_ptr<http_server::HttpServer> http_server;
  int http_port = -1;
  if (absl::GetFlag(FLAGS_http_port) >= 0) {
    http::OpenAiApiOptions api_options;
    api_options.served_model_name = served_name;
    api_options.api_key = api_key;
    api_options.server_version = kVersion;
    api_options.stall_timeout =
        absl::Seconds(absl::GetFlag(FLAGS_health_stall_seconds));
    http_api = std::make_unique<http::OpenAiApi>(api_options, metrics.get());
    http_server::HttpServerOptions options = HttpOptions("http");
    options.host = absl::GetFlag(FLAGS_http_host);
    options.port = absl::GetFlag(FLAGS_http_port);
    options.max_body_bytes = static_cast<size_t>(
        std::max<int64_t>(0, absl::GetFlag(FLAGS_http_max_body_bytes)));
    options.worker_threads = 4;
    options.tls = {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                   absl::GetFlag(FLAGS_tls_client_ca)};
    options.error_body = [api = http_api.get()](int status,
                                                absl::string_view message) {
      return api->CoreErrorBody(status, message);
    };
    auto started = http_server::HttpServer::Start(
        std::move(options),
        [api = http_api.get(), m = metrics.get()](
            http_server::HttpRequest request,
            std::shared_ptr<http_server::Responder> responder) {
          if (metrics::ServeMetricsRequest(*m, request, *responder)) return;
          api->Handle(std::move(request), std::move(responder));
        });
    if (!started.ok()) return Annotate(started.status(), "--http_port: ");
    http_server = *std::move(started);
    http_port = http_server->port();
    ALIBI_LOG(INFO) << "OpenAI-compatible API on "
                    << (absl::GetFlag(FLAGS_tls_cert).empty() ? "http"
                                                              : "https")
                    << "://" << absl::GetFlag(FLAGS_http_host) << ":"
                    << http_port << "/v1";
  }
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    RETURN_IF_ERROR(WritePortFile(absl::GetFlag(FLAGS_port_file),
                                  server->port(), metrics_port, http_port));
  }

  const TimePoint load_start = Now();
  ASSIGN_OR_RETURN(std::unique_ptr<model::Model> model,
                   model::Model::Load(model_dir, backend.get()));
  model->set_decode_graphs(absl::GetFlag(FLAGS_decode_graphs));
  ASSIGN_OR_RETURN(
      std::unique_ptr<tokenizer::Tokenizer> tokenizer,
      tokenizer::Tokenizer::FromFile(model_dir + "/tokenizer.json"));
  frontend::FrontendOptions frontend_options;
  ASSIGN_OR_RETURN(frontend_options.chat_template,
                   frontend::LoadChatTemplate(
                       model_dir, absl::GetFlag(FLAGS_chat_template)));
  engine::EngineConfig engine_config;
  SchedulerConfig& sc = engine_config.scheduler;
  sc.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  sc.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  sc.max_model_len = absl::GetFlag(FLAGS_max_model_len);
  sc.max_queued_requests = absl::GetFlag(FLAGS_max_queued_requests);
  sc.long_prefill_token_threshold =
      absl::GetFlag(FLAGS_long_prefill_token_threshold);
  sc.max_step_attention_pairs = absl::GetFlag(FLAGS_max_step_attention_pairs);
  sc.max_step_logit_rows = absl::GetFlag(FLAGS_max_step_logit_rows);
  sc.kv.block_size = absl::GetFlag(FLAGS_block_size);
  sc.kv.enable_prefix_caching = absl::GetFlag(FLAGS_enable_prefix_caching);
  engine_config.max_logprobs = absl::GetFlag(FLAGS_max_logprobs);
  engine_config.default_kv_window = absl::GetFlag(FLAGS_kv_window);
  engine_config.step_target_seconds =
      absl::GetFlag(FLAGS_step_target_ms) / 1000.0;
  // The activation workspace and the backend's scratch (the attention
  // workspace of the largest step, decode steps padded to their graph bucket
  // included) first, allocated now: the KV budget sees what is left, and no
  // step allocates.
  const int padded_seqs = model::PaddedDecodeSeqs(sc.max_num_seqs);
  const int max_step_tokens = std::max(sc.max_num_batched_tokens, padded_seqs);
  RETURN_IF_ERROR(model->Reserve(max_step_tokens, 128));
  kernels::WorkspaceLimits limits;
  limits.max_tokens = max_step_tokens;
  limits.max_seqs = padded_seqs;
  limits.num_heads = config.num_heads;
  limits.head_dim = config.head_dim;
  ASSIGN_OR_RETURN(const size_t scratch_bytes,
                   backend->ReserveWorkspace(limits));
  ASSIGN_OR_RETURN(
      sc.kv.num_blocks,
      KvBlocks(*model, *backend, model->workspace_bytes() + scratch_bytes));
  kernels::Backend& backend_ref = *backend;
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                   engine::CreateEngine(engine_config, std::move(backend),
                                        std::move(model), metrics.get()));
  const engine::EngineInfo& info = engine->info();
  ALIBI_LOG(INFO) << "model " << served_name << " (" << info.architecture
                  << ", " << info.num_layers << " layers, hidden "
                  << info.hidden_size << ", " << info.num_heads
                  << " heads) loaded in "
                  << absl::FormatDuration(absl::FromChrono(Now() - load_start))
                  << "; KV pool " << info.kv_num_blocks << " blocks x "
                  << info.kv_block_size << " tokens; max_model_len "
                  << info.max_model_len << " (trained "
                  << info.trained_context_length << ")";
  const kernels::MemoryInfo memory = backend_ref.GetMemoryInfo();
  metrics->SetDeviceMemory(static_cast<int64_t>(memory.used_bytes),
                           static_cast<int64_t>(memory.total_bytes));
  const bool chat = frontend_options.chat_template != nullptr;
  frontend::Frontend frontend(
      engine.get(),
      std::shared_ptr<const tokenizer::Tokenizer>(std::move(tokenizer)),
      std::move(frontend_options));
  server->SetFrontend(&frontend);
  if (http_api != nullptr) http_api->SetFrontend(&frontend);
  g_ready.store(true);
  ALIBI_LOG(INFO) << "ready: SERVING on port " << server->port()
                  << (http_port >= 0 ? absl::StrCat(" (HTTP ", http_port, ")")
                                     : std::string())
                  << (chat ? "; chat template loaded"
                           : "; no chat template (/v1/chat/completions "
                             "answers 400)");

  int signal = 0;
  {
    std::unique_lock<std::mutex> lock(g_signal_mu);
    g_signal_cv.wait(lock, [] { return g_signal != 0; });
    signal = g_signal;
  }
  ALIBI_LOG(INFO) << "signal " << signal << ": draining for up to "
                  << absl::GetFlag(FLAGS_drain_seconds) << " s";
  // Both transports stop admitting at once; their calls in flight share one
  // grace period, then the engine ends what is left.
  const absl::Duration grace =
      absl::Seconds(absl::GetFlag(FLAGS_drain_seconds));
  const absl::Time drain_end = absl::Now() + grace;
  server->StartDraining();
  if (http_api != nullptr) {
    http_api->StartDraining();
    if (!http_api->WaitForIdle(grace)) {
      ALIBI_LOG(WARNING) << "drain time over with " << http_api->in_flight()
                         << " HTTP requests in flight";
    }
  }
  server->Drain(std::max(absl::ZeroDuration(), drain_end - absl::Now()));
  if (http_api != nullptr) {
    // The engine has ended what was left: let those answers go out.
    http_api->WaitForIdle(absl::Milliseconds(500));
    http_server->Shutdown(/*flush_timeout=*/absl::Seconds(2));
  }
  ALIBI_LOG(INFO) << "stopped";
  // Skip the remaining destructors: the metrics endpoint's takes up to 2 s
  // to notice its stop, and the drain budget is already spent.
  std::fflush(stderr);
  std::_Exit(0);
}

}  // namespace
}  // namespace alibi

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "alibi-server: gRPC and OpenAI-compatible HTTP inference server for "
      "ALiBi language models.\n"
      "  alibi-server --model models/alibi-tiny-en --port 50051 "
      "--http_port 8000");
  absl::ParseCommandLine(argc, argv);
  alibi::InstallSignalHandlers();
  const absl::Status status = alibi::Run();
  ALIBI_LOG(ERROR) << status;
  return 1;
}
