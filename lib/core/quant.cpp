// Scalar conversions between f32 and ggml's block formats. The quantizers for the k-quants follow
// the idea of llama.cpp's reference ones (try a handful of scales around the max-abs one, keep the
// least squared error, then quantize the per-sub-block scales themselves); the code is our own.
#include "core/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace weft {

namespace {

constexpr float kF16Max = 65504.0f;

// The f16 value that will be stored for f (clamped into the finite f16 range), and its bits.
struct Half {
  std::uint16_t bits;
  float value;
};
Half to_half(float f) noexcept {
  f = std::clamp(f, -kF16Max, kF16Max);
  const std::uint16_t h = f32_to_f16(f);
  return {h, f16_to_f32(h)};
}

int nearest(float f) noexcept { return static_cast<int>(std::lrintf(f)); }

// ---- Q8_0 / Q4_0 -------------------------------------------------------------------------------

void quantize_q8_0(const float* x, BlockQ8_0& b) noexcept {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const Half d = to_half(amax / 127.0f);
  b.d = d.bits;
  const float id = d.value != 0.0f ? 1.0f / d.value : 0.0f;
  for (int i = 0; i < 32; ++i) b.qs[i] = static_cast<std::int8_t>(std::clamp(nearest(x[i] * id), -127, 127));
}

void quantize_q4_0(const float* x, BlockQ4_0& b) noexcept {
  // The value of largest magnitude becomes -8 (not +7), so it keeps full precision whatever its sign.
  float amax = 0.0f, vmax = 0.0f;
  for (int i = 0; i < 32; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
  const Half d = to_half(vmax / -8.0f);
  b.d = d.bits;
  const float id = d.value != 0.0f ? 1.0f / d.value : 0.0f;
  for (int j = 0; j < 16; ++j) {
    const int lo = std::clamp(nearest(x[j] * id) + 8, 0, 15);
    const int hi = std::clamp(nearest(x[j + 16] * id) + 8, 0, 15);
    b.qs[j] = static_cast<std::uint8_t>(lo | (hi << 4));
  }
}

// ---- Q4_K --------------------------------------------------------------------------------------

// Fits x[i] ~ scale * q[i] - m with q in [0, nmax] and m >= 0, minimising sum w[i] * err^2: for a
// range of candidate inverse scales it rounds x to levels and solves the 2x2 weighted least-squares
// problem for (scale, -m) given those levels. Returns scale; m goes to *m_out.
float fit_scale_min(int n, int nmax, const float* x, const float* w, std::uint8_t* q, float* m_out) noexcept {
  float lo = x[0], hi = x[0], sw = 0.0f, swx = 0.0f;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sw += w[i];
    swx += w[i] * x[i];
  }
  lo = std::min(lo, 0.0f);  // the offset only ever lowers the levels: m >= 0
  if (hi <= lo) {
    std::fill(q, q + n, std::uint8_t{0});
    *m_out = -lo;
    return 0.0f;
  }
  auto error = [&](float scale, float offset, const std::uint8_t* levels) {
    float e = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float diff = scale * levels[i] + offset - x[i];
      e += w[i] * diff * diff;
    }
    return e;
  };
  float best_scale = (hi - lo) / nmax, best_offset = lo;
  for (int i = 0; i < n; ++i) q[i] = static_cast<std::uint8_t>(std::clamp(nearest((x[i] - lo) / best_scale), 0, nmax));
  float best = error(best_scale, best_offset, q);
  std::uint8_t cand[256];
  for (int step = 0; step <= 20; ++step) {
    const float iscale = (static_cast<float>(nmax) - 1.0f + 0.1f * static_cast<float>(step)) / (hi - lo);
    float sl = 0.0f, sl2 = 0.0f, sxl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest(iscale * (x[i] - lo)), 0, nmax);
      cand[i] = static_cast<std::uint8_t>(l);
      sl += w[i] * l;
      sl2 += w[i] * l * l;
      sxl += w[i] * l * x[i];
    }
    const float det = sw * sl2 - sl * sl;
    if (det <= 0.0f) continue;
    float scale = (sw * sxl - swx * sl) / det;
    float offset = (sl2 * swx - sl * sxl) / det;
    if (offset > 0.0f) {  // a positive offset would be a negative min: refit the scale alone
      offset = 0.0f;
      scale = sxl / sl2;
    }
    const float e = error(scale, offset, cand);
    if (e < best) {
      best = e;
      best_scale = scale;
      best_offset = offset;
      std::copy(cand, cand + n, q);
    }
  }
  *m_out = -best_offset;
  return best_scale;
}

void quantize_q4_k(const float* x, BlockQ4_K& b) noexcept {
  float scale[8], mins[8], w[32];
  std::uint8_t q[256];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int s = 0; s < 8; ++s) {
    const float* xs = x + 32 * s;
    // Weights favour the larger values (which matter more to a dot product) but keep every
    // element in play: the sub-block's RMS plus the element's magnitude.
    float ss = 0.0f;
    for (int i = 0; i < 32; ++i) ss += xs[i] * xs[i];
    const float rms = std::sqrt(ss / 32.0f);
    for (int i = 0; i < 32; ++i) w[i] = rms + std::fabs(xs[i]);
    scale[s] = fit_scale_min(32, 15, xs, w, q + 32 * s, &mins[s]);
    max_scale = std::max(max_scale, scale[s]);
    max_min = std::max(max_min, mins[s]);
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  std::uint8_t ls[8], lm[8];
  for (int s = 0; s < 8; ++s) {
    ls[s] = static_cast<std::uint8_t>(std::clamp(nearest(inv_scale * scale[s]), 0, 63));
    lm[s] = static_cast<std::uint8_t>(std::clamp(nearest(inv_min * mins[s]), 0, 63));
  }
  q4_k_pack_scales(ls, lm, b.scales);
  const Half d = to_half(max_scale / 63.0f), dmin = to_half(max_min / 63.0f);
  b.d = d.bits;
  b.dmin = dmin.bits;
  // Requantize every element against the scales as they will be decoded.
  for (int s = 0; s < 8; ++s) {
    const float dl = d.value * ls[s], ml = dmin.value * lm[s];
    for (int i = 0; i < 32; ++i)
      q[32 * s + i] =
          dl != 0.0f ? static_cast<std::uint8_t>(std::clamp(nearest((x[32 * s + i] + ml) / dl), 0, 15)) : 0;
  }
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l) b.qs[32 * g + l] = static_cast<std::uint8_t>(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
}

// ---- Q6_K --------------------------------------------------------------------------------------

// Fits x[i] ~ scale * q[i] with q in [-nmax, nmax - 1], weighting each element by x[i]^2: tries
// inverse scales around the one that maps the value of largest magnitude to -nmax and keeps the
// one with the least weighted squared error (for levels q the best scale is Σwxq / Σwq², and the
// error falls as (Σwxq)² / Σwq² grows).
float fit_symmetric(int n, int nmax, const float* x, std::int8_t* q) noexcept {
  float amax = 0.0f, vmax = 0.0f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
  if (amax < 1e-30f) {
    std::fill(q, q + n, std::int8_t{0});
    return 0.0f;
  }
  float best_scale = 0.0f, best_num = 0.0f, best_den = 1.0f;
  bool have = false;
  std::int8_t cand[64];
  for (int step = -9; step <= 9; ++step) {
    const float iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / vmax;
    float sxl = 0.0f, sl2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest(iscale * x[i]), -nmax, nmax - 1);
      cand[i] = static_cast<std::int8_t>(l);
      const float w = x[i] * x[i];
      sxl += w * x[i] * l;
      sl2 += w * l * l;
    }
    if (sl2 <= 0.0f) continue;
    if (!have || sxl * sxl * best_den > best_num * sl2) {
      have = true;
      best_num = sxl * sxl;
      best_den = sl2;
      best_scale = sxl / sl2;
      std::copy(cand, cand + n, q);
    }
  }
  return best_scale;
}

void quantize_q6_k(const float* x, BlockQ6_K& b) noexcept {
  float scale[16];
  std::int8_t q[256];
  float amax = 0.0f, vmax = 0.0f;
  for (int s = 0; s < 16; ++s) {
    scale[s] = fit_symmetric(16, 32, x + 16 * s, q + 16 * s);
    if (std::fabs(scale[s]) > amax) {
      amax = std::fabs(scale[s]);
      vmax = scale[s];
    }
  }
  std::uint8_t L[256];
  if (amax < 1e-30f) {
    std::memset(&b, 0, sizeof b);
    std::fill(L, L + 256, std::uint8_t{32});
  } else {
    // The largest sub-block scale becomes -128 (the int8 range is asymmetric, like the levels').
    const float iscale = -128.0f / vmax;
    const Half d = to_half(1.0f / iscale);
    b.d = d.bits;
    for (int s = 0; s < 16; ++s) {
      const int sc = std::clamp(nearest(iscale * scale[s]), -128, 127);
      b.scales[s] = static_cast<std::int8_t>(sc);
      const float dl = d.value * static_cast<float>(sc);
      for (int i = 0; i < 16; ++i) {
        const int l = dl != 0.0f ? std::clamp(nearest(x[16 * s + i] / dl), -32, 31) : 0;
        L[16 * s + i] = static_cast<std::uint8_t>(l + 32);
      }
    }
  }
  for (int h = 0; h < 2; ++h) {
    const std::uint8_t* l = L + 128 * h;
    for (int i = 0; i < 32; ++i) {
      b.ql[64 * h + i] = static_cast<std::uint8_t>((l[i] & 15) | ((l[i + 64] & 15) << 4));
      b.ql[64 * h + i + 32] = static_cast<std::uint8_t>((l[i + 32] & 15) | ((l[i + 96] & 15) << 4));
      b.qh[32 * h + i] =
          static_cast<std::uint8_t>((l[i] >> 4) | ((l[i + 32] >> 4) << 2) | ((l[i + 64] >> 4) << 4) | ((l[i + 96] >> 4) << 6));
    }
  }
}

// ---- dequantization -----------------------------------------------------------------------------

void dequantize_q8_0(const BlockQ8_0& b, float* y) noexcept {
  const float d = f16_to_f32(b.d);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(b.qs[i]);
}

void dequantize_q4_0(const BlockQ4_0& b, float* y) noexcept {
  const float d = f16_to_f32(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((b.qs[j] & 15) - 8);
    y[j + 16] = d * static_cast<float>((b.qs[j] >> 4) - 8);
  }
}

void dequantize_q4_k(const BlockQ4_K& b, float* y) noexcept {
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  for (int s = 0; s < 8; ++s) {
    int sc = 0, m = 0;
    q4_k_scale_min(b.scales, s, sc, m);
    const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
    const std::uint8_t* q = b.qs + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    for (int i = 0; i < 32; ++i) y[32 * s + i] = dl * static_cast<float>((q[i] >> shift) & 15) - ml;
  }
}

void dequantize_q6_k(const BlockQ6_K& b, float* y) noexcept {
  const float d = f16_to_f32(b.d);
  for (int h = 0; h < 2; ++h) {
    const std::uint8_t* ql = b.ql + 64 * h;
    const std::uint8_t* qh = b.qh + 32 * h;
    const std::int8_t* sc = b.scales + 8 * h;
    float* out = y + 128 * h;
    for (int l = 0; l < 32; ++l) {
      const int q0 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q1 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * static_cast<float>(sc[l / 16] * q0);
      out[l + 32] = d * static_cast<float>(sc[2 + l / 16] * q1);
      out[l + 64] = d * static_cast<float>(sc[4 + l / 16] * q2);
      out[l + 96] = d * static_cast<float>(sc[6 + l / 16] * q3);
    }
  }
}

// Blocks are read and written through memcpy: a block inside a file may sit at any address.
template <class Block, class Fn>
void for_each_block_in(const void* src, std::int64_t nblocks, float* dst, std::int64_t per, Fn fn) noexcept {
  const auto* p = static_cast<const std::byte*>(src);
  for (std::int64_t i = 0; i < nblocks; ++i) {
    Block b;
    std::memcpy(&b, p + i * static_cast<std::int64_t>(sizeof(Block)), sizeof(Block));
    fn(b, dst + i * per);
  }
}

template <class Block, class Fn>
void for_each_block_out(const float* src, std::int64_t nblocks, void* dst, std::int64_t per, Fn fn) noexcept {
  auto* p = static_cast<std::byte*>(dst);
  for (std::int64_t i = 0; i < nblocks; ++i) {
    Block b{};
    fn(src + i * per, b);
    std::memcpy(p + i * static_cast<std::int64_t>(sizeof(Block)), &b, sizeof(Block));
  }
}

}  // namespace

void q4_k_pack_scales(const std::uint8_t* sc, const std::uint8_t* m, std::uint8_t* scales) noexcept {
  for (int j = 0; j < 4; ++j) {
    scales[j] = static_cast<std::uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    scales[j + 4] = static_cast<std::uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    scales[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

void dequantize_row(DType t, const void* src, std::int64_t n, float* dst) noexcept {
  const std::int64_t nb = n / static_cast<std::int64_t>(dtype_block_size(t));
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<std::size_t>(n) * 4); return;
    case DType::F16:
    case DType::BF16: {
      const auto* p = static_cast<const std::byte*>(src);
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = t == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    }
    case DType::Q8_0: return for_each_block_in<BlockQ8_0>(src, nb, dst, 32, dequantize_q8_0);
    case DType::Q4_0: return for_each_block_in<BlockQ4_0>(src, nb, dst, 32, dequantize_q4_0);
    case DType::Q4_K: return for_each_block_in<BlockQ4_K>(src, nb, dst, 256, dequantize_q4_k);
    case DType::Q6_K: return for_each_block_in<BlockQ6_K>(src, nb, dst, 256, dequantize_q6_k);
  }
}

void quantize_row(DType t, const float* src, std::int64_t n, void* dst) noexcept {
  const std::int64_t nb = n / static_cast<std::int64_t>(dtype_block_size(t));
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<std::size_t>(n) * 4); return;
    case DType::F16:
    case DType::BF16: {
      auto* p = static_cast<std::byte*>(dst);
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint16_t h = t == DType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    }
    case DType::Q8_0: return for_each_block_out<BlockQ8_0>(src, nb, dst, 32, quantize_q8_0);
    case DType::Q4_0: return for_each_block_out<BlockQ4_0>(src, nb, dst, 32, quantize_q4_0);
    case DType::Q4_K: return for_each_block_out<BlockQ4_K>(src, nb, dst, 256, quantize_q4_k);
    case DType::Q6_K: return for_each_block_out<BlockQ6_K>(src, nb, dst, 256, quantize_q6_k);
  }
}

}  // namespace weft

// ---- interleaved layout ---------------------------------------------------------------------------

namespace weft {
namespace {

// Where a block's 16-bit scale fields and its run of 32-bit words sit (see core/quant.hpp).
struct TileFields {
  int n_half = 0;
  int half_at[2] = {0, 0};
  int words_at = 0;
  int n_words = 0;
  bool plus128 = false;  // Q8_0: quants stored as unsigned w + 128
};

TileFields tile_fields(DType t) noexcept {
  switch (t) {
    case DType::Q8_0: return {1, {0, 0}, 2, 8, true};
    case DType::Q4_0: return {1, {0, 0}, 2, 4, false};
    case DType::Q4_K: return {2, {0, 2}, 4, 35, false};
    case DType::Q6_K: return {1, {208, 0}, 0, 52, false};
    default: return {};
  }
}

constexpr std::uint32_t kPlus128 = 0x80808080u;

}  // namespace

bool interleavable(DType t) noexcept { return tile_fields(t).n_words > 0; }

void interleave_rows(DType t, const void* src_, std::int64_t rows, std::int64_t cols, void* dst_) noexcept {
  const TileFields f = tile_fields(t);
  const auto* src = static_cast<const std::byte*>(src_);
  auto* dst = static_cast<std::byte*>(dst_);
  const std::size_t bb = dtype_block_bytes(t), row_bytes = dtype_bytes(t, static_cast<std::size_t>(cols));
  const std::int64_t nb = cols / static_cast<std::int64_t>(dtype_block_size(t)), groups = rows / kInterleaveRows;
  for (std::int64_t g = 0; g < groups; ++g)
    for (std::int64_t k = 0; k < nb; ++k) {
      std::byte* tile = dst + (static_cast<std::size_t>(g) * nb + static_cast<std::size_t>(k)) * kInterleaveRows * bb;
      for (int r = 0; r < kInterleaveRows; ++r) {
        const std::byte* b = src + static_cast<std::size_t>(g * kInterleaveRows + r) * row_bytes + k * bb;
        for (int h = 0; h < f.n_half; ++h) std::memcpy(tile + 32 * h + 2 * r, b + f.half_at[h], 2);
        for (int j = 0; j < f.n_words; ++j) {
          std::uint32_t w;
          std::memcpy(&w, b + f.words_at + 4 * j, 4);
          if (f.plus128) w ^= kPlus128;
          std::memcpy(tile + 32 * f.n_half + 64 * j + 4 * r, &w, 4);
        }
      }
    }
  const std::size_t done = static_cast<std::size_t>(groups) * kInterleaveRows * row_bytes;
  std::memcpy(dst + done, src + done, static_cast<std::size_t>(rows) * row_bytes - done);
}

const std::byte* block_at(const TensorView& w, std::int64_t r, std::int64_t k, std::byte* scratch) noexcept {
  const std::size_t bb = dtype_block_bytes(w.dtype);
  if (w.interleave == 0 || r >= w.rows / kInterleaveRows * kInterleaveRows) return w.row(r) + k * bb;
  const TileFields f = tile_fields(w.dtype);
  const std::int64_t nb = w.cols / static_cast<std::int64_t>(dtype_block_size(w.dtype));
  const std::int64_t g = r / kInterleaveRows, i = r % kInterleaveRows;
  const std::byte* tile =
      static_cast<const std::byte*>(w.data) + (static_cast<std::size_t>(g) * nb + static_cast<std::size_t>(k)) * kInterleaveRows * bb;
  for (int h = 0; h < f.n_half; ++h) std::memcpy(scratch + f.half_at[h], tile + 32 * h + 2 * i, 2);
  for (int j = 0; j < f.n_words; ++j) {
    std::uint32_t v;
    std::memcpy(&v, tile + 32 * f.n_half + 64 * j + 4 * i, 4);
    if (f.plus128) v ^= kPlus128;
    std::memcpy(scratch + f.words_at + 4 * j, &v, 4);
  }
  return scratch;
}

void read_row(const TensorView& w, std::int64_t r, std::byte* out) noexcept {
  if (w.interleave == 0) {
    std::memcpy(out, w.row(r), w.row_bytes());
    return;
  }
  const std::size_t bb = dtype_block_bytes(w.dtype);
  const std::int64_t nb = w.cols / static_cast<std::int64_t>(dtype_block_size(w.dtype));
  for (std::int64_t k = 0; k < nb; ++k) {
    std::byte* dst = out + k * bb;
    const std::byte* b = block_at(w, r, k, dst);
    if (b != dst) std::memcpy(dst, b, bb);
  }
}

}  // namespace weft
