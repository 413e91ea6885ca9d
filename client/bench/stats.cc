#include "client/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

namespace alibi::client::bench {

double Percentile(absl::Span<const double> sorted, double p) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 *
                      static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Summary Summarize(std::vector<double> values, double scale) {
  Summary s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    s.mean = s.median = s.std = s.p90 = s.p99 = s.min = s.max = nan;
    return s;
  }
  for (double& v : values) v *= scale;
  std::sort(values.begin(), values.end());
  const double n = static_cast<double>(values.size());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double sq = 0;
  for (double v : values) sq += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(sq / n);
  s.median = Percentile(values, 50);
  s.p90 = Percentile(values, 90);
  s.p99 = Percentile(values, 99);
  s.min = values.front();
  s.max = values.back();
  return s;
}

std::optional<double> RequestResult::tpot_s() const {
  if (output_tokens <= 1 || !ttft_s) return std::nullopt;
  return (e2e_s() - *ttft_s) / static_cast<double>(output_tokens - 1);
}

void TokenTimeline::OnMessage(double now_s, int num_tokens) {
  if (num_tokens <= 0) return;
  ++messages_;
  if (!ttft_s_) {
    ttft_s_ = now_s - start_s_;
  } else {
    itl_s_.push_back(now_s - last_s_);
  }
  // Tokens after the first of a coalesced message arrived with it.
  itl_s_.insert(itl_s_.end(), num_tokens - 1, 0.0);
  tokens_ += num_tokens;
  last_s_ = now_s;
}

void TokenTimeline::Fill(RequestResult* result) const {
  result->ttft_s = ttft_s_;
  result->output_tokens = tokens_;
  result->output_messages = messages_;
  result->itl_s = itl_s_;
}

bool MeetsSlo(const RequestResult& r, const SloOptions& slo) {
  if (!r.ok) return false;
  if (slo.ttft_ms && r.ttft_s.value_or(r.e2e_s()) * 1e3 > *slo.ttft_ms) {
    return false;
  }
  if (slo.tpot_ms && r.tpot_s().value_or(0.0) * 1e3 > *slo.tpot_ms) {
    return false;
  }
  if (slo.e2e_ms && r.e2e_s() * 1e3 > *slo.e2e_ms) return false;
  return true;
}

BenchMetrics ComputeMetrics(absl::Span<const RequestResult> results,
                            double duration_s, const SloOptions& slo) {
  BenchMetrics m;
  m.num_requests = static_cast<int64_t>(results.size());
  m.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  int64_t good = 0;
  for (const RequestResult& r : results) {
    if (!r.ok) {
      ++m.failed;
      ++m.failures_by_code[r.code];
      continue;
    }
    ++m.completed;
    if (!r.finish_reason.empty()) ++m.finish_reasons[r.finish_reason];
    m.total_input_tokens += r.prompt_tokens;
    m.total_output_tokens += r.output_tokens;
    if (r.ttft_s) ttft.push_back(*r.ttft_s);
    if (std::optional<double> t = r.tpot_s()) tpot.push_back(*t);
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    e2e.push_back(r.e2e_s());
    if (slo.any() && MeetsSlo(r, slo)) ++good;
  }
  if (duration_s > 0) {
    m.request_throughput = static_cast<double>(m.completed) / duration_s;
    m.output_token_throughput =
        static_cast<double>(m.total_output_tokens) / duration_s;
    m.total_token_throughput =
        static_cast<double>(m.total_input_tokens + m.total_output_tokens) /
        duration_s;
  }
  if (slo.any()) {
    m.good_requests = good;
    m.goodput = duration_s > 0 ? static_cast<double>(good) / duration_s : 0.0;
  }
  m.ttft_ms = Summarize(std::move(ttft), 1e3);
  m.tpot_ms = Summarize(std::move(tpot), 1e3);
  m.itl_ms = Summarize(std::move(itl), 1e3);
  m.e2e_ms = Summarize(std::move(e2e), 1e3);
  return m;
}

}  // namespace alibi::client::bench
