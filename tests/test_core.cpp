#include <cmath>
#include <cstdint>
#include <limits>

#include "core/aligned_buffer.hpp"
#include "core/dtype.hpp"
#include "core/mapped_file.hpp"
#include "core/tensor.hpp"
#include "testing.hpp"
#include "weft/error.hpp"

using namespace weft;

TEST_CASE("bf16 round trip and rounding") {
  CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
  CHECK(bf16_to_f32(f32_to_bf16(-2.5f)) == -2.5f);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even (1.0).
  CHECK(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f);
  CHECK(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)) == 1.0f + 4.0f / 256);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity()))));
}

TEST_CASE("f16 conversion is exact on every f16 value") {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      CHECK(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    REQUIRE(f32_to_f16(f) == h);
  }
  CHECK(f16_to_f32(0x3c00) == 1.0f);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f32_to_f16(1e6f) == 0x7c00);                   // overflow to inf
  CHECK(f32_to_f16(std::ldexp(1.0f, -26)) == 0);       // below half the smallest subnormal
}

TEST_CASE("tensor views") {
  float data[6] = {0, 1, 2, 3, 4, 5};
  const TensorView v = make_view_2d(data, DType::F32, 3, 2);
  CHECK(v.numel() == 6);
  CHECK(v.row_bytes() == 8);
  const TensorView s = v.row_slice(1, 2);
  CHECK(s.f32()[0] == 2.0f);
  CHECK(s.rows == 2);
}

TEST_CASE("aligned buffer is aligned and zeroed") {
  AlignedBuffer<float> b(37);
  CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % 64 == 0);
  for (float x : b.span()) CHECK(x == 0.0f);
}

TEST_CASE("mapped file errors name the path") {
  CHECK_THROWS_WITH_AS(MappedFile("/nonexistent/weft/file"), doctest::Contains("/nonexistent/weft/file"), InputError);
  CHECK_THROWS_WITH_AS(MappedFile("/tmp"), doctest::Contains("is a directory"), InputError);
}
