#pragma once
// How a model is spread over ranks: a plain configuration, consumed by the tensor- and
// pipeline-parallel models. In-process ranks are groups of threads pinned to a NUMA node;
// tensor parallelism splits every layer across ranks (two all-reduces per layer), pipeline
// parallelism gives each rank a contiguous range of layers and raises throughput for many
// sequences (it does not speed up one sequence).
#include <string>

#include "weft/topology.hpp"

namespace weft {

struct ModelInfo;

struct ParallelConfig {
  int tensor_parallel_size = 1;    // ranks that split every layer
  int pipeline_parallel_size = 1;  // ranks that each hold a range of layers
  int micro_batches = 1;           // sequences in flight through the pipeline
  int threads_per_rank = 0;        // 0: the machine's cores split evenly among the ranks
  bool pin_threads = true;         // bind rank threads to their cores (hwloc)
  std::string topology;            // "": this machine; else an hwloc synthetic string or XML file

  // Ranks in all: tensor_parallel_size * pipeline_parallel_size.
  int world_size() const noexcept { return tensor_parallel_size * pipeline_parallel_size; }

  // n-way tensor parallelism (n in-process ranks), nothing else.
  static ParallelConfig tensor_parallel(int n);
  // A pipeline of `stages` ranks with `micro_batches` sequences in flight.
  static ParallelConfig pipeline(int stages, int micro_batches = 4);
  // A proposal for `model` on `topology`: one tensor-parallel rank per NUMA node that has cores,
  // reduced to the largest count that divides the model's heads, KV heads and hidden sizes (so
  // a one-node machine gets a single rank). Fields of `model` that are 0 are not constraints.
  static ParallelConfig for_model(const ModelInfo& model, const TopologyInfo& topology);
  // The same for this machine (detects it; throws InputError when hwloc cannot).
  static ParallelConfig for_model(const ModelInfo& model);

  // Throws UsageError naming the field when a count is below 1 or threads_per_rank below 0.
  void validate() const;
};

}  // namespace weft
