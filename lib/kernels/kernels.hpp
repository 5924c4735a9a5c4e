#pragma once
// Compute kernels for one rank. Kernels never start threads: the caller hands each one a row
// range [begin, end) and runs ranges in parallel. Every kernel has a scalar reference in
// kernels::ref; WEFT_REFERENCE=1 in the environment makes the dispatching entry points below
// use the references everywhere.
#include <cstdint>
#include <span>

#include "core/tensor.hpp"

namespace weft::kernels {

// True when WEFT_REFERENCE=1 was set when the process first asked.
bool reference_forced() noexcept;

// y[r] = dot(w.row(r), x) for r in [begin, end). w is (rows, cols) in F32, F16 or BF16;
// x has w.cols floats, y has w.rows floats (only [begin, end) is written).
void matvec(const TensorView& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept;

// The same for n vectors at once: y[t*ldy + r] = dot(w.row(r), x[t*ldx ...]) for t < n and
// r in [begin, end). Each weight row is read once for all n vectors (prefill, batches).
void matmul(const TensorView& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
            std::int64_t begin, std::int64_t end) noexcept;

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

namespace ref {
void matvec(const TensorView& w, const float* x, float* y, std::int64_t begin, std::int64_t end) noexcept;
void matmul(const TensorView& w, const float* x, std::int64_t ldx, std::int64_t n, float* y, std::int64_t ldy,
            std::int64_t begin, std::int64_t end) noexcept;
void rmsnorm(const float* x, const TensorView& weight, float eps, float* out) noexcept;
void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) noexcept;
void softmax(float* x, std::int64_t n) noexcept;
void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) noexcept;
float dot_f32(const float* a, const float* b, std::int64_t n) noexcept;
}  // namespace ref

// Widening a row of any dtype into f32 (shared by the references and loaders).
void to_f32(const void* src, DType t, std::int64_t n, float* out) noexcept;

}  // namespace weft::kernels
