#pragma once
// Vector traits for the x86 kernel variants: how one ISA loads f32/f16/bf16 into f32 vectors
// (unaligned: safetensors gives no alignment guarantee), loads a tail of m < width elements without
// reading past it, fuses multiply-add, and reduces. simd_impl.hpp writes the kernels over these.
// Include only from the per-ISA files; each struct exists only when the file's flags enable it.
// Anonymous namespace: see the note at the top of simd_impl.hpp.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics seed their results with _mm512_undefined_*(), which that compiler
// then reports as uninitialized once inlined (GCC bug 105593, fixed in later releases).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include <cstdint>
#include <cstring>

namespace weft::kernels {
namespace {

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// AVX2 + FMA + F16C: 8 floats per vector. Tails go through a small zeroed stack buffer.
struct Avx2Traits {
  using arch = xsimd::fma3<xsimd::avx2>;
  using B = xsimd::batch<float, arch>;
  static constexpr std::int64_t kWidth = 8;

  static B fmadd(B a, B b, B c) noexcept { return _mm256_fmadd_ps(a, b, c); }
  static B load(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static B load_f16(const std::uint16_t* p) noexcept {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static B load_bf16(const std::uint16_t* p) noexcept {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static B load_partial(const float* p, int m) noexcept {
    alignas(32) float t[8] = {};
    std::memcpy(t, p, static_cast<std::size_t>(m) * sizeof(float));
    return _mm256_load_ps(t);
  }
  static B load_f16_partial(const std::uint16_t* p, int m) noexcept {
    alignas(16) std::uint16_t t[8] = {};
    std::memcpy(t, p, static_cast<std::size_t>(m) * sizeof(std::uint16_t));
    return load_f16(t);
  }
  static B load_bf16_partial(const std::uint16_t* p, int m) noexcept {
    alignas(16) std::uint16_t t[8] = {};
    std::memcpy(t, p, static_cast<std::size_t>(m) * sizeof(std::uint16_t));
    return load_bf16(t);
  }
  static void store(float* p, B v) noexcept { _mm256_storeu_ps(p, v); }
  static void store_partial(float* p, B v, int m) noexcept {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    std::memcpy(p, t, static_cast<std::size_t>(m) * sizeof(float));
  }
  static float sum(B v) noexcept {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
  }
  static float max(B v) noexcept {
    const __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
  }
  static void prefetch(const void* p) noexcept { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
  static void prefetch_l2(const void* p) noexcept { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__FMA__) && defined(__F16C__)
// AVX-512 F/BW/VL/DQ: 16 floats per vector. Tails use masked loads and stores (masked-off lanes
// neither fault nor read memory), which is why BW/VL are required (16-bit masked loads).
struct Avx512Traits {
  using arch = xsimd::avx512bw;
  using B = xsimd::batch<float, arch>;
  static constexpr std::int64_t kWidth = 16;

  static __mmask16 mask(int m) noexcept { return static_cast<__mmask16>((1u << m) - 1u); }
  static B fmadd(B a, B b, B c) noexcept { return _mm512_fmadd_ps(a, b, c); }
  static B load(const float* p) noexcept { return _mm512_loadu_ps(p); }
  static B load_f16(const std::uint16_t* p) noexcept {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static B widen_bf16(__m256i h) noexcept { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static B load_bf16(const std::uint16_t* p) noexcept {
    return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static B load_partial(const float* p, int m) noexcept { return _mm512_maskz_loadu_ps(mask(m), p); }
  static B load_f16_partial(const std::uint16_t* p, int m) noexcept {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(m), p));
  }
  static B load_bf16_partial(const std::uint16_t* p, int m) noexcept {
    return widen_bf16(_mm256_maskz_loadu_epi16(mask(m), p));
  }
  static void store(float* p, B v) noexcept { _mm512_storeu_ps(p, v); }
  static void store_partial(float* p, B v, int m) noexcept { _mm512_mask_storeu_ps(p, mask(m), v); }
  static float sum(B v) noexcept { return _mm512_reduce_add_ps(v); }
  static float max(B v) noexcept { return _mm512_reduce_max_ps(v); }
  static void prefetch(const void* p) noexcept { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
  static void prefetch_l2(const void* p) noexcept { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }
};
#endif

}  // namespace
}  // namespace weft::kernels
