#include "parallel/pipeline_state.hpp"

#include <algorithm>
#include <string>

#include "weft/error.hpp"

namespace weft::par {

PipelineState::PipelineState(int num_stages, int max_depth) : max_depth_(max_depth) {
  if (num_stages < 1) throw UsageError("pipeline: num_stages must be at least 1, got " + std::to_string(num_stages));
  if (max_depth < 1) throw UsageError("pipeline: max_depth must be at least 1, got " + std::to_string(max_depth));
  stages_.resize(static_cast<std::size_t>(num_stages));
}

bool PipelineState::can_accept() const noexcept { return !stages_.front().has_value() && depth() < max_depth_; }

std::uint64_t PipelineState::push() {
  if (stages_.front().has_value())
    throw UsageError("pipeline: push while stage 0 still holds micro-batch " + std::to_string(*stages_.front()) +
                     " (advance first)");
  if (depth() >= max_depth_)
    throw UsageError("pipeline: push with " + std::to_string(depth()) + " micro-batches held (max_depth " +
                     std::to_string(max_depth_) + "); pop or advance first");
  stages_.front() = next_id_;
  ++in_stages_;
  return next_id_++;
}

void PipelineState::advance() noexcept {
  if (stages_.back().has_value()) {
    outputs_.push_back(*stages_.back());
    --in_stages_;
  }
  for (std::size_t k = stages_.size() - 1; k > 0; --k) stages_[k] = stages_[k - 1];
  stages_.front().reset();
}

std::uint64_t PipelineState::pop() {
  if (outputs_.empty()) throw UsageError("pipeline: pop with no finished micro-batch");
  const std::uint64_t id = outputs_.front();
  outputs_.pop_front();
  return id;
}

std::optional<std::uint64_t> PipelineState::at_stage(int k) const noexcept {
  if (k < 0 || k >= num_stages()) return std::nullopt;
  return stages_[static_cast<std::size_t>(k)];
}

PipelineConfig PipelineConfig::for_model(int n_layers, int hidden_size, std::size_t memory_budget) {
  if (n_layers < 1 || hidden_size < 1)
    throw UsageError("pipeline: for_model needs positive n_layers and hidden_size, got " + std::to_string(n_layers) +
                     " and " + std::to_string(hidden_size));
  PipelineConfig c;
  c.memory_budget = memory_budget;
  const std::size_t fit = memory_budget / bytes_per_micro_batch(hidden_size);
  c.num_micro_batches = static_cast<int>(std::clamp<std::size_t>(fit, 1, static_cast<std::size_t>(n_layers)));
  c.async_execution = c.num_micro_batches > 1;
  return c;
}

}  // namespace weft::par
