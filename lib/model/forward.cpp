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
}

namespace {

// out = attention of the query heads of KV head g, for the token at absolute position i (block
// row t). Keys before pos0 come from the cache, keys of this block from the block's own k/v
// (they are written to the cache only after the whole block, so a rolling cache never loses a
// key that an earlier query of the block still needs).
void attend(const MistralConfig& c, KVCache& cache, ForwardState& s, int layer, int t, int g, std::int64_t pos0,
            float* scratch) noexcept {
  const int hd = c.head_dim, group = c.n_heads / c.n_kv_heads, kv_dim = c.kv_dim();
  const std::int64_t i = pos0 + t;
  const std::int64_t lo = c.sliding_window > 0 ? std::max<std::int64_t>(0, i - c.sliding_window + 1) : 0;
  const std::int64_t count = i - lo + 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* qg = s.q.data() + static_cast<std::size_t>(t) * c.q_dim() + static_cast<std::size_t>(g) * group * hd;

  auto key = [&](std::int64_t j) -> const float* {
    if (j >= pos0) return s.k.data() + (j - pos0) * kv_dim + g * hd;
    return cache.k_at(layer, static_cast<int>(j % cache.capacity)) + g * hd;
  };
  auto value = [&](std::int64_t j) -> const float* {
    if (j >= pos0) return s.v.data() + (j - pos0) * kv_dim + g * hd;
    return cache.v_at(layer, static_cast<int>(j % cache.capacity)) + g * hd;
  };

  // Each key is read once for all query heads that share it.
  for (std::int64_t j = lo; j <= i; ++j) {
    const float* kj = key(j);
    for (int h = 0; h < group; ++h) scratch[h * s.scores_stride + (j - lo)] = k::dot_f32(qg + h * hd, kj, hd) * scale;
  }
  for (int h = 0; h < group; ++h) k::softmax(scratch + h * s.scores_stride, count);
  float* out = s.att.data() + static_cast<std::size_t>(t) * c.q_dim() + static_cast<std::size_t>(g) * group * hd;
  std::fill(out, out + group * hd, 0.0f);
  for (std::int64_t j = lo; j <= i; ++j) {
    const float* vj = value(j);
    for (int h = 0; h < group; ++h) {
      const float p = scratch[h * s.scores_stride + (j - lo)];
      float* o = out + h * hd;
      for (int d = 0; d < hd; ++d) o[d] += p * vj[d];
    }
  }
}

// y[t] = W x[t] for the n tokens of the block, rows split across the context's threads. Chunks
// of whole 16-row blocks keep the kernels' 4-row grouping the same at every thread count and
// give each thread whole cache lines of y.
void linear(par::ExecContext& ctx, const TensorView& w, const float* x, int n, float* y) noexcept {
  constexpr std::int64_t kRowBlock = 64 / sizeof(float);
  const std::int64_t ld_x = w.cols, ld_y = w.rows;
  const par::WorkShape work{.rows = w.rows, .row_bytes = static_cast<std::int64_t>(w.row_bytes()), .row_block = kRowBlock};
  ctx.parallel_for(work, par::WorkDistributionConfig::for_matmul(w.rows, w.cols),
                   [&](std::int64_t b, std::int64_t e) { k::matmul(w, x, ld_x, n, y, ld_y, b, e); });
}

// q, k and v from the same input in one parallel region: one fork/join per layer instead of
// three. Rows are numbered across the three matrices; a chunk that straddles two of them is cut
// at the boundary (each matrix's rows are a multiple of the 16-row block for real models).
void qkv(par::ExecContext& ctx, const LayerWeights& L, const float* x, int n, float* q, float* k, float* v) noexcept {
  constexpr std::int64_t kRowBlock = 64 / sizeof(float);
  const TensorView* w[3] = {&L.wq, &L.wk, &L.wv};
  float* out[3] = {q, k, v};
  const std::int64_t rows = L.wq.rows + L.wk.rows + L.wv.rows;
  const par::WorkShape work{.rows = rows, .row_bytes = static_cast<std::int64_t>(L.wq.row_bytes()), .row_block = kRowBlock};
  ctx.parallel_for(work, par::WorkDistributionConfig::for_matmul(rows, L.wq.cols), [&](std::int64_t b, std::int64_t e) {
    std::int64_t base = 0;
    for (int i = 0; i < 3; ++i) {
      const std::int64_t lo = std::max(b, base), hi = std::min(e, base + w[i]->rows);
      if (lo < hi) k::matmul(*w[i], x, w[i]->cols, n, out[i], w[i]->rows, lo - base, hi - base);
      base += w[i]->rows;
    }
  });
}

// out[t] = silu(W_gate x[t]) * (W_up x[t]): both matrices read in one pass over their rows.
void gate_up(par::ExecContext& ctx, const TensorView& gate, const TensorView& up, const float* x, int n, float* out) noexcept {
  constexpr std::int64_t kRowBlock = 64 / sizeof(float);
  const std::int64_t ld_x = gate.cols, ld_o = gate.rows;
  const par::WorkShape work{.rows = gate.rows, .row_bytes = static_cast<std::int64_t>(gate.row_bytes() + up.row_bytes()),
                            .row_block = kRowBlock};
  ctx.parallel_for(work, par::WorkDistributionConfig::for_matmul(gate.rows, 2 * gate.cols),
                   [&](std::int64_t b, std::int64_t e) { k::matmul_silu_mul(gate, up, x, ld_x, n, out, ld_o, b, e); });
}

}  // namespace

void forward_block(const MistralConfig& c, const MistralWeights& w, par::ExecContext& ctx, KVCache& cache,
                   ForwardState& s, const std::int32_t* tokens, int n, std::int64_t pos0, bool all_logits) noexcept {
  const int dim = c.dim, hd = c.head_dim, half = hd / 2, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  float* x = s.x.data();

  for (int t = 0; t < n; ++t) {
    k::embedding_row(w.embedding, tokens[t], x + static_cast<std::size_t>(t) * dim);
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(pos0 + t) * s.inv_freq[i];
      s.rope_cos[t * half + i] = static_cast<float>(std::cos(angle));
      s.rope_sin[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[l];

    // Attention block: rmsnorm -> q, k, v -> RoPE -> attention over the window -> o-proj -> residual.
    for (int t = 0; t < n; ++t) k::rmsnorm(x + t * dim, L.attn_norm, c.norm_eps, s.xb.data() + t * dim);
    qkv(ctx, L, s.xb.data(), n, s.q.data(), s.k.data(), s.v.data());
    for (int t = 0; t < n; ++t) {
      k::rope(s.q.data() + t * q_dim, c.n_heads, hd, s.rope_cos.data() + t * half, s.rope_sin.data() + t * half);
      k::rope(s.k.data() + t * kv_dim, c.n_kv_heads, hd, s.rope_cos.data() + t * half, s.rope_sin.data() + t * half);
    }
    // One item per (token, KV head); each streams the K and V rows of its window.
    const int group = c.n_heads / c.n_kv_heads;
    const std::int64_t keys = c.sliding_window > 0 ? std::min<std::int64_t>(c.sliding_window, pos0 + n) : pos0 + n;
    const par::WorkShape items{.rows = static_cast<std::int64_t>(n) * c.n_kv_heads,
                               .row_bytes = keys * hd * 2 * static_cast<std::int64_t>(sizeof(float))};
    ctx.parallel_for(items, par::WorkDistributionConfig::for_attention(c.n_kv_heads, keys), [&](std::int64_t b, std::int64_t e) {
      const int slot = std::max(0, tbb::this_task_arena::current_thread_index());
      float* scratch = s.scores.data() + static_cast<std::size_t>(slot) * group * s.scores_stride;
      for (std::int64_t task = b; task < e; ++task)
        attend(c, cache, s, l, static_cast<int>(task / c.n_kv_heads), static_cast<int>(task % c.n_kv_heads), pos0, scratch);
    });
    for (int t = 0; t < n; ++t) {
      const std::int64_t p = pos0 + t;
      const int slot = static_cast<int>(p % cache.capacity);
      std::copy_n(s.k.data() + t * kv_dim, kv_dim, cache.k_at(l, slot));
      std::copy_n(s.v.data() + t * kv_dim, kv_dim, cache.v_at(l, slot));
    }
    linear(ctx, L.wo, s.att.data(), n, s.xb.data());
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) * dim; ++i) x[i] += s.xb[i];

    // MLP block: rmsnorm -> gate, up -> silu(gate) * up -> down -> residual.
    for (int t = 0; t < n; ++t) k::rmsnorm(x + t * dim, L.ffn_norm, c.norm_eps, s.xb.data() + t * dim);
    gate_up(ctx, L.w_gate, L.w_up, s.xb.data(), n, s.hb.data());
    linear(ctx, L.w_down, s.hb.data(), n, s.xb.data());
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) * dim; ++i) x[i] += s.xb[i];
  }

  // Final norm and lm_head, for every token or only the last.
  const int first = all_logits ? 0 : n - 1;
  const int rows = n - first;
  for (int t = first; t < n; ++t) k::rmsnorm(x + t * dim, w.final_norm, c.norm_eps, s.xb.data() + (t - first) * dim);
  linear(ctx, w.lm_head, s.xb.data(), rows, s.logits.data());
}

}  // namespace weft::model
