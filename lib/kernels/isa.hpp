#pragma once
// Instruction-set variants of the kernels and the runtime switch between them.
//
// Each variant lives in its own translation unit compiled with its own flags (kernels_avx2.cpp,
// kernels_avx512.cpp, kernels_avx512bf16.cpp); the dispatching entry points in kernels.hpp call
// through one table of function pointers chosen once, at first use, from what the CPU supports.
// WEFT_ISA=scalar|avx2|avx512|avx512bf16 in the environment picks a variant by hand (one the CPU
// lacks falls back to the best it has, with a warning on stderr), and WEFT_REFERENCE=1 overrides
// everything with the scalar references.
#include <optional>
#include <span>
#include <string_view>

namespace weft::kernels {

// Ordered from least to most capable; a CPU that supports one supports all before it.
enum class Isa {
  Scalar,      // portable C++ (whatever the base flags of the build allow the compiler to do)
  Avx2,        // AVX2 + FMA + F16C
  Avx512,      // AVX-512 F/BW/VL/DQ + FMA + F16C
  Avx512Bf16,  // the above plus AVX512_BF16 (vdpbf16ps) and AVX512_VNNI (vpdpbusd)
};

// Lower-case name of an ISA as WEFT_ISA spells it ("scalar", "avx2", "avx512", "avx512bf16").
std::string_view isa_name(Isa isa) noexcept;

// Parses a WEFT_ISA value (case-insensitive); std::nullopt when it names no ISA.
std::optional<Isa> parse_isa(std::string_view name) noexcept;

// The most capable ISA this CPU (and the OS, for the AVX-512 register state) supports, whether
// or not this build compiled kernels for it. Computed once; thread-safe.
Isa detected_isa() noexcept;

// True when the CPU and OS support isa (Scalar always).
bool cpu_supports(Isa isa) noexcept;

// The ISAs this build has kernels for, Scalar first, in the order of the enum.
std::span<const Isa> compiled_isas() noexcept;

// True when isa is compiled in and the CPU supports it, i.e. force_isa(isa) would succeed.
bool isa_available(Isa isa) noexcept;

// The ISA whose kernels the dispatching entry points run now (Scalar while the references are
// forced). The first call reads WEFT_ISA and WEFT_REFERENCE. Thread-safe.
Isa active_isa() noexcept;

// Makes the dispatching entry points run isa's kernels (and stop forcing the references).
// Returns false and changes nothing when isa is not available. Meant for tests and benchmarks:
// it must not race with kernels running on other threads if their results are compared.
bool force_isa(Isa isa) noexcept;

// Forces the scalar references everywhere (on) or returns to the active ISA's kernels (off).
void force_reference(bool on) noexcept;

// Re-reads WEFT_ISA and WEFT_REFERENCE and selects kernels as the first call did. Writes a
// warning to stderr when WEFT_ISA names an unknown or unavailable ISA.
void select_isa_from_environment() noexcept;

}  // namespace weft::kernels
