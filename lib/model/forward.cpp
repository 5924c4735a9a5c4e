#include "model/forward.hpp"

#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cmath>

#include "kernels/kernels.hpp"

namespace weft::model {

namespace k = weft::kernels;

KVCache::KVCache(const MistralConfig& c, int context)
    : n_layers(c.n_layers), kv_dim(c.kv_dim()) {
  rolling = c.sliding_window > 0 && c.sliding_window < context;
  capacity = rolling ? c.sliding_window : context;
  const std::size_t n = static_cast<std::size_t>(n_layers) * capacity * kv_dim;
  k.resize(n);
  v.resize(n);
}

ForwardState::ForwardState(const MistralConfig& c, int block, int cache_capacity, int threads) : max_block(block) {
  const auto b = static_cast<std::size_t>(block);
  x.resize(b * c.dim);
  xb.resize(b * c.dim);
  q.resize(b * c.q_dim());
  k.resize(b * c.kv_dim());
  v.resize(b * c.kv_dim());
  att.resize(b * c.q_dim());
  hb.resize(b * c.hidden_dim);
  const int half = c.head_dim / 2;
  rope_cos.resize(b * half);
  rope_sin.resize(b * half);
  inv_freq.resize(static_cast<std::size_t>(half));
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(c.rope_theta, -2.0 * i / c.head_dim);
  scores_stride = cache_capacity + block;
  const int group = c.n_heads / c.n_kv_heads;
  // One scratch row set per arena thread slot (the arena may also run the calling thread).
  scores.resize(static_cast<std::size_t>(threads + 1) * group * scores_stride);
  logits.resize(b * c.vocab_size);
  row_run.resize(b);
  // Quantized matrices take inputs of dim (q, k, v, gate, up, lm_head), q_dim (o) or hidden_dim
  // (down) floats; a width that does not fill whole blocks never has a quantized matrix.
  const std::int64_t widest = std::max({c.dim, c.q_dim(), c.hidden_dim});
  xq_32.resize(b * kernels::act_bytes(DType::Q8_0, widest / 32 * 32));
  xq_256.resize(b * kernels::act_bytes(DType::Q4_K, widest / 256 * 256));
}

namespace {

// out = attention of the query heads of KV head g, for block row t, the token at absolute
// position i of run r. Keys of the run's earlier positions come from its cache, keys of the run's
// rows in this block from the block's own k/v (they are written to the cache only after the
// whole block, so a rolling cache never loses a key that an earlier query of the block still
// needs). The keys form at most three runs of consecutive rows: the cache's slots up to its end,
// the slots from its start after a wrap, and the block's rows.
void attend(const MistralConfig& c, const SequenceRun& r, ForwardState& s, int layer, int t, int g,
            float* scratch) noexcept {
  const int hd = c.head_dim, group = c.n_heads / c.n_kv_heads, kv_dim = c.kv_dim();
  const KVCache& cache = *r.cache;
  const std::int64_t pos0 = r.pos0, row0 = r.first_row;
  const std::int64_t i = pos0 + (t - row0);
  const std::int64_t lo = c.sliding_window > 0 ? std::max<std::int64_t>(0, i - c.sliding_window + 1) : 0;
  k::KvRun runs[3];
  int n_runs = 0;
  for (std::int64_t j = lo; j < pos0;) {  // cached positions [lo, pos0) (i >= pos0: the query is in the block)
    const int slot = static_cast<int>(j % cache.capacity);
    const std::int64_t n = std::min<std::int64_t>(pos0 - j, cache.capacity - slot);
    runs[n_runs++] = {cache.k_at(layer, slot) + g * hd, cache.v_at(layer, slot) + g * hd, n};
    j += n;
  }
  if (const std::int64_t first = std::max(lo, pos0); first <= i) {
    const std::int64_t row = row0 + first - pos0;
    runs[n_runs++] = {s.k.data() + row * kv_dim + g * hd, s.v.data() + row * kv_dim + g * hd, i - first + 1};
  }
  const float* qg = s.q.data() + static_cast<std::size_t>(t) * c.q_dim() + static_cast<std::size_t>(g) * group * hd;
  float* out = s.att.data() + static_cast<std::size_t>(t) * c.q_dim() + static_cast<std::size_t>(g) * group * hd;
  k::attend(qg, group, hd, 1.0f / std::sqrt(static_cast<float>(hd)), runs, n_runs, kv_dim, scratch, s.scores_stride,
            out);
}

// The block's n inputs (rows of `cols` floats) quantized for weights of type t, in the buffer of
// t's activation format; computed by the calling thread before the parallel region (a fraction of
// a percent of the matrix's own time).
// Whether weights of type t take 256-element activation blocks (the k-quants) rather than 32.
bool uses_k_blocks(DType t) noexcept { return t == DType::Q4_K || t == DType::Q6_K; }

const std::byte* quantize_inputs(ForwardState& s, DType t, const float* x, std::int64_t cols, int n) noexcept {
  std::byte* out = uses_k_blocks(t) ? s.xq_256.data() : s.xq_32.data();
  const std::size_t stride = k::act_bytes(t, cols);
  for (int i = 0; i < n; ++i) k::quantize_act(t, x + static_cast<std::size_t>(i) * cols, cols, out + i * stride);
  return out;
}

// y[r] for the n vectors, rows [b, e) of w, whichever kind of weight w is; xq is the quantized
// input (quantize_inputs) when w is quantized.
void matmul_any(const TensorView& w, const float* x, const std::byte* xq, int n, float* y, std::int64_t ldy,
                std::int64_t b, std::int64_t e) noexcept {
  if (dtype_is_quantized(w.dtype))
    k::matmul_q(w, xq, n, y, ldy, b, e);
  else
    k::matmul(w, x, w.cols, n, y, ldy, b, e);
}

// y[t] = W x[t] for the n tokens of the block, rows split across the context's threads. Chunks
// of whole 16-row blocks keep the kernels' 4-row grouping the same at every thread count and
// give each thread whole cache lines of y.
void linear(par::ExecContext& ctx, ForwardState& s, const TensorView& w, const float* x, int n, float* y) noexcept {
  constexpr std::int64_t kRowBlock = 64 / sizeof(float);
  const std::byte* xq = dtype_is_quantized(w.dtype) ? quantize_inputs(s, w.dtype, x, w.cols, n) : nullptr;
  const par::WorkShape work{.rows = w.rows, .row_bytes = static_cast<std::int64_t>(w.row_bytes()), .row_block = kRowBlock};
  ctx.parallel_for(work, par::WorkDistributionConfig::for_matmul(w.rows, w.cols),
                   [&](std::int64_t b, std::int64_t e) { matmul_any(w, x, xq, n, y, w.rows, b, e); });
}

// q, k and v from the same input in one parallel region: one fork/join per layer instead of
// three. Rows are numbered across the three matrices; a chunk that straddles two of them is cut
// at the boundary (each matrix's rows are a multiple of the 16-row block for real models).
void qkv(par::ExecContext& ctx, ForwardState& s, const LayerWeights& L, const float* x, int n, float* q, float* k,
         float* v) noexcept {
  constexpr std::int64_t kRowBlock = 64 / sizeof(float);
  const TensorView* w[3] = {&L.wq, &L.wk, &L.wv};
  float* out[3] = {q, k, v};
  // Quantized inputs, once per activation format the three matrices use.
  const std::byte* xq[3] = {};
  for (int i = 0; i < 3; ++i) {
    if (!dtype_is_quantized(w[i]->dtype)) continue;
    for (int j = 0; j < i && !xq[i]; ++j)
      if (xq[j] && uses_k_blocks(w[j]->dtype) == uses_k_blocks(w[i]->dtype)) xq[i] = xq[j];
    if (!xq[i]) xq[i] = quantize_inputs(s, w[i]->dtype, x, w[i]->cols, n);
  }
  const std::int64_t rows = L.wq.rows + L.wk.rows + L.wv.rows;
  const par::WorkShape work{.rows = rows, .row_bytes = static_cast<std::int64_t>(L.wq.row_bytes()), .row_block = kRowBlock};
  ctx.parallel_for(work, par::WorkDistributionConfig::for_matmul(rows, L.wq.cols), [&](std::int64_t b, std::int64_t e) {
    std::int64_t base = 0;
    for (int i = 0; i < 3; ++i) {
      const std::int64_t lo = std::max(b, base), hi = std::min(e, base + w[i]->rows);
      if (lo < hi) matmul_any(*w[i], x, xq[i], n, out[i], w[i]->rows, lo - base, hi - base);
      base += w[i]->rows;
    }
  });
}

// out[t] = silu(W_gate x[t]) * (W_up x[t]): both matrices read in one pass over their rows.
// Gate and up have the same dtype (the loader checks), so a quantized pair shares one quantized input.
void gate_up(par::ExecContext& ctx, ForwardState& s, const TensorView& gate, const TensorView& up, const float* x, int n,
             float* out) noexcept {
  constexpr std::int64_t kRowBlock = 64 / sizeof(float);
  const std::int64_t ld_x = gate.cols, ld_o = gate.rows;
  const bool quantized = dtype_is_quantized(gate.dtype);
  const std::byte* xq = quantized ? quantize_inputs(s, gate.dtype, x, gate.cols, n) : nullptr;
  const par::WorkShape work{.rows = gate.rows, .row_bytes = static_cast<std::int64_t>(gate.row_bytes() + up.row_bytes()),
                            .row_block = kRowBlock};
  ctx.parallel_for(work, par::WorkDistributionConfig::for_matmul(gate.rows, 2 * gate.cols),
                   [&](std::int64_t b, std::int64_t e) {
                     if (quantized)
                       k::matmul_q_silu_mul(gate, up, xq, n, out, ld_o, b, e);
                     else
                       k::matmul_silu_mul(gate, up, x, ld_x, n, out, ld_o, b, e);
                   });
}

}  // namespace

void forward_runs(const MistralConfig& c, const MistralWeights& w, par::ExecContext& ctx,
                  std::span<const SequenceRun> runs, ForwardState& s, const std::int32_t* tokens, int n,
                  bool all_logits, const ForwardOptions& options) noexcept {
  const int dim = c.dim, hd = c.head_dim, half = hd / 2, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  float* x = s.x.data();

  std::int64_t keys = 1;  // the most keys any row attends to
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const SequenceRun& run = runs[r];
    for (int t = run.first_row; t < run.first_row + run.n_rows; ++t) {
      s.row_run[t] = static_cast<std::int32_t>(r);
      const std::int64_t pos = run.pos0 + (t - run.first_row);
      for (int i = 0; i < half; ++i) {
        const double angle = static_cast<double>(pos) * s.inv_freq[i];
        s.rope_cos[t * half + i] = static_cast<float>(std::cos(angle));
        s.rope_sin[t * half + i] = static_cast<float>(std::sin(angle));
      }
    }
    const std::int64_t end = run.pos0 + run.n_rows;
    keys = std::max(keys, c.sliding_window > 0 ? std::min<std::int64_t>(c.sliding_window, end) : end);
  }
  if (options.embed)
    for (int t = 0; t < n; ++t) k::embedding_row(w.embedding, tokens[t], x + static_cast<std::size_t>(t) * dim);
  const auto reduce = [&](float* data) {
    if (options.all_reduce) options.all_reduce(options.all_reduce_ctx, data, static_cast<std::size_t>(n) * dim);
  };

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[l];

    // Attention block: rmsnorm -> q, k, v -> RoPE -> attention over the window -> o-proj -> residual.
    for (int t = 0; t < n; ++t) k::rmsnorm(x + t * dim, L.attn_norm, c.norm_eps, s.xb.data() + t * dim);
    qkv(ctx, s, L, s.xb.data(), n, s.q.data(), s.k.data(), s.v.data());
    for (int t = 0; t < n; ++t) {
      k::rope(s.q.data() + t * q_dim, c.n_heads, hd, s.rope_cos.data() + t * half, s.rope_sin.data() + t * half);
      k::rope(s.k.data() + t * kv_dim, c.n_kv_heads, hd, s.rope_cos.data() + t * half, s.rope_sin.data() + t * half);
    }
    // One item per (row, KV head); each streams the K and V rows of its window.
    const int group = c.n_heads / c.n_kv_heads;
    const par::WorkShape items{.rows = static_cast<std::int64_t>(n) * c.n_kv_heads,
                               .row_bytes = keys * hd * 2 * static_cast<std::int64_t>(sizeof(float))};
    ctx.parallel_for(items, par::WorkDistributionConfig::for_attention(c.n_kv_heads, keys), [&](std::int64_t b, std::int64_t e) {
      const int slot = std::max(0, tbb::this_task_arena::current_thread_index());
      float* scratch = s.scores.data() + static_cast<std::size_t>(slot) * group * s.scores_stride;
      for (std::int64_t task = b; task < e; ++task) {
        const int t = static_cast<int>(task / c.n_kv_heads);
        attend(c, runs[static_cast<std::size_t>(s.row_run[t])], s, l, t, static_cast<int>(task % c.n_kv_heads), scratch);
      }
    });
    for (const SequenceRun& run : runs) {
      for (int t = run.first_row; t < run.first_row + run.n_rows; ++t) {
        const std::int64_t p = run.pos0 + (t - run.first_row);
        const int slot = static_cast<int>(p % run.cache->capacity);
        std::copy_n(s.k.data() + t * kv_dim, kv_dim, run.cache->k_at(l, slot));
        std::copy_n(s.v.data() + t * kv_dim, kv_dim, run.cache->v_at(l, slot));
      }
    }
    linear(ctx, s, L.wo, s.att.data(), n, s.xb.data());
    reduce(s.xb.data());
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) * dim; ++i) x[i] += s.xb[i];

    // MLP block: rmsnorm -> gate, up -> silu(gate) * up -> down -> residual.
    for (int t = 0; t < n; ++t) k::rmsnorm(x + t * dim, L.ffn_norm, c.norm_eps, s.xb.data() + t * dim);
    gate_up(ctx, s, L.w_gate, L.w_up, s.xb.data(), n, s.hb.data());
    linear(ctx, s, L.w_down, s.hb.data(), n, s.xb.data());
    reduce(s.xb.data());
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) * dim; ++i) x[i] += s.xb[i];
  }

  // Final norm and lm_head, for every row or only the last row of each run.
  if (!options.head) return;
  int rows = 0;
  if (all_logits) {
    for (int t = 0; t < n; ++t) k::rmsnorm(x + t * dim, w.final_norm, c.norm_eps, s.xb.data() + t * dim);
    rows = n;
  } else {
    for (const SequenceRun& run : runs) {
      const int t = run.first_row + run.n_rows - 1;
      k::rmsnorm(x + t * dim, w.final_norm, c.norm_eps, s.xb.data() + rows * dim);
      ++rows;
    }
  }
  linear(ctx, s, w.lm_head, s.xb.data(), rows, s.logits.data());
}

void forward_block(const MistralConfig& c, const MistralWeights& w, par::ExecContext& ctx, KVCache& cache,
                   ForwardState& s, const std::int32_t* tokens, int n, std::int64_t pos0, bool all_logits) noexcept {
  const SequenceRun run{.cache = &cache, .first_row = 0, .n_rows = n, .pos0 = pos0};
  forward_runs(c, w, ctx, {&run, 1}, s, tokens, n, all_logits);
}

}  // namespace weft::model
