#pragma once
// PipelineParallelMistral: the model cut into contiguous layer ranges, one per rank (a stage),
// with several micro-batches in flight. At each step every stage runs the micro-batch that
// PipelineState puts in front of it, all stages at once when async_execution is on (stage k on
// micro-batch i while stage k+1 runs i-1); the hidden states are handed from stage to stage
// between steps. Each stage owns the KV caches of its layers for every sequence, allocated by
// its own threads (first touch: its NUMA node's memory), and on a machine with several NUMA nodes
// a copy of its layers' weights in that node's memory.
//
// Pipelining raises throughput when several sequences are decoded at once and the model is split
// over memory domains; it never makes one sequence faster, and each micro-batch reads the stage's
// weights once, so on one memory domain it costs more weight traffic than decoding the whole
// batch in one pass (see docs/parallelism.md for measured figures).
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/forward.hpp"
#include "model/weights.hpp"
#include "parallel/pipeline_state.hpp"
#include "parallel/rank_group.hpp"

namespace weft::model {

class PipelineParallelMistral {
 public:
  // Splits m's layers into `stages` contiguous ranges as even as possible (the first ranges take
  // the remainder), one rank of threads_per_stage threads each; per-stage KV caches for
  // max_sequences sequences of `context` positions and activations for blocks of up to `block`
  // rows. Throws UsageError when stages < 1, stages > the number of layers, or the ranks cannot be
  // placed. The model must outlive this object.
  PipelineParallelMistral(const LoadedModel& m, int stages, int threads_per_stage, const par::PipelineConfig& config,
                          int max_sequences, int context, int block);
  ~PipelineParallelMistral();

  int stages() const noexcept { return static_cast<int>(stages_.size()); }
  // The first layer of stage k, and one past its last.
  int layer_begin(int k) const noexcept;
  int layer_end(int k) const noexcept;
  // Micro-batches in flight at once (PipelineConfig::num_micro_batches).
  int micro_batches() const noexcept { return config_.num_micro_batches; }
  // Pipeline steps run so far (one step: every stage runs its micro-batch, if it has one).
  std::int64_t steps() const noexcept { return steps_; }
  // The capacity of every sequence's KV cache (positions), and whether it is a rolling window.
  int cache_capacity() const noexcept;
  bool cache_rolling() const noexcept;

  // Feeds tokens[0..n) to sequence seq at positions pos0.. and writes the logits after the last
  // one to logits (vocab floats). The prompt is cut into blocks, which flow through the stages as
  // micro-batches (block i+1 enters stage 0 while block i runs in stage 1). Checks are the
  // caller's (ids, room in the cache).
  void prefill(int seq, std::int64_t pos0, std::span<const std::int32_t> tokens, float* logits);
  // One token for each sequence seqs[i] at position positions[i], split into micro-batches of
  // consecutive sequences; writes logits row i (vocab floats each) for seqs[i].
  void decode(std::span<const int> seqs, std::span<const std::int64_t> positions, std::span<const std::int32_t> tokens,
              float* logits);

 private:
  struct Stage;
  struct MicroBatch {
    int first = 0, count = 0;  // rows [first, first + count) of the work list
  };
  // Runs the micro-batches through the pipeline; row r of the work list is (seq_[r], pos_[r],
  // tok_[r]) and every micro-batch's rows are one run per sequence (consecutive rows of one
  // sequence form one run). Logits rows (one per run, in order) go to logits.
  void run(std::span<const MicroBatch> mbs, float* logits);

  const LoadedModel& model_;
  par::PipelineConfig config_;
  std::unique_ptr<par::RankGroup> group_;
  std::vector<std::unique_ptr<Stage>> stages_;
  int block_;
  std::int64_t steps_ = 0;
  // The work list of the current call, reused (reserved once).
  std::vector<int> seq_;
  std::vector<std::int64_t> pos_;
  std::vector<std::int32_t> tok_;
  std::vector<MicroBatch> mbs_;
  std::vector<float> scratch_logits_;  // prefill: one row per block
};

}  // namespace weft::model
