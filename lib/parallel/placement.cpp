#include "parallel/placement.hpp"

#include <algorithm>
#include <cstddef>

#include "weft/error.hpp"

namespace weft::par {

std::vector<RankPlacement> place_ranks(const Topology& topo, int ranks, int threads_per_rank) {
  const int n_cores = static_cast<int>(topo.cores().size());
  if (ranks < 1) throw UsageError("rank count must be at least 1, got " + std::to_string(ranks));
  if (ranks > n_cores)
    throw UsageError("cannot place " + std::to_string(ranks) + " ranks on " + std::to_string(n_cores) +
                     " cores (" + topo.source() + "): each rank needs a core of its own, so use at most " +
                     std::to_string(n_cores) + " ranks");

  std::vector<const NumaNodeInfo*> nodes;  // the nodes that have cores, in order
  for (const auto& n : topo.numa_nodes())
    if (!n.cores.empty()) nodes.push_back(&n);
  const int n_nodes = static_cast<int>(nodes.size());

  std::vector<RankPlacement> out(static_cast<std::size_t>(ranks));
  if (ranks <= n_nodes) {
    // Each rank takes a contiguous run of whole nodes; with ranks == nodes, one node each.
    for (int r = 0; r < ranks; ++r) {
      RankPlacement& p = out[static_cast<std::size_t>(r)];
      for (int k = r * n_nodes / ranks; k < (r + 1) * n_nodes / ranks; ++k) {
        p.numa_nodes.push_back(nodes[static_cast<std::size_t>(k)]->index);
        p.cores.insert(p.cores.end(), nodes[static_cast<std::size_t>(k)]->cores.begin(),
                       nodes[static_cast<std::size_t>(k)]->cores.end());
      }
    }
  } else {
    // Every node gets a rank; the rest go one at a time to the node whose ranks would then have
    // the most cores each, so symmetric nodes get equal counts and no node gets more ranks than cores.
    std::vector<int> per_node(static_cast<std::size_t>(n_nodes), 1);
    for (int left = ranks - n_nodes; left > 0; --left) {
      int best = -1;
      double best_share = -1;
      for (int k = 0; k < n_nodes; ++k) {
        const int c = static_cast<int>(nodes[static_cast<std::size_t>(k)]->cores.size());
        if (per_node[static_cast<std::size_t>(k)] >= c) continue;
        const double share = static_cast<double>(c) / (per_node[static_cast<std::size_t>(k)] + 1);
        if (share > best_share) best_share = share, best = k;
      }
      ++per_node[static_cast<std::size_t>(best)];  // ranks <= cores, so some node has room
    }
    int r = 0;
    for (int k = 0; k < n_nodes; ++k) {
      const std::vector<int>& cores = nodes[static_cast<std::size_t>(k)]->cores;
      const int m = per_node[static_cast<std::size_t>(k)], c = static_cast<int>(cores.size());
      for (int j = 0; j < m; ++j, ++r) {
        RankPlacement& p = out[static_cast<std::size_t>(r)];
        p.numa_nodes.push_back(nodes[static_cast<std::size_t>(k)]->index);
        p.cores.assign(cores.begin() + j * c / m, cores.begin() + (j + 1) * c / m);
      }
    }
  }

  for (int r = 0; r < ranks; ++r) {
    RankPlacement& p = out[static_cast<std::size_t>(r)];
    p.rank = r;
    p.numa_node = p.numa_nodes.front();
    if (threads_per_rank > 0) {
      if (static_cast<int>(p.cores.size()) > threads_per_rank) p.cores.resize(static_cast<std::size_t>(threads_per_rank));
      p.threads = threads_per_rank;
    } else {
      p.threads = static_cast<int>(p.cores.size());
    }
    for (int c : p.cores) {
      const auto& pus = topo.cores()[static_cast<std::size_t>(c)].pus;
      p.pus.insert(p.pus.end(), pus.begin(), pus.end());
    }
  }
  return out;
}

std::string format_int_list(const std::vector<int>& v) {
  std::vector<int> s = v;
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end()), s.end());
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t j = i;
    while (j + 1 < s.size() && s[j + 1] == s[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(s[i]);
    if (j > i) out += (j == i + 1 ? "," : "-") + std::to_string(s[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace weft::par
