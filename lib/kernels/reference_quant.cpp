// The activation quantizer and the scalar references of the quantized-weight kernels: integer dot
// products per block, scaled and summed in f32 in block order. The per-ISA kernels compute the
// same integers and differ from these only in the order of the f32 additions.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/quant.hpp"
#include "kernels/kernels.hpp"

namespace weft::kernels {

namespace {

bool is_k_quant(DType t) noexcept { return t == DType::Q4_K || t == DType::Q6_K; }
bool is_block32(DType t) noexcept { return t == DType::Q8_0 || t == DType::Q4_0; }

// The three arrays of the Q8_0/Q4_0 activation layout (see act_bytes).
struct Act32 {
  const std::int8_t* qs;
  const float* d;
  const std::int32_t* sum;
};
Act32 act32(const void* xq, std::int64_t n) noexcept {
  const auto* p = static_cast<const std::byte*>(xq);
  const std::int64_t nbp = act_padded_blocks(n);
  return {reinterpret_cast<const std::int8_t*>(p), reinterpret_cast<const float*>(p + 32 * nbp),
          reinterpret_cast<const std::int32_t*>(p + 36 * nbp)};
}

// d = max|x| / 127, q = round(x / d): |q| <= 127, so the kernels' unsigned-by-signed byte products
// (vpmaddubsw pairs) never saturate.
float quantize_block(const float* x, int n, std::int8_t* q) noexcept {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d > 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i) q[i] = static_cast<std::int8_t>(std::clamp(static_cast<int>(std::lrintf(x[i] * id)), -127, 127));
  return d;
}

template <class Block>
Block load_block(const std::byte* p) noexcept {
  Block b;
  std::memcpy(&b, p, sizeof b);
  return b;
}

// The integer dot product of one weight block with the matching activations, and its f32 value.
float block_dot_q8_0(const std::byte* p, const std::int8_t* a, float da) noexcept {
  const auto b = load_block<BlockQ8_0>(p);
  std::int32_t s = 0;
  for (int i = 0; i < 32; ++i) s += b.qs[i] * a[i];
  return f16_to_f32(b.d) * da * static_cast<float>(s);
}

float block_dot_q4_0(const std::byte* p, const std::int8_t* a, float da) noexcept {
  const auto b = load_block<BlockQ4_0>(p);
  std::int32_t s = 0;
  for (int j = 0; j < 16; ++j) s += ((b.qs[j] & 15) - 8) * a[j] + ((b.qs[j] >> 4) - 8) * a[j + 16];
  return f16_to_f32(b.d) * da * static_cast<float>(s);
}

float block_dot_q4_k(const std::byte* p, const BlockQ8_K& a) noexcept {
  const auto b = load_block<BlockQ4_K>(p);
  std::int32_t dot = 0, mins = 0;
  for (int s = 0; s < 8; ++s) {
    int sc = 0, m = 0;
    q4_k_scale_min(b.scales, s, sc, m);
    const std::uint8_t* q = b.qs + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    std::int32_t sub = 0;
    for (int i = 0; i < 32; ++i) sub += ((q[i] >> shift) & 15) * a.qs[32 * s + i];
    dot += sc * sub;
    mins += m * (a.bsums[2 * s] + a.bsums[2 * s + 1]);
  }
  return f16_to_f32(b.d) * a.d * static_cast<float>(dot) - f16_to_f32(b.dmin) * a.d * static_cast<float>(mins);
}

float block_dot_q6_k(const std::byte* p, const BlockQ8_K& a) noexcept {
  const auto b = load_block<BlockQ6_K>(p);
  std::int32_t dot = 0;
  for (int h = 0; h < 2; ++h) {
    const std::uint8_t* ql = b.ql + 64 * h;
    const std::uint8_t* qh = b.qh + 32 * h;
    std::int32_t sub[8] = {};
    for (int l = 0; l < 32; ++l) {
      const int q0 = (ql[l] & 15) | ((qh[l] & 3) << 4);
      const int q1 = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
      const int q2 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
      const int q3 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
      const std::int8_t* aq = a.qs + 128 * h;
      sub[l / 16] += (q0 - 32) * aq[l];
      sub[2 + l / 16] += (q1 - 32) * aq[l + 32];
      sub[4 + l / 16] += (q2 - 32) * aq[l + 64];
      sub[6 + l / 16] += (q3 - 32) * aq[l + 96];
    }
    for (int s = 0; s < 8; ++s) dot += b.scales[8 * h + s] * sub[s];
  }
  return f16_to_f32(b.d) * a.d * static_cast<float>(dot);
}

float row_dot_q(const TensorView& w, std::int64_t r, const void* xq) noexcept {
  const std::int64_t nb = w.cols / static_cast<std::int64_t>(dtype_block_size(w.dtype));
  std::byte scratch[sizeof(BlockQ6_K)];  // the largest block, for interleaved rows (block_at)
  float s = 0.0f;
  if (is_block32(w.dtype)) {
    const Act32 a = act32(xq, w.cols);
    for (std::int64_t k = 0; k < nb; ++k) {
      const std::byte* p = block_at(w, r, k, scratch);
      s += w.dtype == DType::Q8_0 ? block_dot_q8_0(p, a.qs + 32 * k, a.d[k]) : block_dot_q4_0(p, a.qs + 32 * k, a.d[k]);
    }
  } else {
    const auto* a = static_cast<const BlockQ8_K*>(xq);
    for (std::int64_t k = 0; k < nb; ++k) {
      const std::byte* p = block_at(w, r, k, scratch);
      s += w.dtype == DType::Q4_K ? block_dot_q4_k(p, a[k]) : block_dot_q6_k(p, a[k]);
    }
  }
  return s;
}

float silu_times(float g, float u) noexcept { return g / (1.0f + std::exp(-g)) * u; }

}  // namespace

std::size_t act_bytes(DType wtype, std::int64_t n) noexcept {
  if (is_block32(wtype)) return static_cast<std::size_t>(act_padded_blocks(n)) * (32 + 4 + 4);
  if (is_k_quant(wtype)) return static_cast<std::size_t>(n / 256) * sizeof(BlockQ8_K);
  return static_cast<std::size_t>(n) * sizeof(float);
}

void dequantize_act(DType wtype, const void* xq, std::int64_t n, float* x) noexcept {
  if (is_block32(wtype)) {
    const Act32 a = act32(xq, n);
    for (std::int64_t i = 0; i < n; ++i) x[i] = a.d[i / 32] * static_cast<float>(a.qs[i]);
  } else if (is_k_quant(wtype)) {
    const auto* a = static_cast<const BlockQ8_K*>(xq);
    for (std::int64_t i = 0; i < n; ++i) x[i] = a[i / 256].d * static_cast<float>(a[i / 256].qs[i % 256]);
  } else {
    std::memcpy(x, xq, static_cast<std::size_t>(n) * sizeof(float));
  }
}

namespace ref {

void quantize_act(DType wtype, const float* x, std::int64_t n, void* xq) noexcept {
  auto* p = static_cast<std::byte*>(xq);
  if (is_block32(wtype)) {
    const std::int64_t nb = n / 32, nbp = act_padded_blocks(n);
    auto* qs = reinterpret_cast<std::int8_t*>(p);
    auto* d = reinterpret_cast<float*>(p + 32 * nbp);
    auto* sum = reinterpret_cast<std::int32_t*>(p + 36 * nbp);
    for (std::int64_t k = 0; k < nb; ++k) {
      d[k] = quantize_block(x + 32 * k, 32, qs + 32 * k);
      std::int32_t s = 0;
      for (int i = 0; i < 32; ++i) s += qs[32 * k + i];
      sum[k] = s;
    }
    // The padding: zero activations with zero scales add nothing to any dot product.
    std::memset(qs + 32 * nb, 0, static_cast<std::size_t>(32 * (nbp - nb)));
    std::fill(d + nb, d + nbp, 0.0f);
    std::fill(sum + nb, sum + nbp, 0);
  } else if (is_k_quant(wtype)) {
    for (std::int64_t k = 0; k < n / 256; ++k) {
      BlockQ8_K b;
      b.d = quantize_block(x + 256 * k, 256, b.qs);
      for (int s = 0; s < 16; ++s) {
        int sum = 0;
        for (int i = 0; i < 16; ++i) sum += b.qs[16 * s + i];
        b.bsums[s] = static_cast<std::int16_t>(sum);
      }
      std::memcpy(p + k * static_cast<std::int64_t>(sizeof b), &b, sizeof b);
    }
  } else {
    std::memcpy(p, x, static_cast<std::size_t>(n) * sizeof(float));
  }
}

void matvec_q(const TensorView& w, const void* xq, float* y, std::int64_t begin, std::int64_t end) noexcept {
  if (!dtype_is_quantized(w.dtype)) return matvec(w, static_cast<const float*>(xq), y, begin, end);
  for (std::int64_t r = begin; r < end; ++r) y[r] = row_dot_q(w, r, xq);
}

void matmul_q(const TensorView& w, const void* xq, std::int64_t n, float* y, std::int64_t ldy, std::int64_t begin,
              std::int64_t end) noexcept {
  const std::size_t stride = act_bytes(w.dtype, w.cols);
  for (std::int64_t t = 0; t < n; ++t)
    matvec_q(w, static_cast<const std::byte*>(xq) + t * static_cast<std::int64_t>(stride), y + t * ldy, begin, end);
}

void matvec_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, float* out,
                       std::int64_t begin, std::int64_t end) noexcept {
  if (!dtype_is_quantized(gate_w.dtype))
    return matvec_silu_mul(gate_w, up_w, static_cast<const float*>(xq), out, begin, end);
  for (std::int64_t r = begin; r < end; ++r) out[r] = silu_times(row_dot_q(gate_w, r, xq), row_dot_q(up_w, r, xq));
}

void matmul_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, std::int64_t n, float* out,
                       std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept {
  const std::size_t stride = act_bytes(gate_w.dtype, gate_w.cols);
  for (std::int64_t t = 0; t < n; ++t)
    matvec_q_silu_mul(gate_w, up_w, static_cast<const std::byte*>(xq) + t * static_cast<std::int64_t>(stride),
                      out + t * ldo, begin, end);
}

}  // namespace ref
}  // namespace weft::kernels
