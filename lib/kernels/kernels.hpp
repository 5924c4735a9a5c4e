#pragma once
// Compute kernels for one rank. Kernels never start threads: the caller hands each one a row
// range [begin, end) and runs ranges in parallel. Every kernel has a scalar reference in
// kernels::ref; WEFT_REFERENCE=1 in the environment makes the dispatching entry points below
// use the references everywhere. The entry points below call the variant of the best ISA the CPU
// supports (or the one WEFT_ISA names); see isa.hpp. All of them are thread-safe for disjoint
// outputs, take unaligned pointers, allocate nothing per call, and are noexcept.
#include <cstdint>
#include <span>

#include "core/tensor.hpp"
#include "kernels/isa.hpp"

namespace weft::kernels {

// True when the scalar references run everywhere: WEFT_REFERENCE=1 at the first kernel call, or
// force_reference(true) since.
bool reference_forced() noexcept;

// y[r] = dot(w.row(r), x) for r in [begin, end). w is (rows, cols) in F32, F16 or BF16;
// x has w.cols floats, y has w.rows floats (only [begin, end) is written).
void matvec(const TensorView& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept;

// The same for n vectors at once: y[t*ldy + r] = dot(w.row(r), x[t*ldx ...]) for t < n and
// r in [begin, end). Each weight row is read once for all n vectors (prefill, batches). With the
// same ISA selected, the result for each (row, vector) is bit-identical to matvec's, whatever n
// and the row range: prefilling a block equals decoding it token by token.
void matmul(const TensorView& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
            std::int64_t begin, std::int64_t end) noexcept;

// The fused MLP input: out[r] = silu(dot(gate_w.row(r), x)) * dot(up_w.row(r), x) for r in
// [begin, end), silu(g) = g / (1 + exp(-g)). gate_w and up_w have the same shape (any dtypes);
// x has gate_w.cols floats, out has gate_w.rows floats (only [begin, end) is written).
void matvec_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, float* out,
                     std::int64_t begin, std::int64_t end) noexcept;

// The same for n vectors: out[t*ldo + r] for t < n from x[t*ldx ...] (prefill, batches).
void matmul_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, std::int64_t ldx,
                     std::int64_t n, float* out, std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept;

// out = x / rms(x) * weight, weight in any dtype; n = weight.cols.
void rmsnorm(const float* x, const TensorView& weight, float eps, float* out) noexcept;

// Row r of an embedding table (any dtype) widened to f32.
void embedding_row(const TensorView& table, std::int64_t r, float* out) noexcept;

// In-place Hugging Face RoPE (rotate_half) on n_heads consecutive heads of head_dim floats;
// cos/sin hold head_dim/2 values for this position.
void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) noexcept;

// In-place softmax over n floats.
void softmax(float* x, std::int64_t n) noexcept;

// out[i] = silu(gate[i]) * up[i].
void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) noexcept;

// dot product of n floats.
float dot_f32(const float* a, const float* b, std::int64_t n) noexcept;

// The scalar references: plain loops with one accumulator that define what each kernel above
// computes. The optimized variants are tested against them.
namespace ref {
void matvec(const TensorView& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept;
void matmul(const TensorView& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
            std::int64_t begin, std::int64_t end) noexcept;
void matvec_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, float* out,
                     std::int64_t begin, std::int64_t end) noexcept;
void matmul_silu_mul(const TensorView& gate_w, const TensorView& up_w, const float* x, std::int64_t ldx,
                     std::int64_t n, float* out, std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept;
void rmsnorm(const float* x, const TensorView& weight, float eps, float* out) noexcept;
void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) noexcept;
void softmax(float* x, std::int64_t n) noexcept;
void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) noexcept;
float dot_f32(const float* a, const float* b, std::int64_t n) noexcept;
}  // namespace ref

// Widening a row of any dtype into f32 (shared by the references and loaders).
void to_f32(const void* src, DType t, std::int64_t n, float* out) noexcept;

}  // namespace weft::kernels
