#pragma once
// Forced into every file of a fuzz build (-include) only when the compiler's
// __builtin_cpu_supports does not know a feature name lib/kernels/isa.cpp asks for (clang 14
// rejects "f16c" at compile time; GCC and newer clang accept it). It answers the same question
// from CPUID and XGETBV instead, for the names weft's ISA dispatch uses.
#if defined(__x86_64__)
#include <cpuid.h>

#include <cstring>

inline bool weft_fuzz_cpu_supports(const char* name) noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const unsigned leaf1_ecx = c;
  const bool osxsave = (leaf1_ecx & bit_OSXSAVE) != 0;
  unsigned xcr0 = 0;
  if (osxsave) {
    unsigned hi = 0;
    __asm__("xgetbv" : "=a"(xcr0), "=d"(hi) : "c"(0));
  }
  const bool ymm = osxsave && (xcr0 & 0x6) == 0x6;     // the OS saves SSE and AVX state
  const bool zmm = ymm && (xcr0 & 0xe0) == 0xe0;       // ... and the AVX-512 state
  unsigned l7b = 0, l7a1 = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) l7b = b;
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) l7a1 = a;
  const auto is = [&](const char* n) { return std::strcmp(name, n) == 0; };
  if (is("fma")) return ymm && (leaf1_ecx & bit_FMA);
  if (is("f16c")) return ymm && (leaf1_ecx & bit_F16C);
  if (is("avx2")) return ymm && (l7b & bit_AVX2);
  if (is("avx512f")) return zmm && (l7b & bit_AVX512F);
  if (is("avx512dq")) return zmm && (l7b & bit_AVX512DQ);
  if (is("avx512bw")) return zmm && (l7b & bit_AVX512BW);
  if (is("avx512vl")) return zmm && (l7b & bit_AVX512VL);
  if (is("avx512bf16")) return zmm && (l7a1 & (1u << 5));
  return false;  // a name not listed here: the scalar path is always correct
}
#define __builtin_cpu_supports(name) weft_fuzz_cpu_supports(name)
#endif
