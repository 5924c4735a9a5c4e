// Each optimized kernel against its scalar reference and a float64 Eigen product, with
// tolerances derived from the data (the standard recursive-summation bound n·eps·Σ|a_i b_i|).
#include <Eigen/Dense>
#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.hpp"
#include "kernels/kernels.hpp"
#include "testing.hpp"

using namespace weft;
namespace k = weft::kernels;

namespace {
struct Matrix {
  std::vector<std::uint16_t> half;  // F16 or BF16 storage
  std::vector<float> f32;           // storage for F32, or the exact widened values
  TensorView view;
};

Matrix random_matrix(DType t, int rows, int cols, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Matrix m;
  m.f32.resize(static_cast<std::size_t>(rows) * cols);
  for (auto& v : m.f32) v = nd(rng);
  if (t == DType::F32) {
    m.view = make_view_2d(m.f32.data(), t, rows, cols);
    return m;
  }
  m.half.resize(m.f32.size());
  for (std::size_t i = 0; i < m.f32.size(); ++i) {
    m.half[i] = t == DType::BF16 ? f32_to_bf16(m.f32[i]) : f32_to_f16(m.f32[i]);
    m.f32[i] = t == DType::BF16 ? bf16_to_f32(m.half[i]) : f16_to_f32(m.half[i]);
  }
  m.view = make_view_2d(m.half.data(), t, rows, cols);
  return m;
}

std::vector<float> random_vector(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) v[&x - v.data()] = nd(rng);
  return v;
}

// Checks y against the float64 product, row by row, with the summation error bound.
void check_against_eigen(const Matrix& m, const float* x, const float* y, int rows, int cols) {
  Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> W(m.f32.data(), rows, cols);
  Eigen::Map<const Eigen::VectorXf> X(x, cols);
  const Eigen::VectorXd exact = W.cast<double>() * X.cast<double>();
  const Eigen::VectorXd mag = W.cast<double>().cwiseAbs() * X.cast<double>().cwiseAbs();
  const double eps = std::numeric_limits<float>::epsilon();
  int bad = -1;
  for (int r = 0; r < rows; ++r)
    if (std::fabs(y[r] - exact[r]) > 2.0 * cols * eps * mag[r] + 1e-30) bad = r;
  INFO("row " << bad);
  CHECK(bad == -1);
}
}  // namespace

TEST_CASE("matvec and matmul match the reference and Eigen for every dtype and odd shapes") {
  std::mt19937 rng(42);
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (auto [rows, cols] : {std::pair{1, 1}, {7, 13}, {64, 64}, {33, 4100}, {130, 257}}) {
      CAPTURE(dtype_name(t));
      CAPTURE(rows);
      CAPTURE(cols);
      const Matrix m = random_matrix(t, rows, cols, rng);
      const int n = 5;
      const auto x = random_vector(static_cast<std::size_t>(n) * cols, rng);
      std::vector<float> y(rows), y_ref(rows);
      k::matvec(m.view, x.data(), y.data(), 0, rows);
      k::ref::matvec(m.view, x.data(), y_ref.data(), 0, rows);
      check_against_eigen(m, x.data(), y.data(), rows, cols);
      check_against_eigen(m, x.data(), y_ref.data(), rows, cols);

      // A sub-range writes exactly its rows.
      std::vector<float> part(rows, -7.0f);
      k::matvec(m.view, x.data(), part.data(), rows / 3, rows);
      for (int r = 0; r < rows / 3; ++r) CHECK(part[r] == -7.0f);
      for (int r = rows / 3; r < rows; ++r) CHECK(part[r] == y[r]);

      std::vector<float> Y(static_cast<std::size_t>(n) * rows), Y_ref(Y.size());
      k::matmul(m.view, x.data(), cols, n, Y.data(), rows, 0, rows);
      k::ref::matmul(m.view, x.data(), cols, n, Y_ref.data(), rows, 0, rows);
      for (int i = 0; i < n; ++i) {
        check_against_eigen(m, x.data() + i * cols, Y.data() + i * rows, rows, cols);
        check_against_eigen(m, x.data() + i * cols, Y_ref.data() + i * rows, rows, cols);
      }
    }
  }
}

TEST_CASE("rmsnorm, rope, softmax, silu_mul match their references") {
  std::mt19937 rng(7);
  const int n = 160;
  const auto x = random_vector(n, rng);
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    const Matrix g = random_matrix(t, 1, n, rng);
    TensorView gv = g.view;
    gv.ndim = 1;
    std::vector<float> a(n), b(n);
    k::rmsnorm(x.data(), gv, 1e-5f, a.data());
    k::ref::rmsnorm(x.data(), gv, 1e-5f, b.data());
    weft::testing::expect_close(a, b, 1e-5 * 8);
    // Against the definition in double precision.
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double scale = 1.0 / std::sqrt(ss / n + 1e-5);
    std::vector<float> exact(n);
    for (int i = 0; i < n; ++i) exact[i] = static_cast<float>(x[i] * scale * g.f32[i]);
    weft::testing::expect_close(a, exact, 1e-5 * 8);
  }

  // RoPE rotates pairs (i, i + half): norms are preserved and position 0 is the identity.
  const int heads = 3, hd = 8, half = hd / 2;
  std::vector<float> q = random_vector(heads * hd, rng), q0 = q, q_ref = q;
  std::vector<float> cos0(half, 1.0f), sin0(half, 0.0f), cosv(half), sinv(half);
  k::rope(q0.data(), heads, hd, cos0.data(), sin0.data());
  CHECK(q0 == q);
  for (int i = 0; i < half; ++i) {
    const double ang = 5.0 * std::pow(10000.0, -2.0 * i / hd);
    cosv[i] = static_cast<float>(std::cos(ang));
    sinv[i] = static_cast<float>(std::sin(ang));
  }
  k::rope(q.data(), heads, hd, cosv.data(), sinv.data());
  k::ref::rope(q_ref.data(), heads, hd, cosv.data(), sinv.data());
  weft::testing::expect_close(q, q_ref, 1e-6);
  const float before = q0[0] * q0[0] + q0[half] * q0[half], after = q[0] * q[0] + q[half] * q[half];
  CHECK(after == doctest::Approx(before).epsilon(1e-5));
  CHECK(q[0] == doctest::Approx(q0[0] * cosv[0] - q0[half] * sinv[0]));

  std::vector<float> s = random_vector(50, rng), s_ref = s;
  k::softmax(s.data(), 50);
  k::ref::softmax(s_ref.data(), 50);
  weft::testing::expect_close(s, s_ref, 1e-6);
  double sum = 0;
  for (float v : s) sum += v;
  CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));

  const auto gate = random_vector(n, rng), up = random_vector(n, rng);
  std::vector<float> o(n), o_ref(n);
  k::silu_mul(gate.data(), up.data(), o.data(), n);
  k::ref::silu_mul(gate.data(), up.data(), o_ref.data(), n);
  weft::testing::expect_close(o, o_ref, 1e-6);
  CHECK(o[0] == doctest::Approx(gate[0] / (1 + std::exp(-gate[0])) * up[0]));
}
