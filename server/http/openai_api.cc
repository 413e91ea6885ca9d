#include "server/http/openai_api.h"

#include <optional>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/bearer_token.h"
#include "common/clock.h"
#include "nlohmann/json.hpp"
#include "server/http/openai_protocol.h"

namespace alibi::http {
namespace {

using http_server::HttpHeaders;
using http_server::HttpRequest;
using http_server::Responder;
using Json = nlohmann::ordered_json;

constexpr char kJson[] = "application/json";
// Route labels of the metrics besides the routes themselves.
constexpr char kUnmatched[] = "unmatched";
constexpr char kUnparsed[] = "unparsed";

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

// One completion or chat request in flight: its frontend calls (one per
// prompt, each with n completions), polled when the frontend has news and
// the client can take more, and formatted as OpenAI JSON: whole once every
// call is done, or as server-sent events as chunks come. Keeps itself alive
// (self_) from Start until its response is complete.
class OpenAiApi::Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  struct Settings {
    std::string label;  // the route, for the metrics
    bool chat = false;
    bool stream = false;
    bool include_usage = false;
    bool logprobs = false;  // format log-probabilities
    int n = 1;
    std::string model;
  };

  Exchange(OpenAiApi* api, frontend::Frontend* frontend,
           std::shared_ptr<Responder> responder, Settings settings)
      : api_(api),
        frontend_(frontend),
        responder_(std::move(responder)),
        s_(std::move(settings)) {}

  // The on_ready of this exchange's calls.
  std::function<void()> Notifier() {
    std::weak_ptr<Exchange> weak = weak_from_this();
    return [weak] {
      if (std::shared_ptr<Exchange> e = weak.lock()) e->OnReady();
    };
  }

  void AddCall(std::shared_ptr<frontend::InferenceCall> call) {
    first_token_texts_.push_back(
        call->prompt().empty() ? "" : frontend_->TokenText(call->prompt()[0]));
    calls_.push_back(std::move(call));
  }

  // Submits every call (all or none) and starts the response.
  void Start() {
    self_ = shared_from_this();
    std::weak_ptr<Exchange> weak = weak_from_this();
    // Before taking mu_: runs at once if the client is already gone.
    responder_->SetOnClose([weak] {
      if (std::shared_ptr<Exchange> e = weak.lock()) e->OnClose();
    });
    std::shared_ptr<Exchange> keep;
    {
      std::lock_guard<std::mutex> lock(mu_);
      absl::Status submitted =
          closed_ ? absl::CancelledError("the client closed the connection")
                  : absl::OkStatus();
      size_t n_submitted = 0;
      for (; submitted.ok() && n_submitted < calls_.size(); ++n_submitted) {
        submitted = calls_[n_submitted]->Submit();
      }
      if (!submitted.ok()) {
        for (size_t i = 0; i + 1 < n_submitted; ++i) {
          calls_[i]->Cancel(submitted);
        }
        api_->Fail(*responder_, s_.label, submitted, true);
        keep = std::move(self_);
        return;
      }
      meta_.id = api_->NewId(s_.chat ? "chatcmpl-" : "cmpl-", calls_[0]->id());
      meta_.created = absl::ToUnixSeconds(absl::Now());
      meta_.model = s_.model;
      choices_.resize(calls_.size() * s_.n);
      for (size_t i = 0; i < choices_.size(); ++i) {
        choices_[i].index = static_cast<int>(i);
      }
      merged_.resize(choices_.size());
      if (s_.stream) {
        responder_->SetOnDrain(Notifier());
        responder_->StartStream(200, {{"Content-Type", "text/event-stream"},
                                      {"Cache-Control", "no-cache"},
                                      {"X-Request-Id", meta_.id}});
      }
      started_ = true;
    }
    OnReady();
  }

  // New output from the frontend, or room for it in the connection.
  void OnReady() {
    std::shared_ptr<Exchange> keep;
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_ || complete_) return;
    bool all_done = true;
    for (size_t p = 0; p < calls_.size(); ++p) {
      frontend::InferenceCall& call = *calls_[p];
      while (!s_.stream ||
             responder_->pending_bytes() < api_->options_.max_pending_bytes) {
        std::optional<frontend::CompletionChunk> chunk = call.Poll();
        if (!chunk.has_value()) break;
        HandleChunk(p, *std::move(chunk));
      }
      all_done = all_done && call.done();
    }
    if (all_done) keep = CompleteLocked();
  }

  // The client went away: the calls are cancelled and end soon.
  void OnClose() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    for (const auto& call : calls_) {
      call->Cancel(absl::CancelledError("the client closed the connection"));
    }
  }

 private:
  void HandleChunk(size_t prompt, frontend::CompletionChunk chunk) {
    const size_t k = prompt * s_.n + chunk.index;
    if (!chunk.status.ok() && error_.ok()) {
      error_ = chunk.status;  // the other completions are of no use now
      for (const auto& call : calls_) call->Cancel(chunk.status);
    }
    if (chunk.finished) {
      usage_.completion_tokens += chunk.usage.completion_tokens;
      if (chunk.index == 0) {  // the prompt counts once
        usage_.prompt_tokens += chunk.usage.prompt_tokens;
        usage_.cached_prompt_tokens += chunk.usage.cached_prompt_tokens;
      }
    }
    if (!s_.stream) {
      merged_[k].Merge(std::move(chunk));
      return;
    }
    if (!error_.ok() && !chunk.has_content()) return;
    if (!chunk.has_content() && !chunk.finished) return;
    const std::string choice =
        s_.chat ? ChatChoice(chunk, s_.logprobs, /*delta=*/true, choices_[k])
                : CompletionChoice(chunk, s_.logprobs,
                                   first_token_texts_[prompt], choices_[k]);
    WriteEvent(StreamChunkJson(meta_, s_.chat, {choice}, nullptr));
  }

  void WriteEvent(absl::string_view data) {
    responder_->Write(absl::StrCat("data: ", data, "\n\n"));
  }

  // Every call is done: ends the response; returns self_ for the caller to
  // release after unlocking.
  std::shared_ptr<Exchange> CompleteLocked() {
    complete_ = true;
    api_->Record(s_.label,
                 closed_ ? absl::StatusCode::kCancelled : error_.code());
    if (s_.stream) {
      if (!error_.ok()) {
        WriteEvent(ErrorJson(error_));
      } else if (s_.include_usage) {
        WriteEvent(StreamChunkJson(meta_, s_.chat, {}, &usage_));
      }
      WriteEvent("[DONE]");
      responder_->EndStream();
    } else if (!error_.ok()) {
      api_->RespondError(*responder_, error_);
    } else {
      std::vector<std::string> choices;
      for (size_t k = 0; k < merged_.size(); ++k) {
        choices.push_back(
            s_.chat
                ? ChatChoice(merged_[k], s_.logprobs, false, choices_[k])
                : CompletionChoice(merged_[k], s_.logprobs,
                                   first_token_texts_[k / s_.n], choices_[k]));
      }
      responder_->Respond(200,
                          {{"Content-Type", kJson}, {"X-Request-Id", meta_.id}},
                          ResponseJson(meta_, s_.chat, choices, usage_));
    }
    api_->Leave(true);
    return std::move(self_);
  }

  OpenAiApi* const api_;
  frontend::Frontend* const frontend_;
  const std::shared_ptr<Responder> responder_;
  const Settings s_;
  std::vector<std::shared_ptr<frontend::InferenceCall>> calls_;
  std::vector<std::string> first_token_texts_;  // per prompt (echo logprobs)

  std::mutex mu_;
  std::shared_ptr<Exchange> self_;
  bool started_ = false;
  bool complete_ = false;
  bool closed_ = false;
  absl::Status error_;
  ResponseMeta meta_;
  std::vector<ChoiceState> choices_;               // by choice index
  std::vector<frontend::CompletionChunk> merged_;  // whole responses
  frontend::Usage usage_;
};

OpenAiApi::OpenAiApi(OpenAiApiOptions options, metrics::Metrics* metrics)
    : options_(std::move(options)),
      metrics_(metrics),
      created_(absl::ToUnixSeconds(absl::Now())),
      nonce_(absl::StrFormat("%08x", std::random_device{}())) {}

OpenAiApi::~OpenAiApi() = default;

std::vector<std::string> OpenAiApi::MetricRoutes() {
  return {"/v1/completions", "/v1/chat/completions", "/v1/models", "/tokenize",
          "/detokenize"};
}

void OpenAiApi::SetFrontend(frontend::Frontend* frontend) {
  admission_.SetFrontend(frontend);
}

void OpenAiApi::StartDraining() { admission_.StartDraining(); }

bool OpenAiApi::WaitForIdle(absl::Duration timeout) {
  return admission_.WaitForIdle(timeout);
}

int OpenAiApi::in_flight() const { return admission_.in_flight(); }

void OpenAiApi::Record(absl::string_view label, absl::StatusCode code) {
  if (metrics_ != nullptr) metrics_->RecordRequest(label, code);
}

void OpenAiApi::Leave(bool admitted) {
  if (admitted) admission_.Exit();
}

void OpenAiApi::Fail(Responder& responder, absl::string_view label,
                     const absl::Status& status, bool admitted,
                     absl::string_view code, HttpHeaders headers) {
  Record(label, status.code());
  RespondError(responder, status, code, std::move(headers));
  Leave(admitted);
}

void OpenAiApi::RespondError(Responder& responder, const absl::Status& status,
                             absl::string_view code, HttpHeaders headers) {
  const int http_status = HttpStatusOf(status.code());
  headers.insert(headers.begin(), {"Content-Type", kJson});
  if (http_status == 429 || http_status == 503) {
    headers.push_back({"Retry-After", "1"});
  }
  responder.Respond(http_status, std::move(headers), ErrorJson(status, code));
}

void OpenAiApi::Reply(Responder& responder, absl::string_view label,
                      std::string json, bool admitted) {
  Record(label, absl::StatusCode::kOk);
  responder.Respond(200, {{"Content-Type", kJson}}, std::move(json));
  Leave(admitted);
}

std::pair<std::string, std::string> OpenAiApi::CoreErrorBody(
    int status, absl::string_view message) {
  if (metrics_ != nullptr) {
    metrics_->RecordRequest(kUnparsed, StatusCodeOf(status));
  }
  return {kJson, ErrorBody(status, message)};
}

bool OpenAiApi::Authorized(const HttpRequest& request) const {
  if (options_.api_key.empty()) return true;
  // Exactly one credential: a second header must not be able to win.
  if (request.HeaderCount("authorization") != 1) return false;
  return BearerTokenMatches(*request.Header("authorization"), options_.api_key);
}

absl::Status OpenAiApi::CheckModel(const std::string& model) const {
  if (model.empty() || model == options_.served_model_name) {
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat(
      "model: the model `", model, "` does not exist; this server serves `",
      options_.served_model_name, "`"));
}

template <typename Request>
std::optional<Request> OpenAiApi::Parsed(absl::StatusOr<Request> request,
                                         Responder& responder,
                                         absl::string_view label) {
  if (!request.ok()) {
    Fail(responder, label, request.status(), true);
    return std::nullopt;
  }
  if (absl::Status s = CheckModel(request->model); !s.ok()) {
    Fail(responder, label, s, true, "model_not_found");
    return std::nullopt;
  }
  return *std::move(request);
}

std::string OpenAiApi::NewId(absl::string_view prefix,
                             const std::string& call_id) {
  return absl::StrCat(prefix, nonce_, "-", call_id);
}

void OpenAiApi::Handle(HttpRequest request,
                       std::shared_ptr<Responder> responder) {
  const std::string& path = request.path;
  const std::string& method = request.method;
  const bool get = method == "GET" || method == "HEAD";
  // Open routes: no token, not counted (like gRPC's health service).
  if (path == "/health") {
    if (!get) {
      responder->Respond(405, {{"Allow", "GET, HEAD"}, {"Content-Type", kJson}},
                         ErrorBody(405, "use GET /health"));
      return;
    }
    Health(*responder);
    return;
  }
  if (path == "/version") {
    responder->Respond(200, {{"Content-Type", kJson}},
                       Dump(Json{{"version", options_.server_version}}));
    return;
  }
  std::string label = path;
  const char* allow = nullptr;
  if (path == "/v1/completions" || path == "/v1/chat/completions" ||
      path == "/tokenize" || path == "/detokenize") {
    allow = "POST";
  } else if (path == "/v1/models" || absl::StartsWith(path, "/v1/models/")) {
    label = "/v1/models";
    allow = "GET, HEAD";
  } else {
    label = kUnmatched;
  }
  if (!Authorized(request)) {
    Fail(*responder, label,
         absl::UnauthenticatedError(
             "a valid `Authorization: Bearer <key>` header is required"),
         false, "invalid_api_key", {{"WWW-Authenticate", "Bearer"}});
    return;
  }
  if (allow == nullptr) {
    Fail(*responder, label,
         absl::NotFoundError(absl::StrCat(
             "no route ", method, " ", path,
             "; this server serves /v1/completions, /v1/chat/completions, "
             "/v1/models, /tokenize, /detokenize, /health and /metrics")),
         false);
    return;
  }
  if (std::string(allow) == "POST" ? method != "POST" : !get) {
    Record(label, absl::StatusCode::kUnimplemented);
    responder->Respond(
        405, {{"Content-Type", kJson}, {"Allow", allow}},
        ErrorBody(405, absl::StrCat("method ", method, " is not allowed on ",
                                    path, " (use ", allow, ")")));
    return;
  }
  if (absl::StatusOr<frontend::Frontend*> admitted = admission_.Enter();
      !admitted.ok()) {
    Fail(*responder, label, admitted.status(), false);
    return;
  }
  if (path == "/v1/completions") {
    Completions(request, std::move(responder));
  } else if (path == "/v1/chat/completions") {
    ChatCompletions(request, std::move(responder));
  } else if (path == "/tokenize") {
    Tokenize(request, *responder);
  } else if (path == "/detokenize") {
    Detokenize(request, *responder);
  } else {
    Models(request, *responder);
  }
}

void OpenAiApi::Health(Responder& responder) const {
  const absl::Status health = admission_.Health(options_.stall_timeout);
  if (health.ok()) {
    responder.Respond(200, {{"Content-Type", "text/plain; charset=utf-8"}}, "");
  } else {
    responder.Respond(503, {{"Content-Type", kJson}, {"Retry-After", "1"}},
                      ErrorBody(503, health.message()));
  }
}

void OpenAiApi::Models(const HttpRequest& request, Responder& responder) {
  const engine::EngineInfo& info = admission_.frontend()->info();
  const Json model = {{"id", options_.served_model_name},
                      {"object", "model"},
                      {"created", created_},
                      {"owned_by", "alibi-serve"},
                      {"root", options_.served_model_name},
                      {"parent", nullptr},
                      {"max_model_len", info.max_model_len},
                      // alibi-serve's: what token-id prompts may hold.
                      {"vocab_size", info.vocab_size}};
  if (request.path == "/v1/models" || request.path == "/v1/models/") {
    Reply(responder, "/v1/models",
          Dump(Json{{"object", "list"}, {"data", Json::array({model})}}), true);
    return;
  }
  const std::string id = request.path.substr(std::string("/v1/models/").size());
  if (absl::Status s = CheckModel(id); !s.ok()) {
    Fail(responder, "/v1/models", s, true, "model_not_found");
    return;
  }
  Reply(responder, "/v1/models", Dump(model), true);
}

void OpenAiApi::Completions(const HttpRequest& request,
                            std::shared_ptr<Responder> responder) {
  constexpr char kLabel[] = "/v1/completions";
  std::optional<CompletionRequest> r =
      Parsed(ParseCompletionRequest(request.body), *responder, kLabel);
  if (!r.has_value()) return;
  frontend::Frontend* frontend = admission_.frontend();
  Exchange::Settings settings;
  settings.label = kLabel;
  settings.stream = r->stream;
  settings.include_usage = r->include_usage;
  settings.logprobs = r->params.logprobs.has_value();
  settings.n = std::max(1, r->params.n);
  settings.model = options_.served_model_name;
  auto exchange = std::make_shared<Exchange>(this, frontend, responder,
                                             std::move(settings));
  for (size_t i = 0; i < r->prompts.size(); ++i) {
    frontend::CompletionParams params = r->params;
    params.prompt = std::move(r->prompts[i]);
    const bool list = r->prompt_is_list;
    const int index = static_cast<int>(i);
    auto call = frontend->NewCompletion(
        params,
        [index, list](absl::string_view canonical) {
          return CompletionFieldName(canonical, index, list);
        },
        exchange->Notifier());
    if (!call.ok()) {
      Fail(*responder, kLabel, call.status(), true);
      return;
    }
    exchange->AddCall(*std::move(call));
  }
  exchange->Start();
}

void OpenAiApi::ChatCompletions(const HttpRequest& request,
                                std::shared_ptr<Responder> responder) {
  constexpr char kLabel[] = "/v1/chat/completions";
  std::optional<ChatRequest> r =
      Parsed(ParseChatRequest(request.body), *responder, kLabel);
  if (!r.has_value()) return;
  frontend::Frontend* frontend = admission_.frontend();
  absl::StatusOr<std::string> prompt = frontend->ApplyChatTemplate(
      r->messages, r->add_generation_prompt, ChatFieldName);
  if (!prompt.ok()) {
    Fail(*responder, kLabel, prompt.status(), true,
         frontend->has_chat_template() ? "" : "chat_template_missing");
    return;
  }
  r->params.prompt.text = *std::move(prompt);
  Exchange::Settings settings;
  settings.label = kLabel;
  settings.chat = true;
  settings.stream = r->stream;
  settings.include_usage = r->include_usage;
  settings.logprobs = r->logprobs;
  settings.n = std::max(1, r->params.n);
  settings.model = options_.served_model_name;
  auto exchange = std::make_shared<Exchange>(this, frontend, responder,
                                             std::move(settings));
  auto call =
      frontend->NewCompletion(r->params, ChatFieldName, exchange->Notifier());
  if (!call.ok()) {
    Fail(*responder, kLabel, call.status(), true);
    return;
  }
  exchange->AddCall(*std::move(call));
  exchange->Start();
}

void OpenAiApi::Tokenize(const HttpRequest& request, Responder& responder) {
  constexpr char kLabel[] = "/tokenize";
  std::optional<TokenizeRequest> r =
      Parsed(ParseTokenizeRequest(request.body), responder, kLabel);
  if (!r.has_value()) return;
  frontend::Frontend* frontend = admission_.frontend();
  std::string text;
  if (r->prompt.has_value()) {
    text = *r->prompt;
  } else {
    absl::StatusOr<std::string> rendered = frontend->ApplyChatTemplate(
        r->messages, r->add_generation_prompt, ChatFieldName);
    if (!rendered.ok()) {
      Fail(responder, kLabel, rendered.status(), true);
      return;
    }
    text = *std::move(rendered);
  }
  auto result = frontend->Tokenize(text, [](absl::string_view canonical) {
    return canonical == "text" ? std::string("prompt") : std::string(canonical);
  });
  if (!result.ok()) {
    Fail(responder, kLabel, result.status(), true);
    return;
  }
  Json body = {{"count", result->token_ids.size()},
               {"max_model_len", frontend->info().max_model_len},
               {"tokens", result->token_ids},
               {"token_strs",
                r->return_token_strs ? Json(result->tokens) : Json(nullptr)}};
  Reply(responder, kLabel, Dump(body), true);
}

void OpenAiApi::Detokenize(const HttpRequest& request, Responder& responder) {
  constexpr char kLabel[] = "/detokenize";
  std::optional<DetokenizeRequest> r =
      Parsed(ParseDetokenizeRequest(request.body), responder, kLabel);
  if (!r.has_value()) return;
  auto text = admission_.frontend()->Detokenize(
      r->tokens, /*skip_special_tokens=*/true, [](absl::string_view canonical) {
        return absl::StrCat("tokens", canonical.substr(9));  // "token_ids[i]"
      });
  if (!text.ok()) {
    Fail(responder, kLabel, text.status(), true);
    return;
  }
  Reply(responder, kLabel, Dump(Json{{"prompt", *text}}), true);
}

}  // namespace alibi::http
