// RunLoadOpenAi: alibi-bench's OpenAI-compatible HTTP backend.
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/bench/load.h"
#include "client/bench/runner.h"
#include "nlohmann/json.hpp"

namespace alibi::client::bench {
namespace {

using Json = nlohmann::json;

// The status code name an HTTP error stands for (the gRPC backend's names,
// so reports compare; the HTTP status is in the message).
std::string CodeOf(int http_status) {
  switch (http_status) {
    case 400:
      return "INVALID_ARGUMENT";
    case 401:
      return "UNAUTHENTICATED";
    case 404:
      return "NOT_FOUND";
    case 429:
      return "RESOURCE_EXHAUSTED";
    case 503:
      return "UNAVAILABLE";
    case 504:
      return "DEADLINE_EXCEEDED";
    case 500:
      return "INTERNAL";
    default:
      return "UNKNOWN";
  }
}

std::string ErrorMessage(const std::string& body) {
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].value("message", "") != "") {
    return j["error"]["message"];
  }
  return body.substr(0, 200);
}

std::string RequestBody(const WorkloadRequest& w, const std::string& model,
                        const RunOptions& options, size_t index) {
  Json body = Json::object();
  if (!model.empty()) body["model"] = model;
  if (w.token_ids.empty()) {
    body["prompt"] = w.text;
  } else {
    body["prompt"] = w.token_ids;
  }
  body["max_tokens"] = w.max_tokens;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  const v1::SamplingParams& s = options.sampling;
  if (s.has_temperature()) body["temperature"] = s.temperature();
  if (s.has_top_p()) body["top_p"] = s.top_p();
  if (s.top_k() > 0) body["top_k"] = s.top_k();
  body["ignore_eos"] = s.ignore_eos();
  // One seed per request, as the gRPC backend does.
  if (s.has_seed()) body["seed"] = s.seed() + index;
  body["request_id"] = absl::StrCat(options.request_id_prefix, index);
  return body.dump();
}

RequestResult RunOne(HttpClient& client, const std::string& body,
                     const WorkloadRequest& w, LoadState& state) {
  RequestResult r;
  r.start_s = state.Now();
  TokenTimeline timeline(r.start_s);
  int64_t completion_tokens = -1;
  std::string stream_error;
  absl::StatusOr<HttpClient::Response> response =
      client.Stream("/v1/completions", body, [&](absl::string_view data) {
        const double now = state.Now();
        if (data == "[DONE]") return;
        const Json event = Json::parse(data, nullptr, false);
        if (!event.is_object()) return;
        if (event.contains("error")) {
          stream_error = event["error"].value("message", "error");
          return;
        }
        // Every event with a choice carries a token (its text may be empty:
        // a special token, or bytes of a character not yet complete).
        for (const Json& c : event.value("choices", Json::array())) {
          timeline.OnMessage(now, 1);
          if (c.contains("finish_reason") && c["finish_reason"].is_string()) {
            r.finish_reason = c["finish_reason"];
          }
        }
        if (event.contains("usage") && event["usage"].is_object()) {
          r.prompt_tokens = event["usage"].value("prompt_tokens", 0);
          completion_tokens = event["usage"].value("completion_tokens", 0);
        }
      });
  r.end_s = state.Now();
  timeline.Fill(&r);
  if (completion_tokens >= 0) r.output_tokens = completion_tokens;
  if (r.prompt_tokens == 0) r.prompt_tokens = w.input_len;
  if (!response.ok()) {
    r.code = std::string(absl::StatusCodeToString(response.status().code()));
    r.error = std::string(response.status().message());
  } else if (response->status != 200) {
    r.code = CodeOf(response->status);
    r.error = absl::StrCat("HTTP ", response->status, ": ",
                           ErrorMessage(response->body));
  } else if (!stream_error.empty()) {
    r.code = "INTERNAL";
    r.error = stream_error;
  } else {
    r.ok = true;
  }
  return r;
}

}  // namespace

RunResult RunLoadOpenAi(HttpClient& client, const std::string& model,
                        absl::Span<const WorkloadRequest> workload,
                        absl::Span<const double> arrival_s,
                        const RunOptions& options) {
  std::mutex mu;
  std::vector<std::thread> threads;
  RunResult run = DriveLoad(
      workload.size(), arrival_s, options, [&](LoadState& state, size_t i) {
        std::string body = RequestBody(workload[i], model, options, i);
        std::lock_guard<std::mutex> lock(mu);
        threads.emplace_back(
            [&client, &state, &workload, i, body = std::move(body)] {
              state.Finish(i, RunOne(client, body, workload[i], state));
            });
      });
  for (std::thread& t : threads) t.join();
  return run;
}

}  // namespace alibi::client::bench
