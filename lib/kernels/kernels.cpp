// The dispatching entry points, and the portable ("scalar" ISA) variant: fixed-width lane
// accumulators that the compiler maps onto whatever vector registers the base flags allow. The
// per-ISA variants live in kernels_<isa>.cpp; isa.cpp chooses among them.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "kernels/dispatch.hpp"
#include "kernels/kernels.hpp"

namespace weft::kernels {

namespace {
constexpr int kLanes = 16;

// Element i of a weight row as stored, read with memcpy (a plain load once compiled): a
// safetensors tensor may start at any byte address (see io/safetensors.hpp), so a 2- or 4-byte
// element need not be aligned, and loading it through a float* or uint16_t* is undefined
// (UBSan: "load of misaligned address"). The references read weights the same way.
template <class U>
U load_unaligned(const void* p, std::int64_t i) noexcept {
  U u;
  std::memcpy(&u, static_cast<const std::byte*>(p) + static_cast<std::size_t>(i) * sizeof(U), sizeof(U));
  return u;
}

struct LoadF32 {
  const void* p;
  float operator()(std::int64_t i) const noexcept { return load_unaligned<float>(p, i); }
};
struct LoadF16 {
  const void* p;
  float operator()(std::int64_t i) const noexcept { return f16_to_f32(load_unaligned<std::uint16_t>(p, i)); }
};
struct LoadBF16 {
  const void* p;
  float operator()(std::int64_t i) const noexcept { return bf16_to_f32(load_unaligned<std::uint16_t>(p, i)); }
};

template <class Load>
inline float dot_lanes(Load load, const float* x, std::int64_t n) noexcept {
  float acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += load(i + l) * x[i + l];
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  for (; i < n; ++i) s += load(i) * x[i];
  return s;
}

inline float row_dot(const TensorView& w, std::int64_t r, const float* x) noexcept {
  const void* row = w.row(r);
  switch (w.dtype) {
    case DType::F32: return dot_lanes(LoadF32{row}, x, w.cols);
    case DType::F16: return dot_lanes(LoadF16{row}, x, w.cols);
    case DType::BF16: return dot_lanes(LoadBF16{row}, x, w.cols);
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: break;  // not valid for the float kernels (see kernels.hpp)
  }
  return 0.0f;
}

inline float silu_times(float g, float u) noexcept { return g / (1.0f + std::exp(-g)) * u; }

float portable_dot_f32(const float* a, const float* b, std::int64_t n) noexcept { return dot_lanes(LoadF32{a}, b, n); }

void portable_matvec(const TensorView& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept {
  for (std::int64_t r = begin; r < end; ++r) y[r] = row_dot(w, r, x);
}

void portable_matmul(const TensorView& w, const float* x, std::int64_t ldx, std::int64_t n, float* y,
                     std::int64_t ldy, std::int64_t begin, std::int64_t end) noexcept {
  if (n == 1) return portable_matvec(w, x, y, begin, end);
  // Widen a slice of the weight row once and use it for all n vectors.
  constexpr std::int64_t kChunk = 4096;
  alignas(64) float buf[kChunk];
  for (std::int64_t r = begin; r < end; ++r) {
    for (std::int64_t t = 0; t < n; ++t) y[t * ldy + r] = 0.0f;
    for (std::int64_t c0 = 0; c0 < w.cols; c0 += kChunk) {
      const std::int64_t len = std::min(kChunk, w.cols - c0);
      to_f32(w.row(r) + dtype_bytes(w.dtype, static_cast<std::size_t>(c0)), w.dtype, len, buf);
      for (std::int64_t t = 0; t < n; ++t) y[t * ldy + r] += dot_lanes(LoadF32{buf}, x + t * ldx + c0, len);
    }
  }
}

void portable_matvec_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, float* out,
                              std::int64_t begin, std::int64_t end) noexcept {
  for (std::int64_t r = begin; r < end; ++r) out[r] = silu_times(row_dot(gate_w, r, x), row_dot(up_w, r, x));
}

void portable_matmul_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, std::int64_t ldx,
                              std::int64_t n, float* out, std::int64_t ldo, std::int64_t begin,
                              std::int64_t end) noexcept {
  for (std::int64_t t = 0; t < n; ++t)
    portable_matvec_silu_mul(gate_w, up_w, x + t * ldx, out + t * ldo, begin, end);
}

void portable_rmsnorm(const float* x, const TensorView& weight, float eps, float* out) noexcept {
  const std::int64_t n = weight.cols;
  const float ss = dot_lanes(LoadF32{x}, x, n);
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  if (weight.dtype == DType::F32) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * load_unaligned<float>(weight.data, i);
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      const auto h = load_unaligned<std::uint16_t>(weight.data, i);
      out[i] = x[i] * scale * (weight.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h));
    }
  }
}

// The quantized kernels' portable form is the reference (integer loops the compiler vectorizes as
// it can); plain-dtype weights go to this table's float kernels, as in the ISA tables.
void portable_matvec_q(const TensorView& w, const void* xq, float* y, std::int64_t begin, std::int64_t end) noexcept {
  if (!dtype_is_quantized(w.dtype)) return portable_matvec(w, static_cast<const float*>(xq), y, begin, end);
  ref::matvec_q(w, xq, y, begin, end);
}

void portable_matmul_q(const TensorView& w, const void* xq, std::int64_t n, float* y, std::int64_t ldy,
                       std::int64_t begin, std::int64_t end) noexcept {
  if (!dtype_is_quantized(w.dtype))
    return portable_matmul(w, static_cast<const float*>(xq), w.cols, n, y, ldy, begin, end);
  ref::matmul_q(w, xq, n, y, ldy, begin, end);
}

void portable_matvec_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, float* out,
                                std::int64_t begin, std::int64_t end) noexcept {
  if (!dtype_is_quantized(gate_w.dtype))
    return portable_matvec_silu_mul(gate_w, up_w, static_cast<const float*>(xq), out, begin, end);
  ref::matvec_q_silu_mul(gate_w, up_w, xq, out, begin, end);
}

void portable_matmul_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, std::int64_t n,
                                float* out, std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept {
  if (!dtype_is_quantized(gate_w.dtype))
    return portable_matmul_silu_mul(gate_w, up_w, static_cast<const float*>(xq), gate_w.cols, n, out, ldo, begin,
                                    end);
  ref::matmul_q_silu_mul(gate_w, up_w, xq, n, out, ldo, begin, end);
}

}  // namespace

namespace detail {

const KernelTable& scalar_table() noexcept {
  // rope, softmax and silu_mul are elementwise loops already: the references are the portable
  // versions (the compiler vectorizes what it can under the base flags).
  static constexpr KernelTable table{Isa::Scalar,
                                     "scalar",
                                     &portable_matvec,
                                     &portable_matmul,
                                     &portable_matvec_silu_mul,
                                     &portable_matmul_silu_mul,
                                     &portable_dot_f32,
                                     &portable_rmsnorm,
                                     &ref::rope,
                                     &ref::softmax,
                                     &ref::silu_mul,
                                     &ref::attend,
                                     &ref::quantize_act,
                                     &portable_matvec_q,
                                     &portable_matmul_q,
                                     &portable_matvec_q_silu_mul,
                                     &portable_matmul_q_silu_mul,
                                     0};
  return table;
}

}  // namespace detail

const KernelTable& reference_table() noexcept {
  static constexpr KernelTable table{Isa::Scalar,         "reference",         &ref::matvec,
                                     &ref::matmul,        &ref::matvec_silu_mul, &ref::matmul_silu_mul,
                                     &ref::dot_f32,       &ref::rmsnorm,       &ref::rope,
                                     &ref::softmax,       &ref::silu_mul,      &ref::attend,
                                     &ref::quantize_act,
                                     &ref::matvec_q,      &ref::matmul_q,      &ref::matvec_q_silu_mul,
                                     &ref::matmul_q_silu_mul, 0};
  return table;
}

bool reads_interleaved(DType t) noexcept {
  return ((active_table().interleaved >> static_cast<int>(t)) & 1u) != 0;
}

bool reference_forced() noexcept { return &active_table() == &reference_table(); }

float dot_f32(const float* a, const float* b, std::int64_t n) noexcept { return active_table().dot_f32(a, b, n); }

void matvec(const TensorView& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept {
  active_table().matvec(w, x, y, begin, end);
}

void matmul(const TensorView& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
            std::int64_t begin, std::int64_t end) noexcept {
  active_table().matmul(w, x, ldx, n, y, ldy, begin, end);
}

void matvec_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, float* out,
                     std::int64_t begin, std::int64_t end) noexcept {
  active_table().matvec_silu_mul(gate_w, up_w, x, out, begin, end);
}

void matmul_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, std::int64_t ldx,
                     std::int64_t n, float* out, std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept {
  active_table().matmul_silu_mul(gate_w, up_w, x, ldx, n, out, ldo, begin, end);
}

void rmsnorm(const float* x, const TensorView& weight, float eps, float* out) noexcept {
  active_table().rmsnorm(x, weight, eps, out);
}

void embedding_row(const TensorView& table, std::int64_t r, float* out) noexcept {
  to_f32(table.row(r), table.dtype, table.cols, out);
}

void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) noexcept {
  active_table().rope(x, n_heads, head_dim, cos, sin);
}

void softmax(float* x, std::int64_t n) noexcept { active_table().softmax(x, n); }

void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) noexcept {
  active_table().silu_mul(gate, up, out, n);
}

void attend(const float* q, int group, int hd, float scale, const KvRun* runs, int n_runs, std::int64_t stride,
            float* scores, std::int64_t scores_stride, float* out) noexcept {
  active_table().attend(q, group, hd, scale, runs, n_runs, stride, scores, scores_stride, out);
}

void quantize_act(DType wtype, const float* x, std::int64_t n, void* xq) noexcept {
  active_table().quantize_act(wtype, x, n, xq);
}

void matvec_q(const TensorView& w, const void* xq, float* y, std::int64_t begin, std::int64_t end) noexcept {
  active_table().matvec_q(w, xq, y, begin, end);
}

void matmul_q(const TensorView& w, const void* xq, std::int64_t n, float* y, std::int64_t ldy, std::int64_t begin,
              std::int64_t end) noexcept {
  active_table().matmul_q(w, xq, n, y, ldy, begin, end);
}

void matvec_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, float* out,
                       std::int64_t begin, std::int64_t end) noexcept {
  active_table().matvec_q_silu_mul(gate_w, up_w, xq, out, begin, end);
}

void matmul_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, std::int64_t n, float* out,
                       std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept {
  active_table().matmul_q_silu_mul(gate_w, up_w, xq, n, out, ldo, begin, end);
}

}  // namespace weft::kernels
