#include "client/cli.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/client_context.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "alibi/v1/inference.grpc.pb.h"
#include "client/status_format.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace alibi::client {
namespace {

using Clock = std::chrono::steady_clock;
namespace health = ::grpc::health::v1;

// ---------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------

// Every flag of every command, parsed in one pass; ParseCliArgs then checks
// that the flags given apply to the command.
struct RawFlags {
  ConnectionOptions connection;
  bool json = false;
  bool help = false;
  // Inputs.
  std::optional<std::string> prompt;
  std::optional<std::string> text;
  std::optional<std::string> file;
  std::vector<int32_t> token_ids;
  // CompletionParams.
  std::optional<int32_t> max_tokens;
  std::optional<int32_t> logprobs;
  bool echo = false;
  int32_t priority = 0;
  std::string request_id;
  std::optional<int32_t> window;  // kv_window (complete, stream, score)
  // SamplingParams.
  std::optional<float> temperature;
  int32_t top_k = 0;
  std::optional<float> top_p;
  float min_p = 0;
  std::optional<float> repetition_penalty;
  float presence_penalty = 0;
  float frequency_penalty = 0;
  std::optional<uint64_t> seed;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  int32_t min_tokens = 0;
  bool include_stop_str_in_output = false;
  std::optional<bool> skip_special_tokens;
  // Score.
  int32_t top_logprobs = 0;
  // Health.
  std::string service;
};

void RegisterFlags(FlagSet& flags, RawFlags* f) {
  AddConnectionFlags(flags, &f->connection);
  flags.Add("json", &f->json, "print the response as JSON (proto field names)");
  flags.Add("help", &f->help, "show usage");
  flags.Add("h", &f->help, "show usage");

  flags.Add("prompt", &f->prompt, "the prompt text (or a positional argument)");
  flags.Add("text", &f->text, "the input text (or a positional argument)");
  flags.Add("file", &f->file, "read the input text from a file ('-': stdin)");
  flags.Add("token_ids", &f->token_ids,
            "the input as token ids: \"1,2,3\" (instead of text)");

  flags.Add("max_tokens", &f->max_tokens,
            "most tokens to generate (server default 16)");
  flags.Add("temperature", &f->temperature, "0 = greedy; server default 1.0");
  flags.Add("top_k", &f->top_k, "keep the k most likely tokens (0: off)");
  flags.Add("top_p", &f->top_p, "nucleus sampling, in (0, 1] (default 1)");
  flags.Add("min_p", &f->min_p,
            "drop tokens below min_p x the top probability (0: off)");
  flags.Add("repetition_penalty", &f->repetition_penalty,
            "in (0, 10]; 1 = off (default)");
  flags.Add("presence_penalty", &f->presence_penalty, "in [-2, 2]");
  flags.Add("frequency_penalty", &f->frequency_penalty, "in [-2, 2]");
  flags.Add("seed", &f->seed, "sampling seed (default: a fresh random one)");
  flags.Add("ignore_eos", &f->ignore_eos,
            "keep generating after the end-of-sequence token");
  flags.Add("stop", &f->stop, "stop string (repeatable)");
  flags.Add("stop_token_ids", &f->stop_token_ids,
            "stop token ids: \"5,7\" (repeatable)");
  flags.Add("min_tokens", &f->min_tokens,
            "do not stop before this many tokens");
  flags.Add("include_stop_str_in_output", &f->include_stop_str_in_output,
            "keep the matched stop string in the text");
  flags.Add("skip_special_tokens", &f->skip_special_tokens,
            "omit special tokens from the text (server default true; "
            "--noskip_special_tokens to keep them)");
  flags.Add("logprobs", &f->logprobs,
            "return each generated token's logprob and this many "
            "alternatives (0..20)");
  flags.Add("echo", &f->echo, "return the prompt with the completion");
  flags.Add("priority", &f->priority, "scheduling priority (lower first)");
  flags.Add("request_id", &f->request_id, "caller's request id (for logs)");
  flags.Add("window", &f->window,
            "sliding KV window in tokens (0: off; unset: the server's): "
            "bounded memory for any length; score streams the results");

  flags.Add("top_logprobs", &f->top_logprobs,
            "alternatives per position (0..20)");
  flags.Add("service", &f->service,
            "health service name (default \"\": the whole server)");
}

const std::vector<std::string>& GenerationFlagNames() {
  static const auto* const kNames =
      new std::vector<std::string>{"prompt",
                                   "file",
                                   "token_ids",
                                   "max_tokens",
                                   "temperature",
                                   "top_k",
                                   "top_p",
                                   "min_p",
                                   "repetition_penalty",
                                   "presence_penalty",
                                   "frequency_penalty",
                                   "seed",
                                   "ignore_eos",
                                   "stop",
                                   "stop_token_ids",
                                   "min_tokens",
                                   "include_stop_str_in_output",
                                   "skip_special_tokens",
                                   "logprobs",
                                   "echo",
                                   "priority",
                                   "request_id",
                                   "window"};
  return *kNames;
}

// The flags (beyond the connection flags, --json and --help) each command
// accepts; nullptr for an unknown command.
const std::vector<std::string>* CommandFlags(absl::string_view command) {
  static const auto* const kScore = new std::vector<std::string>{
      "text",     "file",       "token_ids", "top_logprobs",
      "priority", "request_id", "window"};
  static const auto* const kTokenize =
      new std::vector<std::string>{"text", "file"};
  static const auto* const kNone = new std::vector<std::string>{};
  static const auto* const kHealth = new std::vector<std::string>{"service"};
  if (command == "complete" || command == "stream") {
    return &GenerationFlagNames();
  }
  if (command == "score") return kScore;
  if (command == "tokenize") return kTokenize;
  if (command == "info") return kNone;
  if (command == "health") return kHealth;
  return nullptr;
}

absl::StatusOr<std::string> ReadInputFile(const std::string& path) {
  std::ostringstream contents;
  if (path == "-") {
    contents << std::cin.rdbuf();
    return contents.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat("--file: cannot read ", path));
  contents << in.rdbuf();
  return contents.str();
}

// The one input of complete / stream / score / tokenize: a positional
// argument, the named text flag, --file or (unless !allow_ids) --token_ids.
struct Input {
  std::optional<std::string> text;
  std::vector<int32_t> ids;
};

absl::StatusOr<Input> ResolveInput(const std::vector<std::string>& positional,
                                   const std::optional<std::string>& named,
                                   absl::string_view named_flag,
                                   const RawFlags& f, bool ids_given,
                                   bool allow_ids) {
  if (positional.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected one input argument, got ", positional.size(),
        " (quote text with spaces: \"", absl::StrJoin(positional, " "), "\")"));
  }
  int sources = static_cast<int>(positional.size()) + (named ? 1 : 0) +
                (f.file ? 1 : 0) + (ids_given ? 1 : 0);
  const std::string choices =
      absl::StrCat("a positional argument, --", named_flag, ", --file",
                   allow_ids ? " or --token_ids" : "");
  if (sources == 0) {
    return absl::InvalidArgumentError(absl::StrCat("no input: give ", choices));
  }
  if (sources > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("give exactly one input: ", choices));
  }
  Input input;
  if (!positional.empty()) {
    input.text = positional[0];
  } else if (named) {
    input.text = *named;
  } else if (f.file) {
    auto contents = ReadInputFile(*f.file);
    if (!contents.ok()) return contents.status();
    input.text = std::move(*contents);
  } else {
    input.ids = f.token_ids;
  }
  return input;
}

void FillCompletion(const RawFlags& f, const Input& input,
                    v1::CompletionParams* p) {
  if (input.text) {
    p->set_text(*input.text);
  } else {
    for (int32_t id : input.ids) p->add_token_ids(id);
  }
  if (f.max_tokens) p->set_max_tokens(*f.max_tokens);
  if (f.logprobs) p->set_logprobs(*f.logprobs);
  p->set_echo(f.echo);
  p->set_priority(f.priority);
  p->set_request_id(f.request_id);
  if (f.window) p->set_kv_window(*f.window);
  v1::SamplingParams* s = p->mutable_sampling();
  if (f.temperature) s->set_temperature(*f.temperature);
  s->set_top_k(f.top_k);
  if (f.top_p) s->set_top_p(*f.top_p);
  s->set_min_p(f.min_p);
  if (f.repetition_penalty) s->set_repetition_penalty(*f.repetition_penalty);
  s->set_presence_penalty(f.presence_penalty);
  s->set_frequency_penalty(f.frequency_penalty);
  if (f.seed) s->set_seed(*f.seed);
  s->set_ignore_eos(f.ignore_eos);
  for (const std::string& stop : f.stop) s->add_stop(stop);
  for (int32_t id : f.stop_token_ids) s->add_stop_token_ids(id);
  s->set_min_tokens(f.min_tokens);
  s->set_include_stop_str_in_output(f.include_stop_str_in_output);
  if (f.skip_special_tokens) s->set_skip_special_tokens(*f.skip_special_tokens);
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::StrCat("{\"error\": \"", absl::CEscape(status.ToString()),
                        "\"}\n");
  }
  if (!pretty) json.push_back('\n');  // pretty output ends with one already
  return json;
}

// "\" the\"" with control and quote characters escaped, UTF-8 kept.
std::string Quote(absl::string_view token) {
  return absl::StrCat("\"", absl::Utf8SafeCEscape(token), "\"");
}

double Millis(const google::protobuf::Duration& d) {
  return static_cast<double>(d.seconds()) * 1e3 +
         static_cast<double>(d.nanos()) * 1e-6;
}

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

void PrintTokenLogprobs(
    absl::string_view title,
    const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& logprobs,
    std::ostream& out) {
  if (logprobs.empty()) return;
  out << title << ":\n";
  out << absl::StrFormat("  %4s  %8s  %10s  %s\n", "pos", "id", "logprob",
                         "token");
  int pos = 0;
  for (const v1::TokenLogprob& lp : logprobs) {
    out << absl::StrFormat("  %4d  %8d  %10.4f  %s", pos++, lp.token_id(),
                           lp.logprob(), Quote(lp.token()));
    if (!lp.top_logprobs().empty()) {
      std::vector<std::string> alts;
      for (const v1::TopLogprob& top : lp.top_logprobs()) {
        alts.push_back(
            absl::StrFormat("%s %.4f", Quote(top.token()), top.logprob()));
      }
      out << "  top: " << absl::StrJoin(alts, ", ");
    }
    out << "\n";
  }
}

// One line to stderr after a completion: what the server says about it.
void PrintCompletionSummary(v1::FinishReason reason,
                            absl::string_view stop_reason,
                            const v1::Usage& usage, const v1::Timings& timings,
                            absl::string_view id,
                            std::optional<double> client_ttft_ms,
                            double client_total_ms, std::ostream& err) {
  std::string line = absl::StrCat("[finish_reason: ", FinishReasonName(reason));
  if (!stop_reason.empty()) {
    absl::StrAppend(&line, ", stop_reason: ", Quote(stop_reason));
  }
  absl::StrAppend(&line, ", prompt_tokens: ", usage.prompt_tokens(),
                  ", completion_tokens: ", usage.completion_tokens(),
                  ", cached_prompt_tokens: ", usage.cached_prompt_tokens());
  absl::StrAppend(
      &line, absl::StrFormat(", server queue/ttft/total: %.1f/%.1f/%.1f ms",
                             Millis(timings.queue_time()),
                             Millis(timings.time_to_first_token()),
                             Millis(timings.total_time())));
  if (client_ttft_ms) {
    absl::StrAppend(&line, absl::StrFormat(", client ttft/total: %.1f/%.1f ms",
                                           *client_ttft_ms, client_total_ms));
  } else {
    absl::StrAppend(
        &line, absl::StrFormat(", client total: %.1f ms", client_total_ms));
  }
  if (!id.empty()) absl::StrAppend(&line, ", id: ", id);
  err << line << "]\n";
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

int RpcFailed(const grpc::Status& status, const Connection& connection,
              std::ostream& err) {
  err << FormatRpcError(status, connection.address()) << "\n";
  return kExitRpcError;
}

int RunComplete(const CliInvocation& inv, const Connection& connection,
                std::ostream& out, std::ostream& err) {
  auto stub = v1::InferenceService::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Configure(&context);
  v1::CompleteRequest request;
  *request.mutable_params() = inv.completion;
  v1::CompleteResponse response;
  const Clock::time_point start = Clock::now();
  grpc::Status status = stub->Complete(&context, request, &response);
  const double total_ms = MillisSince(start);
  if (!status.ok()) return RpcFailed(status, connection, err);
  if (inv.json) {
    out << ToJson(response, /*pretty=*/true);
    return kExitOk;
  }
  out << response.text() << "\n";
  PrintTokenLogprobs("prompt_logprobs", response.prompt_logprobs(), out);
  PrintTokenLogprobs("logprobs", response.logprobs(), out);
  PrintCompletionSummary(response.finish_reason(), response.stop_reason(),
                         response.usage(), response.timings(), response.id(),
                         std::nullopt, total_ms, err);
  return kExitOk;
}

int RunStream(const CliInvocation& inv, const Connection& connection,
              std::ostream& out, std::ostream& err) {
  auto stub = v1::InferenceService::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Configure(&context);
  v1::CompleteStreamRequest request;
  *request.mutable_params() = inv.completion;
  const Clock::time_point start = Clock::now();
  auto reader = stub->CompleteStream(&context, request);
  v1::CompleteStreamResponse message;
  v1::CompleteStreamResponse last;
  google::protobuf::RepeatedPtrField<v1::TokenLogprob> logprobs;
  google::protobuf::RepeatedPtrField<v1::TokenLogprob> prompt_logprobs;
  std::optional<double> ttft_ms;
  bool wrote_text = false;
  while (reader->Read(&message)) {
    if (!ttft_ms && !message.token_ids().empty()) ttft_ms = MillisSince(start);
    if (inv.json) {
      out << ToJson(message, /*pretty=*/false) << std::flush;
    } else if (!message.text().empty()) {
      out << message.text() << std::flush;
      wrote_text = true;
    }
    logprobs.MergeFrom(message.logprobs());
    prompt_logprobs.MergeFrom(message.prompt_logprobs());
    if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      last = message;
    }
  }
  grpc::Status status = reader->Finish();
  const double total_ms = MillisSince(start);
  // Text mode ends with a newline, as `complete` does.
  if (!inv.json && (wrote_text || status.ok())) out << "\n" << std::flush;
  if (!status.ok()) return RpcFailed(status, connection, err);
  if (inv.json) return kExitOk;
  PrintTokenLogprobs("prompt_logprobs", prompt_logprobs, out);
  PrintTokenLogprobs("logprobs", logprobs, out);
  PrintCompletionSummary(last.finish_reason(), last.stop_reason(), last.usage(),
                         last.timings(), last.id(), ttft_ms, total_ms, err);
  return kExitOk;
}

// One line per scored position: position, id, logprob, token text, and
// alternatives.
void PrintScoreRow(int position, int32_t id, const std::string& logprob,
                   const std::string& token, const v1::TopLogprobs* top,
                   std::ostream& out) {
  out << absl::StrFormat("  %5d  %8d  %10s  %s", position, id, logprob, token);
  if (top != nullptr) {
    std::vector<std::string> alts;
    for (const v1::TopLogprob& t : top->top_logprobs()) {
      alts.push_back(absl::StrFormat("%s %.4f", Quote(t.token()), t.logprob()));
    }
    out << "  top: " << absl::StrJoin(alts, ", ");
  }
  out << "\n";
}

// `score --window`: ScoreStream, printing positions as they arrive (no
// token text: the stream carries ids) and the totals.
int RunScoreStream(const CliInvocation& inv, const Connection& connection,
                   std::ostream& out, std::ostream& err) {
  auto stub = v1::InferenceService::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Configure(&context);
  v1::ScoreStreamRequest request;
  *request.mutable_score() = inv.score;
  auto reader = stub->ScoreStream(&context, request);
  v1::ScoreStreamResponse m, last;
  if (!inv.json) {
    out << absl::StrFormat("  %5s  %8s  %10s\n", "pos", "id", "logprob");
  }
  while (reader->Read(&m)) {
    if (inv.json) {
      out << ToJson(m, /*pretty=*/false) << "\n";
    } else {
      if (m.offset() == 0 && m.token_logprobs_size() > 0) {
        PrintScoreRow(0, m.first_token_id(), "-", "", nullptr, out);
      }
      for (int k = 0; k < m.token_logprobs_size(); ++k) {
        PrintScoreRow(static_cast<int>(m.offset() + k + 1), m.token_ids(k),
                      absl::StrFormat("%.4f", m.token_logprobs(k)), "",
                      k < m.top_logprobs_size() ? &m.top_logprobs(k) : nullptr,
                      out);
      }
    }
    if (m.done()) last = m;
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return RpcFailed(status, connection, err);
  if (!inv.json) {
    out << absl::StrFormat(
        "tokens: %d  sum_logprob: %.4f  perplexity: %.4f  window: %d\n",
        last.num_tokens(), last.sum_logprob(), last.perplexity(),
        inv.score.kv_window());
  }
  err << absl::StrFormat("[server queue/total: %.1f/%.1f ms, id: %s]\n",
                         Millis(last.timings().queue_time()),
                         Millis(last.timings().total_time()), last.id());
  return kExitOk;
}

int RunScore(const CliInvocation& inv, const Connection& connection,
             std::ostream& out, std::ostream& err) {
  if (inv.score.has_kv_window()) {
    return RunScoreStream(inv, connection, out, err);
  }
  auto stub = v1::InferenceService::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Configure(&context);
  v1::ScoreResponse response;
  grpc::Status status = stub->Score(&context, inv.score, &response);
  if (!status.ok()) return RpcFailed(status, connection, err);
  if (inv.json) {
    out << ToJson(response, /*pretty=*/true);
    return kExitOk;
  }
  out << absl::StrFormat("  %5s  %8s  %10s  %s\n", "pos", "id", "logprob",
                         "token");
  for (int i = 0; i < response.token_ids_size(); ++i) {
    const std::string token =
        i < response.tokens_size() ? Quote(response.tokens(i)) : "";
    // Position 0 has no log-probability: nothing comes before it.
    const int lp = i - 1;
    std::string logprob = "-";
    if (lp >= 0 && lp < response.token_logprobs_size()) {
      logprob = absl::StrFormat("%.4f", response.token_logprobs(lp));
    }
    PrintScoreRow(i, response.token_ids(i), logprob, token,
                  lp >= 0 && lp < response.top_logprobs_size()
                      ? &response.top_logprobs(lp)
                      : nullptr,
                  out);
  }
  out << absl::StrFormat("tokens: %d  sum_logprob: %.4f  perplexity: %.4f\n",
                         response.token_ids_size(), response.sum_logprob(),
                         response.perplexity());
  err << absl::StrFormat("[server queue/total: %.1f/%.1f ms, id: %s]\n",
                         Millis(response.timings().queue_time()),
                         Millis(response.timings().total_time()),
                         response.id());
  return kExitOk;
}

int RunTokenize(const CliInvocation& inv, const Connection& connection,
                std::ostream& out, std::ostream& err) {
  auto stub = v1::InferenceService::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Configure(&context);
  v1::TokenizeResponse response;
  grpc::Status status = stub->Tokenize(&context, inv.tokenize, &response);
  if (!status.ok()) return RpcFailed(status, connection, err);
  if (inv.json) {
    out << ToJson(response, /*pretty=*/true);
    return kExitOk;
  }
  out << "num_tokens: " << response.token_ids_size() << "\n";
  out << "token_ids: " << absl::StrJoin(response.token_ids(), ",") << "\n";
  for (int i = 0; i < response.token_ids_size(); ++i) {
    out << absl::StrFormat(
        "  %5d  %8d  %s\n", i, response.token_ids(i),
        i < response.tokens_size() ? Quote(response.tokens(i)) : "");
  }
  return kExitOk;
}

// Every field of a message as "name: value" lines (scalars and repeated
// scalars only, which is all GetModelInfoResponse has).
void PrintFields(const google::protobuf::Message& message, std::ostream& out) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Descriptor* d = message.GetDescriptor();
  const google::protobuf::Reflection* r = message.GetReflection();
  size_t width = 0;
  for (int i = 0; i < d->field_count(); ++i) {
    width = std::max(width, d->field(i)->name().size());
  }
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* field = d->field(i);
    std::vector<std::string> values;
    const int n = field->is_repeated() ? r->FieldSize(message, field) : 1;
    for (int j = 0; j < n; ++j) {
      const bool rep = field->is_repeated();
      switch (field->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
          values.push_back(
              absl::StrCat(rep ? r->GetRepeatedInt32(message, field, j)
                               : r->GetInt32(message, field)));
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          values.push_back(
              absl::StrCat(rep ? r->GetRepeatedInt64(message, field, j)
                               : r->GetInt64(message, field)));
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          values.push_back(absl::StrFormat(
              "%.6g", rep ? r->GetRepeatedDouble(message, field, j)
                          : r->GetDouble(message, field)));
          break;
        case FieldDescriptor::CPPTYPE_STRING:
          values.push_back(rep ? r->GetRepeatedString(message, field, j)
                               : r->GetString(message, field));
          break;
        default:
          values.push_back("(not shown; use --json)");
          break;
      }
    }
    out << field->name() << ":"
        << std::string(width - field->name().size() + 1, ' ')
        << absl::StrJoin(values, ", ") << "\n";
  }
}

int RunInfo(const CliInvocation& inv, const Connection& connection,
            std::ostream& out, std::ostream& err) {
  auto stub = v1::InferenceService::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Configure(&context);
  v1::GetModelInfoResponse response;
  grpc::Status status =
      stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &response);
  if (!status.ok()) return RpcFailed(status, connection, err);
  if (inv.json) {
    out << ToJson(response, /*pretty=*/true);
  } else {
    PrintFields(response, out);
  }
  return kExitOk;
}

int RunHealth(const CliInvocation& inv, const Connection& connection,
              std::ostream& out, std::ostream& err) {
  auto stub = health::Health::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Configure(&context);
  health::HealthCheckRequest request;
  request.set_service(inv.health_service);
  health::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return RpcFailed(status, connection, err);
  if (inv.json) {
    out << ToJson(response, /*pretty=*/false);
  } else {
    out << health::HealthCheckResponse::ServingStatus_Name(response.status())
        << "\n";
  }
  return response.status() == health::HealthCheckResponse::SERVING
             ? kExitOk
             : kExitRpcError;
}

}  // namespace

absl::StatusOr<CliInvocation> ParseCliArgs(absl::Span<const std::string> args) {
  RawFlags f;
  FlagSet flags;
  RegisterFlags(flags, &f);
  std::vector<std::string> positional;
  if (absl::Status status = flags.Parse(args, &positional); !status.ok()) {
    return status;
  }
  CliInvocation inv;
  inv.help = f.help;
  if (!positional.empty() && positional[0] == "help") {
    inv.help = true;
    positional.erase(positional.begin());
  }
  if (positional.empty()) {
    if (inv.help) return inv;
    return absl::InvalidArgumentError(
        "no command: give one of complete, stream, score, tokenize, info, "
        "health");
  }
  inv.command = positional[0];
  positional.erase(positional.begin());
  const std::vector<std::string>* allowed = CommandFlags(inv.command);
  if (allowed == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", inv.command,
                     "\": give one of complete, stream, score, tokenize, "
                     "info, health"));
  }
  if (inv.help) return inv;

  const std::vector<std::string>& common = ConnectionFlagNames();
  for (const std::string& name : flags.SetFlags()) {
    if (name == "json" || name == "help" || name == "h") continue;
    if (std::find(common.begin(), common.end(), name) != common.end()) continue;
    if (std::find(allowed->begin(), allowed->end(), name) == allowed->end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " does not apply to '", inv.command,
                       "' (see alibi-cli ", inv.command, " --help)"));
    }
  }
  inv.json = f.json;
  inv.connection = f.connection;
  const bool ids_given = flags.IsSet("token_ids");

  if (inv.command == "complete" || inv.command == "stream") {
    auto input = ResolveInput(positional, f.prompt, "prompt", f, ids_given,
                              /*allow_ids=*/true);
    if (!input.ok()) return input.status();
    FillCompletion(f, *input, &inv.completion);
  } else if (inv.command == "score") {
    auto input = ResolveInput(positional, f.text, "text", f, ids_given,
                              /*allow_ids=*/true);
    if (!input.ok()) return input.status();
    if (input->text) {
      inv.score.set_text(*input->text);
    } else {
      for (int32_t id : input->ids) inv.score.add_token_ids(id);
    }
    inv.score.set_top_logprobs(f.top_logprobs);
    inv.score.set_priority(f.priority);
    inv.score.set_request_id(f.request_id);
    if (f.window) inv.score.set_kv_window(*f.window);
  } else if (inv.command == "tokenize") {
    auto input = ResolveInput(positional, f.text, "text", f, false,
                              /*allow_ids=*/false);
    if (!input.ok()) return input.status();
    inv.tokenize.set_text(*input->text);
  } else {
    if (!positional.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", inv.command, "' takes no arguments, got \"",
                       positional[0], "\""));
    }
    inv.health_service = f.service;
    if (inv.command == "health" && !flags.IsSet("deadline_ms")) {
      inv.connection.deadline_ms = kHealthDefaultDeadlineMs;
    }
  }
  return inv;
}

std::string CliUsage(absl::string_view command) {
  RawFlags f;
  FlagSet flags;
  RegisterFlags(flags, &f);
  std::string out;
  if (command.empty()) {
    absl::StrAppend(
        &out,
        "usage: alibi-cli <command> [input] [flags]\n"
        "\n"
        "commands:\n"
        "  complete   generate a completion and print it whole\n"
        "  stream     generate a completion, printing tokens as they arrive\n"
        "  score      per-token log-probabilities and perplexity of a text\n"
        "  tokenize   token ids and pieces of a text\n"
        "  info       the served model and serving configuration\n"
        "  health     grpc.health.v1 check; exit 0 only when SERVING\n"
        "\n"
        "examples:\n"
        "  alibi-cli complete \"In the beginning\" --max_tokens 32\n"
        "  alibi-cli stream --token_ids 1,2,3 --temperature 0.8 --seed 7\n"
        "  alibi-cli score --file text.txt --top_logprobs 3\n"
        "  alibi-cli health --address alibi:50051\n"
        "\n"
        "Run 'alibi-cli <command> --help' for the command's flags.\n"
        "\n"
        "common flags:\n");
  } else {
    absl::StrAppend(&out, "usage: alibi-cli ", command);
    if (command == "complete" || command == "stream") {
      absl::StrAppend(&out,
                      " (PROMPT | --prompt TEXT | --file PATH | --token_ids "
                      "IDS) [flags]\n");
    } else if (command == "score") {
      absl::StrAppend(
          &out,
          " (TEXT | --text TEXT | --file PATH | --token_ids IDS) [flags]\n");
    } else if (command == "tokenize") {
      absl::StrAppend(&out, " (TEXT | --text TEXT | --file PATH) [flags]\n");
    } else {
      absl::StrAppend(&out, " [flags]\n");
    }
    const std::vector<std::string>* names = CommandFlags(command);
    if (names != nullptr && !names->empty()) {
      absl::StrAppend(&out, "\nflags:\n", flags.Help(*names));
    }
    if (command == "health") {
      absl::StrAppend(&out, "\n--deadline_ms defaults to ",
                      kHealthDefaultDeadlineMs, " for health.\n");
    }
    absl::StrAppend(&out, "\ncommon flags:\n");
  }
  std::vector<std::string> common = ConnectionFlagNames();
  common.push_back("json");
  common.push_back("help");
  absl::StrAppend(&out, flags.Help(common));
  absl::StrAppend(&out,
                  "\nexit codes: 0 success; 1 RPC error (or health not "
                  "SERVING); 2 usage error\n");
  return out;
}

int RunCli(absl::Span<const std::string> args, std::ostream& out,
           std::ostream& err) {
  absl::StatusOr<CliInvocation> inv = ParseCliArgs(args);
  if (!inv.ok()) {
    err << "error: " << inv.status().message() << "\n"
        << "run 'alibi-cli --help' for usage\n";
    return kExitUsage;
  }
  if (inv->help) {
    out << CliUsage(inv->command);
    return kExitOk;
  }
  absl::StatusOr<Connection> connection = Connection::Create(inv->connection);
  if (!connection.ok()) {
    err << "error: " << connection.status().message() << "\n";
    return kExitUsage;
  }
  const std::string& c = inv->command;
  if (c == "complete") return RunComplete(*inv, *connection, out, err);
  if (c == "stream") return RunStream(*inv, *connection, out, err);
  if (c == "score") return RunScore(*inv, *connection, out, err);
  if (c == "tokenize") return RunTokenize(*inv, *connection, out, err);
  if (c == "info") return RunInfo(*inv, *connection, out, err);
  return RunHealth(*inv, *connection, out, err);
}

}  // namespace alibi::client
