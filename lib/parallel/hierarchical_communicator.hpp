#pragma once
// Two levels of ranks: in-process ranks (threads sharing memory) nested inside processes (MPI).
// A world of P processes x L in-process ranks numbers its ranks process-major: rank p * L + l is
// in-process rank l of process p. Each collective runs inside the process first, then across the
// processes through in-process rank 0 only (the one thread that talks to MPI), then inside the
// process again:
//   all_reduce_sum: reduce inside the process, all-reduce across processes, broadcast inside;
//   all_gather(v):  gather inside the process into its block of out, all-gather the blocks across
//                   processes, broadcast the whole result inside;
//   broadcast:      inside the root's process, across processes, inside every other process;
//   barrier:        inside, across, inside.
// So each process sends one message per collective, whatever L is. The sum of an all-reduce is
// taken per process and then across processes, ((d_0 + d_1) + (d_2 + d_3)) for 2 x 2, which
// differs from the flat rank order (((d_0 + d_1) + d_2) + d_3) only in float rounding.
#include <cstddef>
#include <span>
#include <vector>

#include "parallel/communicator.hpp"

namespace weft::par {

class HierarchicalCommunicator final : public Communicator {
 public:
  // In-process rank local.rank() of process `process` of `processes`. `outer` is the communicator
  // across the processes (world size `processes`, this process's rank `process`) and must be
  // given on in-process rank 0 only (nullptr elsewhere): only that rank's thread may call it.
  // Every process must have the same number of in-process ranks. Throws UsageError on a mismatch.
  HierarchicalCommunicator(Communicator& local, Communicator* outer, int process, int processes);

  int rank() const noexcept override { return process_ * local_.world_size() + local_.rank(); }
  int world_size() const noexcept override { return processes_ * local_.world_size(); }
  void all_reduce_sum(float* data, std::size_t n) override;
  void all_gather(const float* in, std::size_t n_per_rank, float* out) override;
  void all_gatherv(const float* in, std::span<const std::size_t> counts, float* out) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  void barrier() override;

 private:
  Communicator& local_;
  Communicator* outer_;
  int process_;
  int processes_;
  std::vector<std::size_t> process_counts_;  // all_gatherv: floats per process (reused)
};

}  // namespace weft::par
