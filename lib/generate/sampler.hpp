#pragma once
// Next-token sampler: repetition penalty, then greedy or top-k → temperature softmax → top-p →
// min-p → a seeded draw, in llama.cpp's order. Deterministic across platforms for a given seed.
#include <cstdint>
#include <span>
#include <vector>

#include "weft/sampler.hpp"

namespace weft::gen {

// xoshiro256** seeded through splitmix64: small, fast, and the same stream on every platform
// (std::uniform_real_distribution is implementation-defined, so it is not used).
class Rng {
 public:
  // Seeds the four words of state from seed with splitmix64, so nearby seeds give unrelated streams.
  explicit Rng(std::uint64_t seed = 0) noexcept { reseed(seed); }
  // Restarts the stream as if freshly constructed with seed.
  void reseed(std::uint64_t seed) noexcept;
  // Returns the next 64 random bits.
  std::uint64_t next() noexcept;
  // Returns a double uniform in [0, 1) with 53 random bits.
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t s_[4];
};

class Sampler {
 public:
  // Validates opts and sizes every scratch buffer for vocab_size tokens. Throws weft::UsageError
  // naming the option and its value for temperature < 0, top_p outside (0, 1], min_p outside
  // [0, 1], repeat_penalty <= 0, repeat_last_n < 0, any NaN or infinite value, or vocab_size <= 0.
  Sampler(const SamplerOptions& opts, std::int32_t vocab_size);

  // Picks the next token id in [0, vocab_size) from raw logits, which it modifies in place
  // (the repetition penalty is applied to them). history holds the tokens so far (prompt and
  // generated); ids outside the vocabulary in it are ignored. NaN logits are never chosen; if every
  // logit is NaN, returns 0. Allocates nothing; throws UsageError only if logits.size() !=
  // vocab_size. Not thread-safe: one Sampler per sequence.
  std::int32_t sample(std::span<float> logits, std::span<const std::int32_t> history);

  // Restarts the random stream, as if the Sampler had been constructed with this seed.
  void reseed(std::uint64_t seed) noexcept { rng_.reseed(seed); }

  // The validated options this Sampler was constructed with.
  const SamplerOptions& options() const noexcept { return opts_; }

 private:
  struct Candidate {
    float logit;
    float weight;  // unnormalised probability, exp((logit - max) / T); the best candidate has 1
    std::int32_t id;
  };

  void apply_repeat_penalty(std::span<float> logits, std::span<const std::int32_t> history) noexcept;
  std::int32_t sample_greedy(std::span<const float> logits) const noexcept;
  std::int32_t sample_random(std::span<const float> logits) noexcept;

  SamplerOptions opts_;
  std::int32_t vocab_size_;
  Rng rng_;
  std::vector<Candidate> candidates_;  // vocab_size_ entries, reused by every call
  std::vector<std::uint8_t> seen_;     // vocab_size_ flags, all zero between calls
};

}  // namespace weft::gen
