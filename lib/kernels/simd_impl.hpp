#pragma once
// Kernel bodies shared by the per-ISA translation units (kernels_avx2.cpp, kernels_avx512.cpp,
// kernels_avx512bf16.cpp), written once over a traits type T that says how to load, convert and
// reduce one ISA's vectors (see simd_x86.hpp). Include it only from those files.
//
// Everything here lives in an anonymous namespace on purpose. Each ISA file compiles this header
// with different -m flags; with ordinary (vague) linkage the linker would keep one copy of each
// inline function or template for the whole program, and could hand the AVX-512 copy to the AVX2
// path (a SIGILL on an AVX2-only machine). Internal linkage gives every ISA file its own copies.
// For the same reason the code here reads TensorView fields directly rather than calling the
// inline helpers of core/ (those are shared by translation units built with other flags).
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <immintrin.h>
#include <memory>
#include <new>

#include "kernels/dispatch.hpp"

namespace weft::kernels {
namespace {

// Weight matrices as the kernels see them: the fields of a TensorView, read once per call.
struct Mat {
  const std::byte* data;
  std::size_t row_bytes;
  std::int64_t cols;
  DType dtype;
  const std::byte* row(std::int64_t r) const noexcept { return data + static_cast<std::size_t>(r) * row_bytes; }
};

constexpr std::size_t element_bytes(DType t) noexcept { return t == DType::F32 ? 4 : 2; }

inline Mat mat_of(const TensorView& w) noexcept {
  return Mat{static_cast<const std::byte*>(w.data), element_bytes(w.dtype) * static_cast<std::size_t>(w.cols), w.cols,
             w.dtype};
}

// Software prefetch distance for the streaming weight rows, in bytes ahead of the loads (0 turns it
// off), issued once per 64-byte line of each row. Measured with bench_kernels (matvec/avx512/*/dram,
// single thread, 5632x2048 and 32000x2048, three interleaved rounds on the shared 2-vCPU Xeon dev VM):
// without it f16/bf16 ran at 9.6-10.4 GB/s and f32 at 11.7-12.3; with 1024 bytes and 8 rows per
// block, f16/bf16 at 10.3-11.8 and f32 at 12.4-14.6 (the plain 4-stream read: 10.7-11.6 GB/s).
// The hardware streamer restarts at every 4 KiB page, and a 2048-column bf16 row is one page.
#ifndef WEFT_PREFETCH_BYTES
#define WEFT_PREFETCH_BYTES 1024
#endif
constexpr std::int64_t kPrefetchBytes = WEFT_PREFETCH_BYTES;
// A second request per line, into L2 only (prefetcht1), this far ahead: with both, a core keeps
// more lines in flight. Against the 1 KiB L1 request alone (measured when it was added): bench_kernels
// matvec/avx512bf16/*/dram, one thread, 5 alternations, bf16 5632x2048 12.9 -> 14.5 GB/s and
// 32000x2048 12.4 -> 14.3, f16 12.5 -> 13.9 and 12.9 -> 13.9; weft bench decode (1.1B shape,
// two threads, builds alternating) BF16 11.95-12.67 -> 13.22-13.81 tok/s, F16 12.06-13.10 ->
// 13.70-14.71. Paired in one process (variants alternating, 5632x2048 bf16 from DRAM), new/old
// time at this distance 0.918 on one thread and 0.918 on two; 3 KiB 0.92-0.97, 4 KiB 0.92-0.96.
#ifndef WEFT_PREFETCH_L2_BYTES
#define WEFT_PREFETCH_L2_BYTES 2048
#endif
constexpr std::int64_t kPrefetchL2Bytes = WEFT_PREFETCH_L2_BYTES;

// Where to prefetch, from a row's start, while reading byte `at` of it (rows of `row_len` bytes):
// `distance` further on, but past the row's end that far into the row `next` bytes on, the one
// this stream reads in the next block. Not into the following row, which another stream of the
// block is already reading: then the last `distance` bytes of every row went out twice and every
// block's rows started cold (BF16/F16 decode 4-6 % slower on 1.1B, 1 and 2 threads).
inline std::int64_t prefetch_offset(std::int64_t at, std::int64_t row_len, std::ptrdiff_t next,
                                    std::int64_t distance) noexcept {
  const std::int64_t ahead = at + distance;
  return ahead < row_len ? ahead : ahead - row_len + next;
}

// One vector of weights of dtype D starting at element i of a row (unaligned).
template <class T, DType D>
inline typename T::B load_w(const std::byte* row, std::int64_t i) noexcept {
  if constexpr (D == DType::F32) {
    return T::load(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (D == DType::F16) {
    return T::load_f16(reinterpret_cast<const std::uint16_t*>(row) + i);
  } else {
    return T::load_bf16(reinterpret_cast<const std::uint16_t*>(row) + i);
  }
}

// The first m (< width) weights from element i, zeros in the other lanes; reads only those m.
template <class T, DType D>
inline typename T::B load_w_partial(const std::byte* row, std::int64_t i, int m) noexcept {
  if constexpr (D == DType::F32) {
    return T::load_partial(reinterpret_cast<const float*>(row) + i, m);
  } else if constexpr (D == DType::F16) {
    return T::load_f16_partial(reinterpret_cast<const std::uint16_t*>(row) + i, m);
  } else {
    return T::load_bf16_partial(reinterpret_cast<const std::uint16_t*>(row) + i, m);
  }
}

// Every dot product of weights with f32 activations below runs the same sequence of operations,
// whichever kernel computes it: one vector accumulator per (row, vector) pair, acc = fma(w[i..i+N),
// x[i..i+N), acc) for i = 0, N, 2N, ..., one masked FMA for the tail, then T::sum. So matvec,
// matmul at any n, any row grouping, and the fused gate/up kernels give bit-identical results for
// the same row and vector: prefilling a block equals decoding it token by token. Latency is hidden
// across rows (and tokens) instead of with several accumulators per row: eight rows give eight FMA
// chains, ~2 FMA/cycle, far above what memory can feed a matvec.

// out[r] = dot(rows[r][0, n), x) for R rows at once; the R rows share each load of x. The main
// loop covers one 64-byte line of every row per step (kU vectors, FMAs still in sequence) so that
// the prefetch goes out once per line. `next`: the bytes from each row to the one its stream reads
// in the next block (prefetch_offset).
template <class T, DType D, int R>
inline void dot_rows(const std::byte* const* rows, const float* x, std::int64_t n, float* out,
                     std::ptrdiff_t next) noexcept {
  using B = typename T::B;
  constexpr std::int64_t N = T::kWidth;
  constexpr std::int64_t E = static_cast<std::int64_t>(element_bytes(D));
  constexpr std::int64_t kU = std::max<std::int64_t>(1, 64 / (N * E));
  B acc[R];
  for (int r = 0; r < R; ++r) acc[r] = B(0.0f);
  std::int64_t i = 0;
  for (; i + kU * N <= n; i += kU * N) {
    // Written out here: as a helper function, inlined, GCC 12 dropped every prefetch of the 4- and
    // 8-row blocks (seen in the object code; bench_kernels bf16 from DRAM 12.1 -> 10.5 GB/s).
    if constexpr (kPrefetchBytes > 0) {
      const std::int64_t near = prefetch_offset(E * i, E * n, next, kPrefetchBytes);
      for (int r = 0; r < R; ++r) T::prefetch(rows[r] + near);
    }
    if constexpr (kPrefetchL2Bytes > 0) {
      const std::int64_t far = prefetch_offset(E * i, E * n, next, kPrefetchL2Bytes);
      for (int r = 0; r < R; ++r) T::prefetch_l2(rows[r] + far);
    }
    for (std::int64_t u = 0; u < kU; ++u) {
      const B xv = T::load(x + i + u * N);
      for (int r = 0; r < R; ++r) acc[r] = T::fmadd(load_w<T, D>(rows[r], i + u * N), xv, acc[r]);
    }
  }
  for (; i + N <= n; i += N) {
    const B xv = T::load(x + i);
    for (int r = 0; r < R; ++r) acc[r] = T::fmadd(load_w<T, D>(rows[r], i), xv, acc[r]);
  }
  if (i < n) {
    const int m = static_cast<int>(n - i);
    const B xv = T::load_partial(x + i, m);
    for (int r = 0; r < R; ++r) acc[r] = T::fmadd(load_w_partial<T, D>(rows[r], i, m), xv, acc[r]);
  }
  for (int r = 0; r < R; ++r) out[r] = T::sum(acc[r]);
}

// Rows per matvec block: each adds an FMA chain and a memory stream (8 measured a few per cent
// faster than 4 from memory, see above).
#ifndef WEFT_MATVEC_ROWS
#define WEFT_MATVEC_ROWS 8
#endif
constexpr int kMatvecRows = WEFT_MATVEC_ROWS;

template <class T, DType D, int R>
inline void dot_block(const Mat& w, const float* x, float* y, std::int64_t r) noexcept {
  const std::byte* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = w.row(r + i);
  dot_rows<T, D, R>(rows, x, w.cols, y, static_cast<std::ptrdiff_t>(R * w.row_bytes));
}

// y[r - begin] = dot(w.row(r), x) for r in [begin, end): kMatvecRows rows at a time, then the rest.
template <class T, DType D>
void matvec_rows(const Mat& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept {
  std::int64_t r = begin;
  for (; r + kMatvecRows <= end; r += kMatvecRows) dot_block<T, D, kMatvecRows>(w, x, y + (r - begin), r);
  if constexpr (kMatvecRows > 4) {
    for (; r + 4 <= end; r += 4) dot_block<T, D, 4>(w, x, y + (r - begin), r);
  }
  for (; r < end; ++r) dot_block<T, D, 1>(w, x, y + (r - begin), r);
}

template <class T>
void matvec_rows_any(const Mat& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept {
  switch (w.dtype) {
    case DType::F32: return matvec_rows<T, DType::F32>(w, x, y, begin, end);
    case DType::F16: return matvec_rows<T, DType::F16>(w, x, y, begin, end);
    case DType::BF16: return matvec_rows<T, DType::BF16>(w, x, y, begin, end);
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: return;  // not valid for the float kernels (see kernels.hpp)
  }
}

// ---- few-vector matmul (batched decode) -----------------------------------------------------------
// With a handful of vectors (one per sequence of a decode batch) the weight rows are widened in
// registers and every widened vector is used at once by all NT vectors of x: no L1 pack, and the
// R x NT accumulators stay in registers along the whole row, so nothing is spilled between column
// chunks. The sequence of FMAs per (row, vector) is dot_rows' (same lanes, same order, same masked
// tail), so results equal matvec's bit for bit.

// The weight vector at element i of a row, widened to f32 as load_w does (bit-identical). For bf16
// under AVX-512 BW the widening is one vpermw that moves each bf16 into the high half of its 32-bit
// lane and zeroes the low half, instead of vpmovzxwd + vpslld: one port-5 uop instead of one on
// port 5 and one on port 0, the two FMA ports. Measured (n = 8, one thread, three rounds): from
// DRAM 74-81 GFLOP/s against 72-74 with the shift; in L2 90-106 against 97-111, within the noise.
template <class T, DType D>
inline typename T::B load_w_direct(const std::byte* row, std::int64_t i) noexcept {
#if defined(__AVX512BW__)
  if constexpr (D == DType::BF16 && T::kWidth == 16) {
    const __m512i idx = _mm512_set_epi16(15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8, 0, 7, 0, 6, 0, 5, 0, 4, 0,
                                         3, 0, 2, 0, 1, 0, 0, 0);
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i));
    return _mm512_castsi512_ps(
        _mm512_maskz_permutexvar_epi16(static_cast<__mmask32>(0xAAAAAAAAu), idx, _mm512_castsi256_si512(h)));
  }
#endif
  return load_w<T, D>(row, i);
}

// The NT vectors of a token group interleaved for the tiles below: block k holds columns
// [k*N, k*N + N) of vector 0, then of vector 1, ..., so that one step of a tile reads its NT
// vectors of x at constant offsets from one pointer (with x + t*ldx the compiler keeps a pointer
// per vector, runs out of registers and reloads x once per row) and as consecutive cache lines.
// The last block is zero-padded, which is what the masked tail load of matvec reads.
template <class T>
inline void interleave_x(const float* x, std::int64_t ldx, int nt, std::int64_t cols, float* xs) noexcept {
  constexpr std::int64_t N = T::kWidth;
  std::int64_t k = 0;
  for (; k + N <= cols; k += N)
    for (int t = 0; t < nt; ++t) T::store(xs + (k / N * nt + t) * N, T::load(x + t * ldx + k));
  if (k < cols) {
    const int m = static_cast<int>(cols - k);
    for (int t = 0; t < nt; ++t) T::store(xs + (k / N * nt + t) * N, T::load_partial(x + t * ldx + k, m));
  }
}

// Per-thread scratch for interleaved x, 64-byte aligned (every load of x is then one cache line);
// it grows to the largest group seen and is then reused.
inline float* direct_scratch(std::size_t floats) noexcept {
  struct Buffer {
    std::unique_ptr<float[]> data;
    std::size_t size = 0;
  };
  thread_local Buffer b;
  constexpr std::size_t kAlign = 64 / sizeof(float);
  if (floats + kAlign > b.size) {
    b.data.reset(new (std::nothrow) float[floats + kAlign]);
    b.size = b.data ? floats + kAlign : 0;
    if (!b.data) return nullptr;
  }
  const auto p = reinterpret_cast<std::uintptr_t>(b.data.get());
  return b.data.get() + ((64 - p % 64) % 64) / sizeof(float);
}

// y[t * ldy + r] = dot(rows[r], x_t) over n columns, for R rows and NT vectors given interleaved.
//
// Prefetch: the weights of a tile are consumed slowly here (NT FMAs per weight vector), and with a
// few rows in flight neither the hardware streamers (which restart at every 4 KiB page, i.e. every
// row of a 2048-wide bf16 matrix) nor matvec's prefetch 1 KiB ahead in the same row keep enough
// lines in flight. Each step instead prefetches the same columns of the next tile's rows
// (next_tile bytes ahead: rows are contiguous) into L2, a whole tile's time (~1-2 us) ahead.
// Measured with a single-thread harness streaming 5632x2048 bf16 from DRAM at n = 8 (4-row tiles,
// two rounds): no prefetch 59-64 GFLOP/s, 1 KiB ahead to L1 57-60, 2 KiB ahead 48-56, next tile to
// L1 67-71, next tile to L2 70-83.
template <class T, DType D, int R, int NT>
inline void dot_tile(const std::byte* const* rows, const float* xs, std::int64_t n, float* y,
                     std::int64_t ldy, std::int64_t next_tile) noexcept {
  using B = typename T::B;
  constexpr std::int64_t N = T::kWidth;
  constexpr std::int64_t eb = static_cast<std::int64_t>(element_bytes(D));
  constexpr std::int64_t kU = std::max<std::int64_t>(1, 64 / (N * eb));
  B acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = B(0.0f);
  auto step = [&](std::int64_t i) {
    const float* xp = xs + i * NT;
    B wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_w_direct<T, D>(rows[r], i);
    for (int t = 0; t < NT; ++t) {
      const B xv = T::load(xp + t * N);
      for (int r = 0; r < R; ++r) acc[r][t] = T::fmadd(wv[r], xv, acc[r][t]);
    }
  };
  std::int64_t i = 0;
  for (; i + kU * N <= n; i += kU * N) {
    for (int r = 0; r < R; ++r) {
      const auto a = reinterpret_cast<std::uintptr_t>(rows[r]) + static_cast<std::uintptr_t>(eb * i + next_tile);
      _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T2);
    }
    for (std::int64_t u = 0; u < kU; ++u) step(i + u * N);
  }
  for (; i + N <= n; i += N) step(i);
  if (i < n) {
    const int m = static_cast<int>(n - i);
    const float* xp = xs + i * NT;
    B wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_w_partial<T, D>(rows[r], i, m);
    for (int t = 0; t < NT; ++t) {
      const B xv = T::load(xp + t * N);  // zero-padded past n, as load_partial gives
      for (int r = 0; r < R; ++r) acc[r][t] = T::fmadd(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < R; ++r) y[t * ldy + r] = T::sum(acc[r][t]);
}

// Vectors per token group at most (n = 16 runs as two groups of 8), and the rows of a tile for
// NT vectors. With AVX-512 (32 zmm): 8 rows for 2 vectors, 7 for 3, 5 for 4 (memory-bound: as
// many rows as the accumulators, the widened weights and the index allow), and 4 for 5 to 8.
// At 8 vectors 4 rows need 32 accumulators, more than the register file, and GCC keeps a few in
// memory; it still beats 3 rows, which fit: in L2 (240x2048 bf16, one thread, two rounds) 94-101
// GFLOP/s against 69-77, from DRAM 77-84 against 63-70 (fewer loads of x per FMA, one more weight
// stream). AVX2 (16 ymm): 4 vectors at most, tiles that fit.
template <class T>
constexpr int kDirectTokens = T::kWidth == 16 ? 8 : 4;

template <class T>
constexpr int direct_rows(int nt) noexcept {
  if constexpr (T::kWidth == 16) {
    return nt <= 2 ? 8 : nt == 3 ? 7 : nt == 4 ? 5 : 4;
  } else {
    return nt <= 2 ? 4 : nt == 3 ? 3 : 2;
  }
}

template <class T, DType D, int R, int NT>
inline void direct_tile_at(const Mat& w, const float* xs, float* y, std::int64_t ldy, std::int64_t r) noexcept {
  const std::byte* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = w.row(r + i);
  dot_tile<T, D, R, NT>(rows, xs, w.cols, y, ldy, static_cast<std::int64_t>(R * w.row_bytes));
}

// The last rem (< R) rows of a range as one tile of rem rows.
template <class T, DType D, int R, int NT>
inline void direct_rest(const Mat& w, const float* xs, float* y, std::int64_t ldy, std::int64_t r,
                        std::int64_t rem) noexcept {
  if constexpr (R > 0) {
    if (rem == R) return direct_tile_at<T, D, R, NT>(w, xs, y, ldy, r);
    direct_rest<T, D, R - 1, NT>(w, xs, y, ldy, r, rem);
  }
}

// One group of NT interleaved vectors over rows [begin, end): tiles of direct_rows<T>(NT) rows,
// then one smaller tile for the rest. y[t * ldy + (r - begin)].
template <class T, DType D, int NT>
void direct_group(const Mat& w, const float* xs, float* y, std::int64_t ldy, std::int64_t begin,
                  std::int64_t end) noexcept {
  constexpr int R = direct_rows<T>(NT);
  std::int64_t r = begin;
  for (; r + R <= end; r += R) direct_tile_at<T, D, R, NT>(w, xs, y + (r - begin), ldy, r);
  if (r < end) direct_rest<T, D, R - 1, NT>(w, xs, y + (r - begin), ldy, r, end - r);
}

template <class T, DType D>
void direct_group_nt(const Mat& w, int nt, const float* xs, float* y, std::int64_t ldy, std::int64_t begin,
                     std::int64_t end) noexcept {
  switch (nt) {
    case 1: return direct_group<T, D, 1>(w, xs, y, ldy, begin, end);
    case 2: return direct_group<T, D, 2>(w, xs, y, ldy, begin, end);
    case 3: return direct_group<T, D, 3>(w, xs, y, ldy, begin, end);
    default: break;
  }
  if constexpr (kDirectTokens<T> > 4) {
    switch (nt) {
      case 5: return direct_group<T, D, 5>(w, xs, y, ldy, begin, end);
      case 6: return direct_group<T, D, 6>(w, xs, y, ldy, begin, end);
      case 7: return direct_group<T, D, 7>(w, xs, y, ldy, begin, end);
      case 8: return direct_group<T, D, 8>(w, xs, y, ldy, begin, end);
      default: break;
    }
  }
  direct_group<T, D, 4>(w, xs, y, ldy, begin, end);
}

template <class T>
void direct_group_any(const Mat& w, int nt, const float* xs, float* y, std::int64_t ldy, std::int64_t begin,
                      std::int64_t end) noexcept {
  switch (w.dtype) {
    case DType::F32: return direct_group_nt<T, DType::F32>(w, nt, xs, y, ldy, begin, end);
    case DType::F16: return direct_group_nt<T, DType::F16>(w, nt, xs, y, ldy, begin, end);
    case DType::BF16: return direct_group_nt<T, DType::BF16>(w, nt, xs, y, ldy, begin, end);
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: return;  // not valid for the float kernels (see kernels.hpp)
  }
}

// Token groups of a few-vector matmul: at most kDirectTokens vectors each, as equal as possible.
// Calls f(t0, nt, xs) with vectors [t0, t0 + nt) interleaved in xs; false (nothing called) when
// the scratch could not be allocated.
template <class T, class F>
bool for_direct_groups(const float* x, std::int64_t ldx, std::int64_t n, std::int64_t cols, F&& f) noexcept {
  constexpr std::int64_t N = T::kWidth;
  const std::int64_t groups = (n + kDirectTokens<T> - 1) / kDirectTokens<T>;
  const std::int64_t padded = (cols + N - 1) / N * N;
  float* xs = direct_scratch(static_cast<std::size_t>(padded * ((n + groups - 1) / groups)));
  if (xs == nullptr) return false;
  std::int64_t t0 = 0;
  for (std::int64_t g = 0; g < groups; ++g) {
    const int nt = static_cast<int>((n - t0) / (groups - g));
    interleave_x<T>(x + t0 * ldx, ldx, nt, cols, xs);
    f(t0, nt, static_cast<const float*>(xs));
    t0 += nt;
  }
  return true;
}

#ifndef WEFT_DIRECT_MAX_N
#define WEFT_DIRECT_MAX_N 16
#endif
constexpr std::int64_t kDirectMaxN = WEFT_DIRECT_MAX_N;

// ---- small-batch matmul (prefill) ---------------------------------------------------------------
// Register tile: kTileRows weight rows x kTileTokens vectors = 16 accumulators. The weight rows of
// a tile are widened to f32 one column chunk at a time into an L1-resident pack (so an f16/bf16
// weight is converted once per chunk, not once per token block), and every token block runs over
// that pack while the chunk of x (up to kMaxTokens x kChunk floats) stays in L2. The accumulators
// carry over from chunk to chunk (kept in memory between chunks), so each dot product follows the
// sequence described above dot_rows and equals the matvec result bit for bit.
constexpr int kTileRows = 4;
constexpr int kTileTokens = 4;
constexpr std::int64_t kChunk = 1024;     // columns per pack: 4 x 1024 x 4 B = 16 KiB; a multiple of N
constexpr std::int64_t kMaxTokens = 64;   // tokens per pass over a row block

// acc[r][t] = fma over columns [0, kc) of the packed rows w (f32, zero-padded to a multiple of
// the vector width) and the vectors x (read only up to kc). acc is in memory, TT per row.
template <class T, int R, int TT>
inline void tile(const float* const* w, const float* const* x, std::int64_t kc, typename T::B* acc) noexcept {
  using B = typename T::B;
  constexpr std::int64_t N = T::kWidth;
  B a[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) a[r][t] = acc[r * kTileTokens + t];
  std::int64_t i = 0;
  for (; i + N <= kc; i += N) {
    B wv[R];
    for (int r = 0; r < R; ++r) wv[r] = T::load(w[r] + i);
    for (int t = 0; t < TT; ++t) {
      const B xv = T::load(x[t] + i);
      for (int r = 0; r < R; ++r) a[r][t] = T::fmadd(wv[r], xv, a[r][t]);
    }
  }
  if (i < kc) {
    const int m = static_cast<int>(kc - i);
    B wv[R];
    for (int r = 0; r < R; ++r) wv[r] = T::load(w[r] + i);
    for (int t = 0; t < TT; ++t) {
      const B xv = T::load_partial(x[t] + i, m);
      for (int r = 0; r < R; ++r) a[r][t] = T::fmadd(wv[r], xv, a[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) acc[r * kTileTokens + t] = a[r][t];
}

template <class T, int R>
inline void tile_tokens(int tt, const float* const* w, const float* const* x, std::int64_t kc,
                        typename T::B* acc) noexcept {
  switch (tt) {
    case 1: return tile<T, R, 1>(w, x, kc, acc);
    case 2: return tile<T, R, 2>(w, x, kc, acc);
    case 3: return tile<T, R, 3>(w, x, kc, acc);
    default: return tile<T, R, 4>(w, x, kc, acc);
  }
}

template <class T>
inline void tile_any(int rr, int tt, const float* const* w, const float* const* x, std::int64_t kc,
                     typename T::B* acc) noexcept {
  switch (rr) {
    case 1: return tile_tokens<T, 1>(tt, w, x, kc, acc);
    case 2: return tile_tokens<T, 2>(tt, w, x, kc, acc);
    case 3: return tile_tokens<T, 3>(tt, w, x, kc, acc);
    default: return tile_tokens<T, 4>(tt, w, x, kc, acc);
  }
}

// Widens kc weights of dtype D into dst (f32), zero-padding to a multiple of the vector width.
template <class T, DType D>
inline void widen(const std::byte* src, std::int64_t kc, float* dst) noexcept {
  constexpr std::int64_t N = T::kWidth;
  std::int64_t i = 0;
  for (; i + N <= kc; i += N) T::store(dst + i, load_w<T, D>(src, i));
  if (i < kc) T::store(dst + i, load_w_partial<T, D>(src, i, static_cast<int>(kc - i)));
}

// y[t*ldy + (r - begin)] = dot(w.row(r), x[t*ldx ...]) for t < n, r in [begin, end).
template <class T, DType D>
void matmul_rows(const Mat& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
                 std::int64_t begin, std::int64_t end) noexcept {
  using B = typename T::B;
  if (n == 1) return matvec_rows<T, D>(w, x, y, begin, end);
  if (n <= kDirectMaxN && for_direct_groups<T>(x, ldx, n, w.cols, [&](std::int64_t t0, int nt, const float* xs) {
        direct_group_nt<T, D>(w, nt, xs, y + t0 * ldy, ldy, begin, end);
      }))
    return;
  alignas(64) float pack[kTileRows * kChunk];
  // Accumulators of one row block for up to kMaxTokens tokens, kTileRows x kTileTokens per block.
  B acc[kMaxTokens / kTileTokens][kTileRows * kTileTokens];
  const std::size_t ebytes = element_bytes(D);
  for (std::int64_t n0 = 0; n0 < n; n0 += kMaxTokens) {
    const std::int64_t nn = std::min(kMaxTokens, n - n0);
    for (std::int64_t r0 = begin; r0 < end; r0 += kTileRows) {
      const int rr = static_cast<int>(std::min<std::int64_t>(kTileRows, end - r0));
      for (std::int64_t b = 0; b < (nn + kTileTokens - 1) / kTileTokens; ++b)
        for (B& a : acc[b]) a = B(0.0f);
      for (std::int64_t k0 = 0; k0 < w.cols; k0 += kChunk) {
        const std::int64_t kc = std::min(kChunk, w.cols - k0);
        const float* wp[kTileRows];
        for (int r = 0; r < rr; ++r) {
          widen<T, D>(w.row(r0 + r) + static_cast<std::size_t>(k0) * ebytes, kc, pack + r * kChunk);
          wp[r] = pack + r * kChunk;
        }
        for (std::int64_t t0 = 0; t0 < nn; t0 += kTileTokens) {
          const int tt = static_cast<int>(std::min<std::int64_t>(kTileTokens, nn - t0));
          const float* xp[kTileTokens];
          for (int t = 0; t < tt; ++t) xp[t] = x + (n0 + t0 + t) * ldx + k0;
          tile_any<T>(rr, tt, wp, xp, kc, acc[t0 / kTileTokens]);
        }
      }
      for (std::int64_t t = 0; t < nn; ++t)
        for (int r = 0; r < rr; ++r)
          y[(n0 + t) * ldy + (r0 - begin) + r] = T::sum(acc[t / kTileTokens][r * kTileTokens + t % kTileTokens]);
    }
  }
}

template <class T>
void matmul_rows_any(const Mat& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
                     std::int64_t begin, std::int64_t end) noexcept {
  switch (w.dtype) {
    case DType::F32: return matmul_rows<T, DType::F32>(w, x, ldx, n, y, ldy, begin, end);
    case DType::F16: return matmul_rows<T, DType::F16>(w, x, ldx, n, y, ldy, begin, end);
    case DType::BF16: return matmul_rows<T, DType::BF16>(w, x, ldx, n, y, ldy, begin, end);
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: return;  // not valid for the float kernels (see kernels.hpp)
  }
}

// silu(g) * u exactly as the reference writes it.
inline float silu_times(float g, float u) noexcept { return g / (1.0f + std::exp(-g)) * u; }

// ---- entry points with the signatures of the kernel table ----------------------------------------

template <class T>
void matvec(const TensorView& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept {
  matvec_rows_any<T>(mat_of(w), x, y + begin, begin, end);
}

template <class T>
void matmul(const TensorView& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
            std::int64_t begin, std::int64_t end) noexcept {
  matmul_rows_any<T>(mat_of(w), x, ldx, n, y + begin, ldy, begin, end);
}

// Rows of gate and up are computed one matvec block at a time (the gate block, then the same rows
// of up) and combined at once, so the model needs no second hidden-size buffer and one pass.
template <class T>
void matvec_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, float* out, std::int64_t begin,
                     std::int64_t end) noexcept {
  const Mat g = mat_of(gate_w), u = mat_of(up_w);
  for (std::int64_t r0 = begin; r0 < end; r0 += kMatvecRows) {
    const std::int64_t r1 = std::min<std::int64_t>(r0 + kMatvecRows, end);
    float gv[kMatvecRows], uv[kMatvecRows];
    matvec_rows_any<T>(g, x, gv, r0, r1);
    matvec_rows_any<T>(u, x, uv, r0, r1);
    for (std::int64_t r = r0; r < r1; ++r) out[r] = silu_times(gv[r - r0], uv[r - r0]);
  }
}

template <class T>
void matmul_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, std::int64_t ldx,
                     std::int64_t n, float* out, std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept {
  if (n == 1) return matvec_silu_mul<T>(gate_w, up_w, x, out, begin, end);
  const Mat g = mat_of(gate_w), u = mat_of(up_w);
  // Few vectors (batched decode): x interleaved once per token group, then blocks of 48 rows (a
  // multiple of most tiles' rows) of gate and of up.
  if (n <= kDirectMaxN && for_direct_groups<T>(x, ldx, n, g.cols, [&](std::int64_t t0, int nt, const float* xs) {
        constexpr std::int64_t kRows = 48;
        float gv[kDirectTokens<T> * kRows], uv[kDirectTokens<T> * kRows];
        for (std::int64_t r0 = begin; r0 < end; r0 += kRows) {
          const std::int64_t r1 = std::min(r0 + kRows, end);
          direct_group_any<T>(g, nt, xs, gv, kRows, r0, r1);
          direct_group_any<T>(u, nt, xs, uv, kRows, r0, r1);
          for (std::int64_t t = 0; t < nt; ++t)
            for (std::int64_t r = r0; r < r1; ++r)
              out[(t0 + t) * ldo + r] = silu_times(gv[t * kRows + (r - r0)], uv[t * kRows + (r - r0)]);
        }
      }))
    return;
  constexpr std::int64_t kRows = 16, kTokens = 64;
  float gv[kTokens * kRows], uv[kTokens * kRows];
  for (std::int64_t t0 = 0; t0 < n; t0 += kTokens) {
    const std::int64_t nt = std::min(kTokens, n - t0);
    for (std::int64_t r0 = begin; r0 < end; r0 += kRows) {
      const std::int64_t r1 = std::min(r0 + kRows, end);
      matmul_rows_any<T>(g, x + t0 * ldx, ldx, nt, gv, kRows, r0, r1);
      matmul_rows_any<T>(u, x + t0 * ldx, ldx, nt, uv, kRows, r0, r1);
      for (std::int64_t t = 0; t < nt; ++t)
        for (std::int64_t r = r0; r < r1; ++r)
          out[(t0 + t) * ldo + r] = silu_times(gv[t * kRows + (r - r0)], uv[t * kRows + (r - r0)]);
    }
  }
}

template <class T>
float dot_f32(const float* a, const float* b, std::int64_t n) noexcept {
  using B = typename T::B;
  constexpr std::int64_t N = T::kWidth;
  B a0(0.0f), a1(0.0f);
  std::int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    a0 = T::fmadd(T::load(a + i), T::load(b + i), a0);
    a1 = T::fmadd(T::load(a + i + N), T::load(b + i + N), a1);
  }
  if (i + N <= n) {
    a0 = T::fmadd(T::load(a + i), T::load(b + i), a0);
    i += N;
  }
  if (i < n) {
    const int m = static_cast<int>(n - i);
    a1 = T::fmadd(T::load_partial(a + i, m), T::load_partial(b + i, m), a1);
  }
  return T::sum(a0 + a1);
}

// out = x * scale * g in the reference's order (no FMA), so only the sum of squares differs.
template <class T, DType D>
inline void scale_by_weight(const float* x, float scale, const std::byte* g, float* out, std::int64_t n) noexcept {
  using B = typename T::B;
  constexpr std::int64_t N = T::kWidth;
  const B s(scale);
  std::int64_t i = 0;
  for (; i + N <= n; i += N) T::store(out + i, T::load(x + i) * s * load_w<T, D>(g, i));
  if (i < n) {
    const int m = static_cast<int>(n - i);
    T::store_partial(out + i, T::load_partial(x + i, m) * s * load_w_partial<T, D>(g, i, m), m);
  }
}

template <class T>
void rmsnorm(const float* x, const TensorView& weight, float eps, float* out) noexcept {
  const std::int64_t n = weight.cols;
  const float ss = dot_f32<T>(x, x, n);
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  const auto* g = static_cast<const std::byte*>(weight.data);
  switch (weight.dtype) {
    case DType::F32: return scale_by_weight<T, DType::F32>(x, scale, g, out, n);
    case DType::F16: return scale_by_weight<T, DType::F16>(x, scale, g, out, n);
    case DType::BF16: return scale_by_weight<T, DType::BF16>(x, scale, g, out, n);
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: return;  // norm weights are never quantized (see kernels.hpp)
  }
}

// The reference's multiplies and subtractions, lane by lane (the compiler may still contract
// either into FMAs, so the two agree to rounding, not bit for bit).
template <class T>
void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) noexcept {
  using B = typename T::B;
  constexpr int N = static_cast<int>(T::kWidth);
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<std::ptrdiff_t>(h) * head_dim;
    int i = 0;
    for (; i + N <= half; i += N) {
      const B a = T::load(v + i), b = T::load(v + i + half), c = T::load(cos + i), s = T::load(sin + i);
      T::store(v + i, a * c - b * s);
      T::store(v + i + half, b * c + a * s);
    }
    if (i < half) {
      const int m = half - i;
      const B a = T::load_partial(v + i, m), b = T::load_partial(v + i + half, m);
      const B c = T::load_partial(cos + i, m), s = T::load_partial(sin + i, m);
      T::store_partial(v + i, a * c - b * s, m);
      T::store_partial(v + i + half, b * c + a * s, m);
    }
  }
}

template <class T>
void softmax(float* x, std::int64_t n) noexcept {
  using B = typename T::B;
  constexpr std::int64_t N = T::kWidth;
  if (n <= 0) return;
  const std::int64_t nv = n / N * N;
  float mx = -INFINITY;
  if (nv > 0) {
    B m = T::load(x);
    for (std::int64_t i = N; i < nv; i += N) m = xsimd::max(m, T::load(x + i));
    mx = T::max(m);
  }
  for (std::int64_t i = nv; i < n; ++i) mx = std::fmax(mx, x[i]);
  const B vmx(mx);
  B acc(0.0f);
  for (std::int64_t i = 0; i < nv; i += N) {
    const B e = xsimd::exp(T::load(x + i) - vmx);
    T::store(x + i, e);
    acc += e;
  }
  float sum = T::sum(acc);
  for (std::int64_t i = nv; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  const B vinv(inv);
  for (std::int64_t i = 0; i < nv; i += N) T::store(x + i, T::load(x + i) * vinv);
  for (std::int64_t i = nv; i < n; ++i) x[i] *= inv;
}

template <class T>
void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) noexcept {
  using B = typename T::B;
  constexpr std::int64_t N = T::kWidth;
  const B one(1.0f);
  std::int64_t i = 0;
  for (; i + N <= n; i += N) {
    const B g = T::load(gate + i);
    T::store(out + i, g / (one + xsimd::exp(-g)) * T::load(up + i));
  }
  for (; i < n; ++i) out[i] = silu_times(gate[i], up[i]);
}

// attend (kernels.hpp) for a head of CH vectors. Scores: a key's CH vectors are loaded once and
// dotted with every head of the group. Values: head by head, one pass over the values with the
// head's output in CH registers (the values of a few hundred keys stay in L1/L2 between heads).
template <class T, int CH>
void attend_fixed(const float* q, int group, float scale, const KvRun* runs, int n_runs, std::int64_t stride,
                  float* scores, std::int64_t scores_stride, float* out) noexcept {
  using B = typename T::B;
  constexpr std::int64_t N = T::kWidth, hd = CH * N;
  std::int64_t count = 0;
  for (int r = 0; r < n_runs; ++r)
    for (std::int64_t i = 0; i < runs[r].n; ++i, ++count) {
      const float* k = runs[r].k + i * stride;
      B kv[CH];
      for (int c = 0; c < CH; ++c) kv[c] = T::load(k + c * N);
      for (int h = 0; h < group; ++h) {
        const float* qh = q + h * hd;
        B acc = T::load(qh) * kv[0];
        for (int c = 1; c < CH; ++c) acc = T::fmadd(T::load(qh + c * N), kv[c], acc);
        scores[h * scores_stride + count] = T::sum(acc) * scale;
      }
    }
  for (int h = 0; h < group; ++h) softmax<T>(scores + h * scores_stride, count);
  for (int h = 0; h < group; ++h) {
    const float* p = scores + h * scores_stride;
    B o[CH];
    for (int c = 0; c < CH; ++c) o[c] = B(0.0f);
    for (int r = 0; r < n_runs; ++r) {
      const float* v = runs[r].v;
      for (std::int64_t i = 0; i < runs[r].n; ++i, ++p, v += stride) {
        const B pv(*p);
        for (int c = 0; c < CH; ++c) o[c] = T::fmadd(pv, T::load(v + c * N), o[c]);
      }
    }
    for (int c = 0; c < CH; ++c) T::store(out + h * hd + c * N, o[c]);
  }
}

template <class T>
void attend(const float* q, int group, int hd, float scale, const KvRun* runs, int n_runs, std::int64_t stride,
            float* scores, std::int64_t scores_stride, float* out) noexcept {
  constexpr int N = static_cast<int>(T::kWidth);
  switch (hd % N == 0 ? hd / N : 0) {
    case 2: return attend_fixed<T, 2>(q, group, scale, runs, n_runs, stride, scores, scores_stride, out);
    case 4: return attend_fixed<T, 4>(q, group, scale, runs, n_runs, stride, scores, scores_stride, out);
    case 8: return attend_fixed<T, 8>(q, group, scale, runs, n_runs, stride, scores, scores_stride, out);
    case 16: return attend_fixed<T, 16>(q, group, scale, runs, n_runs, stride, scores, scores_stride, out);
    default: return ref::attend(q, group, hd, scale, runs, n_runs, stride, scores, scores_stride, out);
  }
}

// The table of one ISA is made in quant_impl.hpp (make_table), which adds the quantized kernels.

}  // namespace
}  // namespace weft::kernels
