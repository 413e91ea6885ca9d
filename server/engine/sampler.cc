#include "server/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace alibi::engine {
namespace {

// Below this temperature sampling is greedy (vLLM's _SAMPLING_EPS).
constexpr float kGreedyTemperature = 1e-5f;

// Orders token ids by descending value, lowest id first among equals.
struct ByValueDesc {
  const float* values;
  bool operator()(int32_t a, int32_t b) const {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  }
};

int32_t Argmax(absl::Span<const float> values) {
  int32_t best = 0;
  for (size_t i = 1; i < values.size(); ++i) {
    if (values[i] > values[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

}  // namespace

SamplerState::SamplerState(const SamplingParams& options,
                           absl::Span<const int32_t> prompt)
    : options_(options),
      seed_(options.seed.has_value()
                ? *options.seed
                : (uint64_t{std::random_device{}()} << 32) ^
                      std::random_device{}()),
      rng_(seed_) {
  if (options.repetition_penalty != 1.0f) {
    for (int32_t t : prompt) See(t);
  }
  for (const std::vector<int32_t>& word : options.bad_words) {
    keep_output_ = keep_output_ || word.size() > 1;
  }
}

void SamplerState::See(int32_t token) {
  if (seen_.insert(token).second) seen_list_.push_back(token);
}

void SamplerState::AddOutputToken(int32_t token) {
  const auto [at, added] = count_at_.try_emplace(token, counts_.size());
  if (added) counts_.emplace_back(token, 0);
  ++counts_[at->second].second;
  if (options_.repetition_penalty != 1.0f) See(token);
  if (keep_output_) output_.push_back(token);
}

double SamplerState::NextUniform() {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

void AppendBadWordBans(const SamplerState& state, std::vector<int32_t>* out) {
  const std::vector<int32_t>& output = state.output_tokens();
  for (const std::vector<int32_t>& word : state.options().bad_words) {
    if (word.empty() || word.size() - 1 > output.size()) continue;
    if (std::equal(word.begin(), word.end() - 1,
                   output.end() - static_cast<ptrdiff_t>(word.size() - 1))) {
      out->push_back(word.back());
    }
  }
}

kernels::SampleRow DeviceSampleRow(SamplerState& state,
                                   std::vector<int32_t>& bans) {
    const SamplingParams& o = state.options();
  AppendBadWordBans(state, &bans);
  kernels::SampleRow r;
  r.knobs = o;
  r.seed = state.seed();
  r.draw = state.NextDraw();
  r.allowed = o.allowed_token_ids;
  r.banned = bans;
  r.seen = state.seen_tokens();
  r.logit_bias = o.logit_bias;
  r.output_counts = state.output_counts();
  return r;
}

int32_t SampleToken(absl::Span<const float> logits, SamplerState& state,
                    absl::Span<const int32_t> banned,
                    std::vector<float>& scratch) {
  const SamplingParams& o = state.options();
  const int32_t vocab = static_cast<int32_t>(logits.size());
  const float kNegInf = -std::numeric_limits<float>::infinity();
  scratch.assign(logits.begin(), logits.end());
  float* l = scratch.data();

  if (!o.allowed_token_ids.empty()) {
    std::fill(scratch.begin(), scratch.end(), kNegInf);
    for (int32_t t : o.allowed_token_ids) {
      if (t >= 0 && t < vocab) l[t] = logits[t];
    }
  }
  std::vector<std::pair<int32_t, float>>& saved = state.banned_scratch();
  saved.clear();
  auto ban = [&](int32_t t) {
    if (t >= 0 && t < vocab && l[t] != kNegInf) {
      saved.emplace_back(t, l[t]);
      l[t] = kNegInf;
    }
  };
  std::vector<int32_t>& bad = state.bad_word_scratch();
  bad.clear();
  AppendBadWordBans(state, &bad);
  for (int32_t t : bad) ban(t);
  for (int32_t t : banned) ban(t);
  if (!saved.empty() && std::all_of(scratch.begin(), scratch.end(),
                                    [&](float x) { return x == kNegInf; })) {
    // Nothing left: lift the bans.
    for (const auto& [t, value] : saved) l[t] = value;
  }
  for (const auto& [t, bias] : o.logit_bias) {
    if (t >= 0 && t < vocab) l[t] += bias;
  }

  if (o.repetition_penalty != 1.0f) {
    for (int32_t t : state.seen_tokens()) {
      if (t < 0 || t >= vocab) continue;
      l[t] =
          l[t] > 0 ? l[t] / o.repetition_penalty : l[t] * o.repetition_penalty;
    }
  }
  if (o.frequency_penalty != 0.0f || o.presence_penalty != 0.0f) {
    for (const auto& [t, count] : state.output_counts()) {
      if (t < 0 || t >= vocab) continue;
      l[t] -= o.frequency_penalty * count + o.presence_penalty;
    }
  }
  if (o.temperature < kGreedyTemperature) {
    return Argmax(absl::MakeConstSpan(scratch));
  }

  // Unnormalised probabilities p_i = exp((l_i - max) / T); p_max = 1.
  const float max_logit = l[Argmax(absl::MakeConstSpan(scratch))];
  const float inv_t = 1.0f / o.temperature;
  for (int32_t t = 0; t < vocab; ++t) {
    l[t] = std::exp((l[t] - max_logit) * inv_t);
  }
  // Candidates: tokens still possible, after min_p.
  std::vector<int32_t> kept;
  kept.reserve(vocab);
  const float min_prob = o.min_p;  // relative to p_max = 1
  for (int32_t t = 0; t < vocab; ++t) {
    if (l[t] > 0.0f && l[t] >= min_prob) kept.push_back(t);
  }
  if (kept.empty()) return Argmax(logits);
  const bool use_top_k = o.top_k > 0 && o.top_k < static_cast<int>(kept.size());
  const bool use_top_p = o.top_p < 1.0f;
  if (use_top_k || use_top_p) {
    ByValueDesc order{l};
    if (use_top_k) {
      std::nth_element(kept.begin(), kept.begin() + o.top_k, kept.end(), order);
      kept.resize(o.top_k);
    }
    if (use_top_p) {
      double total = 0.0;
      for (int32_t t : kept) total += l[t];
      // The nucleus is usually a few dozen tokens of a large vocabulary:
      // select the best `head` (growing) instead of sorting everything.
      size_t head = std::min<size_t>(kept.size(), 64);
      while (true) {
        std::nth_element(kept.begin(), kept.begin() + head, kept.end(), order);
        double head_mass = 0.0;
        for (size_t i = 0; i < head; ++i) head_mass += l[kept[i]];
        if (head_mass >= o.top_p * total || head == kept.size()) break;
        head = std::min(kept.size(), head * 4);
      }
      std::sort(kept.begin(), kept.begin() + head, order);
      double cumulative = 0.0;
      size_t n = 0;
      while (n < head) {
        cumulative += l[kept[n++]];
        if (cumulative >= o.top_p * total) break;
      }
      kept.resize(n);
    } else {
      std::sort(kept.begin(), kept.end(), order);
    }
  }
  double total = 0.0;
  for (int32_t t : kept) total += l[t];
  const double target = state.NextUniform() * total;
  double cumulative = 0.0;
  for (int32_t t : kept) {
    cumulative += l[t];
    if (target < cumulative) return t;
  }
  return kept.back();  // rounding at the very end of the range
}

LogprobResult ComputeLogprobs(absl::Span<const float> logits, int32_t token,
                              int top_n) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  const float max_logit = logits[Argmax(logits)];
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x - max_logit));
  const double log_z = max_logit + std::log(sum);
  LogprobResult result;
  if (token >= 0 && token < vocab) {
    result.logprob = static_cast<float>(logits[token] - log_z);
  } else {
    result.logprob = -std::numeric_limits<float>::infinity();
  }
  top_n = std::min(top_n, static_cast<int>(vocab));
  if (top_n > 0) {
    std::vector<int32_t> ids(vocab);
    std::iota(ids.begin(), ids.end(), 0);
    ByValueDesc order{logits.data()};
    std::partial_sort(ids.begin(), ids.begin() + top_n, ids.end(), order);
    result.top.reserve(top_n);
    for (int i = 0; i < top_n; ++i) {
      result.top.push_back(
          {ids[i], static_cast<float>(logits[ids[i]] - log_z)});
    }
  }
  return result;
}

}  // namespace alibi::engine
