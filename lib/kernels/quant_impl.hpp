#pragma once
// Quantized-weight kernels (Q8_0, Q4_0, Q4_K, Q6_K) shared by the per-ISA files, written once over
// an integer traits type Q (Avx2Q, Avx512Q<vnni>) whose vectors hold W 128-bit lanes. Include only
// from the per-ISA files, after simd_impl.hpp (anonymous namespace for the reason given there).
//
// How a row's dot product is computed. Weights are unpacked to unsigned bytes (nibbles, 6-bit
// values, or int8 + 128) and multiplied with the int8 activations four at a time into int32 lanes
// (vpdpbusd, or vpmaddubsw + vpmaddwd without VNNI). Every lane then holds a partial sum of one
// block (one sub-block for the k-quants), and four such vectors are reduced together with a
// transpose-and-add (reduce4: 6 instructions) into one vector whose lanes are whole-block sums in
// a fixed permuted order. The offsets (-8, -128, -32, the k-quant mins) are removed with the
// activation block sums, exactly, in int32; only then do the block scales come in, as one
// vector multiply per group of blocks: weight scales are gathered once per group and row,
// activation scales are permuted to the same order once per group and token. So the per-block
// cost is a few byte operations and a quarter of a reduction. That is still about as fast as one
// core's share of DRAM bandwidth (Q4_0 ~16 GB/s from L2), so matrices loaded with repacking are
// stored in the interleaved layout instead and run through the il:: kernels further down (2-3x
// faster from L2), which need neither the unpacking shuffles nor the reduction.
//
// Bit-identical prefill and decode: matvec and matmul run the same unpack(), load_act() and step()
// for each (row, vector, group), step() being the only place with float arithmetic, and the row's
// f32 accumulator is reduced the same way at the end. Integer parts are exact, so results are
// independent of how rows and vectors are grouped.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/quant.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/kernels.hpp"

namespace weft::kernels {
namespace {

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// The cache level software prefetches of quantized weights fill: L2 (T1), not L1 (T0) as the
// float kernels' near request does. Paired A/B in the model (alternating decode steps in one
// process, 1.1B shape, T1/T0 step time): two threads Q8_0 0.960-0.966, Q4_K_M 0.975-0.978, Q4_0
// 0.986-0.992; one thread Q8_0 0.971, Q4_0 0.975. The float kernels were 1.5-2.4 % slower with
// T1 in place of their 1 KiB T0 request, so that one stays T0; they add a T1 request further
// ahead (simd_impl.hpp).
constexpr auto kWeightHint = _MM_HINT_T1;
// 256-bit integer traits: vpmaddubsw + vpmaddwd for the byte dot products.
struct Avx2Q {
  static constexpr int W = 2;
  static constexpr bool kVnni = false;
  using I = __m256i;
  using F = __m256;
  using M = __m256i;  // lane mask for gathers

  static I zero() noexcept { return _mm256_setzero_si256(); }
  static I load(const void* p) noexcept { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static I bytes(char c) noexcept { return _mm256_set1_epi8(c); }
  static I and_(I a, I b) noexcept { return _mm256_and_si256(a, b); }
  static I or_(I a, I b) noexcept { return _mm256_or_si256(a, b); }
  static I xor_(I a, I b) noexcept { return _mm256_xor_si256(a, b); }
  template <int k>
  static I srl16(I a) noexcept { return _mm256_srli_epi16(a, k); }
  template <int k>
  static I sll16(I a) noexcept { return _mm256_slli_epi16(a, k); }
  template <int k>
  static I sll32(I a) noexcept { return _mm256_slli_epi32(a, k); }
  static I add32(I a, I b) noexcept { return _mm256_add_epi32(a, b); }
  static I sub32(I a, I b) noexcept { return _mm256_sub_epi32(a, b); }
  static I mullo32(I a, I b) noexcept { return _mm256_mullo_epi32(a, b); }
  static I madd16(I a, I b) noexcept { return _mm256_madd_epi16(a, b); }
  // Σ of 4 u8*s8 products per int32 lane; vpmaddubsw saturates pairs at ±32767, which the callers
  // rule out (|s| <= 127, u <= 128 for Q8_0's |w| and <= 63 otherwise).
  static I dot4z(I u, I s) noexcept { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }
  // dot4z(u1, s1) + dot4z(u2, s2) when each byte-pair sum stays below 16384 (u <= 15).
  static I dot4z_pair_small(I u1, I s1, I u2, I s2) noexcept {
    const I p = _mm256_add_epi16(_mm256_maddubs_epi16(u1, s1), _mm256_maddubs_epi16(u2, s2));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
  // Signed weights by signed activations: |w| times a with w's sign (a in [-127, 127]).
  static I dot4z_signed(I w, I a) noexcept { return dot4z(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w)); }
  static I unpacklo32(I a, I b) noexcept { return _mm256_unpacklo_epi32(a, b); }
  static I unpackhi32(I a, I b) noexcept { return _mm256_unpackhi_epi32(a, b); }
  static I unpacklo64(I a, I b) noexcept { return _mm256_unpacklo_epi64(a, b); }
  static I unpackhi64(I a, I b) noexcept { return _mm256_unpackhi_epi64(a, b); }
  // The first (even) and second (odd) 128-bit lanes of a and b: [a.0, b.0] and [a.1, b.1].
  static I lanes_even(I a, I b) noexcept { return _mm256_permute2x128_si256(a, b, 0x20); }
  static I lanes_odd(I a, I b) noexcept { return _mm256_permute2x128_si256(a, b, 0x31); }
  static I loadi(const std::int32_t* p) noexcept { return load(p); }
  static I perm32(I v, I idx) noexcept { return _mm256_permutevar8x32_epi32(v, idx); }
  static F permf(F v, I idx) noexcept { return _mm256_permutevar8x32_ps(v, idx); }
  static F cvt(I v) noexcept { return _mm256_cvtepi32_ps(v); }
  static F fzero() noexcept { return _mm256_setzero_ps(); }
  static F set1(float f) noexcept { return _mm256_set1_ps(f); }
  static F loadf(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static F mul(F a, F b) noexcept { return _mm256_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) noexcept { return _mm256_fmadd_ps(a, b, c); }
  static float sum(F v) noexcept {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
  }
  // Bytes [0, 16) at p and at p + stride in the two lanes; lanes >= count are zero.
  static I load_lanes(const std::byte* p, std::size_t stride, int count) noexcept {
    if (count <= 0) return zero();
    const __m128i l0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if (count == 1) return _mm256_inserti128_si256(zero(), l0, 0);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(l0),
                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + stride)), 1);
  }
  static M lanes_below(I lane_index, int m) noexcept { return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), lane_index); }
  // f16 values at base + offset[j] for every lane j (all lanes, or those in mask), widened.
  static F f16_of_gathered(I g) noexcept {
    const I lo16 = _mm256_shuffle_epi8(g, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1,
                                                           4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1));
    return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(lo16, 0x08)));
  }
  static F gather_f16(const std::byte* base, I offset) noexcept {
    return f16_of_gathered(_mm256_i32gather_epi32(reinterpret_cast<const int*>(base), offset, 1));
  }
  static F gather_f16(const std::byte* base, I offset, M mask) noexcept {
    return f16_of_gathered(_mm256_mask_i32gather_epi32(zero(), reinterpret_cast<const int*>(base), offset, mask, 1));
  }
  // A 256-bit vector of int32 as a full-width one (the same here).
  static I widen256(__m256i v) noexcept { return v; }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
// 512-bit integer traits: vpdpbusd with AVX512_VNNI (Vnni = true; the file must be compiled with
// -mavx512vnni and the dispatcher must check the CPU for it), else vpmaddubsw + vpmaddwd.
template <bool Vnni>
struct Avx512Q {
  static constexpr int W = 4;
  static constexpr bool kVnni = Vnni;
  using I = __m512i;
  using F = __m512;
  using M = __mmask16;

  static I zero() noexcept { return _mm512_setzero_si512(); }
  static I load(const void* p) noexcept { return _mm512_loadu_si512(p); }
  static I bytes(char c) noexcept { return _mm512_set1_epi8(c); }
  static I and_(I a, I b) noexcept { return _mm512_and_si512(a, b); }
  static I or_(I a, I b) noexcept { return _mm512_or_si512(a, b); }
  static I xor_(I a, I b) noexcept { return _mm512_xor_si512(a, b); }
  template <int k>
  static I srl16(I a) noexcept { return _mm512_srli_epi16(a, k); }
  template <int k>
  static I sll16(I a) noexcept { return _mm512_slli_epi16(a, k); }
  template <int k>
  static I sll32(I a) noexcept { return _mm512_slli_epi32(a, k); }
  static I add32(I a, I b) noexcept { return _mm512_add_epi32(a, b); }
  static I sub32(I a, I b) noexcept { return _mm512_sub_epi32(a, b); }
  static I mullo32(I a, I b) noexcept { return _mm512_mullo_epi32(a, b); }
  static I madd16(I a, I b) noexcept { return _mm512_madd_epi16(a, b); }
  static I dot4z(I u, I s) noexcept {
#if defined(__AVX512VNNI__)
    if constexpr (Vnni) return _mm512_dpbusd_epi32(zero(), u, s);
#endif
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
  }
  static I dot4z_pair_small(I u1, I s1, I u2, I s2) noexcept {
#if defined(__AVX512VNNI__)
    if constexpr (Vnni) return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero(), u1, s1), u2, s2);
#endif
    const I p = _mm512_add_epi16(_mm512_maddubs_epi16(u1, s1), _mm512_maddubs_epi16(u2, s2));
    return _mm512_madd_epi16(p, _mm512_set1_epi16(1));
  }
  // AVX-512 has no vpsignb: negate a where w is negative (where w is 0, |w| = 0 anyway).
  static I dot4z_signed(I w, I a) noexcept {
    const __mmask64 neg = _mm512_movepi8_mask(w);
    return dot4z(_mm512_abs_epi8(w), _mm512_mask_sub_epi8(a, neg, zero(), a));
  }
  static I unpacklo32(I a, I b) noexcept { return _mm512_unpacklo_epi32(a, b); }
  static I unpackhi32(I a, I b) noexcept { return _mm512_unpackhi_epi32(a, b); }
  static I unpacklo64(I a, I b) noexcept { return _mm512_unpacklo_epi64(a, b); }
  static I unpackhi64(I a, I b) noexcept { return _mm512_unpackhi_epi64(a, b); }
  // [a.0, a.2, b.0, b.2] and [a.1, a.3, b.1, b.3].
  static I lanes_even(I a, I b) noexcept { return _mm512_shuffle_i64x2(a, b, 0x88); }
  static I lanes_odd(I a, I b) noexcept { return _mm512_shuffle_i64x2(a, b, 0xDD); }
  // [a.0, a.1, b.0, b.1] and [a.2, a.3, b.2, b.3].
  static I halves_lo(I a, I b) noexcept { return _mm512_shuffle_i64x2(a, b, 0x44); }
  static I halves_hi(I a, I b) noexcept { return _mm512_shuffle_i64x2(a, b, 0xEE); }
  static I loadi(const std::int32_t* p) noexcept { return load(p); }
  static I perm32(I v, I idx) noexcept { return _mm512_permutexvar_epi32(idx, v); }
  static F permf(F v, I idx) noexcept { return _mm512_permutexvar_ps(idx, v); }
  static F cvt(I v) noexcept { return _mm512_cvtepi32_ps(v); }
  static F fzero() noexcept { return _mm512_setzero_ps(); }
  static F set1(float f) noexcept { return _mm512_set1_ps(f); }
  static F loadf(const float* p) noexcept { return _mm512_loadu_ps(p); }
  static F mul(F a, F b) noexcept { return _mm512_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) noexcept { return _mm512_fmadd_ps(a, b, c); }
  static float sum(F v) noexcept { return _mm512_reduce_add_ps(v); }
  static I load_lanes(const std::byte* p, std::size_t stride, int count) noexcept {
    auto lane = [&](int k) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k * stride)); };
    if (count >= 4) {
      I v = _mm512_castsi128_si512(lane(0));
      v = _mm512_inserti32x4(v, lane(1), 1);
      v = _mm512_inserti32x4(v, lane(2), 2);
      return _mm512_inserti32x4(v, lane(3), 3);
    }
    I v = zero();
    if (count > 0) v = _mm512_inserti32x4(v, lane(0), 0);
    if (count > 1) v = _mm512_inserti32x4(v, lane(1), 1);
    if (count > 2) v = _mm512_inserti32x4(v, lane(2), 2);
    return v;
  }
  static M lanes_below(I lane_index, int m) noexcept { return _mm512_cmplt_epi32_mask(lane_index, _mm512_set1_epi32(m)); }
  static F gather_f16(const std::byte* base, I offset) noexcept {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(offset, base, 1)));
  }
  static F gather_f16(const std::byte* base, I offset, M mask) noexcept {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero(), mask, offset, base, 1)));
  }
  static I widen256(__m256i v) noexcept { return _mm512_zextsi256_si512(v); }
};
#endif

// Sums each 128-bit lane of four vectors: lane g of the result holds, at position i, the sum of
// the four int32 in lane g of p[i] (so result element 4g + i belongs to p[i]'s lane g).
template <class Q>
inline typename Q::I reduce4(const typename Q::I* p) noexcept {
  const auto t0 = Q::add32(Q::unpacklo32(p[0], p[1]), Q::unpackhi32(p[0], p[1]));
  const auto t1 = Q::add32(Q::unpacklo32(p[2], p[3]), Q::unpackhi32(p[2], p[3]));
  return Q::add32(Q::unpacklo64(t0, t1), Q::unpackhi64(t0, t1));
}

template <class Q>
inline typename Q::I load_table(const std::int32_t* t) noexcept {
  return Q::loadi(t);
}

// Software prefetch for the weight rows: while a block of rows is read group by group, the same
// group of the rows that come kQPrefetchRows later is requested. A fixed byte distance does not
// work here: quantized rows are short (a 2048-column Q4_K row is 1152 bytes), so a distance that
// hides DRAM latency lands inside rows the loop is already reading. 0 turns it off. That request
// goes to L2 (kWeightHint); the same group of the rows the next block reads (R rows on) is also
// requested into L1. Paired A/B in the model (alternating decode steps, 1.1B shape, two threads,
// 200 steps): Q4_K_M, whose Q6_K matrices take this path, 0.985 of the step time in both of two
// runs with the L1 request against without.
#ifndef WEFT_QPREFETCH_ROWS
#define WEFT_QPREFETCH_ROWS 8
#endif
constexpr std::int64_t kQPrefetchRows = WEFT_QPREFETCH_ROWS;

// Requests the lines [p, p + bytes) into the cache level Hint names (kWeightHint, or
// _MM_HINT_T0 for L1).
template <auto Hint>
inline void prefetch_lines(const std::byte* p, std::int64_t bytes) noexcept {
  for (std::int64_t off = 0; off < bytes; off += 64) _mm_prefetch(reinterpret_cast<const char*>(p + off), Hint);
}
// ---- Q8_0 and Q4_0: groups of 4W blocks of 32 --------------------------------------------------
// Vector i of a group holds blocks iW .. iW + W - 1, one 16-byte half per 128-bit lane (the first
// halves in one vector, the second halves in another). After reduce4, element 4g + i is block
// iW + g of the group.
template <class Q_, DType D>
struct Fmt32 {
  using Q = Q_;
  using I = typename Q::I;
  using F = typename Q::F;
  static constexpr int W = Q::W;
  static constexpr int G = 4 * W;  // blocks per group
  static constexpr std::int64_t kBlockBytes = D == DType::Q8_0 ? 34 : 18;
  static constexpr std::int64_t kGroupBytes = G * kBlockBytes;
  // Q8_0 on VNNI: w + 128 (unsigned) times a, minus 128·Σa; without VNNI the sign trick (|w| times
  // a with w's sign), since (w + 128)·a pairs would saturate vpmaddubsw. Q4_0: nibble times a,
  // minus 8·Σa.
  static constexpr bool kOffset128 = D == DType::Q8_0 && Q::kVnni;
  static constexpr bool kCorrect = D == DType::Q4_0 || kOffset128;
  static_assert(G <= kActGroupBlocks, "the activation padding must cover a whole group");

  struct Unp {
    I lo[4], hi[4];  // unsigned (or, for the sign trick, signed) weight bytes
    F dw;            // weight block scales, permuted
  };
  struct Act {
    I lo[4], hi[4];  // activation bytes matching Unp
    F da;            // activation block scales, permuted
    I corr;          // offset times the block sums, permuted (when kCorrect)
  };

  // Element 4g + i <- block iW + g: the order reduce4 leaves the block sums in.
  static I perm() noexcept {
    alignas(64) std::int32_t t[4 * W];
    for (int g = 0; g < W; ++g)
      for (int i = 0; i < 4; ++i) t[4 * g + i] = i * W + g;
    return load_table<Q>(t);
  }
  static I scale_offsets() noexcept {
    alignas(64) std::int32_t t[4 * W];
    for (int g = 0; g < W; ++g)
      for (int i = 0; i < 4; ++i) t[4 * g + i] = static_cast<std::int32_t>((i * W + g) * kBlockBytes);
    return load_table<Q>(t);
  }

  static std::int64_t groups(std::int64_t cols) noexcept { return (cols / 32 + G - 1) / G; }

  static Act load_act(const std::byte* xq, std::int64_t cols, std::int64_t g) noexcept {
    const std::int64_t nbp = act_padded_blocks(cols);
    const std::byte* qs = xq + 32 * G * g;
    Act a;
    for (int i = 0; i < 4; ++i) {
      const I v0 = Q::load(qs + 32 * W * i), v1 = Q::load(qs + 32 * W * i + 16 * W);
      a.lo[i] = Q::lanes_even(v0, v1);
      a.hi[i] = Q::lanes_odd(v0, v1);
    }
    const I idx = perm();
    a.da = Q::permf(Q::loadf(reinterpret_cast<const float*>(xq + 32 * nbp) + G * g), idx);
    if constexpr (kCorrect) {
      const I s = Q::perm32(Q::loadi(reinterpret_cast<const std::int32_t*>(xq + 36 * nbp) + G * g), idx);
      a.corr = D == DType::Q4_0 ? Q::template sll32<3>(s) : Q::template sll32<7>(s);
    } else {
      a.corr = Q::zero();
    }
    return a;
  }

#if defined(__AVX512BW__)
  // A full group on 512-bit vectors. The group is read with whole-vector loads and the 16-byte
  // block halves and f16 scales are picked out with vpermt2w (one shuffle per 64 bytes out),
  // instead of one 16-byte insert per block half and a 16-element gather for the scales (Q4_0:
  // 12 inserts + a gather per group become 7 shuffles; Q8_0: 24 inserts + a gather become 12).
  // With 512-bit vectors only two ports run vector uops, and the unpack is per row, so its uop
  // count sets how close one core gets to DRAM speed. Both block sizes are even and the quants start
  // 2 bytes in, so every field is a whole number of 16-bit words and word shuffles suffice.
  //   Q4_0 (18 bytes = 9 words): vector i (blocks 4i .. 4i+3) comes from the 64 words at word 32i;
  //     block 4i+g's quants are words 4i + 9g + 1 .. +8 of that window, its scale word 4i + 9g.
  //   Q8_0 (34 bytes = 17 words): vector i's first halves come from the window at byte 136i
  //     (words 17g + 1 .. +8) and its second halves from the window 8 bytes on (17g + 5 .. +8);
  //     block 4i+g's scale is word 17g of the first window.
  // Scales end in reduce4's order: element 4g + i <- block 4i + g.
  static Unp unpack_full512(const std::byte* base) noexcept {
    struct Idx {
      alignas(64) std::int16_t v[32];
    };
    Unp u;
    if constexpr (D == DType::Q4_0) {
      static constexpr auto kQ = [] {
        std::array<Idx, 4> t{};
        for (int i = 0; i < 4; ++i)
          for (int g = 0; g < 4; ++g)
            for (int k = 0; k < 8; ++k) t[i].v[8 * g + k] = static_cast<std::int16_t>(4 * i + 9 * g + 1 + k);
        return t;
      }();
      // Scale words of vectors 0-1 (window 0), 2 (window 2) and 3 (window 3), see above.
      static constexpr auto kS = [] {
        std::array<Idx, 3> t{};
        for (int g = 0; g < 4; ++g) {
          for (int i = 0; i < 2; ++i) t[0].v[4 * g + i] = static_cast<std::int16_t>(36 * i + 9 * g);
          t[1].v[4 * g + 2] = static_cast<std::int16_t>(8 + 9 * g);
          t[2].v[4 * g + 3] = static_cast<std::int16_t>(12 + 9 * g);
        }
        return t;
      }();
      I z[5];
      for (int k = 0; k < 4; ++k) z[k] = Q::load(base + 64 * k);
      // The group is 288 bytes: only the low half of the last window is read (and used).
      z[4] = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + 256)));
      const I nib = Q::bytes(0x0F);
      for (int i = 0; i < 4; ++i) {
        const I q = _mm512_permutex2var_epi16(z[i], Q::load(kQ[i].v), z[i + 1]);
        u.lo[i] = Q::and_(q, nib);
        u.hi[i] = Q::and_(Q::template srl16<4>(q), nib);
      }
      I s = _mm512_permutex2var_epi16(z[0], Q::load(kS[0].v), z[1]);
      s = _mm512_mask_blend_epi16(0x4444, s, _mm512_permutex2var_epi16(z[2], Q::load(kS[1].v), z[3]));
      s = _mm512_mask_blend_epi16(0x8888, s, _mm512_permutex2var_epi16(z[3], Q::load(kS[2].v), z[4]));
      u.dw = _mm512_cvtph_ps(_mm512_castsi512_si256(s));
    } else {
      static constexpr auto kQ = [] {
        std::array<Idx, 3> t{};
        for (int g = 0; g < 4; ++g) {
          for (int k = 0; k < 8; ++k) {
            t[0].v[8 * g + k] = static_cast<std::int16_t>(17 * g + 1 + k);
            t[1].v[8 * g + k] = static_cast<std::int16_t>(17 * g + 5 + k);
          }
          for (int i = 0; i < 4; ++i) t[2].v[4 * g + i] = static_cast<std::int16_t>(17 * g);
        }
        return t;
      }();
      const I lo_idx = Q::load(kQ[0].v), hi_idx = Q::load(kQ[1].v), s_idx = Q::load(kQ[2].v);
      I s = Q::zero();
      for (int i = 0; i < 4; ++i) {
        const std::byte* w = base + 136 * i;
        const I a0 = Q::load(w), a1 = Q::load(w + 64), b0 = Q::load(w + 8), b1 = Q::load(w + 72);
        u.lo[i] = _mm512_permutex2var_epi16(a0, lo_idx, a1);
        u.hi[i] = _mm512_permutex2var_epi16(b0, hi_idx, b1);
        if constexpr (kOffset128) {
          u.lo[i] = Q::xor_(u.lo[i], Q::bytes(static_cast<char>(0x80)));
          u.hi[i] = Q::xor_(u.hi[i], Q::bytes(static_cast<char>(0x80)));
        }
        const I si = _mm512_permutex2var_epi16(a0, s_idx, a1);
        s = i == 0 ? si : _mm512_mask_blend_epi16(static_cast<__mmask32>(0x1111u << i), s, si);
      }
      u.dw = _mm512_cvtph_ps(_mm512_castsi512_si256(s));
    }
    return u;
  }
#endif

  // Group g of a row of cols weights; blocks past the row's end read as zero (never touched).
  static Unp unpack(const std::byte* row, std::int64_t cols, std::int64_t g) noexcept {
    const std::int64_t b0 = g * G;
    const int m = static_cast<int>(std::min<std::int64_t>(G, cols / 32 - b0));
    const std::byte* base = row + b0 * kBlockBytes;
#if defined(__AVX512BW__)
    if constexpr (W == 4)
      if (m == G) return unpack_full512(base);
#endif
    Unp u;
    const I nib = Q::bytes(0x0F);
    for (int i = 0; i < 4; ++i) {
      const int count = std::clamp(m - i * W, 0, W);
      const std::byte* p = base + i * W * kBlockBytes + 2;
      if constexpr (D == DType::Q4_0) {
        const I q = Q::load_lanes(p, kBlockBytes, count);
        u.lo[i] = Q::and_(q, nib);
        u.hi[i] = Q::and_(Q::template srl16<4>(q), nib);
      } else {
        u.lo[i] = Q::load_lanes(p, kBlockBytes, count);
        u.hi[i] = Q::load_lanes(p + 16, kBlockBytes, count);
        if constexpr (kOffset128) {
          u.lo[i] = Q::xor_(u.lo[i], Q::bytes(static_cast<char>(0x80)));
          u.hi[i] = Q::xor_(u.hi[i], Q::bytes(static_cast<char>(0x80)));
        }
      }
    }
    u.dw = m == G ? Q::gather_f16(base, scale_offsets()) : Q::gather_f16(base, scale_offsets(), Q::lanes_below(perm(), m));
    return u;
  }

  static F step(const Unp& u, const Act& a, F acc) noexcept {
    I p[4];
    for (int i = 0; i < 4; ++i) {
      if constexpr (D == DType::Q8_0 && !kOffset128) {
        p[i] = Q::add32(Q::dot4z_signed(u.lo[i], a.lo[i]), Q::dot4z_signed(u.hi[i], a.hi[i]));
      } else if constexpr (D == DType::Q4_0) {
        p[i] = Q::dot4z_pair_small(u.lo[i], a.lo[i], u.hi[i], a.hi[i]);
      } else {
        p[i] = Q::add32(Q::dot4z(u.lo[i], a.lo[i]), Q::dot4z(u.hi[i], a.hi[i]));
      }
    }
    I s = reduce4<Q>(p);
    if constexpr (kCorrect) s = Q::sub32(s, a.corr);
    return Q::fmadd(Q::cvt(s), Q::mul(u.dw, a.da), acc);
  }
};

// ---- Q4_K: one super-block of 256 per group -------------------------------------------------------
template <class Q_>
struct FmtQ4K {
  using Q = Q_;
  using I = typename Q::I;
  using F = typename Q::F;
  static constexpr int W = Q::W;
  static constexpr int NU = 16 / W;  // byte vectors per super-block
  static constexpr int NS = 4 / W;   // reduce4 results per super-block
  static constexpr std::int64_t kGroupBytes = 144;

  struct Unp {
    I q[NU];
    I sc[NS];     // 6-bit scales as int32 (upper 16 bits zero), in reduce4's order
    __m256i mpat; // the 6-bit mins as int16, each twice (one per 16-element bsum)
    float d, dmin;
  };
  struct Act {
    I a[NU];
    __m256i bsums;
    float d;
  };

  static std::int64_t groups(std::int64_t cols) noexcept { return cols / 256; }

  static Act load_act(const std::byte* xq, std::int64_t, std::int64_t g) noexcept {
    const std::byte* b = xq + 292 * g;
    Act a;
    std::memcpy(&a.d, b, 4);
    const std::byte* qs = b + 4;
    if constexpr (W == 4) {
      // Pair the sub-blocks the way the weight nibbles come: [sb0, sb2], [sb1, sb3], [sb4, sb6], [sb5, sb7].
      const I v0 = Q::load(qs), v1 = Q::load(qs + 64), v2 = Q::load(qs + 128), v3 = Q::load(qs + 192);
      a.a[0] = Q::halves_lo(v0, v1);
      a.a[1] = Q::halves_hi(v0, v1);
      a.a[2] = Q::halves_lo(v2, v3);
      a.a[3] = Q::halves_hi(v2, v3);
    } else {
      for (int k = 0; k < NU; ++k) a.a[k] = Q::load(qs + 32 * k);
    }
    a.bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 256));
    return a;
  }

  static Unp unpack(const std::byte* row, std::int64_t, std::int64_t g) noexcept {
    const std::byte* p = row + kGroupBytes * g;
    Unp u;
    std::uint16_t h[2];
    std::memcpy(h, p, 4);
    u.d = _cvtsh_ss(h[0]);
    u.dmin = _cvtsh_ss(h[1]);
    // The 12 bytes of 6-bit scales and mins, unpacked 4 at a time in 32-bit words.
    std::uint32_t w[3];
    std::memcpy(w, p + 4, 12);
    const std::uint32_t sc_lo = w[0] & 0x3f3f3f3fu, m_lo = w[1] & 0x3f3f3f3fu;
    const std::uint32_t sc_hi = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 2) & 0x30303030u);
    const std::uint32_t m_hi = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 2) & 0x30303030u);
    const __m128i sc8 = _mm_cvtsi64_si128(static_cast<long long>(sc_lo | (static_cast<std::uint64_t>(sc_hi) << 32)));
    const __m128i m8 = _mm_cvtsi64_si128(static_cast<long long>(m_lo | (static_cast<std::uint64_t>(m_hi) << 32)));
    u.mpat = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(m8, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)));
    const I nib = Q::bytes(0x0F);
    const std::byte* qs = p + 16;
    if constexpr (W == 4) {
      const I z0 = Q::load(qs), z1 = Q::load(qs + 64);
      u.q[0] = Q::and_(z0, nib);                      // sub-blocks 0 | 2
      u.q[1] = Q::and_(Q::template srl16<4>(z0), nib);  // 1 | 3
      u.q[2] = Q::and_(z1, nib);                      // 4 | 6
      u.q[3] = Q::and_(Q::template srl16<4>(z1), nib);  // 5 | 7
      // reduce4 element 4g + i comes from q[i]'s lane g: sub-block 4(i/2) + 2(g/2) + i%2.
      u.sc[0] = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 1, 4, 5, 0, 1, 4, 5, 2, 3, 6, 7, 2, 3, 6, 7)));
    } else {
      for (int k = 0; k < 4; ++k) {
        const I y = Q::load(qs + 32 * k);
        u.q[2 * k] = Q::and_(y, nib);
        u.q[2 * k + 1] = Q::and_(Q::template srl16<4>(y), nib);
      }
      // Element 4g + i of reduce4 over q[4s ..] is sub-block 4s + i.
      u.sc[0] = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0)));
      u.sc[1] = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(sc8, _mm_setr_epi8(4, 5, 6, 7, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0)));
    }
    return u;
  }

  static F step(const Unp& u, const Act& a, F acc) noexcept {
    I p[NU];
    for (int k = 0; k < NU; ++k) p[k] = Q::dot4z(u.q[k], a.a[k]);
    // Each reduce4 element sums 16 products of at most 15·127: it fits int16, so vpmaddwd with the
    // zero-extended scale multiplies it exactly.
    I dot = Q::madd16(reduce4<Q>(p), u.sc[0]);
    if constexpr (NS == 2) dot = Q::add32(dot, Q::madd16(reduce4<Q>(p + 4), u.sc[1]));
    const __m256i mins = _mm256_madd_epi16(a.bsums, u.mpat);
    acc = Q::fmadd(Q::cvt(dot), Q::set1(u.d * a.d), acc);
    return Q::fmadd(Q::cvt(Q::widen256(mins)), Q::set1(-(u.dmin * a.d)), acc);
  }
};

// ---- Q6_K: one super-block of 256 per group -------------------------------------------------------
template <class Q_>
struct FmtQ6K {
  using Q = Q_;
  using I = typename Q::I;
  using F = typename Q::F;
  static constexpr int W = Q::W;
  static constexpr int NU = 16 / W;
  static constexpr int NS = 4 / W;
  static constexpr std::int64_t kGroupBytes = 210;

  struct Unp {
    I q[NU];   // 6-bit unsigned values, elements in order
    I sc[NS];  // int8 scales as int32, in reduce4's order
    float d;
  };
  struct Act {
    I a[NU];
    I bsum32[NS];  // 32 · the 16-element sums, in reduce4's order
    float d;
  };

  static std::int64_t groups(std::int64_t cols) noexcept { return cols / 256; }

  static Act load_act(const std::byte* xq, std::int64_t, std::int64_t g) noexcept {
    const std::byte* b = xq + 292 * g;
    Act a;
    std::memcpy(&a.d, b, 4);
    const std::byte* qs = b + 4;
    for (int k = 0; k < NU; ++k) a.a[k] = Q::load(qs + 16 * W * k);
    if constexpr (W == 4) {
      const I bs = _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 256)));
      const I idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
      a.bsum32[0] = Q::template sll32<5>(Q::perm32(bs, idx));
    } else {
      const I idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
      for (int s = 0; s < 2; ++s) {
        const I bs = _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 256 + 16 * s)));
        a.bsum32[s] = Q::template sll32<5>(Q::perm32(bs, idx));
      }
    }
    return a;
  }

  static Unp unpack(const std::byte* row, std::int64_t, std::int64_t g) noexcept {
    const std::byte* p = row + kGroupBytes * g;
    const std::byte* ql = p;
    const std::byte* qh = p + 128;
    Unp u;
    std::uint16_t dh;
    std::memcpy(&dh, p + 208, 2);
    u.d = _cvtsh_ss(dh);
    const I lo4 = Q::bytes(0x0F), hi2 = Q::bytes(0x30);
    const __m128i sc16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192));
    if constexpr (W == 4) {
      for (int h = 0; h < 2; ++h) {
        const I l = Q::load(ql + 64 * h);
        const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh + 32 * h));
        // Elements 0-31 take qh bits 0-1, 32-63 bits 2-3, 64-95 bits 4-5, 96-127 bits 6-7: move
        // each pair to bits 4-5 of its byte (16-bit shifts keep them inside the byte once masked).
        const I ha = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_slli_epi16(hb, 4)), _mm256_slli_epi16(hb, 2), 1);
        const I hc = _mm512_inserti64x4(_mm512_castsi256_si512(hb), _mm256_srli_epi16(hb, 2), 1);
        u.q[2 * h] = Q::or_(Q::and_(l, lo4), Q::and_(ha, hi2));
        u.q[2 * h + 1] = Q::or_(Q::and_(Q::template srl16<4>(l), lo4), Q::and_(hc, hi2));
      }
      // reduce4 element 4g + i is sub-block 4i + g.
      u.sc[0] = _mm512_cvtepi8_epi32(
          _mm_shuffle_epi8(sc16, _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)));
    } else {
      for (int h = 0; h < 2; ++h) {
        const I l0 = Q::load(ql + 64 * h), l1 = Q::load(ql + 64 * h + 32), hb = Q::load(qh + 32 * h);
        u.q[4 * h] = Q::or_(Q::and_(l0, lo4), Q::and_(Q::template sll16<4>(hb), hi2));
        u.q[4 * h + 1] = Q::or_(Q::and_(l1, lo4), Q::and_(Q::template sll16<2>(hb), hi2));
        u.q[4 * h + 2] = Q::or_(Q::and_(Q::template srl16<4>(l0), lo4), Q::and_(hb, hi2));
        u.q[4 * h + 3] = Q::or_(Q::and_(Q::template srl16<4>(l1), lo4), Q::and_(Q::template srl16<2>(hb), hi2));
      }
      // reduce4 element 4g + i over q[4s ..] is sub-block 8s + 2i + g.
      const __m128i t =
          _mm_shuffle_epi8(sc16, _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15));
      u.sc[0] = _mm256_cvtepi8_epi32(t);
      u.sc[1] = _mm256_cvtepi8_epi32(_mm_srli_si128(t, 8));
    }
    return u;
  }

  static F step(const Unp& u, const Act& a, F acc) noexcept {
    I p[NU];
    for (int k = 0; k < NU; ++k) p[k] = Q::dot4z(u.q[k], a.a[k]);
    // (Σq·a - 32·Σa) · scale per sub-block: |value| < 2^25, exact in int32.
    I dot = Q::mullo32(Q::sub32(reduce4<Q>(p), a.bsum32[0]), u.sc[0]);
    if constexpr (NS == 2) dot = Q::add32(dot, Q::mullo32(Q::sub32(reduce4<Q>(p + 4), a.bsum32[1]), u.sc[1]));
    return Q::fmadd(Q::cvt(dot), Q::set1(u.d * a.d), acc);
  }
};

// ---- row loops ----------------------------------------------------------------------------------

// The fields of a quantized weight matrix, read once per call.
struct QMat {
  const std::byte* data;
  std::size_t row_bytes;
  std::int64_t cols;
  const std::byte* row(std::int64_t r) const noexcept { return data + static_cast<std::size_t>(r) * row_bytes; }
};

inline QMat qmat_of(const TensorView& w, std::int64_t block, std::int64_t block_bytes) noexcept {
  return QMat{static_cast<const std::byte*>(w.data), static_cast<std::size_t>(w.cols / block * block_bytes), w.cols};
}

// y[0 .. R) = the dot products of rows r0 .. r0 + R with the activations; the R rows share each
// group's activation load.
template <class Fm, int R>
inline void qdot_rows(const QMat& w, const std::byte* xq, float* y, std::int64_t r0) noexcept {
  using Q = typename Fm::Q;
  typename Q::F acc[R];
  for (int r = 0; r < R; ++r) acc[r] = Q::fzero();
  const std::int64_t ng = Fm::groups(w.cols);
  for (std::int64_t g = 0; g < ng; ++g) {
    const typename Fm::Act a = Fm::load_act(xq, w.cols, g);
    for (int r = 0; r < R; ++r) {
      const std::byte* row = w.row(r0 + r);
      if constexpr (kQPrefetchRows > 0) {
        prefetch_lines<kWeightHint>(row + kQPrefetchRows * static_cast<std::int64_t>(w.row_bytes) + g * Fm::kGroupBytes,
                                    Fm::kGroupBytes);
        prefetch_lines<_MM_HINT_T0>(row + R * static_cast<std::int64_t>(w.row_bytes) + g * Fm::kGroupBytes,
                                    Fm::kGroupBytes);
      }
      acc[r] = Fm::step(Fm::unpack(row, w.cols, g), a, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = Q::sum(acc[r]);
}

#ifndef WEFT_QMATVEC_ROWS
#define WEFT_QMATVEC_ROWS 4
#endif
constexpr int kQRows = WEFT_QMATVEC_ROWS;

// y[r - begin] for r in [begin, end).
template <class Fm>
void qmatvec_rows(const QMat& w, const std::byte* xq, float* y, std::int64_t begin, std::int64_t end) noexcept {
  std::int64_t r = begin;
  for (; r + kQRows <= end; r += kQRows) qdot_rows<Fm, kQRows>(w, xq, y + (r - begin), r);
  for (; r < end; ++r) qdot_rows<Fm, 1>(w, xq, y + (r - begin), r);
}

// y[t*ldy + r - begin] for n vectors (stride bytes apart) and r in [begin, end): a tile of rows is
// unpacked once per group and used for every vector of a token block.
template <class Fm>
void qmatmul_rows(const QMat& w, const std::byte* xq, std::size_t stride, std::int64_t n, float* y, std::int64_t ldy,
                  std::int64_t begin, std::int64_t end) noexcept {
  if (n == 1) return qmatvec_rows<Fm>(w, xq, y, begin, end);
  using Q = typename Fm::Q;
  using F = typename Q::F;
  constexpr int R = 4;
  constexpr std::int64_t kTokens = 16;
  F acc[kTokens][R];
  typename Fm::Unp u[R];
  const std::int64_t ng = Fm::groups(w.cols);
  for (std::int64_t t0 = 0; t0 < n; t0 += kTokens) {
    const std::int64_t nt = std::min(kTokens, n - t0);
    for (std::int64_t r0 = begin; r0 < end; r0 += R) {
      const int rr = static_cast<int>(std::min<std::int64_t>(R, end - r0));
      for (std::int64_t t = 0; t < nt; ++t)
        for (int r = 0; r < R; ++r) acc[t][r] = Q::fzero();
      for (std::int64_t g = 0; g < ng; ++g) {
        for (int r = 0; r < rr; ++r) u[r] = Fm::unpack(w.row(r0 + r), w.cols, g);
        for (std::int64_t t = 0; t < nt; ++t) {
          const typename Fm::Act a = Fm::load_act(xq + static_cast<std::size_t>(t0 + t) * stride, w.cols, g);
          for (int r = 0; r < rr; ++r) acc[t][r] = Fm::step(u[r], a, acc[t][r]);
        }
      }
      for (std::int64_t t = 0; t < nt; ++t)
        for (int r = 0; r < rr; ++r) y[(t0 + t) * ldy + (r0 - begin) + r] = Q::sum(acc[t][r]);
    }
  }
}

// ---- the interleaved layout (core/quant.hpp): one row per 32-bit lane ---------------------------
// A tile holds one block of 16 rows with every 32-bit word transposed, so one 64-byte load gives
// the same 4 quants of 16 rows and vpdpbusd against the 4 matching activation bytes (broadcast)
// adds them into each row's own lane: no unpacking shuffles, no horizontal reduction, and the
// block scales of 16 rows come in one 32-byte load. Per 16 rows x 32 weights that is 8 vpdpbusd
// plus (Q4_0) 8 nibble masks, against ~57 vector uops per 4 rows x 128 in the row layout. Each
// (row, vector) result is computed by the same sequence of operations whatever the number of
// vectors NT handled together, so matvec and matmul stay bit-identical.
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define WEFT_INTERLEAVED_KERNELS 1
namespace il {

inline __m512i bcast4(const void* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m512 f16x16(const std::byte* p) noexcept {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512i load(const std::byte* p) noexcept { return _mm512_loadu_si512(p); }

// A group of 16 rows is one sequential stream, and one stream alone does not reach this machine's
// read bandwidth (the hardware prefetcher runs too short a distance ahead of it), so every load
// requests the line kPrefetch bytes further on in its stream; one at a time, since a whole
// 2304-byte Q4_K tile's lines requested at once fill the core's miss buffers (standalone 2-thread
// Q4_K matvec from DRAM: 21-23 -> 24-26 GB/s). 0 turns it off.
#ifndef WEFT_IL_PREFETCH
#define WEFT_IL_PREFETCH 4096
#endif
constexpr std::int64_t kPrefetch = WEFT_IL_PREFETCH;
// How far past block k's tile to request, for S groups read side by side (a group is `group`
// bytes, the groups are consecutive): kPrefetch, but near a group's end the line is that far into
// the same group of the next S, which is where this stream goes next. The group right after it is
// already being read by its neighbour; without this, S - 1 of the next S groups start cold
// (bench_kernels matvec_q/avx512bf16/Q4_0/5632x2048/dram/il, one thread, 4 alternations:
// 11.6-12.7 -> 12.8-13.1 GB/s; Q8_0's longer groups gain little). The choice is made once per
// tile, so with a distance that is not a whole number of tiles the last tile before a group's end
// still sends its later lines into the neighbour group: at most one tile's lines per group, small
// for the 288- and 544-byte tiles (distances rounded to whole tiles measured the same, paired
// 5632x2048 from DRAM), not for Q4_K's 2304 (IlQ4K::kFar).
template <int S>
inline std::int64_t prefetch_ahead(std::int64_t k, std::int64_t tile_bytes, std::int64_t group,
                                   std::int64_t distance = kPrefetch) noexcept {
  const std::int64_t at = k * tile_bytes + distance;
  return at < group ? distance : distance + (S - 1) * group;
}
// The lines [p, p + Bytes), into L2 (kWeightHint).
template <std::int64_t Bytes>
inline void prefetch_tile(const std::byte* p) noexcept {
  if constexpr (kPrefetch > 0) prefetch_lines<kWeightHint>(p, Bytes);
}
// Every line is also requested into L1 (prefetcht0) kPrefetchNear bytes ahead, by then mostly in
// L2 already. Paired A/B in the model (alternating decode steps in one process, 1.1B shape,
// 200-240 steps), with the near request against without: two threads Q8_0 0.949 and 0.961, Q4_0
// 0.949 and 0.954, Q4_K_M (its Q4_K part) 0.960 and 0.963; one thread Q4_0 0.938. Against 1 KiB,
// a near distance of 512 B was 1.007-1.015 and 2 KiB 0.995-0.997 (within the noise).
#ifndef WEFT_IL_PREFETCH_NEAR
#define WEFT_IL_PREFETCH_NEAR 1024
#endif
constexpr std::int64_t kPrefetchNear = WEFT_IL_PREFETCH_NEAR;
template <std::int64_t Bytes>
inline void prefetch_tile_near(const std::byte* p) noexcept {
  if constexpr (kPrefetchNear > 0) prefetch_lines<_MM_HINT_T0>(p, Bytes);
}

// Q8_0 and Q4_0: tiles of 16 x 32 weights; activations in the Act32 layout (act_bytes).
template <DType D>
struct Il32 {
  static constexpr std::int64_t kTileBytes = D == DType::Q8_0 ? 544 : 288;
  // S groups of 16 rows (tiles[g]) by NT vectors (xq[t]) into acc[g * NT + t].
  template <int NT, int S>
  static void run(const std::byte* const* tiles, std::int64_t cols, const std::byte* const* xq, __m512* acc) noexcept {
    const std::int64_t nb = cols / 32, nbp = act_padded_blocks(cols);
    const std::int8_t* qs[NT];
    const float* da[NT];
    const std::int32_t* sum[NT];
    for (int t = 0; t < NT; ++t) {
      qs[t] = reinterpret_cast<const std::int8_t*>(xq[t]);
      da[t] = reinterpret_cast<const float*>(xq[t] + 32 * nbp);
      sum[t] = reinterpret_cast<const std::int32_t*>(xq[t] + 36 * nbp);
    }
    for (std::int64_t k = 0; k < nb; ++k) {
      const std::int64_t ahead = prefetch_ahead<S>(k, kTileBytes, nb * kTileBytes);
      const std::int64_t near = prefetch_ahead<S>(k, kTileBytes, nb * kTileBytes, kPrefetchNear);
      for (int g = 0; g < S; ++g) {
        const std::byte* tile = tiles[g] + k * kTileBytes;
        prefetch_tile_near<kTileBytes>(tile + near);
        prefetch_tile<64>(tile + ahead);  // the scales; each quant line is requested next to its load
        const __m512 dw = f16x16(tile);
        if constexpr (D == DType::Q8_0) {
          // Quants stored as w + 128: Σ(w + 128)·a - 128·Σa.
          __m512i w[8];
          for (int c = 0; c < 8; ++c) {
            prefetch_tile<1>(tile + ahead + 32 + 64 * c);
            w[c] = load(tile + 32 + 64 * c);
          }
          for (int t = 0; t < NT; ++t) {
            const std::int8_t* a = qs[t] + 32 * k;
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            for (int c = 0; c < 8; c += 2) {
              s0 = _mm512_dpbusd_epi32(s0, w[c], bcast4(a + 4 * c));
              s1 = _mm512_dpbusd_epi32(s1, w[c + 1], bcast4(a + 4 * c + 4));
            }
            const __m512i dot = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(sum[t][k] * 128));
            __m512& out = acc[g * NT + t];
            out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(da[t][k])), out);
          }
        } else {
          // Word c holds quants 4c..4c+3 in its low nibbles and 16+4c.. in its high ones; the high
          // nibbles are used in place (times 16) and the sum shifted back, exactly.
          const __m512i nib = _mm512_set1_epi8(0x0F);
          __m512i lo[4], hi[4];
          for (int c = 0; c < 4; ++c) {
            prefetch_tile<1>(tile + ahead + 32 + 64 * c);
            const __m512i v = load(tile + 32 + 64 * c);
            lo[c] = _mm512_and_si512(v, nib);
            hi[c] = _mm512_andnot_si512(nib, v);
          }
          for (int t = 0; t < NT; ++t) {
            const std::int8_t* a = qs[t] + 32 * k;
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            for (int c = 0; c < 4; ++c) {
              s0 = _mm512_dpbusd_epi32(s0, lo[c], bcast4(a + 4 * c));
              s1 = _mm512_dpbusd_epi32(s1, hi[c], bcast4(a + 16 + 4 * c));
            }
            const __m512i dot =
                _mm512_sub_epi32(_mm512_add_epi32(s0, _mm512_srai_epi32(s1, 4)), _mm512_set1_epi32(sum[t][k] * 8));
            __m512& out = acc[g * NT + t];
            out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(da[t][k])), out);
          }
        }
      }
    }
  }
};

// Q4_K: tiles of 16 x 256 (d[16], dmin[16], the 3 words of packed 6-bit scales and mins, then 32
// words of quants: word 8p + i has elements 64p + 4i.. of sub-block 2p in its low nibbles and
// 64p + 32 + 4i.. of sub-block 2p + 1 in its high ones). Activations: BlockQ8_K per 256.
struct IlQ4K {
  static constexpr std::int64_t kTileBytes = 2304;
  // Prefetch distances, whole tiles (see prefetch_ahead): 4608 bytes into L2, 2304 into L1. The
  // shared 4096 and 1024 sent the last 1792 and 1024 bytes of every group's requests into the
  // neighbour group, already read, and left as much of the next group's start unrequested. Paired
  // runs (variants alternating in one process): 5632x2048 matvec from DRAM, new/old time 0.948 and
  // 0.918 on one thread, 0.921 and 0.927 on two; Q4_K_M decode step (1.1B shape) 0.953 and 0.955
  // on two threads, 0.946 on one. Three tiles far measured the same as two (0.998, 1.006).
  static constexpr std::int64_t kFar = 2 * kTileBytes, kNear = kTileBytes;
  // Byte j of every 32-bit lane, zero-extended to the lane (vpshufb control).
  static __m512i byte_ctrl(int j) noexcept {
    const int z = -1;
    return _mm512_set_epi8(z, z, z, 12 + j, z, z, z, 8 + j, z, z, z, 4 + j, z, z, z, j, z, z, z, 12 + j, z, z, z, 8 + j, z,
                           z, z, 4 + j, z, z, z, j, z, z, z, 12 + j, z, z, z, 8 + j, z, z, z, 4 + j, z, z, z, j, z, z, z,
                           12 + j, z, z, z, 8 + j, z, z, z, 4 + j, z, z, z, j);
  }
  // Byte j of every lane as both 16-bit halves of the lane.
  static __m512i byte2_ctrl(int j) noexcept {
    const int z = -1;
    return _mm512_set_epi8(z, 12 + j, z, 12 + j, z, 8 + j, z, 8 + j, z, 4 + j, z, 4 + j, z, j, z, j, z, 12 + j, z, 12 + j, z,
                           8 + j, z, 8 + j, z, 4 + j, z, 4 + j, z, j, z, j, z, 12 + j, z, 12 + j, z, 8 + j, z, 8 + j, z,
                           4 + j, z, 4 + j, z, j, z, j, z, 12 + j, z, 12 + j, z, 8 + j, z, 8 + j, z, 4 + j, z, 4 + j, z, j,
                           z, j);
  }
  template <int NT, int S>
  static void run(const std::byte* const* tiles, std::int64_t cols, const std::byte* const* xq, __m512* acc) noexcept {
    const std::int64_t nb = cols / 256;
    const __m512i nib = _mm512_set1_epi8(0x0F), m6 = _mm512_set1_epi8(0x3F), m4 = nib,
                  top2 = _mm512_set1_epi8(0x30);
    // The shuffle controls, built once here from constant arguments: built inside the loops
    // (where the byte index is a loop variable) each one took a chain of byte inserts
    // (bench_kernels matvec_q/avx512bf16/Q4_K/512x2048/hot/il: 25.7 GB/s then, 32.0 now).
    const __m512i ctrl[4] = {byte_ctrl(0), byte_ctrl(1), byte_ctrl(2), byte_ctrl(3)};
    const __m512i ctrl2[4] = {byte2_ctrl(0), byte2_ctrl(1), byte2_ctrl(2), byte2_ctrl(3)};
    for (std::int64_t k = 0; k < nb; ++k) {
      const std::int64_t ahead = prefetch_ahead<S>(k, kTileBytes, nb * kTileBytes, kFar);
      const std::int64_t near = prefetch_ahead<S>(k, kTileBytes, nb * kTileBytes, kNear);
      for (int g = 0; g < S; ++g) {
        const std::byte* tile = tiles[g] + k * kTileBytes;
        // The tile's 36 lines are requested one by one next to the loads (all at once they fill the
        // core's miss buffers and stall it): its 4 header lines here, each quant line in the loop.
        prefetch_tile<256>(tile + ahead);
        prefetch_tile_near<256>(tile + near);
        const __m512 d = f16x16(tile), dmin = f16x16(tile + 32);
        const __m512i w0 = load(tile + 64), w1 = load(tile + 128), w2 = load(tile + 192);
        // Scales (sc) and mins (m) of sub-blocks 0-3 and 4-7, one byte each per lane (q4_k_scale_min).
        const __m512i sc[2] = {_mm512_and_si512(w0, m6),
                               _mm512_or_si512(_mm512_and_si512(w2, m4), _mm512_and_si512(_mm512_srli_epi32(w0, 2), top2))};
        const __m512i mn[2] = {_mm512_and_si512(w1, m6), _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 4), m4),
                                                                         _mm512_and_si512(_mm512_srli_epi32(w1, 2), top2))};
        const BlockQ8_K* a[NT];
        for (int t = 0; t < NT; ++t) a[t] = reinterpret_cast<const BlockQ8_K*>(xq[t]) + k;
        // Σ sc·dot over the low-nibble sub-blocks, and 16x that over the high-nibble ones; Σ m·bsum.
        __m512i lo_sum[NT], hi_sum[NT], mins[NT];
        for (int t = 0; t < NT; ++t) lo_sum[t] = hi_sum[t] = mins[t] = _mm512_setzero_si512();
        for (int p = 0; p < 4; ++p) {
          const __m512i sc_a = _mm512_shuffle_epi8(sc[p / 2], ctrl[(2 * p) % 4]);
          const __m512i sc_b = _mm512_shuffle_epi8(sc[p / 2], ctrl[(2 * p + 1) % 4]);
          __m512i s0[NT], s1[NT];
          for (int t = 0; t < NT; ++t) s0[t] = s1[t] = _mm512_setzero_si512();
          for (int i = 0; i < 8; ++i) {
            prefetch_tile<1>(tile + ahead + 256 + 64 * (8 * p + i));
            prefetch_tile_near<1>(tile + near + 256 + 64 * (8 * p + i));
            const __m512i v = load(tile + 256 + 64 * (8 * p + i));
            const __m512i lo = _mm512_and_si512(v, nib), hi = _mm512_andnot_si512(nib, v);
            for (int t = 0; t < NT; ++t) {
              s0[t] = _mm512_dpbusd_epi32(s0[t], lo, bcast4(a[t]->qs + 64 * p + 4 * i));
              s1[t] = _mm512_dpbusd_epi32(s1[t], hi, bcast4(a[t]->qs + 64 * p + 32 + 4 * i));
            }
          }
          for (int t = 0; t < NT; ++t) {
            lo_sum[t] = _mm512_add_epi32(lo_sum[t], _mm512_mullo_epi32(s0[t], sc_a));
            hi_sum[t] = _mm512_add_epi32(hi_sum[t], _mm512_mullo_epi32(s1[t], sc_b));
          }
        }
        for (int j = 0; j < 8; ++j) {
          const __m512i mj = _mm512_shuffle_epi8(mn[j / 4], ctrl2[j % 4]);
          for (int t = 0; t < NT; ++t) mins[t] = _mm512_dpwssd_epi32(mins[t], mj, bcast4(a[t]->bsums + 2 * j));
        }
        for (int t = 0; t < NT; ++t) {
          const __m512i dot = _mm512_add_epi32(lo_sum[t], _mm512_srai_epi32(hi_sum[t], 4));
          const __m512 ad = _mm512_set1_ps(a[t]->d);
          __m512& out = acc[g * NT + t];
          out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, ad), out);
          out = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins[t]), _mm512_mul_ps(dmin, ad), out);
        }
      }
    }
  }
};

// Rows [begin, end) of an interleaved w for n vectors (stride bytes apart): y[t*ldy + r - begin].
// Whole groups of 16 rows go through Il's tiles: for one vector (decode) kIlStreams groups side by
// side, so that the core reads that many streams at once (one stream alone leaves DRAM bandwidth
// unused, see core/membw.cpp); for more, one group by NT = 4 vectors at a time, then one by one.
// A group only partly inside the range is computed whole and the rows inside copied; the rows
// after the last whole group are plain and go to the row-layout kernel Fm. Every (row, vector) is
// computed by the same operations in every case.
#ifndef WEFT_IL_STREAMS
#define WEFT_IL_STREAMS 4
#endif
constexpr int kIlStreams = WEFT_IL_STREAMS;

template <class Il, class Fm>
void matmul_rows(const TensorView& w, const std::byte* xq, std::size_t stride, std::int64_t n, float* y,
                 std::int64_t ldy, std::int64_t begin, std::int64_t end) noexcept {
  constexpr std::int64_t G = kInterleaveRows;
  const std::int64_t full = w.rows / G * G;
  const std::size_t row_bytes = w.row_bytes();
  const auto* data = static_cast<const std::byte*>(w.data);
  const auto tiles_at = [&](std::int64_t r0) { return data + static_cast<std::size_t>(r0) * row_bytes; };
  // Group r0's result for vector t into y.
  const auto store = [&](std::int64_t r0, std::int64_t t, __m512 v) {
    const std::int64_t lo = std::max(begin, r0), hi = std::min(end, r0 + G);
    float* out = y + t * ldy + (lo - begin);
    if (lo == r0 && hi == r0 + G) {
      _mm512_storeu_ps(out, v);
    } else {
      alignas(64) float tmp[G];
      _mm512_store_ps(tmp, v);
      std::copy(tmp + (lo - r0), tmp + (hi - r0), out);
    }
  };
  const std::int64_t stop = std::min(end, full);
  std::int64_t r0 = begin / G * G;
  if (n == 1) {
    const std::byte* x[1] = {xq};
    for (; r0 + (kIlStreams - 1) * G < stop; r0 += kIlStreams * G) {
      const std::byte* tiles[kIlStreams];
      __m512 acc[kIlStreams];
      for (int g = 0; g < kIlStreams; ++g) tiles[g] = tiles_at(r0 + g * G), acc[g] = _mm512_setzero_ps();
      Il::template run<1, kIlStreams>(tiles, w.cols, x, acc);
      for (int g = 0; g < kIlStreams; ++g) store(r0 + g * G, 0, acc[g]);
    }
  }
  for (; r0 < stop; r0 += G) {
    const std::byte* tiles[1] = {tiles_at(r0)};
    std::int64_t t = 0;
    for (; t + 4 <= n; t += 4) {
      const std::byte* x[4];
      __m512 acc[4];
      for (int i = 0; i < 4; ++i) x[i] = xq + static_cast<std::size_t>(t + i) * stride, acc[i] = _mm512_setzero_ps();
      Il::template run<4, 1>(tiles, w.cols, x, acc);
      for (int i = 0; i < 4; ++i) store(r0, t + i, acc[i]);
    }
    for (; t < n; ++t) {
      const std::byte* x[1] = {xq + static_cast<std::size_t>(t) * stride};
      __m512 acc[1] = {_mm512_setzero_ps()};
      Il::template run<1, 1>(tiles, w.cols, x, acc);
      store(r0, t, acc[0]);
    }
  }
  if (end > full) {
    const std::int64_t b = std::max(begin, full);
    const QMat tail{data + static_cast<std::size_t>(full) * row_bytes, row_bytes, w.cols};
    qmatmul_rows<Fm>(tail, xq, stride, n, y + (b - begin), ldy, b - full, end - full);
  }
}

}  // namespace il
#endif

// ---- entry points with the signatures of the kernel table ----------------------------------------

template <class Q>
void qmatmul_rel(const TensorView& w, const std::byte* xq, std::int64_t n, float* y, std::int64_t ldy,
                 std::int64_t begin, std::int64_t end) noexcept;

// Quantized weights: y[r - begin] for r in [begin, end) (y points at row begin's output).
template <class Q>
void qmatvec_rel(const TensorView& w, const std::byte* xq, float* y, std::int64_t begin, std::int64_t end) noexcept {
  if (w.interleave != 0) return qmatmul_rel<Q>(w, xq, 1, y, 0, begin, end);
  switch (w.dtype) {
    case DType::Q8_0: return qmatvec_rows<Fmt32<Q, DType::Q8_0>>(qmat_of(w, 32, 34), xq, y, begin, end);
    case DType::Q4_0: return qmatvec_rows<Fmt32<Q, DType::Q4_0>>(qmat_of(w, 32, 18), xq, y, begin, end);
    case DType::Q4_K: return qmatvec_rows<FmtQ4K<Q>>(qmat_of(w, 256, 144), xq, y, begin, end);
    case DType::Q6_K: return qmatvec_rows<FmtQ6K<Q>>(qmat_of(w, 256, 210), xq, y, begin, end);
    case DType::F32:
    case DType::F16:
    case DType::BF16: return;  // handled by the callers
  }
}

template <class Q>
void qmatmul_rel(const TensorView& w, const std::byte* xq, std::int64_t n, float* y, std::int64_t ldy,
                 std::int64_t begin, std::int64_t end) noexcept {
  const std::size_t stride = act_bytes(w.dtype, w.cols);
#if defined(WEFT_INTERLEAVED_KERNELS)
  if (w.interleave != 0) {
    switch (w.dtype) {
      case DType::Q8_0:
        return il::matmul_rows<il::Il32<DType::Q8_0>, Fmt32<Q, DType::Q8_0>>(w, xq, stride, n, y, ldy, begin, end);
      case DType::Q4_0:
        return il::matmul_rows<il::Il32<DType::Q4_0>, Fmt32<Q, DType::Q4_0>>(w, xq, stride, n, y, ldy, begin, end);
      case DType::Q4_K: return il::matmul_rows<il::IlQ4K, FmtQ4K<Q>>(w, xq, stride, n, y, ldy, begin, end);
      default: break;  // not read interleaved by this table (interleaved_mask; the callers check)
    }
  }
#endif
  switch (w.dtype) {
    case DType::Q8_0: return qmatmul_rows<Fmt32<Q, DType::Q8_0>>(qmat_of(w, 32, 34), xq, stride, n, y, ldy, begin, end);
    case DType::Q4_0: return qmatmul_rows<Fmt32<Q, DType::Q4_0>>(qmat_of(w, 32, 18), xq, stride, n, y, ldy, begin, end);
    case DType::Q4_K: return qmatmul_rows<FmtQ4K<Q>>(qmat_of(w, 256, 144), xq, stride, n, y, ldy, begin, end);
    case DType::Q6_K: return qmatmul_rows<FmtQ6K<Q>>(qmat_of(w, 256, 210), xq, stride, n, y, ldy, begin, end);
    case DType::F32:
    case DType::F16:
    case DType::BF16: return;  // handled by the callers
  }
}

// The activation quantizer on 512-bit vectors: per element the operations of ref::quantize_act
// (max |x|, d = amax / 127, q = x · (1/d) converted in the default round-to-nearest-even mode, as
// lrintf does, clamped to ±127), so the same bytes, without a libm call per element; it ran on
// the calling thread between parallel regions while the other threads waited. Vectors with a
// non-finite value, or a scale whose inverse overflows, are redone by the reference, whose
// integer conversions differ from the vector ones there.
template <class Q>
void quantize_act(DType wtype, const float* x, std::int64_t n, void* xq_) noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__)
  if constexpr (Q::W == 4) {
    auto* p = static_cast<std::byte*>(xq_);
    bool ok = true;
    const auto amax = [&](const float* v, int count) {
      __m512 m = _mm512_setzero_ps();
      __mmask16 nan = 0;
      for (int i = 0; i < count; i += 16) {
        const __m512 y = _mm512_loadu_ps(v + i);
        m = _mm512_max_ps(m, _mm512_abs_ps(y));
        nan = static_cast<__mmask16>(nan | _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q));
      }
      const float a = _mm512_reduce_max_ps(m);
      if (nan != 0 || !std::isfinite(a)) ok = false;
      return a;
    };
    const auto inverse = [&](float d) {
      const float id = d > 0.0f ? 1.0f / d : 0.0f;
      if (!std::isfinite(id)) ok = false;
      return _mm512_set1_ps(id);
    };
    const auto q16 = [](const float* v, __m512 id, std::int8_t* q) {
      __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(v), id));
      r = _mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(r));
      return r;
    };
    if (wtype == DType::Q8_0 || wtype == DType::Q4_0) {
      const std::int64_t nb = n / 32, nbp = act_padded_blocks(n);
      auto* qs = reinterpret_cast<std::int8_t*>(p);
      auto* d = reinterpret_cast<float*>(p + 32 * nbp);
      auto* sum = reinterpret_cast<std::int32_t*>(p + 36 * nbp);
      for (std::int64_t k = 0; k < nb; ++k) {
        const float dk = amax(x + 32 * k, 32) / 127.0f;
        const __m512 id = inverse(dk);
        const __m512i a = q16(x + 32 * k, id, qs + 32 * k), b = q16(x + 32 * k + 16, id, qs + 32 * k + 16);
        sum[k] = _mm512_reduce_add_epi32(_mm512_add_epi32(a, b));
        d[k] = dk;
      }
      std::memset(qs + 32 * nb, 0, static_cast<std::size_t>(32 * (nbp - nb)));
      std::fill(d + nb, d + nbp, 0.0f);
      std::fill(sum + nb, sum + nbp, 0);
    } else if (wtype == DType::Q4_K || wtype == DType::Q6_K) {
      for (std::int64_t k = 0; k < n / 256; ++k) {
        BlockQ8_K b;
        b.d = amax(x + 256 * k, 256) / 127.0f;
        const __m512 id = inverse(b.d);
        for (int sb = 0; sb < 16; ++sb)
          b.bsums[sb] = static_cast<std::int16_t>(_mm512_reduce_add_epi32(q16(x + 256 * k + 16 * sb, id, b.qs + 16 * sb)));
        std::memcpy(p + k * static_cast<std::int64_t>(sizeof b), &b, sizeof b);
      }
    } else {
      std::memcpy(p, x, static_cast<std::size_t>(n) * sizeof(float));
    }
    if (!ok) ref::quantize_act(wtype, x, n, xq_);
    return;
  }
#endif
  ref::quantize_act(wtype, x, n, xq_);
}

// The dtypes whose interleaved layout this table's kernels read (KernelTable::interleaved); any
// other interleaved view goes to the references, which read every layout.
template <class Q>
constexpr std::uint32_t interleaved_mask() noexcept {
#if defined(WEFT_INTERLEAVED_KERNELS)
  if constexpr (Q::W == 4 && Q::kVnni)
    // Not Q6_K: its 6-bit unpack and 16 scales per super-block cost as much interleaved as in
    // rows (bench_kernels, 512x2048 in L2: 20.0 GB/s interleaved vs 20.9 in rows), so it stays.
    return 1u << static_cast<int>(DType::Q8_0) | 1u << static_cast<int>(DType::Q4_0) | 1u << static_cast<int>(DType::Q4_K);
#endif
  return 0;
}
template <class Q>
bool reads_layout(const TensorView& w) noexcept {
  return w.interleave == 0 || ((interleaved_mask<Q>() >> static_cast<int>(w.dtype)) & 1u) != 0;
}

// Plain-dtype weights take the activations as floats (see act_bytes) and run the float kernels.
template <class T, class Q>
void qmatvec(const TensorView& w, const void* xq, float* y, std::int64_t begin, std::int64_t end) noexcept {
  if (w.dtype < DType::Q8_0) return matvec<T>(w, static_cast<const float*>(xq), y, begin, end);
  if (!reads_layout<Q>(w)) return ref::matvec_q(w, xq, y, begin, end);
  qmatvec_rel<Q>(w, static_cast<const std::byte*>(xq), y + begin, begin, end);
}

template <class T, class Q>
void qmatmul(const TensorView& w, const void* xq, std::int64_t n, float* y, std::int64_t ldy, std::int64_t begin,
             std::int64_t end) noexcept {
  if (w.dtype < DType::Q8_0) return matmul<T>(w, static_cast<const float*>(xq), w.cols, n, y, ldy, begin, end);
  if (!reads_layout<Q>(w)) return ref::matmul_q(w, xq, n, y, ldy, begin, end);
  qmatmul_rel<Q>(w, static_cast<const std::byte*>(xq), n, y + begin, ldy, begin, end);
}

// Gate and up one block of rows at a time, combined at once (as the float kernel does).
template <class T, class Q>
void qmatvec_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq_, float* out,
                      std::int64_t begin, std::int64_t end) noexcept {
  if (gate_w.dtype < DType::Q8_0)
    return matvec_silu_mul<T>(gate_w, up_w, static_cast<const float*>(xq_), out, begin, end);
  if (!reads_layout<Q>(gate_w) || !reads_layout<Q>(up_w)) return ref::matvec_q_silu_mul(gate_w, up_w, xq_, out, begin, end);
  const auto* xq = static_cast<const std::byte*>(xq_);
  // 64 rows: four groups of the interleaved layout, read side by side (il::matmul_rows).
  constexpr std::int64_t kRows = 64;
  for (std::int64_t r0 = begin; r0 < end; r0 += kRows) {
    const std::int64_t r1 = std::min(r0 + kRows, end);
    float gv[kRows], uv[kRows];
    qmatvec_rel<Q>(gate_w, xq, gv, r0, r1);
    qmatvec_rel<Q>(up_w, xq, uv, r0, r1);
    for (std::int64_t r = r0; r < r1; ++r) out[r] = silu_times(gv[r - r0], uv[r - r0]);
  }
}

template <class T, class Q>
void qmatmul_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq_, std::int64_t n, float* out,
                      std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept {
  if (gate_w.dtype < DType::Q8_0)
    return matmul_silu_mul<T>(gate_w, up_w, static_cast<const float*>(xq_), gate_w.cols, n, out, ldo, begin, end);
  if (!reads_layout<Q>(gate_w) || !reads_layout<Q>(up_w))
    return ref::matmul_q_silu_mul(gate_w, up_w, xq_, n, out, ldo, begin, end);
  if (n == 1) return qmatvec_silu_mul<T, Q>(gate_w, up_w, xq_, out, begin, end);
  const auto* xq = static_cast<const std::byte*>(xq_);
  const std::size_t stride = act_bytes(gate_w.dtype, gate_w.cols);
  constexpr std::int64_t kRows = 16, kTokens = 32;
  float gv[kTokens * kRows], uv[kTokens * kRows];
  for (std::int64_t t0 = 0; t0 < n; t0 += kTokens) {
    const std::int64_t nt = std::min(kTokens, n - t0);
    const std::byte* x0 = xq + static_cast<std::size_t>(t0) * stride;
    for (std::int64_t r0 = begin; r0 < end; r0 += kRows) {
      const std::int64_t r1 = std::min(r0 + kRows, end);
      qmatmul_rel<Q>(gate_w, x0, nt, gv, kRows, r0, r1);
      qmatmul_rel<Q>(up_w, x0, nt, uv, kRows, r0, r1);
      for (std::int64_t t = 0; t < nt; ++t)
        for (std::int64_t r = r0; r < r1; ++r)
          out[(t0 + t) * ldo + r] = silu_times(gv[t * kRows + (r - r0)], uv[t * kRows + (r - r0)]);
    }
  }
}

// The table of one ISA: T the float traits (simd_x86.hpp), Q the integer ones.
template <class T, class Q>
constexpr KernelTable make_table(Isa isa, const char* name) noexcept {
  return KernelTable{isa,
                     name,
                     &matvec<T>,
                     &matmul<T>,
                     &matvec_silu_mul<T>,
                     &matmul_silu_mul<T>,
                     &dot_f32<T>,
                     &rmsnorm<T>,
                     &rope<T>,
                     &softmax<T>,
                     &silu_mul<T>,
                     &attend<T>,
                     &quantize_act<Q>,
                     &qmatvec<T, Q>,
                     &qmatmul<T, Q>,
                     &qmatvec_silu_mul<T, Q>,
                     &qmatmul_silu_mul<T, Q>,
                     interleaved_mask<Q>()};
}

}  // namespace
}  // namespace weft::kernels
