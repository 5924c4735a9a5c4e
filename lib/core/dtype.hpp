#pragma once
// Element types of weights and activations, and conversions between them.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace weft {

// Plain element types, and the block-quantized weight types of GGUF files (ggml's formats): a row
// of a quantized tensor is a sequence of blocks, each holding dtype_block_size() elements in
// dtype_block_bytes() bytes (layouts in core/quant.hpp).
enum class DType : std::uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K };

// Short upper-case name ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"); the first three as
// safetensors spells them.
std::string_view dtype_name(DType t) noexcept;

// True for the block-quantized types.
constexpr bool dtype_is_quantized(DType t) noexcept { return t >= DType::Q8_0; }

// Elements per block: 1 for plain types, 32 for Q8_0/Q4_0, 256 for the k-quants.
constexpr std::size_t dtype_block_size(DType t) noexcept {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: return 1;
    case DType::Q8_0:
    case DType::Q4_0: return 32;
    case DType::Q4_K:
    case DType::Q6_K: return 256;
  }
  return 1;
}

// Bytes of one block (one element for plain types).
constexpr std::size_t dtype_block_bytes(DType t) noexcept {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::Q8_0: return 34;   // f16 scale + 32 int8
    case DType::Q4_0: return 18;   // f16 scale + 16 bytes of nibbles
    case DType::Q4_K: return 144;  // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
    case DType::Q6_K: return 210;  // 128 low nibbles, 64 high 2-bit pairs, 16 int8 scales, f16 d
  }
  return 0;
}

// Bytes taken by n consecutive elements of type t. For quantized types n must be a multiple of
// the block size (a row always is); a partial block counts as none.
constexpr std::size_t dtype_bytes(DType t, std::size_t n) noexcept {
  return n / dtype_block_size(t) * dtype_block_bytes(t);
}

// bf16 is the top half of an f32: widening is a shift.
inline float bf16_to_f32(std::uint16_t h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// Round to nearest even, keeping NaN a (quiet) NaN.
inline std::uint16_t f32_to_bf16(float f) noexcept {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

// IEEE binary16 to binary32, exact (handles subnormals, inf, NaN).
inline float f16_to_f32(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal: normalise the mantissa.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// binary32 to binary16 with round to nearest even; overflow goes to inf.
inline std::uint16_t f32_to_f16(float f) noexcept {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to >= 65520
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: scale so the rounding happens in float arithmetic.
    const float a = std::bit_cast<float>(abs);
    const float scaled = a * 16777216.0f;  // 2^24: one f16 subnormal ulp becomes 1.0
    std::uint32_t m = static_cast<std::uint32_t>(scaled);
    const float rem = scaled - static_cast<float>(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return static_cast<std::uint16_t>(sign | m);
  }
  std::uint32_t r = abs - 0x38000000u;  // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

}  // namespace weft
