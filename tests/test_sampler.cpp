#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <new>
#include <vector>

#include "generate/sampler.hpp"
#include "testing.hpp"
#include "weft/error.hpp"

using weft::SamplerOptions;
using weft::UsageError;
using weft::gen::Rng;
using weft::gen::Sampler;

// Every heap allocation in this process goes through these, so a test can count the ones made
// between two points (doctest itself allocates, so nothing is asserted inside a counted region).
// noinline keeps GCC from pairing an inlined free() with operator new (-Wmismatched-new-delete).
static std::atomic<std::size_t> g_allocations{0};
[[gnu::noinline]] void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t a) {
  ++g_allocations;
  const std::size_t al = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

SamplerOptions greedy() {
  SamplerOptions o;
  o.temperature = 0.0f;
  return o;
}

// Plain softmax sampling at temperature t: every filter off.
SamplerOptions plain(float t, std::uint64_t seed = 1) {
  SamplerOptions o;
  o.temperature = t;
  o.top_k = 0;
  o.top_p = 1.0f;
  o.min_p = 0.0f;
  o.seed = seed;
  return o;
}

std::int32_t sample_once(const SamplerOptions& o, std::vector<float> logits,
                         std::vector<std::int32_t> history = {}) {
  Sampler s(o, static_cast<std::int32_t>(logits.size()));
  return s.sample(logits, history);
}

// How often each token is drawn in `draws` calls (the sampler's logits are restored each time).
std::vector<long> draw_counts(const SamplerOptions& o, const std::vector<float>& logits, long draws) {
  Sampler s(o, static_cast<std::int32_t>(logits.size()));
  std::vector<float> scratch(logits.size());
  std::vector<long> counts(logits.size(), 0);
  long out_of_range = 0;
  for (long i = 0; i < draws; ++i) {
    scratch = logits;
    const std::int32_t t = s.sample(scratch, {});
    if (t >= 0 && t < static_cast<std::int32_t>(logits.size()))
      ++counts[static_cast<std::size_t>(t)];
    else
      ++out_of_range;
  }
  CHECK(out_of_range == 0);
  return counts;
}

std::vector<double> softmax(const std::vector<float>& logits, double t) {
  double m = -1e300, sum = 0.0;
  for (float x : logits) m = std::max(m, double{x});
  std::vector<double> p;
  for (float x : logits) p.push_back(std::exp((x - m) / t));
  for (double v : p) sum += v;
  for (double& v : p) v /= sum;
  return p;
}

double chi_square(const std::vector<long>& counts, const std::vector<double>& p, long n) {
  double chi2 = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double e = p[i] * static_cast<double>(n);
    chi2 += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
  }
  return chi2;
}

// Tokens in `allowed` (probabilities p, renormalised over the set) are each drawn within 5 binomial
// standard deviations of n*p (a correct sampler fails this with probability ~6e-7 per token);
// tokens outside it are never drawn.
void check_support(const std::vector<long>& counts, const std::vector<double>& p_allowed, long n) {
  for (std::size_t i = 0; i < counts.size(); ++i) {
    INFO("token " << i << " drawn " << counts[i] << " times of " << n << ", expected p = " << p_allowed[i]);
    if (p_allowed[i] == 0.0) {
      CHECK(counts[i] == 0);
    } else {
      const double e = p_allowed[i] * static_cast<double>(n);
      CHECK(std::fabs(static_cast<double>(counts[i]) - e) <= 5.0 * std::sqrt(e * (1.0 - p_allowed[i])) + 1.0);
    }
  }
}

// Logits whose softmax at T = 1 is exactly {0.5, 0.3, 0.15, 0.05} (up to float rounding).
const std::vector<float> kQuad = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};

}  // namespace

TEST_CASE("greedy picks the argmax, the lowest id on ties, and never NaN") {
  CHECK(sample_once(greedy(), {0.1f, 3.0f, -2.0f, 2.9f}) == 1);
  CHECK(sample_once(greedy(), {1.0f, 5.0f, 2.0f, 5.0f, 5.0f}) == 1);
  CHECK(sample_once(greedy(), {kNaN, 1.0f, kNaN, 4.0f, kNaN}) == 3);
  CHECK(sample_once(greedy(), {kNaN, -kInf, kNaN}) == 1);
  CHECK(sample_once(greedy(), {kNaN, kNaN}) == 0);  // documented fallback
  CHECK(sample_once(greedy(), {1e30f, kInf, 3.0f, kInf}) == 1);
  CHECK(sample_once(greedy(), {-kInf, -kInf, -kInf}) == 0);
}

TEST_CASE("NaN logits are never sampled") {
  const std::vector<float> logits = {kNaN, 0.0f, kNaN, 0.0f, kNaN};
  const auto counts = draw_counts(plain(1.0f), logits, 4000);
  CHECK(counts[0] + counts[2] + counts[4] == 0);
  CHECK(counts[1] > 1500);
  CHECK(counts[3] > 1500);
}

TEST_CASE("top-k = 1 equals greedy at any temperature") {
  Rng rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> logits(1000);
    for (float& x : logits) x = static_cast<float>(rng.uniform() * 20.0 - 10.0);
    logits[rng.next() % 1000] = kNaN;
    if (trial % 2) logits[rng.next() % 1000] = logits[rng.next() % 1000];  // maybe a tie at the max
    logits[999] = logits[500] = 12.0f;                                      // a certain tie at the max
    const std::int32_t g = sample_once(greedy(), logits);
    CHECK(g == 500);
    for (float t : {0.01f, 1.0f, 100.0f}) {
      SamplerOptions o = plain(t, static_cast<std::uint64_t>(trial));
      o.top_k = 1;
      CHECK(sample_once(o, logits) == g);
    }
  }
}

TEST_CASE("infinite logits still give a valid token") {
  std::vector<float> one(32000, -kInf);
  one[12345] = -3.0f;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    CHECK(sample_once(plain(1.0f, seed), one) == 12345);
    SamplerOptions o;  // llama.cpp defaults: top-k 40, top-p 0.95, min-p 0.05
    o.seed = seed;
    CHECK(sample_once(o, one) == 12345);
  }
  const std::vector<float> pos = {1.0f, kInf, 2.0f, kInf, kNaN};
  const auto counts = draw_counts(plain(0.8f), pos, 4000);
  CHECK(counts[0] + counts[2] + counts[4] == 0);
  CHECK(counts[1] > 1500);
  CHECK(counts[3] > 1500);
  const std::vector<float> all_neg(10, -kInf);
  const std::int32_t t = sample_once(plain(1.0f), all_neg);
  CHECK((t >= 0 && t < 10));
}

TEST_CASE("the same seed gives the same sequence; different seeds differ") {
  std::vector<float> logits(256);
  for (std::size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::sin(double(i)) * 3.0);
  auto sequence = [&](Sampler& s) {
    std::vector<std::int32_t> out;
    for (int i = 0; i < 200; ++i) {
      std::vector<float> l = logits;
      out.push_back(s.sample(l, {}));
    }
    return out;
  };
  Sampler a(plain(1.0f, 42), 256), b(plain(1.0f, 42), 256), c(plain(1.0f, 43), 256);
  const auto sa = sequence(a);
  CHECK(sa == sequence(b));
  CHECK(sa != sequence(c));
  a.reseed(42);
  CHECK(sa == sequence(a));
  c.reseed(42);
  CHECK(sa == sequence(c));

  // The stream is pinned, so a platform or refactor that changes it is noticed. The values come
  // from an independent Python transcription of the published splitmix64 and xoshiro256** (whose
  // splitmix64(0) gives the well-known 0xe220a8397b1dcdaf as the first state word).
  Rng r(0);
  CHECK(r.next() == 0x99ec5f36cb75f2b4ull);
  CHECK(r.next() == 0xbf6e1f784956452aull);
  CHECK(r.next() == 0x1a5f849d4933e6e0ull);
}

TEST_CASE("empirical frequencies match softmax(logits / T)") {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, 3.0f, -1.0f, 2.5f};
  const float t = 0.7f;
  const long n = 200000;
  const auto counts = draw_counts(plain(t, 2024), logits, n);
  // Pearson chi-square with 6 - 1 = 5 degrees of freedom: P(chi2 > 35.9) = 1e-6, so a correct
  // sampler fails for one seed in a million. The smallest expected count is ~180, far above the
  // usual 5-per-cell rule for the approximation.
  const double chi2 = chi_square(counts, softmax(logits, t), n);
  INFO("chi2 = " << chi2);
  CHECK(chi2 < 35.9);
  // The test has power: the same counts reject softmax at T = 1 and at T = 0.5 by far.
  CHECK(chi_square(counts, softmax(logits, 1.0), n) > 1000.0);
  CHECK(chi_square(counts, softmax(logits, 0.5), n) > 1000.0);
}

TEST_CASE("top-k keeps exactly the k best") {
  SamplerOptions o = plain(1.0f, 5);
  o.top_k = 2;
  const long n = 20000;
  // Softmax over the two best, {0.5, 0.3} → {0.625, 0.375}.
  check_support(draw_counts(o, {kQuad[3], kQuad[1], kQuad[2], kQuad[0]}, n), {0.0, 0.375, 0.0, 0.625}, n);
}

TEST_CASE("top-k on a 32000-token vocabulary draws only from the k best") {
  std::vector<float> logits(32000);
  Rng rng(17);
  for (float& x : logits) x = static_cast<float>(rng.uniform() * 4.0);
  std::vector<float> sorted = logits;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  const float kth = sorted[39];
  SamplerOptions o = plain(2.0f, 3);  // a high temperature spreads the draws over all 40
  o.top_k = 40;
  Sampler s(o, 32000);
  long outside = 0;
  std::vector<char> drawn(32000, 0);
  for (int i = 0; i < 4000; ++i) {
    std::vector<float> l = logits;
    const std::int32_t t = s.sample(l, {});
    if (logits[t] < kth) ++outside;
    drawn[t] = 1;
  }
  CHECK(outside == 0);
  // The 40 best of 32000 uniforms on [0, 4) lie within 0.05 of each other, so each has p > 1/41
  // and is missed in 4000 draws with probability < (1 - 1/41)^4000 ~ e^-98.
  REQUIRE(sorted[0] - kth < 0.05f);
  CHECK(std::count(drawn.begin(), drawn.end(), 1) == 40);
}

TEST_CASE("top-p keeps the smallest prefix that reaches p") {
  const long n = 20000;
  SamplerOptions o = plain(1.0f, 9);
  o.top_p = 0.75f;  // 0.5 < 0.75 <= 0.8: keep {0, 1}
  check_support(draw_counts(o, kQuad, n), {0.625, 0.375, 0.0, 0.0}, n);
  o.top_p = 0.9f;  // 0.8 < 0.9 <= 0.95: keep {0, 1, 2}
  check_support(draw_counts(o, kQuad, n), {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0}, n);
  // The same set when the logits come in another order (the sampler must sort by probability).
  check_support(draw_counts(o, {kQuad[2], kQuad[0], kQuad[3], kQuad[1]}, n),
                {0.15 / 0.95, 0.5 / 0.95, 0.0, 0.3 / 0.95}, n);
  o.top_p = 0.75f;
  check_support(draw_counts(o, {kQuad[3], kQuad[2], kQuad[1], kQuad[0]}, n), {0.0, 0.0, 0.375, 0.625}, n);
  o.top_p = 0.4f;  // the first token alone reaches it
  check_support(draw_counts(o, kQuad, n), {1.0, 0.0, 0.0, 0.0}, n);
  o.top_p = 1e-6f;  // at least one token is always kept
  check_support(draw_counts(o, kQuad, n), {1.0, 0.0, 0.0, 0.0}, n);
  // Reaching p exactly is enough (cumulative sum >= p): four equal tokens, p = 0.5 keeps two, the
  // lowest ids first; every value here is exact in binary floating point.
  // (The expectation is built element by element: GCC 12.2 with AVX-512 (-march=native here)
  // miscompiles a memcpy of the local array {0.5, 0.5, 0.0, 0.0} into four copies of 0.5.)
  o.top_p = 0.5f;
  std::vector<double> two_of_four(4, 0.0);
  two_of_four[0] = two_of_four[1] = 0.5;
  check_support(draw_counts(o, {0.0f, 0.0f, 0.0f, 0.0f}, n), two_of_four, n);
  o.top_p = 0.25f;
  check_support(draw_counts(o, {0.0f, 0.0f, 0.0f, 0.0f}, n), {1.0, 0.0, 0.0, 0.0}, n);
}

TEST_CASE("min-p drops tokens below min_p times the best probability") {
  const long n = 20000;
  SamplerOptions o = plain(1.0f, 11);
  o.min_p = 0.2f;  // threshold 0.1: drop only the 0.05 token
  check_support(draw_counts(o, kQuad, n), {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0}, n);
  o.min_p = 0.5f;  // threshold 0.25: keep {0.5, 0.3}
  check_support(draw_counts(o, kQuad, n), {0.625, 0.375, 0.0, 0.0}, n);
  o.min_p = 1.0f;  // only the best
  check_support(draw_counts(o, kQuad, n), {1.0, 0.0, 0.0, 0.0}, n);
  // Combined with top-p the stricter of the two wins: top-p 0.9 keeps 3, min-p 0.5 keeps 2.
  o.min_p = 0.5f;
  o.top_p = 0.9f;
  check_support(draw_counts(o, kQuad, n), {0.625, 0.375, 0.0, 0.0}, n);
}

TEST_CASE("repetition penalty changes the argmax and counts each token once") {
  SamplerOptions o = greedy();
  o.repeat_penalty = 1.1f;
  std::vector<float> logits = {2.0f, 1.9f, -1.0f, -0.5f};
  CHECK(sample_once(o, logits) == 0);  // empty history: no effect
  Sampler s(o, 4);
  std::vector<std::int32_t> history = {0, 2, 0, 0, 2, 7, -1};  // 7 and -1 are out of range: ignored
  CHECK(s.sample(logits, history) == 1);
  CHECK(logits[0] == 2.0f / 1.1f);   // positive: divided, once (not 1.1^3)
  CHECK(logits[1] == 1.9f);
  CHECK(logits[2] == -1.0f * 1.1f);  // negative: multiplied, once
  CHECK(logits[3] == -0.5f);

  // Only the last repeat_last_n tokens count.
  o.repeat_last_n = 2;
  logits = {2.0f, 1.9f, -1.0f, -0.5f};
  Sampler w(o, 4);
  CHECK(w.sample(logits, std::vector<std::int32_t>{0, 3, 3}) == 0);
  CHECK(logits[0] == 2.0f);
  CHECK(logits[3] == -0.5f * 1.1f);
  o.repeat_last_n = 0;  // off
  logits = {2.0f, 1.9f, -1.0f, -0.5f};
  CHECK(Sampler(o, 4).sample(logits, std::vector<std::int32_t>{0}) == 0);
  CHECK(logits[0] == 2.0f);

  // Per-call state is reset: token 0, penalized by the call above, is penalized again.
  logits = {2.0f, 1.9f, -1.0f, -0.5f};
  CHECK(s.sample(logits, std::vector<std::int32_t>{1, 0}) == 0);
  CHECK(logits[0] == 2.0f / 1.1f);
  CHECK(logits[1] == 1.9f / 1.1f);
  CHECK(logits[2] == -1.0f);
}

TEST_CASE("invalid options throw UsageError naming the option") {
  struct Bad {
    SamplerOptions opts;
    const char* message_part;
  };
  auto with = [](auto set) {
    SamplerOptions o;
    set(o);
    return o;
  };
  const Bad bad[] = {
      {with([](auto& o) { o.temperature = -0.1f; }), "temperature = -0.1"},
      {with([](auto& o) { o.temperature = kNaN; }), "temperature = nan"},
      {with([](auto& o) { o.temperature = kInf; }), "temperature = inf"},
      {with([](auto& o) { o.top_p = 0.0f; }), "top_p = 0"},
      {with([](auto& o) { o.top_p = 1.5f; }), "top_p = 1.5"},
      {with([](auto& o) { o.top_p = kNaN; }), "top_p = nan"},
      {with([](auto& o) { o.min_p = -0.01f; }), "min_p = -0.01"},
      {with([](auto& o) { o.min_p = 1.01f; }), "min_p = 1.01"},
      {with([](auto& o) { o.min_p = kNaN; }), "min_p = nan"},
      {with([](auto& o) { o.repeat_penalty = 0.0f; }), "repeat_penalty = 0"},
      {with([](auto& o) { o.repeat_penalty = -1.0f; }), "repeat_penalty = -1"},
      {with([](auto& o) { o.repeat_penalty = kNaN; }), "repeat_penalty = nan"},
      {with([](auto& o) { o.repeat_last_n = -1; }), "repeat_last_n = -1"},
  };
  for (const Bad& b : bad) {
    INFO("expecting a UsageError containing \"" << b.message_part << "\"");
    CHECK_THROWS_WITH_AS(Sampler(b.opts, 10), doctest::Contains(b.message_part), UsageError);
  }
  CHECK_THROWS_WITH_AS(Sampler(SamplerOptions{}, 0), doctest::Contains("vocab_size = 0"), UsageError);
  // Boundaries that are valid.
  SamplerOptions edge;
  edge.temperature = 0.0f;
  edge.top_p = 1.0f;
  edge.min_p = 0.0f;
  CHECK_NOTHROW(Sampler(edge, 10));
  edge.min_p = 1.0f;
  edge.repeat_penalty = 0.5f;
  edge.repeat_last_n = 0;
  CHECK_NOTHROW(Sampler(edge, 10));
  // A wrong logits length is a usage error too, not a crash.
  Sampler s(SamplerOptions{}, 10);
  std::vector<float> short_logits(9, 0.0f);
  CHECK_THROWS_AS(s.sample(short_logits, {}), UsageError);
}

TEST_CASE("sample allocates nothing per call") {
  // The counter is live: a vector allocation is seen.
  std::size_t before = g_allocations.load();
  { std::vector<int> v(3); (void)v; }
  CHECK(g_allocations.load() > before);

  const std::int32_t vocab = 32000;
  std::vector<float> logits(vocab), scratch(vocab);
  Rng rng(3);
  for (float& x : logits) x = static_cast<float>(rng.uniform() * 10.0);
  std::vector<std::int32_t> history(100);
  for (auto& t : history) t = static_cast<std::int32_t>(rng.next() % vocab);

  SamplerOptions defaults;
  defaults.repeat_penalty = 1.1f;
  SamplerOptions all = plain(1.0f);
  all.top_p = 0.9f;  // sorts the whole vocabulary
  all.repeat_penalty = 1.3f;
  SamplerOptions g = greedy();
  g.repeat_penalty = 1.2f;
  for (const SamplerOptions& o : {defaults, all, g}) {
    Sampler s(o, vocab);
    before = g_allocations.load();
    std::int64_t sum = 0;
    for (int i = 0; i < 20; ++i) {
      std::copy(logits.begin(), logits.end(), scratch.begin());
      sum += s.sample(scratch, history);
    }
    const std::size_t made = g_allocations.load() - before;
    CHECK(made == 0);
    CHECK(sum >= 0);
  }
}
