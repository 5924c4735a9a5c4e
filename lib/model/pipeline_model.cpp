#include "model/pipeline_model.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "parallel/placement.hpp"
#include "parallel/topology.hpp"
#include "weft/error.hpp"

namespace weft::model {

// One stage: its layers (views into the model, or copies in its rank's memory), the config of
// that range, the KV caches of its layers for every sequence, and its activations.
struct PipelineParallelMistral::Stage {
  int first_layer = 0;
  MistralConfig config;    // n_layers = the stage's layer count
  MistralWeights weights;  // layers = the stage's layers; embedding/final norm/lm_head as the model's
  std::vector<par::NumaBuffer> copies;  // the stage's own copy of its layers, when made
  std::vector<KVCache> caches;          // [sequence]
  ForwardState state;
  std::vector<SequenceRun> runs;        // the runs of the micro-batch being processed (reserved)
  int mb = -1;                          // the micro-batch whose hidden states are in state.x (or -1)
};

namespace {
// Copies a view's bytes into `buffers` (memory of the rank running this) and returns a view of the copy.
TensorView copy_into(const TensorView& v, par::Rank& rank, std::vector<par::NumaBuffer>& buffers) {
  par::NumaBuffer b = rank.allocate(v.bytes());
  std::memcpy(b.data(), v.data, v.bytes());
  TensorView out = v;
  out.data = b.data();
  buffers.push_back(std::move(b));
  return out;
}
}  // namespace

PipelineParallelMistral::PipelineParallelMistral(const LoadedModel& m, int stages, int threads_per_stage,
                                                 const par::PipelineConfig& config, int max_sequences, int context,
                                                 int block)
    : model_(m), config_(config), block_(block) {
  const MistralConfig& c = m.config;
  if (stages < 1) throw UsageError("pipeline: the number of stages must be at least 1, got " + std::to_string(stages));
  if (stages > c.n_layers)
    throw UsageError("pipeline: " + std::to_string(stages) + " stages but the model has only " +
                     std::to_string(c.n_layers) + " layers (a stage holds at least one layer)");
  if (config_.num_micro_batches < 1)
    throw UsageError("pipeline: num_micro_batches must be at least 1, got " + std::to_string(config_.num_micro_batches));
  // With several NUMA nodes the stages are placed one per node (place_ranks) and each copies its
  // layers into its node's memory. With one node every rank reads the shared mapping at the same
  // speed, so the stages stay unplaced and keep views (no second copy of the weights).
  const par::Topology topo = par::Topology::detect();
  const bool copy = topo.numa_nodes().size() > 1;
  if (copy)
    group_ = std::make_unique<par::RankGroup>(topo, par::place_ranks(topo, stages, std::max(1, threads_per_stage)));
  else
    group_ = std::make_unique<par::RankGroup>(stages, std::max(1, threads_per_stage));
  int next = 0;
  for (int k = 0; k < stages; ++k) {
    auto st = std::make_unique<Stage>();
    const int count = c.n_layers / stages + (k < c.n_layers % stages ? 1 : 0);
    st->first_layer = next;
    st->config = c;
    st->config.n_layers = count;
    st->weights.embedding = m.weights.embedding;
    st->weights.final_norm = m.weights.final_norm;
    st->weights.lm_head = m.weights.lm_head;
    st->weights.layers.assign(m.weights.layers.begin() + next, m.weights.layers.begin() + next + count);
    next += count;
    stages_.push_back(std::move(st));
  }
  // Each stage allocates (first-touches) its caches and activations on its own threads.
  group_->run([&](int r) {
    Stage& st = *stages_[static_cast<std::size_t>(r)];
    if (copy) {
      for (LayerWeights& L : st.weights.layers)
        for (TensorView* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
          *t = copy_into(*t, group_->rank(r), st.copies);
    }
    st.caches.reserve(static_cast<std::size_t>(max_sequences));
    for (int i = 0; i < max_sequences; ++i) st.caches.emplace_back(st.config, context);
    st.state = ForwardState(st.config, block, st.caches.front().capacity, group_->rank(r).context().threads());
    st.runs.reserve(static_cast<std::size_t>(std::max(block, max_sequences)));
  });
  seq_.reserve(static_cast<std::size_t>(std::max(block, max_sequences)) * 2);
  pos_.reserve(seq_.capacity());
  tok_.reserve(seq_.capacity());
}

PipelineParallelMistral::~PipelineParallelMistral() = default;

int PipelineParallelMistral::layer_begin(int k) const noexcept { return stages_[static_cast<std::size_t>(k)]->first_layer; }
int PipelineParallelMistral::layer_end(int k) const noexcept {
  const Stage& st = *stages_[static_cast<std::size_t>(k)];
  return st.first_layer + st.config.n_layers;
}
int PipelineParallelMistral::cache_capacity() const noexcept { return stages_.front()->caches.front().capacity; }
bool PipelineParallelMistral::cache_rolling() const noexcept { return stages_.front()->caches.front().rolling; }

void PipelineParallelMistral::run(std::span<const MicroBatch> mbs, float* logits) {
  const int S = stages();
  const std::size_t vocab = static_cast<std::size_t>(model_.config.vocab_size);
  par::PipelineState ps(S, S);
  std::size_t next = 0, done = 0;
  std::size_t logit_row = 0;  // next logits row to write (one per run, micro-batches in order)

  // Stage k processes micro-batch id: its rows become runs (one per sequence).
  auto step = [&](int k) {
    const auto id = ps.at_stage(k);
    if (!id) return;
    Stage& st = *stages_[static_cast<std::size_t>(k)];
    const MicroBatch& mb = mbs[static_cast<std::size_t>(*id)];
    st.runs.clear();
    for (int r = mb.first; r < mb.first + mb.count; ++r) {
      const int row = r - mb.first;
      if (!st.runs.empty() && seq_[static_cast<std::size_t>(r)] == seq_[static_cast<std::size_t>(r - 1)]) {
        ++st.runs.back().n_rows;
      } else {
        st.runs.push_back({.cache = &st.caches[static_cast<std::size_t>(seq_[static_cast<std::size_t>(r)])],
                           .first_row = row, .n_rows = 1, .pos0 = pos_[static_cast<std::size_t>(r)]});
      }
    }
    const ForwardOptions opt{.embed = k == 0, .head = k == S - 1};
    forward_runs(st.config, st.weights, group_->rank(k).context(), st.runs, st.state,
                 tok_.data() + mb.first, mb.count, false, opt);
    st.mb = static_cast<int>(*id);
  };

  while (done < mbs.size()) {
    if (next < mbs.size() && ps.can_accept()) {
      ps.push();
      ++next;
    }
    if (config_.async_execution) {
      group_->run(step);  // every stage at once, each on its own rank
    } else {
      for (int k = 0; k < S; ++k) group_->run([&](int r) { if (r == k) step(r); });
    }
    ++steps_;
    // The last stage's logits leave now, before its next micro-batch overwrites them.
    if (const auto id = ps.at_stage(S - 1)) {
      Stage& last = *stages_.back();
      const std::size_t rows = last.runs.size();
      std::memcpy(logits + logit_row * vocab, last.state.logits.data(), rows * vocab * sizeof(float));
      logit_row += rows;
    }
    // Hand each micro-batch's hidden states to the next stage, from the back so that nothing is
    // overwritten before it has moved on.
    for (int k = S - 2; k >= 0; --k) {
      const auto id = ps.at_stage(k);
      if (!id) continue;
      const MicroBatch& mb = mbs[static_cast<std::size_t>(*id)];
      Stage& from = *stages_[static_cast<std::size_t>(k)];
      Stage& to = *stages_[static_cast<std::size_t>(k + 1)];
      std::memcpy(to.state.x.data(), from.state.x.data(),
                  static_cast<std::size_t>(mb.count) * static_cast<std::size_t>(model_.config.dim) * sizeof(float));
    }
    ps.advance();
    while (ps.has_output()) {
      ps.pop();
      ++done;
    }
  }
}

void PipelineParallelMistral::prefill(int seq, std::int64_t pos0, std::span<const std::int32_t> tokens, float* logits) {
  seq_.clear();
  pos_.clear();
  tok_.clear();
  mbs_.clear();
  for (std::size_t b = 0; b < tokens.size(); b += static_cast<std::size_t>(block_)) {
    const int n = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(block_), tokens.size() - b));
    mbs_.push_back({static_cast<int>(b), n});
  }
  // The work list holds the whole prompt; blocks are slices of it.
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    seq_.push_back(seq);
    pos_.push_back(pos0 + static_cast<std::int64_t>(i));
    tok_.push_back(tokens[i]);
  }
  // One logits row per block; the caller wants the last.
  const std::size_t vocab = static_cast<std::size_t>(model_.config.vocab_size);
  scratch_logits_.resize(mbs_.size() * vocab);
  run(mbs_, scratch_logits_.data());
  std::memcpy(logits, scratch_logits_.data() + (mbs_.size() - 1) * vocab, vocab * sizeof(float));
}

void PipelineParallelMistral::decode(std::span<const int> seqs, std::span<const std::int64_t> positions,
                                     std::span<const std::int32_t> tokens, float* logits) {
  seq_.assign(seqs.begin(), seqs.end());
  pos_.assign(positions.begin(), positions.end());
  tok_.assign(tokens.begin(), tokens.end());
  mbs_.clear();
  const int n = static_cast<int>(seqs.size());
  const int m = std::min(n, config_.num_micro_batches);
  for (int i = 0, first = 0; i < m; ++i) {
    const int count = n / m + (i < n % m ? 1 : 0);
    mbs_.push_back({first, count});
    first += count;
  }
  run(mbs_, logits);
}

}  // namespace weft::model
