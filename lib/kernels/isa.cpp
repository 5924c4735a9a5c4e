// CPU feature detection and the choice of kernel table.
#include <array>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

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

Isa detect() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  // libgcc's cpu model also checks (XGETBV) that the OS saves the YMM/ZMM state.
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (!avx2) return Isa::Scalar;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (!avx512) return Isa::Avx2;
  if (!__builtin_cpu_supports("avx512bf16")) return Isa::Avx512;
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
