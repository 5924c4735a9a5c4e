// `weft topo`: the machine's topology (or a described one) and where tensor-parallel ranks
// would run on it.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "weft/weft.hpp"

namespace weft::cli {

Runner add_topo(CLI::App& app) {
  struct Args {
    std::string topology;
    int tp = 0, threads_per_rank = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("topo", "Show the machine topology (packages, NUMA nodes, cores, caches) and rank placement");
  sub->add_option("--topology", a->topology,
                  "an hwloc synthetic topology (e.g. \"pack:2 [numa] core:4 pu:1\") or hwloc XML file instead of this machine");
  sub->add_option("--tp", a->tp, "place this many tensor-parallel ranks and show each rank's cores and NUMA node")
      ->check(CLI::Range(1, 65536));
  sub->add_option("--threads-per-rank", a->threads_per_rank, "threads per rank (default: the cores split evenly)")
      ->check(CLI::Range(1, 65536));
  sub->add_flag("--json", a->json, "print one JSON object");
  return [a] {
    const TopologyInfo info = describe_topology(a->topology, a->tp, a->threads_per_rank);
    const std::string out = a->json ? info.json() + "\n" : info.text();
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  };
}

}  // namespace weft::cli
