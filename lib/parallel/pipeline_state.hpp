#pragma once
// Pipeline bookkeeping: which micro-batch sits in which stage of a pipeline of contiguous layer
// ranges, and the configuration that sizes it. The pipeline-parallel model runs, at each step,
// stage k on the micro-batch at_stage(k) for every k at once, then calls advance(); stage k thus
// works on micro-batch i while stage k+1 works on i-1.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace weft::par {

class PipelineState {
 public:
  // A pipeline of num_stages stages holding at most max_depth micro-batches at once (in its
  // stages plus finished ones not yet popped). Throws UsageError when either is below 1.
  PipelineState(int num_stages, int max_depth);

  // Whether push() would be accepted now: stage 0 is free (a micro-batch pushed and not yet
  // advanced still occupies it) and fewer than max_depth micro-batches are held.
  bool can_accept() const noexcept;
  // Puts a new micro-batch into stage 0 and returns its id (0, 1, 2, ... in push order). Throws
  // UsageError when !can_accept(): a second push before advance() must never replace the first.
  std::uint64_t push();
  // Moves every micro-batch one stage on; those leaving the last stage become outputs, in order.
  void advance() noexcept;
  // Whether a finished micro-batch is waiting to be popped.
  bool has_output() const noexcept { return !outputs_.empty(); }
  // Removes and returns the oldest finished micro-batch. Throws UsageError when there is none.
  std::uint64_t pop();

  // The micro-batch in stage k (0 <= k < num_stages()), or nullopt when the stage is idle.
  std::optional<std::uint64_t> at_stage(int k) const noexcept;
  // Micro-batches held: in the stages plus finished and not popped. Never exceeds max_depth().
  int depth() const noexcept { return in_stages_ + static_cast<int>(outputs_.size()); }
  // Micro-batches in the stages (not counting finished ones).
  int in_stages() const noexcept { return in_stages_; }
  // True when nothing is in the stages and nothing waits to be popped.
  bool empty() const noexcept { return depth() == 0; }
  int num_stages() const noexcept { return static_cast<int>(stages_.size()); }
  int max_depth() const noexcept { return max_depth_; }

 private:
  std::vector<std::optional<std::uint64_t>> stages_;
  std::deque<std::uint64_t> outputs_;
  int max_depth_;
  int in_stages_ = 0;
  std::uint64_t next_id_ = 0;
};

// How many micro-batches a pipeline keeps in flight and whether stages run concurrently.
struct PipelineConfig {
  int num_micro_batches = 4;
  bool async_execution = false;  // stages of different micro-batches at the same time
  std::size_t memory_budget = std::size_t{512} << 20;  // bytes for the activations handed between stages

  // Bytes one micro-batch in flight needs between stages: the hidden state of up to
  // kTokensPerMicroBatch tokens, double-buffered (one being written while the next stage reads).
  static constexpr int kTokensPerMicroBatch = 64;
  static std::size_t bytes_per_micro_batch(int hidden_size) noexcept {
    return std::size_t{2} * kTokensPerMicroBatch * static_cast<std::size_t>(hidden_size) * sizeof(float);
  }
  // A configuration for a model with n_layers layers of width hidden_size: as many micro-batches
  // as the budget holds, but no more than there are layers (a stage is at least one layer), and at
  // least one; async when more than one fits. Throws UsageError for non-positive sizes.
  static PipelineConfig for_model(int n_layers, int hidden_size, std::size_t memory_budget);
};

}  // namespace weft::par
