#pragma once
// ggml's block-quantized weight formats (as stored in GGUF files), bit for bit, and scalar
// conversions between them and f32. All multi-byte fields are little-endian; d/dmin are IEEE f16.
// A row of a quantized tensor is a plain sequence of blocks (no padding, no alignment), so a
// block may start at any byte address: read fields with memcpy or through these packed structs
// (every field is a byte array or a uint16, so alignof is at most 2).
#include <cstddef>
#include <cstdint>

#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace weft {

// 32 weights: x[i] = d * qs[i].
struct BlockQ8_0 {
  std::uint16_t d;  // f16
  std::int8_t qs[32];
};

// 32 weights: x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8) for j < 16.
struct BlockQ4_0 {
  std::uint16_t d;  // f16
  std::uint8_t qs[16];
};

// 256 weights in 8 sub-blocks of 32: x = d * sc[s] * q - dmin * m[s] with q in [0, 15] and the
// 6-bit sc/m of sub-block s packed in scales[12] (see q4_k_scale_min). qs holds 4 groups of 32
// bytes; group g's low nibbles are sub-block 2g, its high nibbles sub-block 2g + 1.
struct BlockQ4_K {
  std::uint16_t d;     // f16, multiplies the 6-bit scales
  std::uint16_t dmin;  // f16, multiplies the 6-bit mins
  std::uint8_t scales[12];
  std::uint8_t qs[128];
};

// 256 weights in 16 sub-blocks of 16: x = d * scales[s] * (q - 32), q a 6-bit value whose low
// 4 bits come from ql and high 2 bits from qh. Per half h (128 weights), l < 32: element l has
// ql[64h + l] & 15 and qh[32h + l] bits 0-1; element l + 32 has ql[64h + l + 32] & 15 and bits
// 2-3; element l + 64 has ql[64h + l] >> 4 and bits 4-5; element l + 96 has ql[64h + l + 32] >> 4
// and bits 6-7. Sub-block s covers elements [16s, 16s + 16).
struct BlockQ6_K {
  std::uint8_t ql[128];
  std::uint8_t qh[64];
  std::int8_t scales[16];
  std::uint16_t d;  // f16
};

// An activation vector quantized for the k-quant dot products (ggml's block_q8_K): 256 values
// x[i] ~ d * qs[i] with qs in [-127, 127], and bsums[s] = the sum of qs[16s .. 16s + 16).
struct BlockQ8_K {
  float d;
  std::int8_t qs[256];
  std::int16_t bsums[16];
};

static_assert(sizeof(BlockQ8_0) == dtype_block_bytes(DType::Q8_0));
static_assert(sizeof(BlockQ4_0) == dtype_block_bytes(DType::Q4_0));
static_assert(sizeof(BlockQ4_K) == dtype_block_bytes(DType::Q4_K));
static_assert(sizeof(BlockQ6_K) == dtype_block_bytes(DType::Q6_K));
static_assert(sizeof(BlockQ8_K) == 292);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K block's scales[12]: sub-blocks 0-3 keep
// them in the low 6 bits of bytes j and j + 4; sub-blocks 4-7 keep their low 4 bits in the two
// nibbles of byte j + 4 and their top 2 bits in the top bits of bytes j - 4 (scale) and j (min).
inline void q4_k_scale_min(const std::uint8_t* scales, int j, int& sc, int& m) noexcept {
  if (j < 4) {
    sc = scales[j] & 63;
    m = scales[j + 4] & 63;
  } else {
    sc = (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4);
    m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// The inverse of q4_k_scale_min for all 8 sub-blocks (sc and m each < 64).
void q4_k_pack_scales(const std::uint8_t* sc, const std::uint8_t* m, std::uint8_t* scales) noexcept;

// Widens n elements of type t at src into dst. Any dtype; for block types n must be a multiple
// of dtype_block_size(t) and src points at the first block. Pure function, thread-safe.
void dequantize_row(DType t, const void* src, std::int64_t n, float* dst) noexcept;

// Stores n floats as type t at dst (dtype_bytes(t, n) bytes). Any dtype; for block types n must
// be a multiple of the block size. Q8_0/Q4_0 use the max-abs rule (Q4_0 maps the value of largest
// magnitude to -8); Q4_K/Q6_K search candidate scales (and mins) per sub-block for the least
// (weighted) squared error, then quantize the sub-block scales to 6/8 bits, like llama.cpp's
// reference quantizers. All-zero blocks give d = 0; the output never holds NaN for finite input.
// Thread-safe.
void quantize_row(DType t, const float* src, std::int64_t n, void* dst) noexcept;

// ---- the interleaved layout of quantized matrices (TensorView::interleave) ----------------------
// The kernels read 16 rows at once, one row per 32-bit lane of a 512-bit vector, so a group of
// 16 rows is stored block column by block column: for block k, one tile of 16 * block_bytes
// bytes holds block k of the 16 rows with each field transposed. A block is cut into its 16-bit
// scale fields (d, and dmin for Q4_K) and the 32-bit words of everything else (quants, packed
// scales), in the order of the block struct; the tile stores each 16-bit field for rows 0..15
// (32 bytes), then each word for rows 0..15 (64 bytes). So word j of row r is at
// 32 * n_fields + 64 * j + 4 * r. Q8_0 quants are stored plus 128 (as unsigned bytes), the form
// the byte dot product instruction takes. Tiles follow in block order; group g starts at
// 16 * g * row_bytes, and rows past the last whole group stay plain.
constexpr int kInterleaveRows = 16;

// Whether t has an interleaved layout (the block-quantized dtypes).
bool interleavable(DType t) noexcept;

// Stores the rows x cols matrix of type t at src (plain rows) at dst in the interleaved layout
// (the same number of bytes). t must be interleavable.
void interleave_rows(DType t, const void* src, std::int64_t rows, std::int64_t cols, void* dst) noexcept;

// Block k of row r of w in the file's layout: a pointer into w for plain rows, else the block
// rebuilt in scratch (dtype_block_bytes(w.dtype) bytes).
const std::byte* block_at(const TensorView& w, std::int64_t r, std::int64_t k, std::byte* scratch) noexcept;

// Row r of w in the file's layout into out (w.row_bytes() bytes), whatever w's layout.
void read_row(const TensorView& w, std::int64_t r, std::byte* out) noexcept;

}  // namespace weft
