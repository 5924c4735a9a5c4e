#pragma once
// The machine's layout as weft sees it (hwloc): packages, NUMA nodes and their memory, cores,
// hardware threads and caches, and where tensor-parallel ranks would run on it. Works on this
// machine or on a described one (an hwloc synthetic string or XML file), for experiments.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace weft {

struct TopologyInfo {
  struct Package {
    int index = 0;                // logical index
    int os_index = -1;            // the OS's socket number (-1: no package level reported)
    std::vector<int> numa_nodes;  // logical node indices
    std::vector<int> cores;       // logical core indices
  };
  struct NumaNode {
    int index = 0;
    int os_index = -1;
    int package = -1;               // logical package index (-1: spans several)
    std::uint64_t memory_bytes = 0;
    std::vector<int> cores;
  };
  struct Core {
    int index = 0;
    int os_index = -1;
    int package = 0;
    int numa_node = 0;
    std::vector<int> pus;           // OS indices of its hardware threads
    std::size_t l1d_bytes = 0, l2_bytes = 0, l3_bytes = 0;  // 0: unknown
    int l2_sharing = 0, l3_sharing = 0;                     // cores under that cache
  };
  struct Rank {
    int rank = 0;
    int numa_node = 0;              // node its memory lives on
    std::vector<int> numa_nodes;    // nodes its cores lie on
    std::vector<int> cores;         // logical core indices
    std::vector<int> pus;           // OS indices
    int threads = 1;
  };

  std::string source;         // "this machine", "synthetic: ...", "xml: PATH"
  bool this_machine = false;  // threads and memory can be bound with it
  std::vector<Package> packages;
  std::vector<NumaNode> numa_nodes;
  std::vector<Core> cores;
  int pus = 0;
  std::vector<Rank> ranks;    // placement, when asked for

  // A readable multi-line description (what `weft topo` prints).
  std::string text() const;
  // The same as one JSON object.
  std::string json() const;
};

// Describes this machine (spec empty) or the topology `spec` names: an hwloc synthetic
// description ("pack:2 [numa] core:4 pu:1") or an hwloc XML file. With ranks > 0 it also
// places that many ranks (one per NUMA node when they match, a node's cores split when there
// are more ranks than nodes), threads_per_rank threads each (0: the cores split evenly).
// Throws InputError naming spec when it is not a valid topology, UsageError when the ranks do
// not fit (more ranks than cores). Thread-safe.
TopologyInfo describe_topology(const std::string& spec = "", int ranks = 0, int threads_per_rank = 0);

}  // namespace weft
