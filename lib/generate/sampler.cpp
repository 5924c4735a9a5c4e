#include "generate/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "weft/error.hpp"

namespace weft::gen {

namespace {

std::uint64_t splitmix64(std::uint64_t& x) noexcept {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

template <class T>
[[noreturn]] void bad_option(const char* name, T value, const char* expected) {
  std::ostringstream msg;
  msg << "sampler option " << name << " = " << value << " is invalid: expected " << expected;
  throw UsageError(msg.str());
}

// Highest logit first; equal logits by lowest id, so every ordering below is a total order and
// the sampled token does not depend on how std::sort or std::nth_element break ties.
// A function object rather than a function pointer, so the sorts inline it.
struct Better {
  template <class C>
  bool operator()(const C& a, const C& b) const noexcept {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};

}  // namespace

void Rng::reseed(std::uint64_t seed) noexcept {
  for (auto& s : s_) s = splitmix64(seed);
}

std::uint64_t Rng::next() noexcept {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

Sampler::Sampler(const SamplerOptions& opts, std::int32_t vocab_size)
    : opts_(opts), vocab_size_(vocab_size), rng_(opts.seed) {
  // Comparisons are written so that NaN fails them.
  if (!(opts.temperature >= 0.0f) || std::isinf(opts.temperature))
    bad_option("temperature", opts.temperature, "a finite value >= 0 (0 means greedy)");
  if (!(opts.top_p > 0.0f && opts.top_p <= 1.0f)) bad_option("top_p", opts.top_p, "a value in (0, 1]");
  if (!(opts.min_p >= 0.0f && opts.min_p <= 1.0f)) bad_option("min_p", opts.min_p, "a value in [0, 1]");
  if (!(opts.repeat_penalty > 0.0f) || std::isinf(opts.repeat_penalty))
    bad_option("repeat_penalty", opts.repeat_penalty, "a finite value > 0 (1 means off)");
  if (opts.repeat_last_n < 0) bad_option("repeat_last_n", opts.repeat_last_n, "a value >= 0");
  if (vocab_size <= 0) bad_option("vocab_size", vocab_size, "a value > 0");
  candidates_.resize(static_cast<std::size_t>(vocab_size));
  seen_.assign(static_cast<std::size_t>(vocab_size), 0);
}

std::int32_t Sampler::sample(std::span<float> logits, std::span<const std::int32_t> history) {
  if (logits.size() != static_cast<std::size_t>(vocab_size_)) {
    throw UsageError("Sampler::sample: expected " + std::to_string(vocab_size_) + " logits, got " +
                     std::to_string(logits.size()));
  }
  apply_repeat_penalty(logits, history);
  return opts_.temperature == 0.0f ? sample_greedy(logits) : sample_random(logits);
}

void Sampler::apply_repeat_penalty(std::span<float> logits, std::span<const std::int32_t> history) noexcept {
  if (opts_.repeat_penalty == 1.0f || opts_.repeat_last_n == 0) return;
  const auto tail = history.last(std::min(history.size(), static_cast<std::size_t>(opts_.repeat_last_n)));
  const float penalty = opts_.repeat_penalty;
  // seen_ makes a token repeated in the window penalized once; it is cleared again afterwards.
  for (const std::int32_t t : tail) {
    if (t < 0 || t >= vocab_size_ || seen_[t]) continue;
    seen_[t] = 1;
    float& x = logits[t];
    x = x > 0.0f ? x / penalty : x * penalty;
  }
  for (const std::int32_t t : tail)
    if (t >= 0 && t < vocab_size_) seen_[t] = 0;
}

std::int32_t Sampler::sample_greedy(std::span<const float> logits) const noexcept {
  std::int32_t best = -1;
  float best_logit = 0.0f;
  for (std::int32_t i = 0; i < vocab_size_; ++i) {
    const float x = logits[i];
    if (std::isnan(x)) continue;
    if (best < 0 || x > best_logit) {  // strict: ties keep the lowest id
      best = i;
      best_logit = x;
    }
  }
  return best < 0 ? 0 : best;
}

std::int32_t Sampler::sample_random(std::span<const float> logits) noexcept {
  Candidate* const c = candidates_.data();
  const Better better;
  // Top-k. A small k (llama.cpp's 40 of 32000) keeps a heap of the k best while scanning, one
  // comparison per logit with the worst kept, at the heap's front; a large k collects every
  // candidate and lets nth_element put the k best in front, in O(n). Both yield the same set.
  const std::size_t top_k = opts_.top_k > 0 ? static_cast<std::size_t>(opts_.top_k) : 0;
  std::size_t k = 0;
  if (top_k > 0 && top_k * 16 <= candidates_.size()) {
    for (std::int32_t i = 0; i < vocab_size_; ++i) {
      const Candidate x{logits[i], 0.0f, i};
      if (std::isnan(x.logit)) continue;
      if (k < top_k) {
        c[k++] = x;
        std::push_heap(c, c + k, better);
      } else if (better(x, *c)) {
        std::pop_heap(c, c + k, better);
        c[k - 1] = x;
        std::push_heap(c, c + k, better);
      }
    }
  } else {
    for (std::int32_t i = 0; i < vocab_size_; ++i)
      if (!std::isnan(logits[i])) c[k++] = {logits[i], 0.0f, i};
    if (top_k > 0 && top_k < k) {
      std::nth_element(c, c + top_k, c + k, better);
      k = top_k;
    }
  }
  const double u01 = rng_.uniform();  // one draw per call, whatever the filters keep
  if (k == 0) return 0;

  // Softmax weights relative to the best candidate, which gets weight 1. An infinite maximum
  // (+inf logits, or every logit -inf) is the limit: the tokens at the maximum share equally.
  float max_logit = c->logit;
  for (std::size_t j = 1; j < k; ++j) max_logit = std::max(max_logit, c[j].logit);
  const double inv_t = 1.0 / opts_.temperature;
  double total = 0.0;
  for (std::size_t j = 0; j < k; ++j) {
    Candidate& x = c[j];
    x.weight = std::isinf(max_logit) ? (x.logit == max_logit ? 1.0f : 0.0f)
                                     : static_cast<float>(std::exp((double{x.logit} - max_logit) * inv_t));
    total += x.weight;
  }

  // Min-p (p < min_p * p_max, i.e. weight < min_p) and zero weights go first, in O(k): top-p and
  // min-p both keep a prefix of the sorted candidates and the renormalisation between them does not
  // change ratios to p_max, so filtering min-p first gives llama.cpp's result while sorting only
  // the survivors. The best candidate (weight 1 >= min_p) always survives.
  const float min_w = opts_.min_p;
  const auto keep = [min_w](const Candidate& x) { return x.weight > 0.0f && x.weight >= min_w; };
  std::size_t kept = static_cast<std::size_t>(std::partition(c, c + k, keep) - c);

  // Top-p: the smallest prefix, by descending probability over the top-k set, that reaches top_p.
  // The nucleus of a real model's distribution is usually short, so instead of sorting all the
  // candidates, the next best chunk (64, 256, 1024, ...) is selected in O(n) with nth_element and
  // sorted, until the prefix reaches the target. Without top-p the draw needs no order at all.
  if (opts_.top_p < 1.0f) {
    const double target = opts_.top_p * total;
    double cum = 0.0;
    std::size_t sorted = 0;
    for (std::size_t chunk = 64; sorted < kept; chunk *= 4) {
      const std::size_t end = std::min(kept, sorted + chunk);
      const auto first = c + sorted, mid = c + end;
      if (end < kept) std::nth_element(first, mid, c + kept, better);
      std::sort(first, mid, better);
      while (sorted < end && cum < target) cum += c[sorted++].weight;
      if (cum >= target) kept = sorted;  // ends the loop
    }
  }

  double kept_total = 0.0;
  for (std::size_t j = 0; j < kept; ++j) kept_total += c[j].weight;
  const double u = u01 * kept_total;
  double cum = 0.0;
  for (std::size_t j = 0; j < kept; ++j) {
    cum += c[j].weight;
    if (u < cum) return c[j].id;
  }
  return c[kept - 1].id;  // only reached through rounding in the last place
}

}  // namespace weft::gen
