#pragma once
// Compute kernels for one rank. Kernels never start threads: the caller hands each one a row
// range [begin, end) and runs ranges in parallel. Every kernel has a scalar reference in
// kernels::ref; WEFT_REFERENCE=1 in the environment makes the dispatching entry points below
// use the references everywhere. The entry points below call the variant of the best ISA the CPU
// supports (or the one WEFT_ISA names); see isa.hpp. All of them are thread-safe for disjoint
// outputs, take unaligned pointers, allocate nothing per call, and are noexcept.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/tensor.hpp"
#include "kernels/isa.hpp"

namespace weft::kernels {

// True when the scalar references run everywhere: WEFT_REFERENCE=1 at the first kernel call, or
// force_reference(true) since.
bool reference_forced() noexcept;

// y[r] = dot(w.row(r), x) for r in [begin, end). w is (rows, cols) in F32, F16 or BF16;
// x has w.cols floats, y has w.rows floats (only [begin, end) is written). The float kernels
// (matvec, matmul, their silu_mul forms, rmsnorm) take plain-dtype weights only: quantized
// weights go through quantize_act and the *_q kernels below (quantized weights are not valid
// here: nothing is read from them and the outputs are unspecified).
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

// Row r of an embedding table (any dtype, quantized ones included) widened to f32.
void embedding_row(const TensorView& table, std::int64_t r, float* out) noexcept;

// In-place Hugging Face RoPE (rotate_half) on n_heads consecutive heads of head_dim floats;
// cos/sin hold head_dim/2 values for this position.
void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) noexcept;

// In-place softmax over n floats.
void softmax(float* x, std::int64_t n) noexcept;

// out[i] = silu(gate[i]) * up[i].
void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) noexcept;

// n consecutive keys and values of one KV head: key i at k + i * stride, value i at v + i * stride.
struct KvRun {
  const float* k;
  const float* v;
  std::int64_t n;
};

// Attention of one query row for the `group` query heads that share a KV head: q holds the
// group's heads (group x hd floats, one after the other); the keys are those of runs[0, n_runs) in
// order, each key and value hd floats at `stride` floats apart. scores is scratch of group rows,
// scores_stride floats apart, each at least the total key count: it gets softmax(q_h . k * scale).
// out (group x hd) = the probability-weighted sum of the values. Each key and value is read once
// for the whole group (grouped-query attention).
void attend(const float* q, int group, int hd, float scale, const KvRun* runs, int n_runs, std::int64_t stride,
            float* scores, std::int64_t scores_stride, float* out) noexcept;

// dot product of n floats.
float dot_f32(const float* a, const float* b, std::int64_t n) noexcept;

// ---- quantized weights (ggml block formats, core/quant.hpp) --------------------------------------
// A decode step quantizes its activation vector once (quantize_act), then runs the row-range
// kernels below on it from any number of threads. The dot product of a weight row with the
// quantized vector is computed the way ggml's vec_dot does: exact integer dot products per block
// (per sub-block for the k-quants), scaled by the weight block's scale(s) and the activation
// block's scale, summed in f32. The activation layout is shared by every ISA (see act_bytes).

// Bytes of one activation vector of n floats quantized for weights of type wtype; n is a
// multiple of wtype's block size. Layouts: for Q8_0/Q4_0 weights, nb = n/32 blocks of 32 int8
// values with a float scale each, stored as int8 qs[32 * nbp], float d[nbp], int32 sum[nbp]
// (sum = the block's sum of qs; nbp = nb rounded up to kActGroupBlocks, the padding zeroed so
// that kernels may read whole groups); for Q4_K/Q6_K weights, n/256 BlockQ8_K; for plain weight
// dtypes the n floats themselves (the *_q kernels then run the float kernels). A multiple of 4.
std::size_t act_bytes(DType wtype, std::int64_t n) noexcept;
constexpr std::int64_t kActGroupBlocks = 16;
// nbp above: the blocks of 32 of an n-element Q8_0/Q4_0 activation, padded to kActGroupBlocks.
constexpr std::int64_t act_padded_blocks(std::int64_t n) noexcept {
  return (n / 32 + kActGroupBlocks - 1) / kActGroupBlocks * kActGroupBlocks;
}

// Quantizes x[0, n) for a dot product with wtype weights into xq (act_bytes(wtype, n) bytes):
// per block d = max|x| / 127 and q = round(x / d) in [-127, 127]. Thread-safe.
void quantize_act(DType wtype, const float* x, std::int64_t n, void* xq) noexcept;

// The values quantize_act stored (d * q), for tests and debugging.
void dequantize_act(DType wtype, const void* xq, std::int64_t n, float* x) noexcept;

// y[r] = dot(w.row(r), x) for r in [begin, end), with x given as quantize_act(w.dtype, x,
// w.cols, xq). Any weight dtype. Thread-safe for disjoint row ranges.
void matvec_q(const TensorView& w, const void* xq, float* y, std::int64_t begin, std::int64_t end) noexcept;

// The same for n vectors quantized back to back (vector t at xq + t * act_bytes(w.dtype, w.cols)):
// y[t*ldy + r]. Each weight row is read once for all n vectors. With the same ISA selected the
// result for each (row, vector) is bit-identical to matvec_q's, whatever n and the row range.
void matmul_q(const TensorView& w, const void* xq, std::int64_t n, float* y, std::int64_t ldy, std::int64_t begin,
              std::int64_t end) noexcept;

// out[r] = silu(gate_w.row(r) . x) * (up_w.row(r) . x) for r in [begin, end); gate_w and up_w
// have the same shape and dtype, xq = quantize_act(gate_w.dtype, x, gate_w.cols). Each dot
// product is bit-identical to matvec_q's.
void matvec_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, float* out,
                       std::int64_t begin, std::int64_t end) noexcept;

// The same for n vectors (stride act_bytes) into out[t*ldo + r].
void matmul_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, std::int64_t n, float* out,
                       std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept;

// Whether the active kernels read t in the interleaved layout (core/quant.hpp) natively, so that
// storing t matrices that way at load pays (every kernel reads both layouts).
bool reads_interleaved(DType t) noexcept;

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
void attend(const float* q, int group, int hd, float scale, const KvRun* runs, int n_runs, std::int64_t stride,
            float* scores, std::int64_t scores_stride, float* out) noexcept;
void quantize_act(DType wtype, const float* x, std::int64_t n, void* xq) noexcept;
void matvec_q(const TensorView& w, const void* xq, float* y, std::int64_t begin, std::int64_t end) noexcept;
void matmul_q(const TensorView& w, const void* xq, std::int64_t n, float* y, std::int64_t ldy, std::int64_t begin,
              std::int64_t end) noexcept;
void matvec_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, float* out,
                       std::int64_t begin, std::int64_t end) noexcept;
void matmul_q_silu_mul(const TensorView& gate_w, const TensorView& up_w, const void* xq, std::int64_t n, float* out,
                       std::int64_t ldo, std::int64_t begin, std::int64_t end) noexcept;
}  // namespace ref

// Widening a row of any dtype into f32 (shared by the references and loaders); for quantized
// dtypes n must be a multiple of the block size.
void to_f32(const void* src, DType t, std::int64_t n, float* out) noexcept;

}  // namespace weft::kernels
