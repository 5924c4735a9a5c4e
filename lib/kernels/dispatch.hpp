#pragma once
// The table of kernel entry points one ISA variant provides. Internal to kernels/, tests and
// benchmarks: the model calls the dispatching functions in kernels.hpp instead.
#include <cstdint>

#include "core/tensor.hpp"
#include "kernels/isa.hpp"
#include "kernels/kernels.hpp"

namespace weft::kernels {

// One ISA's kernels; every pointer is set. Semantics are those of the same-named functions
// in kernels.hpp.
struct KernelTable {
  Isa isa;
  const char* name;
  void (*matvec)(const TensorView& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept;
  void (*matmul)(const TensorView& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
                 std::int64_t begin, std::int64_t end) noexcept;
  void (*matvec_silu_mul)(const TensorView& gate_w, const TensorView& up_w, const float* x, float* out,
                          std::int64_t begin, std::int64_t end) noexcept;
  void (*matmul_silu_mul)(const TensorView& gate_w, const TensorView& up_w, const float* x, std::int64_t ldx,
                          std::int64_t n, float* out, std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept;
  float (*dot_f32)(const float* a, const float* b, std::int64_t n) noexcept;
  void (*rmsnorm)(const float* x, const TensorView& weight, float eps, float* out) noexcept;
  void (*rope)(float* x, int n_heads, int head_dim, const float* cos, const float* sin) noexcept;
  void (*softmax)(float* x, std::int64_t n) noexcept;
  void (*silu_mul)(const float* gate, const float* up, float* out, std::int64_t n) noexcept;
  void (*attend)(const float* q, int group, int hd, float scale, const KvRun* runs, int n_runs, std::int64_t stride,
                 float* scores, std::int64_t scores_stride, float* out) noexcept;
  // Quantized weights (the activation layout is the same for every table).
  void (*quantize_act)(DType wtype, const float* x, std::int64_t n, void* xq) noexcept;
  void (*matvec_q)(const TensorView& w, const void* xq, float* y, std::int64_t begin, std::int64_t end) noexcept;
  void (*matmul_q)(const TensorView& w, const void* xq, std::int64_t n, float* y, std::int64_t ldy,
                   std::int64_t begin, std::int64_t end) noexcept;
  void (*matvec_q_silu_mul)(const TensorView& gate_w, const TensorView& up_w, const void* xq, float* out,
                            std::int64_t begin, std::int64_t end) noexcept;
  void (*matmul_q_silu_mul)(const TensorView& gate_w, const TensorView& up_w, const void* xq, std::int64_t n,
                            float* out, std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept;
  // Bit i set: the *_q kernels read DType(i) weights in the interleaved layout (TensorView::interleave)
  // natively; other interleaved views go to the references.
  std::uint32_t interleaved = 0;
};

// isa's kernels, or nullptr when the build has none for it or the CPU cannot run them.
const KernelTable* kernel_table(Isa isa) noexcept;

// The scalar references as a table (what WEFT_REFERENCE=1 selects).
const KernelTable& reference_table() noexcept;

// The table the dispatching entry points use now.
const KernelTable& active_table() noexcept;

namespace detail {
// Defined by each ISA translation unit that the build compiles (see kernels_config.hpp).
const KernelTable& scalar_table() noexcept;
const KernelTable& avx2_table() noexcept;
const KernelTable& avx512_table() noexcept;
const KernelTable& avx512bf16_table() noexcept;

// The AVX512_BF16 matvec methods for bf16 weights, exposed for the tests and the benchmark that
// decides the default: vdpbf16ps on a hi + lo bf16 split of x (relative error 2^-16), the same on
// a three-part split (2^-24, like f32), and widening by shift followed by FMA. Other dtypes fall
// back to the AVX-512 kernels.
void avx512bf16_matvec_dpbf16(const TensorView& w, const float* x, float* y, std::int64_t begin,
                              std::int64_t end) noexcept;
void avx512bf16_matvec_dpbf16x3(const TensorView& w, const float* x, float* y, std::int64_t begin,
                                std::int64_t end) noexcept;
// True when the avx512bf16 table's matvec uses vdpbf16ps (2-part split) for bf16 weights.
bool avx512bf16_default_is_dpbf16() noexcept;
void avx512bf16_matvec_shift(const TensorView& w, const float* x, float* y, std::int64_t begin,
                             std::int64_t end) noexcept;
}  // namespace detail

}  // namespace weft::kernels
