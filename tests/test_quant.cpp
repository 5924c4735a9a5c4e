// The GGUF block formats (core/quant.hpp): hand-made blocks with known values, quantize ->
// dequantize error bounds derived from each format, all-zero blocks, and the activation
// quantizer and scalar quantized dot products of the kernels (checked against float64 sums of
// the dequantized values).
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.hpp"
#include "core/quant.hpp"
#include "kernels/kernels.hpp"
#include "testing.hpp"

using namespace weft;
namespace k = weft::kernels;

namespace {

constexpr double kEps = std::numeric_limits<float>::epsilon();
constexpr DType kQuantTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};

std::vector<float> dequant(DType t, const void* src, std::int64_t n) {
  std::vector<float> out(static_cast<std::size_t>(n));
  dequantize_row(t, src, n, out.data());
  return out;
}

template <class Block>
std::vector<std::byte> bytes_of(const Block& b) {
  std::vector<std::byte> v(sizeof b);
  std::memcpy(v.data(), &b, sizeof b);
  return v;
}

std::vector<float> normal(std::size_t n, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

}  // namespace

TEST_CASE("block sizes match the dtype table") {
  CHECK(sizeof(BlockQ8_0) == 34);
  CHECK(sizeof(BlockQ4_0) == 18);
  CHECK(sizeof(BlockQ4_K) == 144);
  CHECK(sizeof(BlockQ6_K) == 210);
  CHECK(sizeof(BlockQ8_K) == 292);
  CHECK(offsetof(BlockQ6_K, d) == 208);
  CHECK(offsetof(BlockQ4_K, qs) == 16);
}

TEST_CASE("Q8_0: hand-made block, signed extremes") {
  BlockQ8_0 b{};
  b.d = f32_to_f16(0.5f);
  const int q[8] = {-128, -127, -1, 0, 1, 2, 126, 127};
  for (int i = 0; i < 32; ++i) b.qs[i] = static_cast<std::int8_t>(q[i % 8]);
  const auto x = dequant(DType::Q8_0, &b, 32);
  for (int i = 0; i < 32; ++i) CHECK(x[i] == 0.5f * q[i % 8]);
}

TEST_CASE("Q4_0: low nibbles are elements 0-15, high nibbles 16-31, offset 8") {
  BlockQ4_0 b{};
  b.d = f32_to_f16(0.25f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<std::uint8_t>(j | ((15 - j) << 4));
  const auto x = dequant(DType::Q4_0, &b, 32);
  for (int j = 0; j < 16; ++j) {
    CHECK(x[j] == 0.25f * (j - 8));          // nibble 0 -> -8 ... 15 -> 7
    CHECK(x[j + 16] == 0.25f * (7 - j));     // 15 - j - 8
  }
  CHECK(x[0] == -2.0f);   // -8 * 0.25
  CHECK(x[16] == 1.75f);  // 7 * 0.25
  b.d = 0;  // zero scale: all zero, whatever the nibbles
  for (float v : dequant(DType::Q4_0, &b, 32)) CHECK(v == 0.0f);
}

TEST_CASE("Q4_K: 6-bit scales and mins of all 8 sub-blocks, high bits included") {
  const std::uint8_t sc[8] = {1, 63, 32, 17, 33, 48, 62, 5};
  const std::uint8_t m[8] = {0, 62, 7, 40, 63, 1, 36, 31};
  // Packed by hand: bytes 0-3 hold sc[0..3] and the top 2 bits of sc[4..7]; bytes 4-7 the same
  // for the mins; bytes 8-11 the low nibbles of sc[4..7] (low) and m[4..7] (high).
  const std::uint8_t packed[12] = {0x81, 0xFF, 0xE0, 0x11, 0xC0, 0x3E, 0x87, 0x68, 0xF1, 0x10, 0x4E, 0xF5};
  std::uint8_t mine[12];
  q4_k_pack_scales(sc, m, mine);
  for (int i = 0; i < 12; ++i) CHECK(mine[i] == packed[i]);
  for (int j = 0; j < 8; ++j) {
    int s = -1, mm = -1;
    q4_k_scale_min(packed, j, s, mm);
    CHECK(s == sc[j]);
    CHECK(mm == m[j]);
  }
  BlockQ4_K b{};
  b.d = f32_to_f16(2.0f);
  b.dmin = f32_to_f16(0.5f);
  std::memcpy(b.scales, packed, 12);
  // Element e of sub-block s has level (e + s) % 16; sub-block 2g in the low nibbles of the g-th
  // 32 bytes, 2g + 1 in their high nibbles.
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l)
      b.qs[32 * g + l] = static_cast<std::uint8_t>(((l + 2 * g) % 16) | (((l + 2 * g + 1) % 16) << 4));
  const auto x = dequant(DType::Q4_K, &b, 256);
  for (int s = 0; s < 8; ++s)
    for (int e = 0; e < 32; ++e) {
      CAPTURE(s);
      CAPTURE(e);
      CHECK(x[32 * s + e] == 2.0f * sc[s] * ((e + s) % 16) - 0.5f * m[s]);
    }
}

TEST_CASE("Q6_K: 6-bit levels from ql/qh, signed int8 scales, -32 and 31") {
  BlockQ6_K b{};
  b.d = f32_to_f16(0.5f);
  const std::int8_t sc[16] = {-128, 127, -1, 1, 0, 5, -7, 100, 3, -3, 64, -64, 2, 9, -100, 11};
  std::memcpy(b.scales, sc, 16);
  int level[256];
  for (int e = 0; e < 256; ++e) level[e] = (e * 7 + e / 64) % 64;
  level[0] = 0;     // -32
  level[1] = 63;    // 31
  level[255] = 63;
  level[200] = 0;
  // Element e = 128h + 32·quarter + l: low 4 bits in ql[64h + l + 32·(quarter odd)], low nibble
  // for quarters 0-1 and high nibble for 2-3; high 2 bits in qh[32h + l] at bit 2·quarter.
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, quarter = (e % 128) / 32, l = e % 32;
    std::uint8_t& lo = b.ql[64 * h + l + 32 * (quarter % 2)];
    lo = static_cast<std::uint8_t>(lo | ((level[e] & 15) << (quarter >= 2 ? 4 : 0)));
    std::uint8_t& hi = b.qh[32 * h + l];
    hi = static_cast<std::uint8_t>(hi | ((level[e] >> 4) << (2 * quarter)));
  }
  const auto x = dequant(DType::Q6_K, &b, 256);
  for (int e = 0; e < 256; ++e) {
    CAPTURE(e);
    CHECK(x[e] == 0.5f * sc[e / 16] * (level[e] - 32));
  }
  CHECK(x[0] == 0.5f * -128 * -32);
  CHECK(x[1] == 0.5f * -128 * 31);
}

TEST_CASE("plain dtypes round-trip through quantize_row / dequantize_row") {
  std::mt19937 rng(1);
  const auto x = normal(64, rng);
  std::vector<std::byte> buf(256);
  quantize_row(DType::F32, x.data(), 64, buf.data());
  CHECK(dequant(DType::F32, buf.data(), 64) == x);
  quantize_row(DType::F16, x.data(), 64, buf.data());
  const auto h = dequant(DType::F16, buf.data(), 64);
  for (int i = 0; i < 64; ++i) CHECK(h[i] == f16_to_f32(f32_to_f16(x[i])));
  quantize_row(DType::BF16, x.data(), 64, buf.data());
  const auto bf = dequant(DType::BF16, buf.data(), 64);
  for (int i = 0; i < 64; ++i) CHECK(bf[i] == bf16_to_f32(f32_to_bf16(x[i])));
}

TEST_CASE("quantize then dequantize stays within the error bound of each format") {
  std::mt19937 rng(2);
  const int n = 256 * 32;
  auto x = normal(n, rng);
  // Outliers and constant runs inside some blocks, as real weights have.
  for (int i = 0; i < n; i += 97) x[i] *= 12.0f;
  for (int i = 512; i < 544; ++i) x[i] = 0.75f;
  for (DType t : kQuantTypes) {
    CAPTURE(dtype_name(t));
    std::vector<std::byte> q(dtype_bytes(t, n));
    quantize_row(t, x.data(), n, q.data());
    const auto y = dequant(t, q.data(), n);
    const int bs = static_cast<int>(dtype_block_size(t));
    double err2 = 0, x2 = 0, bound2 = 0;
    int bad = -1;
    for (int b0 = 0; b0 < n; b0 += bs) {
      // The error bound per element, derived from the format and the block's values.
      const int sub = t == DType::Q4_K ? 32 : t == DType::Q6_K ? 16 : 32;
      for (int s0 = b0; s0 < b0 + bs; s0 += sub) {
        float amax = 0, lo = 0, hi = 0;
        for (int i = s0; i < s0 + sub; ++i) {
          amax = std::max(amax, std::fabs(x[i]));
          lo = std::min(lo, x[i]);
          hi = std::max(hi, x[i]);
        }
        double step = 0, max_err = 0;
        switch (t) {
          case DType::Q8_0: step = amax / 127.0; max_err = 0.5 * step * (1 + 1e-3) + kEps * amax; break;
          // The largest magnitude maps to -8: the other side of the range may clamp at +7.
          case DType::Q4_0: step = amax / 8.0; max_err = step * (1 + 1e-3); break;
          // Levels 0..15 over [min(x, 0), max(x)]; the 6-bit scale and min add at most half a
          // level each (relative to the super-block's largest), hence the wide allowance.
          case DType::Q4_K: step = (hi - lo) / 15.0; max_err = 2.0 * step + 0.05 * amax; break;
          case DType::Q6_K: step = amax / 32.0; max_err = 1.5 * step + 0.02 * amax; break;
          default: break;
        }
        bound2 += step * step / 12.0 * sub;  // uniform rounding error over one level
        for (int i = s0; i < s0 + sub; ++i) {
          const double e = std::fabs(double(y[i]) - x[i]);
          err2 += e * e;
          x2 += double(x[i]) * x[i];
          if (!(e <= max_err)) bad = i;
        }
      }
    }
    INFO("first element over its bound: " << bad);
    CHECK(bad == -1);
    const double rms = std::sqrt(err2 / n), rms_bound = std::sqrt(bound2 / n);
    MESSAGE(dtype_name(t) << ": RMS error " << rms << " (" << rms / std::sqrt(x2 / n)
                          << " of RMS(x)), uniform-rounding estimate " << rms_bound);
    // A scale search must do at least about as well as rounding to the max-abs grid.
    CHECK(rms <= 1.15 * rms_bound);
  }
}

TEST_CASE("all-zero and tiny blocks quantize to zero scales without NaN") {
  for (DType t : kQuantTypes) {
    CAPTURE(dtype_name(t));
    const int n = 512;
    for (float v : {0.0f, 1e-38f, -0.0f}) {
      std::vector<float> x(n, v);
      std::vector<std::byte> q(dtype_bytes(t, n), std::byte{0xAB});
      quantize_row(t, x.data(), n, q.data());
      for (float y : dequant(t, q.data(), n)) {
        CHECK_FALSE(std::isnan(y));
        CHECK(std::fabs(y) <= 1e-37f);
      }
    }
  }
}

TEST_CASE("Q4_K / Q6_K scale search beats plain max-abs rounding on random data") {
  // The search keeps the least-squares scale among its candidates, so on average it must not lose
  // to a fixed grid; compare with the q4_0-style grid at the same block size as a sanity floor.
  std::mt19937 rng(3);
  const int n = 256 * 64;
  const auto x = normal(n, rng);
  auto rms_of = [&](DType t) {
    std::vector<std::byte> q(dtype_bytes(t, n));
    quantize_row(t, x.data(), n, q.data());
    const auto y = dequant(t, q.data(), n);
    double e2 = 0;
    for (int i = 0; i < n; ++i) e2 += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
    return std::sqrt(e2 / n);
  };
  const double q4_0 = rms_of(DType::Q4_0), q4_k = rms_of(DType::Q4_K), q6_k = rms_of(DType::Q6_K),
               q8_0 = rms_of(DType::Q8_0);
  MESSAGE("RMS error on N(0,1): q8_0 " << q8_0 << ", q6_k " << q6_k << ", q4_k " << q4_k << ", q4_0 " << q4_0);
  CHECK(q4_k < q4_0);
  CHECK(q6_k < q4_k / 3.0);
  CHECK(q8_0 < q6_k);
  // llama.cpp's formats on unit Gaussians: about 0.1 for q4_0, below 0.08 for q4_k, ~0.02 for q6_k.
  CHECK(q4_k < 0.08);
  CHECK(q6_k < 0.025);
}

TEST_CASE("quantize_act: layouts, sums, padding and round-trip error") {
  std::mt19937 rng(4);
  for (DType t : kQuantTypes)
    for (int n : {256, 512, 2304}) {
      CAPTURE(dtype_name(t));
      CAPTURE(n);
      auto x = normal(n, rng);
      for (int i = 0; i < 32; ++i) x[32 + i] = 0.0f;  // an all-zero block
      x[5] = 40.0f;
      std::vector<std::byte> q(k::act_bytes(t, n) + 8, std::byte{0x5A});
      CHECK(k::act_bytes(t, n) % 4 == 0);
      k::quantize_act(t, x.data(), n, q.data());
      k::ref::quantize_act(t, x.data(), n, q.data());
      std::vector<float> y(n);
      k::dequantize_act(t, q.data(), n, y.data());
      const int bs = t == DType::Q4_K || t == DType::Q6_K ? 256 : 32;
      int bad = -1;
      for (int b0 = 0; b0 < n; b0 += bs) {
        float amax = 0;
        for (int i = b0; i < b0 + bs; ++i) amax = std::max(amax, std::fabs(x[i]));
        for (int i = b0; i < b0 + bs; ++i)
          if (!(std::fabs(y[i] - x[i]) <= 0.5 * amax / 127.0 * (1 + 1e-5) + 1e-30)) bad = i;
      }
      CHECK(bad == -1);
      CHECK(q[k::act_bytes(t, n)] == std::byte{0x5A});  // nothing written past act_bytes
      if (bs == 256) {
        for (int b = 0; b < n / 256; ++b) {
          BlockQ8_K blk;
          std::memcpy(&blk, q.data() + b * sizeof blk, sizeof blk);
          for (int s = 0; s < 16; ++s) {
            int sum = 0;
            for (int i = 0; i < 16; ++i) sum += blk.qs[16 * s + i];
            CHECK(blk.bsums[s] == sum);
          }
          for (int i = 0; i < 256; ++i) CHECK(blk.qs[i] >= -127);
        }
      } else {
        const int nb = n / 32, nbp = (nb + 15) / 16 * 16;
        const auto* qs = reinterpret_cast<const std::int8_t*>(q.data());
        const auto* d = reinterpret_cast<const float*>(q.data() + 32 * nbp);
        const auto* sum = reinterpret_cast<const std::int32_t*>(q.data() + 36 * nbp);
        CHECK(k::act_bytes(t, n) == static_cast<std::size_t>(40 * nbp));
        for (int b = 0; b < nbp; ++b) {
          int s = 0;
          for (int i = 0; i < 32; ++i) s += qs[32 * b + i];
          CHECK(sum[b] == s);
          if (b >= nb) {
            CHECK(d[b] == 0.0f);
            CHECK(s == 0);
          }
        }
        CHECK(d[1] == 0.0f);  // the all-zero block
        for (int i = 0; i < 32 * nbp; ++i) CHECK(qs[i] >= -127);
      }
    }
}

TEST_CASE("to_f32 and embedding_row dequantize quantized rows") {
  std::mt19937 rng(5);
  for (DType t : kQuantTypes) {
    CAPTURE(dtype_name(t));
    const int rows = 3, cols = 512;
    const auto x = normal(static_cast<std::size_t>(rows) * cols, rng);
    std::vector<std::byte> q(dtype_bytes(t, rows * cols));
    quantize_row(t, x.data(), rows * cols, q.data());
    const TensorView table = make_view_2d(q.data(), t, rows, cols);
    std::vector<float> out(cols);
    k::embedding_row(table, 2, out.data());
    const auto want = dequant(t, table.row(2), cols);
    CHECK(out == want);
    k::to_f32(table.row(1), t, cols, out.data());
    CHECK(out == dequant(t, table.row(1), cols));
  }
}

TEST_CASE("ref::matvec_q equals the float64 dot product of the dequantized rows and activations") {
  // The integer paths (offsets, mins, bsums, sub-block scales) are exact, so the only error left
  // is f32 rounding: each block's scale product and the running sum, (blocks + 4)·eps relative to
  // the sum of the magnitudes of the terms (the k-quant minimum terms counted separately).
  std::mt19937 rng(6);
  for (DType t : kQuantTypes) {
    const int rows = 5, cols = 2304;
    CAPTURE(dtype_name(t));
    const auto w = normal(static_cast<std::size_t>(rows) * cols, rng);
    std::vector<std::byte> wq(dtype_bytes(t, rows * cols));
    quantize_row(t, w.data(), rows * cols, wq.data());
    const TensorView view = make_view_2d(wq.data(), t, rows, cols);
    const auto x = normal(cols, rng);
    std::vector<std::byte> xq(k::act_bytes(t, cols));
    k::ref::quantize_act(t, x.data(), cols, xq.data());
    std::vector<float> xd(cols), y(rows, -1.0f);
    k::dequantize_act(t, xq.data(), cols, xd.data());
    k::ref::matvec_q(view, xq.data(), y.data(), 0, rows);
    for (int r = 0; r < rows; ++r) {
      const auto wd = dequant(t, view.row(r), cols);
      // For Q4_K the kernel adds d·sc·q and -dmin·m separately: bound with both magnitudes.
      std::vector<float> pos(cols, 0.0f);
      if (t == DType::Q4_K) {
        std::vector<std::byte> row(view.row_bytes());
        std::memcpy(row.data(), view.row(r), row.size());
        for (int b = 0; b < cols / 256; ++b) std::memset(row.data() + 144 * b + 2, 0, 2);  // dmin = 0
        pos = dequant(t, row.data(), cols);
      }
      double exact = 0, mag = 0;
      for (int c = 0; c < cols; ++c) {
        exact += double(wd[c]) * xd[c];
        mag += (std::fabs(double(wd[c])) + 2.0 * std::fabs(double(pos[c]))) * std::fabs(double(xd[c]));
      }
      const double nb = double(cols) / double(dtype_block_size(t));
      CHECK(std::fabs(y[r] - exact) <= (nb + 4) * kEps * mag + 1e-30);
    }
  }
}
