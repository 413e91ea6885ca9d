// Why a request ended: the one list of finish reasons, shared by the
// scheduler, the engine, the frontend and the transports (which map it to
// their wire values in one place each).
//
// Thread-safety: plain values and pure functions.
#ifndef ALIBI_COMMON_FINISH_REASON_H_
#define ALIBI_COMMON_FINISH_REASON_H_

#include <cstdint>

namespace alibi {

enum class FinishReason : uint8_t {
  kLength,     // max_tokens reached
  kStop,       // a stop token id or a stop string
  kEos,        // the model's end-of-sequence token
  kScored,     // a scoring (prefill-only) request computed its whole input
  kCancelled,  // client cancel, deadline, disconnect or shutdown
  kError,      // failure inside the engine
};

// "length", "stop", "eos", "scored", "cancelled", "error".
inline const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kScored:
      return "scored";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "unknown";
}

// vLLM's alibi_request_finished_total label: "length", "stop", "abort" or
// "error" (an EOS is a stop; a scored input, like vLLM's prefill-only
// request, a length).
inline const char* FinishReasonMetricLabel(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
    case FinishReason::kEos:
      return "stop";
    case FinishReason::kLength:
    case FinishReason::kScored:
      return "length";
    case FinishReason::kCancelled:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "error";
}

}  // namespace alibi

#endif  // ALIBI_COMMON_FINISH_REASON_H_
