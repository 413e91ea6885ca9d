#include "client/bench/bench.h"

#include <grpcpp/client_context.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "alibi/v1/inference.grpc.pb.h"
#include "client/bench/arrivals.h"
#include "client/bench/http_client.h"
#include "client/bench/report.h"
#include "client/bench/runner.h"
#include "client/flags.h"
#include "client/status_format.h"
#include "nlohmann/json.hpp"

namespace alibi::client::bench {
namespace {

// Parsed flag values before validation.
struct RawBenchFlags {
  std::string backend = "grpc";
  std::string request_rate = "inf";
  std::string workload = "random";
  std::optional<bool> ignore_eos;
  bool help = false;
};

void RegisterBenchFlags(FlagSet& flags, BenchConfig* c, RawBenchFlags* raw) {
  flags.Add("backend", &raw->backend,
            "grpc (default): the gRPC API; openai: the OpenAI-compatible "
            "HTTP API, POST /v1/completions streamed (--address then "
            "defaults to localhost:8000; no TLS)");
  flags.Add("model", &c->model,
            "backend openai: the requests' model (default: the one "
            "/v1/models lists)");
  AddConnectionFlags(flags, &c->connection);
  flags.Add("num_channels", &c->num_channels,
            "gRPC channels (TCP connections) to spread requests over "
            "(default 1)");
  flags.Add("num_requests", &c->num_requests, "requests to send (default 100)");
  flags.Add("request_rate", &raw->request_rate,
            "requests per second with Poisson arrivals; inf (default): all "
            "at once");
  flags.Add("concurrency", &c->concurrency,
            "most requests in flight (0, default: no cap); without a rate "
            "this is a closed loop of N clients");
  flags.Add("workload", &raw->workload,
            "random (default): random token ids; corpus: text cut from "
            "--corpus; score: the Score RPC");
  flags.Add("input_len", &c->input_len, "prompt tokens (default 1024)");
  flags.Add("output_len", &c->output_len,
            "max_tokens per request (default 128)");
  flags.Add("range_ratio", &c->range_ratio,
            "lengths uniform in [len*(1-r), len*(1+r)], r in [0, 1) "
            "(default 0)");
  flags.Add("corpus", &c->corpus,
            "text file to cut prompts from (corpus; optional for score)");
  flags.Add("chars_per_token", &c->chars_per_token,
            "corpus bytes per token (default 0: measured with Tokenize)");
  flags.Add("seed", &c->seed, "seed of the workload and arrivals (default 0)");
  flags.Add("slo_ttft_ms", &c->slo.ttft_ms, "goodput SLO on TTFT");
  flags.Add("slo_tpot_ms", &c->slo.tpot_ms, "goodput SLO on TPOT");
  flags.Add("slo_e2e_ms", &c->slo.e2e_ms, "goodput SLO on E2E latency");
  flags.Add("json", &c->json_path, "write the report as JSON to this path");
  flags.Add("json_requests", &c->json_requests,
            "include per-request records in the JSON report");
  flags.Add("ignore_eos", &raw->ignore_eos,
            "generate output_len tokens whatever the model says (default "
            "true for random, false otherwise)");
  flags.Add("temperature", &c->temperature, "sampling temperature (default 0)");
  flags.Add("top_p", &c->top_p, "nucleus sampling (default: off)");
  flags.Add("top_k", &c->top_k, "top-k sampling (default 0: off)");
  flags.Add("top_logprobs", &c->top_logprobs,
            "score workload: alternatives per position (default 0)");
  flags.Add("progress", &c->progress,
            "progress bar on stderr (default: when stderr is a terminal)");
  flags.Add("help", &raw->help, "show usage");
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

std::string NowRfc3339() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                          absl::UTCTimeZone());
}

// Bytes per token of the corpus, from one Tokenize call on its start.
absl::StatusOr<double> MeasureCharsPerToken(const Connection& connection,
                                            const std::string& corpus) {
  auto stub = v1::InferenceService::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Configure(&context, 30000);
  v1::TokenizeRequest request;
  request.set_text(CutCorpus(corpus, 0, 16384));
  v1::TokenizeResponse response;
  grpc::Status status = stub->Tokenize(&context, request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("Tokenize (to measure the corpus' bytes per token): ",
                     FormatRpcError(status, connection.address())));
  }
  if (response.token_ids().empty()) {
    return absl::InvalidArgumentError("--corpus: its start has no tokens");
  }
  return static_cast<double>(request.text().size()) / response.token_ids_size();
}

// What GetModelInfo would say, from the OpenAI-compatible API: /v1/models
// (its model, max_model_len and alibi-serve's vocab_size) and /version.
absl::StatusOr<v1::GetModelInfoResponse> OpenAiModelInfo(HttpClient& client) {
  absl::StatusOr<HttpClient::Response> models =
      client.Call("GET", "/v1/models", "");
  if (!models.ok()) return models.status();
  const nlohmann::json j =
      nlohmann::json::parse(models->body, nullptr, /*allow_exceptions=*/false);
  if (models->status != 200 || !j.is_object() || !j.contains("data") ||
      !j["data"].is_array() || j["data"].empty()) {
    return absl::UnavailableError(absl::StrCat("GET /v1/models answered ",
                                               models->status, ": ",
                                               models->body.substr(0, 200)));
  }
  const nlohmann::json& m = j["data"][0];
  v1::GetModelInfoResponse info;
  info.set_model(m.value("id", ""));
  info.set_max_context_length(m.value("max_model_len", 0));
  info.set_vocab_size(m.value("vocab_size", 0));
  absl::StatusOr<HttpClient::Response> version =
      client.Call("GET", "/version", "");
  if (version.ok() && version->status == 200) {
    const nlohmann::json v =
        nlohmann::json::parse(version->body, nullptr, false);
    if (v.is_object()) info.set_server_version(v.value("version", ""));
  }
  return info;
}

// MeasureCharsPerToken through POST /tokenize.
absl::StatusOr<double> MeasureCharsPerTokenOpenAi(HttpClient& client,
                                                  const std::string& corpus) {
  const std::string text = CutCorpus(corpus, 0, 16384);
  absl::StatusOr<HttpClient::Response> r = client.Call(
      "POST", "/tokenize", nlohmann::json({{"prompt", text}}).dump());
  if (!r.ok()) return r.status();
  const nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
  if (r->status != 200 || !j.is_object() || !j.contains("count")) {
    return absl::UnavailableError(
        absl::StrCat("POST /tokenize (to measure the corpus' bytes per token) "
                     "answered ",
                     r->status, ": ", r->body.substr(0, 200)));
  }
  const int64_t count = j["count"].get<int64_t>();
  if (count == 0) {
    return absl::InvalidArgumentError("--corpus: its start has no tokens");
  }
  return static_cast<double>(text.size()) / static_cast<double>(count);
}

}  // namespace

absl::StatusOr<BenchConfig> ParseBenchArgs(absl::Span<const std::string> args,
                                           bool* help_requested) {
  BenchConfig c;
  RawBenchFlags raw;
  FlagSet flags;
  RegisterBenchFlags(flags, &c, &raw);
  std::vector<std::string> positional;
  if (absl::Status s = flags.Parse(args, &positional); !s.ok()) return s;
  *help_requested = raw.help;
  if (raw.help) return BenchConfig();
  if (!positional.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unexpected argument \"", positional[0], "\" (flags only)"));
  }
  auto kind = ParseWorkloadKind(raw.workload);
  if (!kind.ok()) return kind.status();
  c.workload = *kind;
  if (raw.backend == "openai") {
    c.backend = Backend::kOpenAi;
    if (c.workload == WorkloadKind::kScore) {
      return absl::InvalidArgumentError(
          "--workload score needs --backend grpc (OpenAI's API has no "
          "scoring endpoint)");
    }
    if (c.connection.tls || !c.connection.tls_ca.empty() ||
        !c.connection.tls_cert.empty() ||
        !c.connection.tls_server_name.empty()) {
      return absl::InvalidArgumentError(
          "--backend openai speaks plaintext HTTP; the TLS flags apply to "
          "--backend grpc");
    }
    if (flags.IsSet("num_channels")) {
      return absl::InvalidArgumentError(
          "--num_channels applies to --backend grpc");
    }
    if (!flags.IsSet("address")) c.connection.address = "localhost:8000";
  } else if (raw.backend != "grpc") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--backend: expected grpc or openai, got \"", raw.backend, "\""));
  } else if (!c.model.empty()) {
    return absl::InvalidArgumentError("--model applies to --backend openai");
  }

  const std::string rate = absl::AsciiStrToLower(raw.request_rate);
  if (rate == "inf" || rate == "infinity") {
    c.request_rate = std::numeric_limits<double>::infinity();
  } else if (!ParseFlagValue(rate, &c.request_rate).ok() ||
             !(c.request_rate > 0) || std::isnan(c.request_rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--request_rate: expected a positive number or inf, got \"",
        raw.request_rate, "\""));
  }
  if (c.num_requests < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--num_requests: must be >= 1, got ", c.num_requests));
  }
  if (c.concurrency < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--concurrency: must be >= 0 (0: no cap), got ", c.concurrency));
  }
  if (c.num_channels < 1 || c.num_channels > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--num_channels: must be in [1, 1024], got ", c.num_channels));
  }
  const int min_input = c.workload == WorkloadKind::kScore ? 2 : 1;
  if (c.input_len < min_input) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--input_len: must be >= ", min_input, ", got ", c.input_len));
  }
  if (c.output_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--output_len: must be >= 1, got ", c.output_len));
  }
  if (!(c.range_ratio >= 0 && c.range_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--range_ratio: must be in [0, 1), got ", c.range_ratio));
  }
  if (c.workload == WorkloadKind::kCorpus && c.corpus.empty()) {
    return absl::InvalidArgumentError("--workload corpus needs --corpus PATH");
  }
  if (c.workload == WorkloadKind::kRandom && !c.corpus.empty()) {
    return absl::InvalidArgumentError(
        "--corpus applies to --workload corpus or score, not random");
  }
  if (c.chars_per_token < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--chars_per_token: must be >= 0 (0: measure), got ",
                     c.chars_per_token));
  }
  for (const auto& [name, value] : {std::pair{"slo_ttft_ms", c.slo.ttft_ms},
                                    std::pair{"slo_tpot_ms", c.slo.tpot_ms},
                                    std::pair{"slo_e2e_ms", c.slo.e2e_ms}}) {
    if (value && !(*value > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": must be > 0, got ", *value));
    }
  }
  if (c.workload == WorkloadKind::kScore &&
      (flags.IsSet("output_len") || flags.IsSet("ignore_eos") ||
       flags.IsSet("temperature") || flags.IsSet("top_p") ||
       flags.IsSet("top_k") || flags.IsSet("slo_tpot_ms"))) {
    return absl::InvalidArgumentError(
        "--output_len, --ignore_eos, --temperature, --top_p, --top_k and "
        "--slo_tpot_ms do not apply to --workload score");
  }
  if (c.workload != WorkloadKind::kScore && flags.IsSet("top_logprobs")) {
    return absl::InvalidArgumentError(
        "--top_logprobs applies to --workload score only");
  }
  c.ignore_eos = raw.ignore_eos.value_or(c.workload == WorkloadKind::kRandom);
  return c;
}

std::string BenchUsage() {
  BenchConfig c;
  RawBenchFlags raw;
  FlagSet flags;
  RegisterBenchFlags(flags, &c, &raw);
  return absl::StrCat(
      "usage: alibi-bench [flags]\n"
      "\n"
      "Sends a workload to alibi-server and reports throughput, TTFT, TPOT,\n"
      "ITL, E2E latency and goodput as vLLM's benchmark_serving does.\n"
      "\n"
      "examples:\n"
      "  alibi-bench --num_requests 200 --request_rate 8 --input_len 256 "
      "--output_len 64\n"
      "  alibi-bench --workload corpus --corpus kjv.txt --concurrency 16 "
      "--json out.json\n"
      "  alibi-bench --workload score --input_len 2048 --num_requests 20\n"
      "  alibi-bench --backend openai --address localhost:8000 "
      "--concurrency 1 --input_len 128\n"
      "\n"
      "flags:\n",
      flags.Help(),
      "\nexit codes: 0 run completed (some requests succeeded); 1 server "
      "unreachable or every request failed; 2 usage error\n");
}

int RunBench(absl::Span<const std::string> args, std::ostream& out,
             std::ostream& err) {
  bool help = false;
  absl::StatusOr<BenchConfig> parsed = ParseBenchArgs(args, &help);
  if (!parsed.ok()) {
    err << "error: " << parsed.status().message() << "\n"
        << "run 'alibi-bench --help' for usage\n";
    return 2;
  }
  if (help) {
    out << BenchUsage();
    return 0;
  }
  const BenchConfig& c = *parsed;
  std::string corpus;
  if (!c.corpus.empty()) {
    absl::StatusOr<std::string> text = ReadFile(c.corpus);
    if (!text.ok()) {
      err << "error: --corpus: " << text.status().message() << "\n";
      return 2;
    }
    corpus = std::move(*text);
  }
  absl::StatusOr<Connection> connection =
      Connection::Create(c.connection, c.num_channels);
  if (!connection.ok()) {
    err << "error: " << connection.status().message() << "\n";
    return 2;
  }

  const bool openai = c.backend == Backend::kOpenAi;
  std::unique_ptr<HttpClient> http;
  if (openai) {
    http = std::make_unique<HttpClient>(c.connection.address,
                                        connection->authorization(),
                                        c.connection.deadline_ms);
  }

  // The model: vocabulary for random ids, and context length for a warning.
  v1::GetModelInfoResponse info;
  if (openai) {
    absl::StatusOr<v1::GetModelInfoResponse> got = OpenAiModelInfo(*http);
    if (!got.ok()) {
      err << "alibi-bench: " << got.status().message() << "\n"
          << "alibi-bench: the model could not be listed; nothing was sent\n";
      return 1;
    }
    info = *std::move(got);
    if (c.workload == WorkloadKind::kRandom && info.vocab_size() <= 0) {
      err << "alibi-bench: /v1/models gives no vocab_size (alibi-serve "
             "does): use --workload corpus with this server\n";
      return 1;
    }
  } else {
    auto stub = v1::InferenceService::NewStub(connection->channel());
    grpc::ClientContext context;
    connection->Configure(&context, 30000);
    grpc::Status status =
        stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
    if (!status.ok()) {
      err << FormatRpcError(status, connection->address()) << "\n"
          << "alibi-bench: GetModelInfo failed; nothing was sent\n";
      return 1;
    }
  }

  WorkloadOptions w;
  w.kind = c.workload;
  w.num_requests = c.num_requests;
  w.input_len = c.input_len;
  w.output_len = c.output_len;
  w.range_ratio = c.range_ratio;
  w.seed = c.seed;
  w.vocab_size = info.vocab_size();
  w.corpus = corpus;
  std::optional<double> chars_per_token;
  if (!corpus.empty()) {
    if (c.chars_per_token > 0) {
      chars_per_token = c.chars_per_token;
    } else {
      absl::StatusOr<double> measured =
          openai ? MeasureCharsPerTokenOpenAi(*http, corpus)
                 : MeasureCharsPerToken(*connection, corpus);
      if (!measured.ok()) {
        err << "alibi-bench: " << measured.status().message() << "\n";
        return 1;
      }
      chars_per_token = *measured;
    }
    w.chars_per_token = *chars_per_token;
  }
  absl::StatusOr<std::vector<WorkloadRequest>> workload = MakeWorkload(w);
  if (!workload.ok()) {
    err << "error: " << workload.status().message() << "\n";
    return 2;
  }
  const bool score = c.workload == WorkloadKind::kScore;
  const auto [in_lo, in_hi] =
      LengthRange(c.input_len, c.range_ratio, score ? 2 : 1);
  const auto [out_lo, out_hi] = LengthRange(c.output_len, c.range_ratio, 1);
  const int64_t longest = in_hi + (score ? 0 : out_hi);
  if (info.max_context_length() > 0 && longest > info.max_context_length()) {
    err << "alibi-bench: warning: requests of up to " << longest
        << " tokens exceed the server's max_context_length "
        << info.max_context_length() << "; expect INVALID_ARGUMENT failures\n";
  }

  RunOptions run_options;
  run_options.concurrency = c.concurrency;
  run_options.deadline_ms = c.connection.deadline_ms;
  run_options.progress = c.progress.value_or(isatty(STDERR_FILENO) == 1);
  run_options.score = score;
  run_options.score_top_logprobs = c.top_logprobs;
  if (c.temperature) run_options.sampling.set_temperature(*c.temperature);
  if (c.top_p) run_options.sampling.set_top_p(*c.top_p);
  run_options.sampling.set_top_k(c.top_k);
  run_options.sampling.set_ignore_eos(c.ignore_eos);
  // Seeded sampling (--seed + request index) keeps runs reproducible.
  run_options.sampling.set_seed(c.seed);

  const std::vector<double> arrivals =
      PoissonArrivalTimes(c.num_requests, c.request_rate, ArrivalSeed(c.seed));

  Report report;
  report.started_at = NowRfc3339();
  err << absl::StrFormat(
      "alibi-bench: %d %s requests to %s (%s, %s), rate %s, concurrency %s\n",
      c.num_requests, WorkloadKindName(c.workload), connection->address(),
      info.model(), openai ? "OpenAI HTTP API" : "gRPC",
      std::isinf(c.request_rate) ? std::string("inf")
                                 : absl::StrFormat("%g/s", c.request_rate),
      c.concurrency > 0 ? absl::StrCat(c.concurrency) : std::string("none"));
  RunResult run =
      openai ? RunLoadOpenAi(*http, c.model.empty() ? info.model() : c.model,
                             *workload, arrivals, run_options)
             : RunLoad(*connection, *workload, arrivals, run_options);

  ReportConfig& rc = report.config;
  rc.backend = openai ? "openai" : "grpc";
  rc.address = c.connection.address;
  rc.workload = WorkloadKindName(c.workload);
  rc.num_requests = c.num_requests;
  rc.request_rate = c.request_rate;
  rc.concurrency = c.concurrency;
  rc.input_len = c.input_len;
  rc.output_len = score ? 0 : c.output_len;
  rc.range_ratio = c.range_ratio;
  rc.seed = c.seed;
  rc.ignore_eos = !score && c.ignore_eos;
  if (!score) {
    rc.temperature = c.temperature;
    rc.top_p = c.top_p;
    rc.top_k = c.top_k;
  }
  rc.corpus = c.corpus;
  rc.chars_per_token = chars_per_token;
  rc.deadline_ms = c.connection.deadline_ms;
  rc.num_channels = c.num_channels;
  rc.tls = c.connection.tls || !c.connection.tls_ca.empty() ||
           !c.connection.tls_cert.empty() ||
           !c.connection.tls_server_name.empty();
  rc.slo = c.slo;
  report.server = ServerInfo{info.model(),          info.architecture(),
                             info.device(),         info.dtype(),
                             info.server_version(), info.max_context_length(),
                             info.vocab_size()};
  report.metrics = ComputeMetrics(run.results, run.duration_s, c.slo);

  // One example message per failure code.
  std::map<std::string, std::string> examples;
  for (const RequestResult& r : run.results) {
    if (!r.ok) examples.emplace(r.code, r.error);
  }
  for (const auto& [code, message] : examples) {
    err << "alibi-bench: failures with " << code << ", e.g.: " << message
        << "\n";
  }
  if (c.json_requests) report.requests = run.results;

  out << FormatReportTable(report) << std::flush;
  int exit_code = report.metrics.completed > 0 ? 0 : 1;
  if (!c.json_path.empty()) {
    std::ofstream file(c.json_path, std::ios::trunc);
    file << ReportToJson(report).dump(2) << "\n";
    file.close();
    if (!file) {
      err << "error: --json: cannot write " << c.json_path << "\n";
      exit_code = 1;
    }
  }
  return exit_code;
}

}  // namespace alibi::client::bench
