#pragma once
// The Mistral forward pass: one free function whose layer loop reads top to bottom, over a
// block of tokens (a prompt chunk in prefill, one token in decode).
#include <cstdint>
#include <span>
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
  const float* k_at(int layer, int slot) const noexcept { return k.data() + (static_cast<std::size_t>(layer) * capacity + slot) * kv_dim; }
  const float* v_at(int layer, int slot) const noexcept { return v.data() + (static_cast<std::size_t>(layer) * capacity + slot) * kv_dim; }
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
  // Inputs quantized once per token for the integer kernels of quantized weights: one buffer
  // per activation format (32-element blocks for Q8_0/Q4_0 weights, 256-element blocks for the
  // k-quants), so q, k and v of different quantized types can share one parallel region.
  AlignedBuffer<std::byte> xq_32, xq_256;             // [block][act_bytes(...)]
  AlignedBuffer<std::int32_t> row_run;                // [block]: which run of the block each row belongs to

  ForwardState() = default;
  ForwardState(const MistralConfig& c, int max_block, int cache_capacity, int threads);
};

// Consecutive tokens of one sequence inside a block: rows [first_row, first_row + n_rows) of the
// block are that sequence's positions pos0, pos0 + 1, ..., and their keys and values go to
// `cache`. A block holds one run (a prompt chunk, one decode step) or several (one token of each
// of several sequences decoded together, or prompt chunks of several sequences).
struct SequenceRun {
  KVCache* cache = nullptr;
  int first_row = 0;
  int n_rows = 0;
  std::int64_t pos0 = 0;
};

// How a forward pass fits into a parallel model. The defaults run the whole model on one rank.
// A pipeline stage holds a contiguous range of layers (its MistralWeights and MistralConfig list only
// those): the first stage embeds, the last computes logits, and the hidden states travel between
// stages in ForwardState::x. A tensor-parallel rank runs the same pass with its shard of every
// matrix (a config with its local head counts, hidden width and lm_head rows) and sums the
// row-parallel partial outputs (o-proj, down) across ranks with all_reduce.
struct ForwardOptions {
  bool embed = true;  // start from the token embeddings; false: from the hidden states already in s.x
  bool head = true;   // end with the final norm and lm_head; false: leave the hidden states in s.x
  // When set, called on the o-proj and down outputs ([n][dim] floats) before the residual add;
  // must leave in data the sum of every rank's data. ctx is all_reduce_ctx.
  void (*all_reduce)(void* ctx, float* data, std::size_t n) noexcept = nullptr;
  void* all_reduce_ctx = nullptr;
};

// Runs tokens[0..n) through the model as the given runs (which cover rows 0..n-1 in order, no
// gaps; every cache with the capacity `s` was sized for), appending keys and values to each
// run's cache. n <= state.max_block. Each sequence's attention sees only its own cache: the
// matrix products are shared, so n sequences cost about one pass over the weights. Writes logits
// to state.logits: for every row when all_logits, else one row per run (its last token), in run
// order. Positions must be within each cache's reach (checked by the caller).
void forward_runs(const MistralConfig& c, const MistralWeights& w, par::ExecContext& ctx,
                  std::span<const SequenceRun> runs, ForwardState& s, const std::int32_t* tokens, int n,
                  bool all_logits, const ForwardOptions& options = {}) noexcept;

// forward_runs() with one run: tokens[0..n) at positions pos0..pos0+n-1 of one sequence; logits
// for every token when all_logits, else only for the last one (row 0).
void forward_block(const MistralConfig& c, const MistralWeights& w, par::ExecContext& ctx, KVCache& cache,
                   ForwardState& s, const std::int32_t* tokens, int n, std::int64_t pos0, bool all_logits) noexcept;

}  // namespace weft::model
