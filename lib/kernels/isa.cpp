// CPU feature detection and the choice of kernel table.
#include <array>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "kernels/dispatch.hpp"
#include "kernels/kernels_config.hpp"

namespace weft::kernels {

namespace {

constexpr std::array kAllIsas{Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16};

constexpr std::array kCompiledIsas{
    Isa::Scalar,
#if WEFT_KERNELS_AVX2
    Isa::Avx2,
#endif
#if WEFT_KERNELS_AVX512
    Isa::Avx512,
#endif
#if WEFT_KERNELS_AVX512BF16
    Isa::Avx512Bf16,
#endif
};

// Reads CPUID and XGETBV directly rather than __builtin_cpu_supports, whose feature names differ
// between compilers (clang 14 knows neither "f16c" nor "avx512bf16").
Isa detect() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return Isa::Scalar;
  const unsigned leaf1_ecx = c;
  // The CPU having a feature is not enough: the OS must also save the wider registers (XCR0).
  unsigned long long xcr0 = 0;
  if ((leaf1_ecx & bit_OSXSAVE) != 0) {
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  const bool ymm_state = (xcr0 & 0x6) == 0x6;                // SSE and AVX state
  const bool zmm_state = ymm_state && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM0-15 upper halves, ZMM16-31
  unsigned leaf7_ebx = 0, leaf7_ecx = 0, leaf7_1_eax = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) != 0) {
    leaf7_ebx = b;
    leaf7_ecx = c;
  }
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d) != 0) leaf7_1_eax = a;
  const bool avx2 = ymm_state && (leaf1_ecx & bit_FMA) != 0 && (leaf1_ecx & bit_F16C) != 0 &&
                    (leaf7_ebx & bit_AVX2) != 0;
  if (!avx2) return Isa::Scalar;
  constexpr unsigned kAvx512 = bit_AVX512F | bit_AVX512DQ | bit_AVX512BW | bit_AVX512VL;
  if (!zmm_state || (leaf7_ebx & kAvx512) != kAvx512) return Isa::Avx2;
  constexpr unsigned kAvx512Bf16 = 1u << 5;   // CPUID.(EAX=7,ECX=1):EAX[5]
  constexpr unsigned kAvx512Vnni = 1u << 11;  // CPUID.(EAX=7,ECX=0):ECX[11]
  // The avx512bf16 kernels use vpdpbusd too (quantized weights); every BF16 CPU has VNNI, but check.
  if ((leaf7_1_eax & kAvx512Bf16) == 0 || (leaf7_ecx & kAvx512Vnni) == 0) return Isa::Avx512;
  return Isa::Avx512Bf16;
#else
  return Isa::Scalar;
#endif
}

const KernelTable* compiled_table(Isa isa) noexcept {
  switch (isa) {
    case Isa::Scalar: return &detail::scalar_table();
    case Isa::Avx2:
#if WEFT_KERNELS_AVX2
      return &detail::avx2_table();
#else
      return nullptr;
#endif
    case Isa::Avx512:
#if WEFT_KERNELS_AVX512
      return &detail::avx512_table();
#else
      return nullptr;
#endif
    case Isa::Avx512Bf16:
#if WEFT_KERNELS_AVX512BF16
      return &detail::avx512bf16_table();
#else
      return nullptr;
#endif
  }
  return nullptr;
}

// The best available ISA's table.
const KernelTable* best_table() noexcept {
  const KernelTable* best = &detail::scalar_table();
  for (Isa isa : kCompiledIsas)
    if (const KernelTable* t = kernel_table(isa)) best = t;
  return best;
}

// The ISA table in use when the references are not forced, and the table the entry points use.
// Constant-initialized, so no static-initialization order problem for kernels called early.
std::atomic<const KernelTable*> g_isa_table{nullptr};
std::atomic<const KernelTable*> g_active{nullptr};
std::once_flag g_first_selection;

void ensure_selected() noexcept {
  if (g_active.load(std::memory_order_acquire) == nullptr) [[unlikely]]
    std::call_once(g_first_selection, [] { select_isa_from_environment(); });
}

bool env_flag(const char* name) noexcept {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

}  // namespace

std::string_view isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512bf16";
  }
  return "unknown";
}

std::optional<Isa> parse_isa(std::string_view name) noexcept {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (Isa isa : kAllIsas)
    if (lower == isa_name(isa)) return isa;
  return std::nullopt;
}

Isa detected_isa() noexcept {
  static const Isa isa = detect();
  return isa;
}

bool cpu_supports(Isa isa) noexcept { return static_cast<int>(isa) <= static_cast<int>(detected_isa()); }

std::span<const Isa> compiled_isas() noexcept { return kCompiledIsas; }

bool isa_available(Isa isa) noexcept { return kernel_table(isa) != nullptr; }

const KernelTable* kernel_table(Isa isa) noexcept { return cpu_supports(isa) ? compiled_table(isa) : nullptr; }

const KernelTable& active_table() noexcept {
  ensure_selected();
  return *g_active.load(std::memory_order_acquire);
}

Isa active_isa() noexcept { return active_table().isa; }

bool force_isa(Isa isa) noexcept {
  const KernelTable* t = kernel_table(isa);
  if (t == nullptr) return false;
  ensure_selected();
  g_isa_table.store(t, std::memory_order_release);
  g_active.store(t, std::memory_order_release);
  return true;
}

void force_reference(bool on) noexcept {
  ensure_selected();
  g_active.store(on ? &reference_table() : g_isa_table.load(std::memory_order_acquire), std::memory_order_release);
}

void select_isa_from_environment() noexcept {
  const KernelTable* chosen = best_table();
  if (const char* v = std::getenv("WEFT_ISA"); v != nullptr && *v != '\0') {
    const std::optional<Isa> isa = parse_isa(v);
    if (!isa) {
      std::fprintf(stderr, "weft: WEFT_ISA=%s names no ISA (scalar, avx2, avx512, avx512bf16); using %s\n", v,
                   chosen->name);
    } else if (const KernelTable* t = kernel_table(*isa)) {
      chosen = t;
    } else {
      std::fprintf(stderr, "weft: WEFT_ISA=%s is not %s; using %s\n", v,
                   cpu_supports(*isa) ? "compiled into this build" : "supported by this CPU", chosen->name);
    }
  }
  g_isa_table.store(chosen, std::memory_order_release);
  g_active.store(env_flag("WEFT_REFERENCE") ? &reference_table() : chosen, std::memory_order_release);
}

}  // namespace weft::kernels
