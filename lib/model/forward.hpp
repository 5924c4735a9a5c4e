#pragma once
// The Mistral forward pass: one free function whose layer loop reads top to bottom, over a
// block of tokens (a prompt chunk in prefill, one token in decode).
#include <cstdint>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"
#include "parallel/exec_context.hpp"

namespace weft::model {

// Keys and values of every layer. With a sliding window W the cache is a rolling buffer of W
// slots (position p lives in slot p % W); without one it holds `capacity` positions.
struct KVCache {
  int n_layers = 0;
  int kv_dim = 0;
  int capacity = 0;   // slots per layer
  bool rolling = false;
  AlignedBuffer<float> k;  // [layer][slot][kv_dim]
  AlignedBuffer<float> v;  // [layer][slot][kv_dim]

  KVCache() = default;
  KVCache(const MistralConfig& c, int context);
  float* k_at(int layer, int slot) noexcept { return k.data() + (static_cast<std::size_t>(layer) * capacity + slot) * kv_dim; }
  float* v_at(int layer, int slot) noexcept { return v.data() + (static_cast<std::size_t>(layer) * capacity + slot) * kv_dim; }
};

// Activations for blocks of up to max_block tokens, allocated once per session so that
// decoding allocates nothing.
struct ForwardState {
  int max_block = 0;
  AlignedBuffer<float> x, xb, q, k, v, att, hb;  // [block][...]
  AlignedBuffer<float> rope_cos, rope_sin;            // [block][head_dim/2]
  AlignedBuffer<double> inv_freq;                     // [head_dim/2]
  AlignedBuffer<float> scores;                        // [thread slot][group][window + block]
  int scores_stride = 0;
  AlignedBuffer<float> logits;                        // [block][vocab]

  ForwardState() = default;
  ForwardState(const MistralConfig& c, int max_block, int cache_capacity, int threads);
};

// Runs tokens[0..n) at positions pos0..pos0+n-1 through the model, appending their keys and
// values to the cache. n <= state.max_block. Writes logits to state.logits: for every token
// when all_logits, else only for the last one (row 0). Positions must be within the cache's
// reach (checked by the caller).
void forward_block(const MistralConfig& c, const MistralWeights& w, par::ExecContext& ctx, KVCache& cache,
                   ForwardState& s, const std::int32_t* tokens, int n, std::int64_t pos0, bool all_logits) noexcept;

}  // namespace weft::model
