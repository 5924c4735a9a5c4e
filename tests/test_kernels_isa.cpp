// Every kernel of every ISA variant this build compiled (and this CPU runs) against the scalar
// references and a float64 evaluation, with tolerances derived from the data:
//  - dot products (matvec, matmul, dot_f32): the recursive-summation bound 2·n·eps·Σ|w_i x_i|
//    (any summation order, FMA or not, stays inside n·eps·Σ|w_i x_i| to first order; the factor 2
//    covers the widened f16/bf16 weights, which are exact in f32, and the second-order terms);
//  - the AVX512_BF16 method adds the error of splitting x into bf16 hi + lo: each split rounds to
//    8 significant bits, so |x - x_hi| <= 2^-8|x| and |x - x_hi - x_lo| <= 2^-8|x - x_hi| <= 2^-16|x|,
//    i.e. at most 2^-16·Σ|w_i x_i| more (products of bf16 pairs are exact in f32);
//  - elementwise kernels: a few eps relative, from the operations each one performs.
// Weights sit at odd addresses (a safetensors tensor may start at any byte: 1 byte off for
// f16/bf16, 3 for f32), the shapes are odd and the row ranges do not start at 0.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/dtype.hpp"
#include "core/quant.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/kernels.hpp"
#include "kernels/kernels_config.hpp"
#include "testing.hpp"

using namespace weft;
namespace k = weft::kernels;

namespace {

constexpr double kEps = std::numeric_limits<float>::epsilon();
constexpr DType kDtypes[] = {DType::F32, DType::F16, DType::BF16};

// The tables to test: every compiled ISA the CPU supports; the others are reported and skipped.
std::vector<const k::KernelTable*> tables_under_test() {
  std::vector<const k::KernelTable*> out;
  for (k::Isa isa : k::compiled_isas()) {
    if (const k::KernelTable* t = k::kernel_table(isa)) {
      out.push_back(t);
    } else {
      MESSAGE("skipping the " << k::isa_name(isa) << " kernels: this CPU does not support them");
    }
  }
  return out;
}

// A (rows, cols) weight matrix stored at a deliberately unaligned address.
struct Matrix {
  AlignedBuffer<std::byte> storage;
  std::vector<double> exact;  // the stored values, widened exactly
  TensorView view;
  int rows = 0, cols = 0;
  double at(int r, int c) const { return exact[static_cast<std::size_t>(r) * cols + c]; }
};

Matrix random_matrix(DType t, int rows, int cols, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sigma);
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  // Odd: not even aligned to the element (in the sanitizer build UBSan reports any kernel that
  // loads an element through a typed pointer instead of memcpy or an unaligned vector load).
  const std::size_t offset = t == DType::F32 ? 3 : 1;
  m.storage.resize(dtype_bytes(t, n) + 64);
  std::byte* base = m.storage.data() + offset;
  m.exact.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float v = nd(rng);
    if (t == DType::F32) {
      std::memcpy(base + 4 * i, &v, 4);
      m.exact[i] = v;
    } else {
      const std::uint16_t h = t == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
      std::memcpy(base + 2 * i, &h, 2);
      m.exact[i] = t == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  m.view = make_view_2d(base, t, rows, cols);
  return m;
}

std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// The float64 dot product of row r with x, and Σ|w_i x_i|.
struct Exact {
  double value, magnitude;
};
Exact exact_dot(const Matrix& m, int r, const float* x) {
  Exact e{0.0, 0.0};
  for (int c = 0; c < m.cols; ++c) {
    e.value += m.at(r, c) * x[c];
    e.magnitude += std::fabs(m.at(r, c) * x[c]);
  }
  return e;
}

// The error bound for one dot product of n terms computed by table t on dtype d.
double dot_bound(const k::KernelTable& t, DType d, int n, double magnitude) {
  double rel = 2.0 * n * kEps;
#if WEFT_KERNELS_AVX512BF16
  if (t.isa == k::Isa::Avx512Bf16 && d == DType::BF16 && k::detail::avx512bf16_default_is_dpbf16())
    rel += std::ldexp(1.0, -16);
#endif
  return rel * magnitude + 1e-30;
}

// Checks y[r] for r in [begin, end) against the exact products; reports the worst row.
void check_rows(const k::KernelTable& t, const Matrix& m, const float* x, const float* y, int begin, int end) {
  int bad = -1;
  double worst = 0.0;
  for (int r = begin; r < end; ++r) {
    const Exact e = exact_dot(m, r, x);
    const double err = std::fabs(y[r] - e.value), tol = dot_bound(t, m.view.dtype, m.cols, e.magnitude);
    if (!(err <= tol) && (bad < 0 || err / tol > worst)) {
      bad = r;
      worst = err / tol;
    }
  }
  INFO("worst row " << bad << " at " << worst << "x its bound");
  CHECK(bad == -1);
}

double silu(double g) { return g / (1.0 + std::exp(-g)); }

// The bound on silu(g~)·u~ - silu(g)·u when |g~ - g| <= bg and |u~ - u| <= bu: |silu'| <= 1.1,
// plus the roundings of exp, the add, the divide and the multiply (a few eps of the result).
double silu_mul_bound(double g, double bg, double u, double bu) {
  return 1.1 * bg * (std::fabs(u) + bu) + (std::fabs(silu(g)) + 1.1 * bg) * bu + 8 * kEps * std::fabs(silu(g) * u) +
         1e-30;
}

// Restores WEFT_ISA / WEFT_REFERENCE and the kernel choice they make when a test case ends.
class EnvGuard {
 public:
  EnvGuard() : isa_(get("WEFT_ISA")), reference_(get("WEFT_REFERENCE")) {}
  ~EnvGuard() {
    put("WEFT_ISA", isa_);
    put("WEFT_REFERENCE", reference_);
    k::select_isa_from_environment();
  }

 private:
  static std::optional<std::string> get(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::optional<std::string>(v) : std::nullopt;
  }
  static void put(const char* name, const std::optional<std::string>& v) {
    if (v) {
      setenv(name, v->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  std::optional<std::string> isa_, reference_;
};

}  // namespace

// The best ISA this build and CPU can run.
k::Isa best_available() {
  k::Isa best = k::Isa::Scalar;
  for (k::Isa isa : k::compiled_isas())
    if (k::isa_available(isa)) best = isa;
  return best;
}

// Declared first so that it sees the choice the process made at its first kernel call (meson runs
// this binary again with WEFT_ISA=avx2 and with WEFT_REFERENCE=1 set).
TEST_CASE("the environment at startup selects the kernels (WEFT_ISA, WEFT_REFERENCE)") {
  const char* isa_env = std::getenv("WEFT_ISA");
  const char* ref_env = std::getenv("WEFT_REFERENCE");
  const bool reference = ref_env != nullptr && *ref_env != '\0' && std::strcmp(ref_env, "0") != 0;
  k::Isa expected = best_available();
  if (isa_env != nullptr && *isa_env != '\0') {
    const auto named = k::parse_isa(isa_env);
    if (named && k::isa_available(*named)) {
      expected = *named;
    } else {
      MESSAGE("WEFT_ISA=" << isa_env << " is not available here; expecting the fallback "
                          << k::isa_name(expected));
    }
  }
  MESSAGE("detected " << k::isa_name(k::detected_isa()) << ", active "
                      << (reference ? std::string("reference") : std::string(k::isa_name(k::active_isa()))));
  CHECK(k::reference_forced() == reference);
  CHECK(&k::active_table() == (reference ? &k::reference_table() : k::kernel_table(expected)));
  if (!reference) CHECK(k::active_isa() == expected);
}

TEST_CASE("ISA names, detection and the compiled list are consistent") {
  for (k::Isa isa : {k::Isa::Scalar, k::Isa::Avx2, k::Isa::Avx512, k::Isa::Avx512Bf16}) {
    CHECK(k::parse_isa(k::isa_name(isa)) == isa);
    CHECK(k::isa_available(isa) == (k::kernel_table(isa) != nullptr));
    if (const k::KernelTable* t = k::kernel_table(isa)) {
      CHECK(t->isa == isa);
      CHECK(k::isa_name(isa) == t->name);
    }
  }
  CHECK(k::parse_isa("AVX512") == k::Isa::Avx512);
  CHECK_FALSE(k::parse_isa("sse9").has_value());
  REQUIRE_FALSE(k::compiled_isas().empty());
  CHECK(k::compiled_isas().front() == k::Isa::Scalar);
  CHECK(k::cpu_supports(k::Isa::Scalar));
  CHECK(k::cpu_supports(k::detected_isa()));
#if defined(__x86_64__)
  // The development machines have AVX-512 with BF16; a plain x86-64 build still has AVX2 compiled.
  CHECK(k::compiled_isas().size() >= 2);
#endif
}

TEST_CASE("force_isa and WEFT_ISA change which implementation runs") {
  EnvGuard guard;
  std::mt19937 rng(3);
  const Matrix m = random_matrix(DType::BF16, 9, 100, rng);
  const auto x = random_vector(100, rng);
  for (const k::KernelTable* t : tables_under_test()) {
    CAPTURE(std::string(t->name));
    REQUIRE(k::force_isa(t->isa));
    CHECK(k::active_isa() == t->isa);
    CHECK(&k::active_table() == t);
    CHECK_FALSE(k::reference_forced());
    // The dispatching entry point runs exactly this table's kernel: bit-identical results.
    std::vector<float> y(9), y_direct(9);
    k::matvec(m.view, x.data(), y.data(), 0, 9);
    t->matvec(m.view, x.data(), y_direct.data(), 0, 9);
    CHECK(std::memcmp(y.data(), y_direct.data(), sizeof(float) * 9) == 0);

    k::force_reference(true);
    CHECK(k::reference_forced());
    k::matvec(m.view, x.data(), y.data(), 0, 9);
    k::ref::matvec(m.view, x.data(), y_direct.data(), 0, 9);
    CHECK(std::memcmp(y.data(), y_direct.data(), sizeof(float) * 9) == 0);
    k::force_reference(false);
    CHECK(&k::active_table() == t);

    setenv("WEFT_ISA", std::string(t->name).c_str(), 1);
    unsetenv("WEFT_REFERENCE");
    CHECK(k::force_isa(k::Isa::Scalar));
    k::select_isa_from_environment();
    CHECK(&k::active_table() == t);
  }
  for (k::Isa isa : k::compiled_isas())
    if (!k::isa_available(isa)) CHECK_FALSE(k::force_isa(isa));

  // An ISA this machine cannot run, or a name that is no ISA, falls back to the best one.
  setenv("WEFT_ISA", "sse9", 1);
  k::select_isa_from_environment();
  CHECK(k::active_isa() == best_available());
  setenv("WEFT_REFERENCE", "1", 1);
  k::select_isa_from_environment();
  CHECK(k::reference_forced());
  setenv("WEFT_REFERENCE", "0", 1);
  k::select_isa_from_environment();
  CHECK_FALSE(k::reference_forced());
}

TEST_CASE("matvec of every ISA matches the exact product: odd shapes, unaligned rows, sub-ranges") {
  std::mt19937 rng(11);
  const int rows = 13;
  for (const k::KernelTable* t : tables_under_test()) {
    for (DType d : kDtypes) {
      for (int cols : {1, 7, 15, 16, 17, 31, 32, 33, 100, 4100}) {
        CAPTURE(std::string(t->name));
        CAPTURE(dtype_name(d));
        CAPTURE(cols);
        const Matrix m = random_matrix(d, rows, cols, rng);
        // x starts one float past an aligned address too.
        std::vector<float> xbuf = random_vector(static_cast<std::size_t>(cols) + 1, rng);
        const float* x = xbuf.data() + 1;
        for (auto [b, e] : {std::pair{0, rows}, {3, rows}, {5, 6}, {2, 11}, {4, 4}}) {
          CAPTURE(b);
          CAPTURE(e);
          std::vector<float> y(rows, -7.0f), y_ref(rows, -7.0f);
          t->matvec(m.view, x, y.data(), b, e);
          k::ref::matvec(m.view, x, y_ref.data(), b, e);
          check_rows(*t, m, x, y.data(), b, e);
          check_rows(*t, m, x, y_ref.data(), b, e);
          for (int r = 0; r < rows; ++r)
            if (r < b || r >= e) CHECK(y[r] == -7.0f);
        }
      }
    }
  }
}

TEST_CASE("matmul of every ISA matches the exact products for n = 1..9 and 16, with strides") {
  std::mt19937 rng(12);
  const int rows = 11;
  for (const k::KernelTable* t : tables_under_test()) {
    for (DType d : kDtypes) {
      for (int cols : {1, 7, 17, 33, 1030, 4100}) {
        const Matrix m = random_matrix(d, rows, cols, rng);
        for (int n : {1, 2, 3, 4, 5, 7, 9, 16}) {
          CAPTURE(std::string(t->name));
          CAPTURE(dtype_name(d));
          CAPTURE(cols);
          CAPTURE(n);
          const int ldx = cols + 3, ldy = rows + 2, b = 2, e = rows;  // padded strides, range not at 0
          const auto x = random_vector(static_cast<std::size_t>(n) * ldx, rng);
          std::vector<float> y(static_cast<std::size_t>(n) * ldy, -7.0f);
          t->matmul(m.view, x.data(), ldx, n, y.data(), ldy, b, e);
          for (int i = 0; i < n; ++i) {
            CAPTURE(i);
            check_rows(*t, m, x.data() + i * ldx, y.data() + i * ldy, b, e);
            for (int r = 0; r < ldy; ++r)
              if (r < b || r >= e) CHECK(y[i * ldy + r] == -7.0f);
          }
        }
      }
    }
  }
}

TEST_CASE("matvec_silu_mul and matmul_silu_mul of every ISA match silu(W_gate x) * (W_up x)") {
  std::mt19937 rng(13);
  const int rows = 10;
  for (const k::KernelTable* t : tables_under_test()) {
    for (DType d : kDtypes) {
      for (int cols : {1, 15, 33, 4100}) {
        // A wider gate spread reaches the saturated parts of silu.
        const Matrix gate = random_matrix(d, rows, cols, rng, 0.5f), up = random_matrix(d, rows, cols, rng);
        for (int n : {1, 3, 4, 6}) {
          CAPTURE(std::string(t->name));
          CAPTURE(dtype_name(d));
          CAPTURE(cols);
          CAPTURE(n);
          const int ldx = cols + 1, ldo = rows + 1, b = 1, e = rows;
          const auto x = random_vector(static_cast<std::size_t>(n) * ldx, rng);
          std::vector<float> out(static_cast<std::size_t>(n) * ldo, -7.0f), ref(out);
          if (n == 1) {
            t->matvec_silu_mul(gate.view, up.view, x.data(), out.data(), b, e);
            k::ref::matvec_silu_mul(gate.view, up.view, x.data(), ref.data(), b, e);
          } else {
            t->matmul_silu_mul(gate.view, up.view, x.data(), ldx, n, out.data(), ldo, b, e);
            k::ref::matmul_silu_mul(gate.view, up.view, x.data(), ldx, n, ref.data(), ldo, b, e);
          }
          int bad = -1;
          for (int i = 0; i < n; ++i)
            for (int r = 0; r < ldo; ++r) {
              const float got = out[i * ldo + r], want_ref = ref[i * ldo + r];
              if (r < b || r >= e) {
                if (got != -7.0f || want_ref != -7.0f) bad = r;
                continue;
              }
              const Exact g = exact_dot(gate, r, x.data() + i * ldx), u = exact_dot(up, r, x.data() + i * ldx);
              const double exact = silu(g.value) * u.value;
              const double tol = silu_mul_bound(g.value, dot_bound(*t, d, cols, g.magnitude), u.value,
                                                dot_bound(*t, d, cols, u.magnitude));
              if (!(std::fabs(got - exact) <= tol) || !(std::fabs(want_ref - exact) <= tol)) bad = r;
            }
          CHECK(bad == -1);
        }
      }
    }
  }
}

TEST_CASE("dot_f32 of every ISA matches the exact dot product at odd lengths and offsets") {
  std::mt19937 rng(14);
  for (const k::KernelTable* t : tables_under_test()) {
    for (int n : {0, 1, 7, 15, 16, 17, 33, 64, 128, 4100}) {
      CAPTURE(std::string(t->name));
      CAPTURE(n);
      const auto a = random_vector(static_cast<std::size_t>(n) + 1, rng), b = random_vector(n + 3, rng);
      const float* pa = a.data() + 1;  // 4 bytes off
      const float* pb = b.data() + 3;
      double exact = 0, mag = 0;
      for (int i = 0; i < n; ++i) {
        exact += double(pa[i]) * pb[i];
        mag += std::fabs(double(pa[i]) * pb[i]);
      }
      const double tol = 2.0 * n * kEps * mag + 1e-30;
      CHECK(std::fabs(t->dot_f32(pa, pb, n) - exact) <= tol);
      CHECK(std::fabs(k::ref::dot_f32(pa, pb, n) - exact) <= tol);
    }
  }
}

TEST_CASE("rmsnorm of every ISA matches the definition for every weight dtype") {
  std::mt19937 rng(15);
  for (const k::KernelTable* t : tables_under_test()) {
    for (DType d : kDtypes) {
      for (int n : {1, 7, 17, 33, 4100}) {
        CAPTURE(std::string(t->name));
        CAPTURE(dtype_name(d));
        CAPTURE(n);
        const Matrix g = random_matrix(d, 1, n, rng);
        TensorView gv = g.view;
        gv.ndim = 1;
        const auto xbuf = random_vector(static_cast<std::size_t>(n) + 1, rng);
        const float* x = xbuf.data() + 1;
        std::vector<float> out(n), ref(n);
        t->rmsnorm(x, gv, 1e-5f, out.data());
        k::ref::rmsnorm(x, gv, 1e-5f, ref.data());
        double ss = 0;
        for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
        const double scale = 1.0 / std::sqrt(ss / n + 1e-5);
        // The sum of squares has relative error <= n·eps (all terms positive); the square root
        // halves it; the divide, the add and two multiplies add one eps each.
        int bad = -1;
        for (int i = 0; i < n; ++i) {
          const double exact = x[i] * scale * g.exact[i];
          const double tol = (n * kEps + 6 * kEps) * std::fabs(exact) + 1e-30;
          if (!(std::fabs(out[i] - exact) <= tol) || !(std::fabs(ref[i] - exact) <= tol)) bad = i;
        }
        CHECK(bad == -1);
      }
    }
  }
}

TEST_CASE("rope of every ISA matches the exact rotation") {
  std::mt19937 rng(16);
  for (const k::KernelTable* t : tables_under_test()) {
    for (int hd : {2, 8, 14, 34, 64, 128}) {
      CAPTURE(std::string(t->name));
      CAPTURE(hd);
      const int heads = 3, half = hd / 2;
      const auto q0 = random_vector(static_cast<std::size_t>(heads) * hd, rng);
      auto q = q0, q_ref = q0;
      std::vector<float> c(half), s(half);
      for (int i = 0; i < half; ++i) {
        const double ang = 7.0 * std::pow(10000.0, -2.0 * i / hd);
        c[i] = static_cast<float>(std::cos(ang));
        s[i] = static_cast<float>(std::sin(ang));
      }
      t->rope(q.data(), heads, hd, c.data(), s.data());
      k::ref::rope(q_ref.data(), heads, hd, c.data(), s.data());
      // a·c - b·s rounds at most three times (two products, one difference; an FMA only removes
      // one), so its error is below 2·eps·(|a·c| + |b·s|) with room to spare; likewise b·c + a·s.
      int bad = -1;
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < half; ++i) {
          const int lo = h * hd + i, hi = lo + half;
          const double a = q0[lo], b = q0[hi];
          const double tol_lo = 2 * kEps * (std::fabs(a * c[i]) + std::fabs(b * s[i])) + 1e-30;
          const double tol_hi = 2 * kEps * (std::fabs(b * c[i]) + std::fabs(a * s[i])) + 1e-30;
          const double want_lo = a * c[i] - b * s[i], want_hi = b * c[i] + a * s[i];
          for (const auto* v : {&q, &q_ref})
            if (!(std::fabs((*v)[lo] - want_lo) <= tol_lo) || !(std::fabs((*v)[hi] - want_hi) <= tol_hi)) bad = lo;
        }
      CHECK(bad == -1);
    }
  }
}

TEST_CASE("softmax of every ISA matches the exact softmax, including a wide range of scores") {
  std::mt19937 rng(17);
  for (const k::KernelTable* t : tables_under_test()) {
    for (int n : {1, 7, 16, 17, 33, 100, 4100}) {
      for (float sigma : {1.0f, 30.0f}) {
        CAPTURE(std::string(t->name));
        CAPTURE(n);
        CAPTURE(sigma);
        auto x = random_vector(n, rng, sigma), x_ref = x;
        const auto in = x;
        t->softmax(x.data(), n);
        k::ref::softmax(x_ref.data(), n);
        double mx = -INFINITY, sum = 0;
        for (float v : in) mx = std::max(mx, double(v));
        for (float v : in) sum += std::exp(double(v) - mx);
        // Relative error of p_i: rounding x_i - max (eps·|x_i - max| after exp), exp itself (2 eps),
        // the sum (n eps), the reciprocal and the scaling (2 eps).
        int bad = -1;
        for (int i = 0; i < n; ++i) {
          const double d = double(in[i]) - mx, exact = std::exp(d) / sum;
          const double tol = exact * kEps * (std::fabs(d) + n + 4) + 1e-37;
          if (!(std::fabs(x[i] - exact) <= tol) || !(std::fabs(x_ref[i] - exact) <= tol)) bad = i;
        }
        CHECK(bad == -1);
      }
    }
  }
}

TEST_CASE("attend of every ISA matches exact grouped-query attention over runs of keys") {
  std::mt19937 rng(19);
  struct Case {
    int hd, group;
    std::vector<std::int64_t> runs;  // keys per run
  };
  const Case cases[] = {{64, 8, {1}},          {64, 8, {5, 30}},     {128, 4, {7, 100, 1}}, {64, 1, {300}},
                        {128, 2, {33}},        {32, 3, {4, 4, 4}},   {48, 2, {9, 2}},       {80, 5, {17, 1, 16}}};
  for (const k::KernelTable* t : tables_under_test()) {
    for (const Case& c : cases) {
      CAPTURE(std::string(t->name));
      CAPTURE(c.hd);
      CAPTURE(c.group);
      CAPTURE(c.runs.size());
      const std::int64_t stride = 4 * c.hd + 3;  // rows of a wider KV cache, unaligned
      std::int64_t total = 0;
      for (std::int64_t n : c.runs) total += n;
      const auto q = random_vector(c.group * c.hd, rng, 0.3f);
      std::vector<std::vector<float>> kv;
      std::vector<k::KvRun> runs;
      for (std::int64_t n : c.runs) {
        kv.push_back(random_vector(static_cast<int>(n * stride), rng, 0.3f));
        kv.push_back(random_vector(static_cast<int>(n * stride), rng));
        runs.push_back({kv[kv.size() - 2].data() + 1, kv.back().data() + 2, n});
      }
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
      const std::int64_t ss = total + 5;
      std::vector<float> scores(c.group * ss), out(c.group * c.hd, NAN), scores_ref(scores), out_ref(out);
      t->attend(q.data(), c.group, c.hd, scale, runs.data(), static_cast<int>(runs.size()), stride, scores.data(), ss,
                out.data());
      k::ref::attend(q.data(), c.group, c.hd, scale, runs.data(), static_cast<int>(runs.size()), stride,
                     scores_ref.data(), ss, out_ref.data());
      int bad = -1;
      for (int h = 0; h < c.group; ++h) {
        // Exact, in double: p = softmax(q_h . k * scale), out_h = sum p v.
        std::vector<double> p;
        std::vector<const float*> vs;
        for (const k::KvRun& r : runs)
          for (std::int64_t i = 0; i < r.n; ++i) {
            double d = 0;
            for (int e = 0; e < c.hd; ++e) d += double(q[h * c.hd + e]) * r.k[i * stride + e];
            p.push_back(d * scale);
            vs.push_back(r.v + i * stride);
          }
        const double mx = *std::max_element(p.begin(), p.end());
        double sum = 0;
        for (double& x : p) sum += (x = std::exp(x - mx));
        for (double& x : p) x /= sum;
        for (int e = 0; e < c.hd; ++e) {
          double exact = 0, mag = 0;
          for (std::size_t j = 0; j < p.size(); ++j) exact += p[j] * vs[j][e], mag += p[j] * std::fabs(vs[j][e]);
          // The scores' dot products, the softmax and the weighted sum each add a few eps per term.
          const double tol = 8 * kEps * (c.hd + total + 8) * mag + 1e-30;
          const float got = out[h * c.hd + e], ref = out_ref[h * c.hd + e];
          if (!(std::fabs(got - exact) <= tol) || !(std::fabs(ref - exact) <= tol)) bad = h * c.hd + e;
        }
      }
      CHECK(bad == -1);
    }
  }
}

TEST_CASE("silu_mul of every ISA matches silu(g) * u, in place too") {
  std::mt19937 rng(18);
  for (const k::KernelTable* t : tables_under_test()) {
    for (int n : {1, 7, 16, 17, 33, 4100}) {
      CAPTURE(std::string(t->name));
      CAPTURE(n);
      auto g = random_vector(n, rng, 4.0f);
      const auto u = random_vector(n, rng);
      g[0] = -100.0f;  // exp(100) overflows to inf: silu must still be -0, not NaN
      if (n > 1) g[1] = 100.0f;
      std::vector<float> out(n), ref(n);
      t->silu_mul(g.data(), u.data(), out.data(), n);
      k::ref::silu_mul(g.data(), u.data(), ref.data(), n);
      int bad = -1;
      for (int i = 0; i < n; ++i) {
        const double exact = silu(g[i]) * u[i];
        // exp (2 eps), the add, the divide and the multiply; below FLT_MIN the result may flush.
        const double tol = 8 * kEps * std::fabs(exact) + 1e-37;
        if (!(std::fabs(out[i] - exact) <= tol) || !(std::fabs(ref[i] - exact) <= tol)) bad = i;
      }
      CHECK(bad == -1);
      auto inplace = g;
      t->silu_mul(inplace.data(), u.data(), inplace.data(), n);
      CHECK(std::memcmp(inplace.data(), out.data(), sizeof(float) * n) == 0);
    }
  }
}

#if WEFT_KERNELS_AVX512BF16
TEST_CASE("the AVX512_BF16 vdpbf16ps matvec stays within the bound of its split of x") {
  if (!k::isa_available(k::Isa::Avx512Bf16)) {
    MESSAGE("skipping: this CPU has no AVX512_BF16");
    return;
  }
  using Fn = void (*)(const TensorView&, const float*, float*, std::int64_t, std::int64_t) noexcept;
  // Splitting x into p bf16 parts leaves |x - Σ parts| <= 2^(-8p)|x| (each part rounds what the
  // previous ones left to 8 significant bits), which adds 2^(-8p)·Σ|w_i x_i| to the f32 bound.
  const std::pair<Fn, int> methods[] = {{&k::detail::avx512bf16_matvec_dpbf16, 2},
                                        {&k::detail::avx512bf16_matvec_dpbf16x3, 3},
                                        {&k::detail::avx512bf16_matvec_shift, 0}};
  std::mt19937 rng(19);
  const k::KernelTable& t = *k::kernel_table(k::Isa::Avx512Bf16);
  for (auto [fn, parts] : methods) {
    for (int cols : {1, 7, 15, 31, 32, 33, 100, 4100}) {
      CAPTURE(parts);
      CAPTURE(cols);
      const int rows = 9;
      const Matrix m = random_matrix(DType::BF16, rows, cols, rng);
      const auto xbuf = random_vector(static_cast<std::size_t>(cols) + 1, rng);
      const float* x = xbuf.data() + 1;
      std::vector<float> y(rows, -7.0f);
      fn(m.view, x, y.data(), 2, rows);
      int bad = -1;
      for (int r = 2; r < rows; ++r) {
        const Exact e = exact_dot(m, r, x);
        const double tol = dot_bound(t, DType::BF16, cols, e.magnitude) -
                           (k::detail::avx512bf16_default_is_dpbf16() ? std::ldexp(e.magnitude, -16) : 0.0) +
                           (parts > 0 ? std::ldexp(e.magnitude, -8 * parts) : 0.0);
        if (!(std::fabs(y[r] - e.value) <= tol)) bad = r;
      }
      CHECK(bad == -1);
      CHECK(y[0] == -7.0f);
      CHECK(y[1] == -7.0f);
    }
  }
}
#endif

TEST_CASE("prefill equals decode: matmul at any n gives the matvec result bit for bit") {
  std::mt19937 rng(20);
  for (const k::KernelTable* t : tables_under_test()) {
    for (DType d : kDtypes) {
      CAPTURE(std::string(t->name));
      CAPTURE(dtype_name(d));
      const int rows = 10, cols = 2500, n = 70;  // several column chunks and token passes
      const Matrix m = random_matrix(d, rows, cols, rng);
      const auto x = random_vector(static_cast<std::size_t>(n) * cols, rng);
      std::vector<float> y(static_cast<std::size_t>(n) * rows), y1(y.size());
      t->matmul(m.view, x.data(), cols, n, y.data(), rows, 1, rows);
      for (int i = 0; i < n; ++i) t->matvec(m.view, x.data() + i * cols, y1.data() + i * rows, 1, rows);
      bool same = true;
      for (int i = 0; i < n; ++i)
        for (int r = 1; r < rows; ++r) same = same && y[i * rows + r] == y1[i * rows + r];
      if (t->isa == k::Isa::Scalar) {
        MESSAGE("the portable kernels do not promise it");
      } else {
        CHECK(same);
      }
    }
  }
}

// The few-vector tiles (batched decode: token groups of up to 8, tiles of 2-8 rows and the leftover
// rows of a range, x interleaved per group) against matvec, bit for bit, for the plain and fused
// kernels; 2500 columns end in a masked tail, 33 columns are one vector and a tail.
TEST_CASE("batched decode: matmul and matmul_silu_mul at n = 2..17, 33, 64 equal matvec bit for bit") {
  std::mt19937 rng(21);
  for (const k::KernelTable* t : tables_under_test()) {
    if (t->isa == k::Isa::Scalar) continue;  // the portable kernels do not promise it
    for (DType d : kDtypes) {
      for (int cols : {33, 2500}) {
        const int rows = 29;
        const Matrix m = random_matrix(d, rows, cols, rng), u = random_matrix(d, rows, cols, rng);
        for (int n : {2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 33, 64}) {
          CAPTURE(std::string(t->name));
          CAPTURE(dtype_name(d));
          CAPTURE(cols);
          CAPTURE(n);
          const int ldx = cols + 5, ldy = rows + 3, b = 3, e = rows - 1;
          const auto x = random_vector(static_cast<std::size_t>(n) * ldx, rng);
          std::vector<float> y(static_cast<std::size_t>(n) * ldy), y1(rows), s(y.size()), s1(rows);
          t->matmul(m.view, x.data(), ldx, n, y.data(), ldy, b, e);
          t->matmul_silu_mul(m.view, u.view, x.data(), ldx, n, s.data(), ldy, b, e);
          bool same = true, same_silu = true;
          for (int i = 0; i < n; ++i) {
            t->matvec(m.view, x.data() + i * ldx, y1.data(), b, e);
            t->matvec_silu_mul(m.view, u.view, x.data() + i * ldx, s1.data(), b, e);
            for (int r = b; r < e; ++r) {
              same = same && std::memcmp(&y[i * ldy + r], &y1[r], sizeof(float)) == 0;
              same_silu = same_silu && std::memcmp(&s[i * ldy + r], &s1[r], sizeof(float)) == 0;
            }
          }
          CHECK(same);
          CHECK(same_silu);
        }
      }
    }
  }
}

// ---- quantized weights --------------------------------------------------------------------------
// Every ISA's *_q kernels against the scalar references. The integer parts are exact in both, so
// they differ only in the order of the f32 operations: each block (super-block) contributes
// terms of magnitude at most Σ|scale·q|·|x̂| over its elements, and any order of summing nb such
// terms, each with a scale product and a conversion, stays within (nb + 16)·eps of their sum of
// magnitudes (two such bounds for the difference of two orders). For Q4_K the scale and the min
// parts are separate terms, so both magnitudes count.
namespace {

constexpr DType kQuantDtypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};

struct QMatrix {
  AlignedBuffer<std::byte> storage;
  TensorView view;
  std::vector<float> deq;  // the dequantized values, row-major
  std::vector<float> pos;  // Q4_K: the scale part alone (dmin = 0); else = deq
};

// Random bytes (every level, bit pattern and sub-block scale occurs), with the f16 block scales
// replaced by ordinary values of either sign; stored 3 bytes past an aligned address.
QMatrix random_qmatrix(DType t, int rows, int cols, std::mt19937& rng) {
  QMatrix m;
  const std::size_t bytes = dtype_bytes(t, static_cast<std::size_t>(rows) * cols);
  m.storage.resize(bytes + 64);
  std::byte* base = m.storage.data() + 3;
  std::uniform_int_distribution<int> byte(0, 255);
  for (std::size_t i = 0; i < bytes; ++i) base[i] = static_cast<std::byte>(byte(rng));
  std::uniform_real_distribution<float> scale(0.002f, 0.05f);
  std::bernoulli_distribution negative(0.3);
  auto put_f16 = [&](std::byte* p, float v) {
    const std::uint16_t h = f32_to_f16(v);
    std::memcpy(p, &h, 2);
  };
  const std::size_t bb = dtype_block_bytes(t);
  for (std::size_t off = 0; off < bytes; off += bb) {
    const float d = negative(rng) ? -scale(rng) : scale(rng);
    switch (t) {
      case DType::Q8_0:
      case DType::Q4_0: put_f16(base + off, d); break;
      case DType::Q4_K:
        put_f16(base + off, std::fabs(d));
        put_f16(base + off + 2, scale(rng));
        break;
      case DType::Q6_K: put_f16(base + off + 208, d); break;
      default: break;
    }
  }
  if (t == DType::Q8_0)  // a block of int8 extremes: -128 and 127
    for (int i = 0; i < 32; ++i) base[2 + i] = static_cast<std::byte>(i % 2 ? 0x80 : 0x7F);
  m.view = make_view_2d(base, t, rows, cols);
  m.deq.resize(static_cast<std::size_t>(rows) * cols);
  dequantize_row(t, base, static_cast<std::int64_t>(rows) * cols, m.deq.data());
  m.pos = m.deq;
  if (t == DType::Q4_K) {
    std::vector<std::byte> copy(base, base + bytes);
    for (std::size_t off = 0; off < bytes; off += bb) std::memset(copy.data() + off + 2, 0, 2);
    dequantize_row(t, copy.data(), static_cast<std::int64_t>(rows) * cols, m.pos.data());
  }
  return m;
}

// An activation vector with an outlier, and its quantized and dequantized forms.
struct QVector {
  std::vector<std::byte> q;
  std::vector<float> deq;
};
QVector random_qvector(DType t, int cols, std::mt19937& rng) {
  auto x = random_vector(static_cast<std::size_t>(cols), rng);
  x[static_cast<std::size_t>(cols) / 3] = 25.0f;
  QVector v;
  v.q.resize(k::act_bytes(t, cols));
  k::ref::quantize_act(t, x.data(), cols, v.q.data());
  v.deq.resize(static_cast<std::size_t>(cols));
  k::dequantize_act(t, v.q.data(), cols, v.deq.data());
  return v;
}

// The bound on |kernel - reference| for row r.
double q_bound(const QMatrix& m, int r, const QVector& x) {
  const int cols = static_cast<int>(m.view.cols);
  double mag = 0;
  for (int c = 0; c < cols; ++c) {
    const std::size_t i = static_cast<std::size_t>(r) * cols + c;
    mag += (std::fabs(double(m.pos[i])) + std::fabs(double(m.deq[i]) - m.pos[i])) * std::fabs(double(x.deq[c]));
  }
  const double nb = double(cols) / double(dtype_block_size(m.view.dtype));
  return 2.0 * (nb + 16) * kEps * mag + 1e-30;
}

// t's matvec_q on w (m's rows, in any layout) over rows [b, e) against the reference on m: within
// q_bound inside the range, untouched outside.
void check_matvec_q(const k::KernelTable& t, const TensorView& w, const QMatrix& m, const QVector& x, int b, int e) {
  const int rows = static_cast<int>(m.view.rows);
  std::vector<float> y(rows, -7.0f), y_ref(rows, -7.0f);
  t.matvec_q(w, x.q.data(), y.data(), b, e);
  k::ref::matvec_q(m.view, x.q.data(), y_ref.data(), b, e);
  int bad = -1;
  for (int r = 0; r < rows; ++r) {
    if (r < b || r >= e) {
      if (y[r] != -7.0f) bad = r;
    } else if (!(std::fabs(double(y[r]) - y_ref[r]) <= q_bound(m, r, x))) {
      bad = r;
    }
  }
  INFO("row " << bad << ": " << (bad >= 0 ? y[bad] : 0.f) << " vs " << (bad >= 0 ? y_ref[bad] : 0.f));
  CHECK(bad == -1);
}

std::vector<int> q_cols(DType t) {
  if (t == DType::Q8_0 || t == DType::Q4_0) return {32, 160, 256, 512, 2304};
  return {256, 512, 2304};
}

}  // namespace

TEST_CASE("matvec_q of every ISA matches the reference for every quantized dtype") {
  std::mt19937 rng(30);
  const int rows = 13;
  for (const k::KernelTable* t : tables_under_test()) {
    for (DType d : kQuantDtypes) {
      for (int cols : q_cols(d)) {
        CAPTURE(std::string(t->name));
        CAPTURE(dtype_name(d));
        CAPTURE(cols);
        const QMatrix m = random_qmatrix(d, rows, cols, rng);
        const QVector x = random_qvector(d, cols, rng);
        // The table's activation quantizer writes the same bytes as the reference's.
        std::vector<std::byte> mine(x.q.size());
        t->quantize_act(d, x.deq.data(), cols, mine.data());
        std::vector<std::byte> again(x.q.size());
        k::ref::quantize_act(d, x.deq.data(), cols, again.data());
        CHECK(mine == again);
        for (auto [b, e] : {std::pair{0, rows}, {3, rows}, {5, 6}, {1, 12}, {4, 4}}) {
          CAPTURE(b);
          CAPTURE(e);
          check_matvec_q(*t, m.view, m, x, b, e);
        }
      }
    }
  }
}

TEST_CASE("every ISA's activation quantizer writes the reference's bytes, odd values included") {
  // Zeros, subnormals (the scale's inverse overflows), huge values, a ramp, and the ramp with a
  // NaN or an infinity (the vector conversions differ from lrintf there).
  const int cols = 512;
  std::vector<std::vector<float>> cases;
  cases.push_back(std::vector<float>(cols, 0.0f));
  cases.push_back(std::vector<float>(cols, 1e-41f));
  cases.push_back(std::vector<float>(cols, 3e38f));
  std::vector<float> ties(cols);
  for (int i = 0; i < cols; ++i) ties[i] = static_cast<float>(i % 64) - 31.5f;
  cases.push_back(ties);
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    std::vector<float> v = ties;
    v[37] = bad;
    cases.push_back(v);
  }
  for (const k::KernelTable* t : tables_under_test())
    for (DType d : kQuantDtypes)
      for (std::size_t c = 0; c < cases.size(); ++c) {
        CAPTURE(std::string(t->name));
        CAPTURE(dtype_name(d));
        CAPTURE(c);
        std::vector<std::byte> mine(k::act_bytes(d, cols)), ref(mine.size());
        t->quantize_act(d, cases[c].data(), cols, mine.data());
        k::ref::quantize_act(d, cases[c].data(), cols, ref.data());
        CHECK(std::memcmp(mine.data(), ref.data(), mine.size()) == 0);
      }
}

TEST_CASE("matmul_q of every ISA equals its matvec_q bit for bit (n = 1..9, odd row ranges)") {
  std::mt19937 rng(31);
  const int rows = 11;
  for (const k::KernelTable* t : tables_under_test()) {
    for (DType d : kQuantDtypes) {
      for (int cols : q_cols(d)) {
        const QMatrix m = random_qmatrix(d, rows, cols, rng);
        const std::size_t stride = k::act_bytes(d, cols);
        for (int n = 1; n <= 9; ++n) {
          CAPTURE(std::string(t->name));
          CAPTURE(dtype_name(d));
          CAPTURE(cols);
          CAPTURE(n);
          std::vector<std::byte> xq(stride * n);
          const auto x = random_vector(static_cast<std::size_t>(n) * cols, rng);
          for (int i = 0; i < n; ++i) t->quantize_act(d, x.data() + i * cols, cols, xq.data() + i * stride);
          const int ldy = rows + 3;
          for (auto [b, e] : {std::pair{1, rows}, {3, 10}, {0, 5}}) {
            std::vector<float> y(static_cast<std::size_t>(n) * ldy, -7.0f), y1(y.size(), -7.0f);
            t->matmul_q(m.view, xq.data(), n, y.data(), ldy, b, e);
            for (int i = 0; i < n; ++i) t->matvec_q(m.view, xq.data() + i * stride, y1.data() + i * ldy, b, e);
            CHECK(std::memcmp(y.data(), y1.data(), y.size() * sizeof(float)) == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("matvec_q_silu_mul and matmul_q_silu_mul of every ISA match the reference") {
  std::mt19937 rng(32);
  const int rows = 10;
  for (const k::KernelTable* t : tables_under_test()) {
    for (DType d : kQuantDtypes) {
      for (int cols : {256, 2304}) {
        CAPTURE(std::string(t->name));
        CAPTURE(dtype_name(d));
        CAPTURE(cols);
        const QMatrix gate = random_qmatrix(d, rows, cols, rng), up = random_qmatrix(d, rows, cols, rng);
        const QVector x = random_qvector(d, cols, rng);
        const int b = 1, e = rows;
        std::vector<float> out(rows, -7.0f), ref(rows, -7.0f), g(rows), u(rows);
        t->matvec_q_silu_mul(gate.view, up.view, x.q.data(), out.data(), b, e);
        k::ref::matvec_q_silu_mul(gate.view, up.view, x.q.data(), ref.data(), b, e);
        k::ref::matvec_q(gate.view, x.q.data(), g.data(), b, e);
        k::ref::matvec_q(up.view, x.q.data(), u.data(), b, e);
        int bad = -1;
        for (int r = b; r < e; ++r) {
          const double tol = silu_mul_bound(g[r], q_bound(gate, r, x), u[r], q_bound(up, r, x));
          if (!(std::fabs(double(out[r]) - ref[r]) <= tol)) bad = r;
        }
        CHECK(bad == -1);
        CHECK(out[0] == -7.0f);
        // The fused kernel's dot products are matvec_q's, and matmul's are matvec's.
        const std::size_t stride = k::act_bytes(d, cols);
        for (int n : {2, 5}) {
          std::vector<std::byte> xq(stride * n);
          const auto xs = random_vector(static_cast<std::size_t>(n) * cols, rng);
          for (int i = 0; i < n; ++i) k::ref::quantize_act(d, xs.data() + i * cols, cols, xq.data() + i * stride);
          const int ldo = rows + 1;
          std::vector<float> o(static_cast<std::size_t>(n) * ldo, -7.0f), o1(o.size(), -7.0f);
          t->matmul_q_silu_mul(gate.view, up.view, xq.data(), n, o.data(), ldo, b, e);
          for (int i = 0; i < n; ++i)
            t->matvec_q_silu_mul(gate.view, up.view, xq.data() + i * stride, o1.data() + i * ldo, b, e);
          CHECK(std::memcmp(o.data(), o1.data(), o.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("interleaved quantized matrices: every ISA reads them like the plain rows") {
  // 5 whole groups of 16 rows plus 5 plain rows (decode reads 4 groups side by side, then one);
  // ranges that start and end inside groups.
  std::mt19937 rng(34);
  const int rows = 5 * kInterleaveRows + 5;
  for (DType d : kQuantDtypes) {
    for (int cols : q_cols(d)) {
      const QMatrix m = random_qmatrix(d, rows, cols, rng);
      AlignedBuffer<std::byte> il(m.view.bytes() + 64);
      std::byte* il_base = il.data() + 5;  // any alignment
      interleave_rows(d, m.view.data, rows, cols, il_base);
      TensorView v = m.view;
      v.data = il_base;
      v.interleave = kInterleaveRows;
      CAPTURE(dtype_name(d));
      CAPTURE(cols);
      // Every row reads back as it was.
      std::vector<std::byte> row(m.view.row_bytes());
      bool same = true;
      for (int r = 0; r < rows; ++r) {
        read_row(v, r, row.data());
        same = same && std::memcmp(row.data(), m.view.row(r), row.size()) == 0;
      }
      CHECK(same);
      const QVector x = random_qvector(d, cols, rng);
      const std::size_t stride = k::act_bytes(d, cols);
      const int n = 6, ldy = rows + 2;
      std::vector<std::byte> xq(stride * n);
      const auto xs = random_vector(static_cast<std::size_t>(n) * cols, rng);
      for (int i = 0; i < n; ++i) k::ref::quantize_act(d, xs.data() + i * cols, cols, xq.data() + i * stride);
      for (const k::KernelTable* t : tables_under_test()) {
        CAPTURE(std::string(t->name));
        for (auto [b, e] : {std::pair{0, rows}, {16, 80}, {5, 21}, {3, 76}, {64, rows}, {20, 20}, {17, 18}, {0, 64}}) {
          CAPTURE(b);
          CAPTURE(e);
          check_matvec_q(*t, v, m, x, b, e);
          // Prefill equals decode on this layout too, for every number of vectors.
          for (int nn : {1, 4, 5, n}) {
            std::vector<float> ym(static_cast<std::size_t>(nn) * ldy, -7.0f), y1(ym.size(), -7.0f);
            t->matmul_q(v, xq.data(), nn, ym.data(), ldy, b, e);
            for (int i = 0; i < nn; ++i) t->matvec_q(v, xq.data() + i * stride, y1.data() + i * ldy, b, e);
            CHECK(std::memcmp(ym.data(), y1.data(), ym.size() * sizeof(float)) == 0);
          }
        }
        // The fused gate/up kernels: the same dot products as matvec_q, on both.
        const int b = 3, e = 83;
        std::vector<float> out(rows, -7.0f), g(rows), u(rows);
        t->matvec_q_silu_mul(v, v, x.q.data(), out.data(), b, e);
        t->matvec_q(v, x.q.data(), g.data(), b, e);
        bool fused = out[0] == -7.0f && out[rows - 1] == -7.0f;
        for (int r = b; r < e; ++r) fused = fused && std::fabs(out[r] - g[r] / (1.0f + std::exp(-g[r])) * g[r]) <= 1e-5f * (1.0f + g[r] * g[r]);
        CHECK(fused);
        std::vector<float> o(static_cast<std::size_t>(n) * ldy, -7.0f), o1(o.size(), -7.0f);
        t->matmul_q_silu_mul(v, v, xq.data(), n, o.data(), ldy, b, e);
        for (int i = 0; i < n; ++i) t->matvec_q_silu_mul(v, v, xq.data() + i * stride, o1.data() + i * ldy, b, e);
        CHECK(std::memcmp(o.data(), o1.data(), o.size() * sizeof(float)) == 0);
        (void)u;
      }
    }
  }
}

TEST_CASE("the *_q kernels take plain-dtype weights with float activations") {
  std::mt19937 rng(33);
  for (const k::KernelTable* t : tables_under_test()) {
    for (DType d : kDtypes) {
      CAPTURE(std::string(t->name));
      CAPTURE(dtype_name(d));
      const Matrix m = random_matrix(d, 7, 100, rng);
      const auto x = random_vector(100, rng);
      CHECK(k::act_bytes(d, 100) == 400);
      std::vector<std::byte> xq(k::act_bytes(d, 100));
      t->quantize_act(d, x.data(), 100, xq.data());
      std::vector<float> y(7), y1(7);
      t->matvec_q(m.view, xq.data(), y.data(), 0, 7);
      t->matvec(m.view, x.data(), y1.data(), 0, 7);
      CHECK(y == y1);
    }
  }
}
