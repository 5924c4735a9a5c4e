// Scalar reference kernels: the definition of what each optimized kernel must compute.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/quant.hpp"
#include "kernels/kernels.hpp"

namespace weft::kernels {

namespace {
// Element i of a row as stored, read with memcpy: a safetensors tensor may start at any byte
// address (see io/safetensors.hpp), so a 2- or 4-byte element need not be aligned.
template <class U>
U load_unaligned(const void* p, std::int64_t i) noexcept {
  U u;
  std::memcpy(&u, static_cast<const std::byte*>(p) + static_cast<std::size_t>(i) * sizeof(U), sizeof(U));
  return u;
}
}  // namespace

void to_f32(const void* src, DType t, std::int64_t n, float* out) noexcept {
  switch (t) {
    case DType::F32: std::memcpy(out, src, static_cast<std::size_t>(n) * 4); return;
    case DType::F16:
      for (std::int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_unaligned<std::uint16_t>(src, i));
      return;
    case DType::BF16:
      for (std::int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_unaligned<std::uint16_t>(src, i));
      return;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: dequantize_row(t, src, n, out); return;
  }
}

namespace ref {
namespace {
float element(const void* row, DType t, std::int64_t i) noexcept {
  switch (t) {
    case DType::F32: return load_unaligned<float>(row, i);
    case DType::F16: return f16_to_f32(load_unaligned<std::uint16_t>(row, i));
    case DType::BF16: return bf16_to_f32(load_unaligned<std::uint16_t>(row, i));
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: break;  // not valid for the float kernels (see kernels.hpp)
  }
  return 0.0f;
}

float row_dot(const TensorView& w, std::int64_t r, const float* x) noexcept {
  const void* row = w.row(r);
  float s = 0.0f;
  for (std::int64_t c = 0; c < w.cols; ++c) s += element(row, w.dtype, c) * x[c];
  return s;
}

float silu_times(float g, float u) noexcept { return g / (1.0f + std::exp(-g)) * u; }
}  // namespace

float dot_f32(const float* a, const float* b, std::int64_t n) noexcept {
  float s = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void matvec(const TensorView& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept {
  for (std::int64_t r = begin; r < end; ++r) y[r] = row_dot(w, r, x);
}

void matmul(const TensorView& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
            std::int64_t begin, std::int64_t end) noexcept {
  for (std::int64_t t = 0; t < n; ++t) matvec(w, x + t * ldx, y + t * ldy, begin, end);
}

void matvec_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, float* out,
                     std::int64_t begin, std::int64_t end) noexcept {
  for (std::int64_t r = begin; r < end; ++r) out[r] = silu_times(row_dot(gate_w, r, x), row_dot(up_w, r, x));
}

void matmul_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, std::int64_t ldx,
                     std::int64_t n, float* out, std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept {
  for (std::int64_t t = 0; t < n; ++t) matvec_silu_mul(gate_w, up_w, x + t * ldx, out + t * ldo, begin, end);
}

void rmsnorm(const float* x, const TensorView& weight, float eps, float* out) noexcept {
  const std::int64_t n = weight.cols;
  float ss = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * element(weight.data, weight.dtype, i);
}

void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) noexcept {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<std::ptrdiff_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

void softmax(float* x, std::int64_t n) noexcept {
  float mx = -INFINITY;
  for (std::int64_t i = 0; i < n; ++i) mx = std::fmax(mx, x[i]);
  float sum = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (std::int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void attend(const float* q, int group, int hd, float scale, const KvRun* runs, int n_runs, std::int64_t stride,
            float* scores, std::int64_t scores_stride, float* out) noexcept {
  std::int64_t count = 0;
  for (int r = 0; r < n_runs; ++r)
    for (std::int64_t i = 0; i < runs[r].n; ++i, ++count)
      for (int h = 0; h < group; ++h)
        scores[h * scores_stride + count] = dot_f32(q + h * hd, runs[r].k + i * stride, hd) * scale;
  for (int h = 0; h < group; ++h) softmax(scores + h * scores_stride, count);
  std::fill(out, out + static_cast<std::ptrdiff_t>(group) * hd, 0.0f);
  count = 0;
  for (int r = 0; r < n_runs; ++r)
    for (std::int64_t i = 0; i < runs[r].n; ++i, ++count)
      for (int h = 0; h < group; ++h) {
        const float p = scores[h * scores_stride + count];
        const float* v = runs[r].v + i * stride;
        for (int d = 0; d < hd; ++d) out[h * hd + d] += p * v[d];
      }
}

void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) out[i] = silu_times(gate[i], up[i]);
}

}  // namespace ref
}  // namespace weft::kernels
