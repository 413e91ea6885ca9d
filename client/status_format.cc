#include "client/status_format.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace alibi::client {

std::string StatusCodeName(grpc::StatusCode code) {
  // gRPC's codes are absl's (0 to 16), with the same names.
  std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

std::string FinishReasonName(v1::FinishReason reason) {
  absl::string_view name = v1::FinishReason_Name(reason);
  absl::ConsumePrefix(&name, "FINISH_REASON_");
  return absl::AsciiStrToLower(name);
}

std::string FormatRpcError(const grpc::Status& status,
                           absl::string_view address) {
  std::string out =
      absl::StrCat("error: ", StatusCodeName(status.error_code()));
  if (!status.error_message().empty()) {
    absl::StrAppend(&out, ": ", status.error_message());
  }
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      absl::StrAppend(&out, "\nhint: the server at ", address,
                      " is unreachable, still loading its model, or draining"
                      " (check --address and --tls)");
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      absl::StrAppend(&out,
                      "\nhint: no answer within the deadline; raise "
                      "--deadline_ms (0: none) or lower --max_tokens");
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      absl::StrAppend(&out,
                      "\nhint: the server wants an API key: pass --api_key "
                      "or --api_key_file");
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      absl::StrAppend(&out,
                      "\nhint: the server is overloaded (queue or KV cache "
                      "full); retry later");
      break;
    case grpc::StatusCode::UNIMPLEMENTED:
      absl::StrAppend(&out, "\nhint: is ", address, " an alibi-server?");
      break;
    default:
      break;
  }
  return out;
}

}  // namespace alibi::client
