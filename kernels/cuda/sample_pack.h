// Host side of LaunchSample: Backend::Sample's rows packed into the arrays
// the kernel reads, and its outputs unpacked into SampleResults. Plain C++
// (no device code), shared by the CUDA backend and the kernel's emulated
// tests.
//
// Thread-safety: a PackedSample belongs to one caller.
#ifndef ALIBI_KERNELS_CUDA_SAMPLE_PACK_H_
#define ALIBI_KERNELS_CUDA_SAMPLE_PACK_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "kernels/backend.h"
#include "kernels/cuda/sample.cuh"

namespace alibi::kernels::cuda {

struct PackedSample {
  std::vector<SampleRowParams> params;  // [rows]
  std::vector<int32_t> ids;             // every row's lists, in order
  std::vector<float> values;            // parallel to ids
  int32_t top_total = 0;                // top alternatives over all rows

  void Pack(absl::Span<const SampleRow> rows, int64_t vocab) {
    params.clear();
    ids.clear();
    values.clear();
    top_total = 0;
    for (const SampleRow& r : rows) {
      SampleRowParams p;
      p.row = r.row;
      p.target = r.target;
      p.top_n = static_cast<int32_t>(
          std::clamp<int64_t>(r.top_n, 0, std::max<int64_t>(vocab, 0)));
      p.top_begin = top_total;
      top_total += p.top_n;
      p.knobs = r.knobs;
      p.seed = r.seed;
      p.draw = r.draw;
      // The kernel expects each row's lists contiguous, in this order.
      const bool sampled = r.target < 0;
      auto list = [&](absl::Span<const int32_t> list_ids, int32_t* begin,
                      int32_t* count) {
        *begin = static_cast<int32_t>(ids.size());
        *count = sampled ? static_cast<int32_t>(list_ids.size()) : 0;
        if (!sampled) return;
        ids.insert(ids.end(), list_ids.begin(), list_ids.end());
        values.resize(ids.size(), 0.0f);
      };
      list(r.allowed, &p.allowed_begin, &p.allowed_count);
      list(r.banned, &p.banned_begin, &p.banned_count);
      list(p.knobs.repetition_penalty != 1.0f ? r.seen
                                              : absl::Span<const int32_t>(),
           &p.seen_begin, &p.seen_count);
      p.bias_begin = static_cast<int32_t>(ids.size());
      p.bias_count = sampled ? static_cast<int32_t>(r.logit_bias.size()) : 0;
      for (int32_t i = 0; i < p.bias_count; ++i) {
        ids.push_back(r.logit_bias[i].first);
        values.push_back(r.logit_bias[i].second);
      }
      const bool penalised =
          p.knobs.frequency_penalty != 0.0f || p.knobs.presence_penalty != 0.0f;
      p.counts_begin = static_cast<int32_t>(ids.size());
      p.counts_count = sampled && penalised
                           ? static_cast<int32_t>(r.output_counts.size())
                           : 0;
      for (int32_t i = 0; i < p.counts_count; ++i) {
        ids.push_back(r.output_counts[i].first);
        values.push_back(static_cast<float>(r.output_counts[i].second));
      }
      params.push_back(p);
    }
  }

  // results[i] from the kernel's outputs for params[i].
  void Unpack(const SampledToken* out, const int32_t* top_ids,
              const float* top_logprobs,
              std::vector<SampleResult>* results) const {
    results->resize(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      SampleResult& r = (*results)[i];
      r.token = out[i].token;
      r.logprob = out[i].logprob;
      r.top.clear();
      for (int32_t n = 0; n < params[i].top_n; ++n) {
        const int32_t at = params[i].top_begin + n;
        if (top_ids[at] < 0) break;
        r.top.emplace_back(top_ids[at], top_logprobs[at]);
      }
    }
  }
};

}  // namespace alibi::kernels::cuda

#endif  // ALIBI_KERNELS_CUDA_SAMPLE_PACK_H_
