// The AVX-512 (F/BW/VL/DQ + FMA + F16C) variant of the kernels. Meson compiles this file alone with
// those -m flags (and -mno-avx512bf16, so that the bf16 weights here go through the shift-and-FMA
// path even in a -march=native build); the dispatcher runs it only on CPUs that report them.
#include "kernels/simd_x86.hpp"
// simd_x86.hpp first: simd_impl.hpp's templates are instantiated with its traits.
#include "kernels/simd_impl.hpp"
#include "kernels/quant_impl.hpp"

#if !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__))
#error "kernels_avx512.cpp must be compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c"
#endif

namespace weft::kernels::detail {

const KernelTable& avx512_table() noexcept {
  static constexpr KernelTable table = make_table<Avx512Traits, Avx512Q<false>>(Isa::Avx512, "avx512");
  return table;
}

}  // namespace weft::kernels::detail
