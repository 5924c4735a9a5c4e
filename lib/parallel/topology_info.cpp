// The public description of a topology (include/weft/topology.hpp) and ParallelConfig
// (include/weft/parallel.hpp), built from the internal Topology and placement.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "parallel/placement.hpp"
#include "parallel/topology.hpp"
#include "weft/error.hpp"
#include "weft/model.hpp"
#include "weft/parallel.hpp"
#include "weft/topology.hpp"

namespace weft {

namespace {

std::string human_bytes(std::uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  if (u == 0 || v == static_cast<double>(static_cast<std::uint64_t>(v)))
    std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

// "48 KiB" when every core has the same size, "32 KiB-48 KiB" when they differ, "" when unknown.
template <class Get>
std::string cache_summary(const std::vector<TopologyInfo::Core>& cores, Get get) {
  std::size_t lo = SIZE_MAX, hi = 0;
  for (const auto& c : cores) {
    lo = std::min(lo, get(c));
    hi = std::max(hi, get(c));
  }
  if (cores.empty() || hi == 0) return "";
  return lo == hi ? human_bytes(lo) : human_bytes(lo) + "-" + human_bytes(hi);
}

nlohmann::ordered_json ints(const std::vector<int>& v) { return nlohmann::ordered_json(v); }

}  // namespace

TopologyInfo describe_topology(const std::string& spec, int ranks, int threads_per_rank) {
  const par::Topology t = par::Topology::from_spec(spec);
  TopologyInfo info;
  info.source = t.source();
  info.this_machine = t.is_this_machine();
  info.pus = t.pu_count();
  for (const auto& p : t.packages()) info.packages.push_back({p.index, p.os_index, p.numa_nodes, p.cores});
  for (const auto& n : t.numa_nodes()) info.numa_nodes.push_back({n.index, n.os_index, n.package, n.memory_bytes, n.cores});
  for (const auto& c : t.cores())
    info.cores.push_back({c.index, c.os_index, c.package, c.numa_node, c.pus, c.l1d_bytes, c.l2_bytes, c.l3_bytes,
                          c.l2_sharing, c.l3_sharing});
  if (ranks > 0 || threads_per_rank > 0) {
    for (const auto& r : par::place_ranks(t, std::max(1, ranks), threads_per_rank))
      info.ranks.push_back({r.rank, r.numa_node, r.numa_nodes, r.cores, r.pus, r.threads});
  }
  return info;
}

std::string TopologyInfo::text() const {
  using par::format_int_list;
  std::string out = "topology: " + source + (this_machine ? "" : " (not this machine: placement only, no pinning)") + "\n";
  out += "packages: " + std::to_string(packages.size()) + ", NUMA nodes: " + std::to_string(numa_nodes.size()) +
         ", cores: " + std::to_string(cores.size()) + ", PUs: " + std::to_string(pus) + "\n";
  std::string caches;
  auto add_cache = [&](const char* name, const std::string& size, int sharing) {
    if (size.empty()) return;
    if (!caches.empty()) caches += ", ";
    caches += std::string(name) + " " + size;
    if (sharing > 1) caches += " (shared by " + std::to_string(sharing) + " cores)";
  };
  add_cache("L1d", cache_summary(cores, [](const Core& c) { return c.l1d_bytes; }), 0);
  add_cache("L2", cache_summary(cores, [](const Core& c) { return c.l2_bytes; }), cores.empty() ? 0 : cores[0].l2_sharing);
  add_cache("L3", cache_summary(cores, [](const Core& c) { return c.l3_bytes; }), cores.empty() ? 0 : cores[0].l3_sharing);
  out += "caches per core: " + (caches.empty() ? std::string("unknown") : caches) + "\n";
  for (const auto& p : packages) {
    out += "package " + std::to_string(p.index) + (p.os_index >= 0 ? " (os " + std::to_string(p.os_index) + ")" : "") +
           ": NUMA nodes " + format_int_list(p.numa_nodes) + ", cores " + format_int_list(p.cores) + "\n";
  }
  for (const auto& n : numa_nodes) {
    std::vector<int> pu;
    for (int c : n.cores) pu.insert(pu.end(), cores[static_cast<std::size_t>(c)].pus.begin(), cores[static_cast<std::size_t>(c)].pus.end());
    out += "NUMA node " + std::to_string(n.index) + " (os " + std::to_string(n.os_index) + "): " +
           (n.memory_bytes > 0 ? human_bytes(n.memory_bytes) : std::string("memory unknown")) + ", cores " +
           (n.cores.empty() ? std::string("none") : format_int_list(n.cores)) + ", PUs " +
           (pu.empty() ? std::string("none") : format_int_list(pu)) + "\n";
  }
  if (!ranks.empty()) {
    out += "ranks: " + std::to_string(ranks.size()) + "\n";
    for (const auto& r : ranks) {
      out += "  rank " + std::to_string(r.rank) + ": NUMA node " + std::to_string(r.numa_node);
      if (r.numa_nodes.size() > 1) out += " (spans nodes " + format_int_list(r.numa_nodes) + ")";
      out += ", cores " + format_int_list(r.cores) + ", PUs " + format_int_list(r.pus) + ", " +
             std::to_string(r.threads) + (r.threads == 1 ? " thread" : " threads") + "\n";
    }
  }
  return out;
}

std::string TopologyInfo::json() const {
  nlohmann::ordered_json j;
  j["source"] = source;
  j["this_machine"] = this_machine;
  j["pus"] = pus;
  j["packages"] = nlohmann::ordered_json::array();
  for (const auto& p : packages)
    j["packages"].push_back({{"index", p.index}, {"os_index", p.os_index}, {"numa_nodes", ints(p.numa_nodes)}, {"cores", ints(p.cores)}});
  j["numa_nodes"] = nlohmann::ordered_json::array();
  for (const auto& n : numa_nodes)
    j["numa_nodes"].push_back({{"index", n.index}, {"os_index", n.os_index}, {"package", n.package},
                               {"memory_bytes", n.memory_bytes}, {"cores", ints(n.cores)}});
  j["cores"] = nlohmann::ordered_json::array();
  for (const auto& c : cores)
    j["cores"].push_back({{"index", c.index}, {"os_index", c.os_index}, {"package", c.package}, {"numa_node", c.numa_node},
                          {"pus", ints(c.pus)}, {"l1d_bytes", c.l1d_bytes}, {"l2_bytes", c.l2_bytes},
                          {"l3_bytes", c.l3_bytes}, {"l2_sharing", c.l2_sharing}, {"l3_sharing", c.l3_sharing}});
  j["ranks"] = nlohmann::ordered_json::array();
  for (const auto& r : ranks)
    j["ranks"].push_back({{"rank", r.rank}, {"numa_node", r.numa_node}, {"numa_nodes", ints(r.numa_nodes)},
                          {"cores", ints(r.cores)}, {"pus", ints(r.pus)}, {"threads", r.threads}});
  return j.dump(2);
}

ParallelConfig ParallelConfig::tensor_parallel(int n) {
  ParallelConfig c;
  c.tensor_parallel_size = n;
  c.validate();
  return c;
}

ParallelConfig ParallelConfig::pipeline(int stages, int micro_batches) {
  ParallelConfig c;
  c.pipeline_parallel_size = stages;
  c.micro_batches = micro_batches;
  c.validate();
  return c;
}

ParallelConfig ParallelConfig::for_model(const ModelInfo& model, const TopologyInfo& topology) {
  int nodes = 0;
  for (const auto& n : topology.numa_nodes) nodes += n.cores.empty() ? 0 : 1;
  const int dims[] = {model.n_heads, model.n_kv_heads, model.dim, model.hidden_dim};
  int tp = std::max(1, nodes);
  for (; tp > 1; --tp) {
    bool ok = true;
    for (int d : dims) ok = ok && (d == 0 || d % tp == 0);
    if (ok) break;
  }
  ParallelConfig c;
  c.tensor_parallel_size = tp;
  if (!topology.this_machine && topology.source.rfind("synthetic: ", 0) == 0) c.topology = topology.source.substr(11);
  if (!topology.this_machine && topology.source.rfind("xml: ", 0) == 0) c.topology = topology.source.substr(5);
  return c;
}

ParallelConfig ParallelConfig::for_model(const ModelInfo& model) { return for_model(model, describe_topology()); }

void ParallelConfig::validate() const {
  auto at_least = [](const char* name, int v, int lo) {
    if (v < lo) throw UsageError(std::string(name) + " must be at least " + std::to_string(lo) + ", got " + std::to_string(v));
  };
  at_least("tensor_parallel_size", tensor_parallel_size, 1);
  at_least("pipeline_parallel_size", pipeline_parallel_size, 1);
  at_least("micro_batches", micro_batches, 1);
  at_least("threads_per_rank", threads_per_rank, 0);
}

}  // namespace weft
