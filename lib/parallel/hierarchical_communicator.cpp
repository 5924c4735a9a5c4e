#include "parallel/hierarchical_communicator.hpp"

#include <numeric>
#include <string>

#include "weft/error.hpp"

namespace weft::par {

HierarchicalCommunicator::HierarchicalCommunicator(Communicator& local, Communicator* outer, int process, int processes)
    : local_(local), outer_(outer), process_(process), processes_(processes) {
  if (processes < 1 || process < 0 || process >= processes)
    throw UsageError("hierarchical communicator: process " + std::to_string(process) + " of " + std::to_string(processes));
  if ((local.rank() == 0) != (outer != nullptr))
    throw UsageError("hierarchical communicator: in-process rank " + std::to_string(local.rank()) +
                     (outer ? " must not talk across processes (only in-process rank 0 does)"
                            : " is in-process rank 0 and needs the communicator across processes"));
  if (outer != nullptr && (outer->world_size() != processes || outer->rank() != process))
    throw UsageError("hierarchical communicator: the communicator across processes is rank " +
                     std::to_string(outer->rank()) + " of " + std::to_string(outer->world_size()) + ", expected rank " +
                     std::to_string(process) + " of " + std::to_string(processes));
  process_counts_.resize(static_cast<std::size_t>(processes));
}

void HierarchicalCommunicator::all_reduce_sum(float* data, std::size_t n) {
  local_.all_reduce_sum(data, n);
  if (processes_ == 1) return;
  if (outer_ != nullptr) outer_->all_reduce_sum(data, n);
  local_.broadcast(data, n * sizeof(float), 0);
}

void HierarchicalCommunicator::all_gather(const float* in, std::size_t n_per_rank, float* out) {
  const auto L = static_cast<std::size_t>(local_.world_size());
  float* block = out + static_cast<std::size_t>(process_) * L * n_per_rank;
  local_.all_gather(in, n_per_rank, block);
  if (processes_ == 1) return;
  if (outer_ != nullptr) outer_->all_gather(block, L * n_per_rank, out);
  local_.broadcast(out, static_cast<std::size_t>(processes_) * L * n_per_rank * sizeof(float), 0);
}

void HierarchicalCommunicator::all_gatherv(const float* in, std::span<const std::size_t> counts, float* out) {
  const auto L = static_cast<std::size_t>(local_.world_size());
  if (counts.size() != static_cast<std::size_t>(processes_) * L)
    throw UsageError("hierarchical all_gatherv: " + std::to_string(counts.size()) + " counts for a world of " +
                     std::to_string(processes_ * L) + " ranks");
  std::size_t total = 0;
  for (int p = 0; p < processes_; ++p) {
    const auto first = counts.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(p) * L);
    process_counts_[static_cast<std::size_t>(p)] = std::accumulate(first, first + static_cast<std::ptrdiff_t>(L), std::size_t{0});
  }
  std::size_t before = 0;
  for (int p = 0; p < processes_; ++p) {
    if (p == process_) before = total;
    total += process_counts_[static_cast<std::size_t>(p)];
  }
  float* block = out + before;
  local_.all_gatherv(in, counts.subspan(static_cast<std::size_t>(process_) * L, L), block);
  if (processes_ == 1) return;
  if (outer_ != nullptr) outer_->all_gatherv(block, process_counts_, out);
  local_.broadcast(out, total * sizeof(float), 0);
}

void HierarchicalCommunicator::broadcast(void* data, std::size_t bytes, int root) {
  const int L = local_.world_size();
  if (root < 0 || root >= processes_ * L)
    throw UsageError("hierarchical broadcast: root " + std::to_string(root) + " outside a world of " +
                     std::to_string(processes_ * L) + " ranks");
  const int root_process = root / L;
  if (process_ == root_process) local_.broadcast(data, bytes, root % L);  // to in-process rank 0
  if (processes_ == 1) return;
  if (outer_ != nullptr) outer_->broadcast(data, bytes, root_process);
  if (process_ != root_process) local_.broadcast(data, bytes, 0);
}

void HierarchicalCommunicator::barrier() {
  local_.barrier();
  if (processes_ == 1) return;
  if (outer_ != nullptr) outer_->barrier();
  local_.barrier();
}

}  // namespace weft::par
