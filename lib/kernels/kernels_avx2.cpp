// The AVX2 + FMA + F16C variant of the kernels. Meson compiles this file alone with
// -mavx2 -mfma -mf16c (and -mno-avx512f, so that a -march=native build on an AVX-512 machine still
// tests and measures plain AVX2 code); the dispatcher runs it only on CPUs that report those features.
#include "kernels/simd_x86.hpp"
// simd_x86.hpp first: simd_impl.hpp's templates are instantiated with its traits.
#include "kernels/simd_impl.hpp"
#include "kernels/quant_impl.hpp"

#if !(defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
#error "kernels_avx2.cpp must be compiled with -mavx2 -mfma -mf16c"
#endif

namespace weft::kernels::detail {

const KernelTable& avx2_table() noexcept {
  static constexpr KernelTable table = make_table<Avx2Traits, Avx2Q>(Isa::Avx2, "avx2");
  return table;
}

}  // namespace weft::kernels::detail
