#pragma once
// Where each in-process rank runs: which cores (and so PUs) its threads may use and which NUMA
// node holds its memory. The rules, in order: one rank per NUMA node when there are as many
// ranks as nodes; fewer ranks than nodes share nodes out (a rank spans whole nodes); more ranks
// than nodes split each node's cores among its ranks; never more ranks than cores.
#include <string>
#include <vector>

#include "parallel/topology.hpp"

namespace weft::par {

struct RankPlacement {
  int rank = 0;
  int numa_node = 0;            // logical index of the node its memory lives on (the first of numa_nodes)
  std::vector<int> numa_nodes;  // logical indices of the nodes its cores lie on
  std::vector<int> cores;       // logical indices of its cores (Topology::cores())
  std::vector<int> pus;         // OS indices of the hardware threads of those cores
  int threads = 1;              // threads of its arena
};

// The placement of `ranks` ranks on `topo`, rank order following node order. threads_per_rank
// <= 0 splits the cores evenly (one thread per core, each rank as many threads as it has cores);
// a positive value gives every rank that many threads, on at most that many of its cores (more
// threads than cores oversubscribe them). NUMA nodes without cores (memory-only) get no rank.
// Throws weft::UsageError when ranks < 1 or ranks exceed the topology's cores, naming both
// counts. Pure function of its arguments; thread-safe.
std::vector<RankPlacement> place_ranks(const Topology& topo, int ranks, int threads_per_rank = 0);

// A compact list of integers: "0-3,8,10-11".
std::string format_int_list(const std::vector<int>& v);

}  // namespace weft::par
