// Why a request ended: the one list of finish reasons, shared by the
// scheduler, the engine, the frontend and the transports (which map it to
// their wire values in one place each).
//
// Thread-safety: plain values and pure functions.
#ifndef ALIBI_COMMON_FINISH_REASON_H_
#define ALIBI_COMMON_FINISH_REASON_H_

#include <cstdint>
#include <iterator>

#include "common/enum_names.h"

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
  constexpr const char* kNames[] = {"length", "stop",      "eos",
                                    "scored", "cancelled", "error"};
  static_assert(std::size(kNames) == EnumCount(FinishReason::kError));
  return EnumName(reason, kNames, "unknown");
}

// vLLM's alibi_request_finished_total label: "length", "stop", "abort" or
// "error" (an EOS is a stop; a scored input, like vLLM's prefill-only
// request, a length).
inline const char* FinishReasonMetricLabel(FinishReason reason) {
  // In FinishReason's order.
  constexpr const char* kLabels[] = {"length", "stop",  "stop",
                                     "length", "abort", "error"};
  static_assert(std::size(kLabels) == EnumCount(FinishReason::kError));
  return EnumName(reason, kLabels, "error");
}

}  // namespace alibi

#endif  // ALIBI_COMMON_FINISH_REASON_H_
