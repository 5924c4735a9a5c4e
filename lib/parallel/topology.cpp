#include "parallel/topology.hpp"

#include <hwloc.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "weft/error.hpp"

namespace weft::par {

namespace {

struct TopologyDeleter {
  void operator()(hwloc_topology* t) const noexcept { hwloc_topology_destroy(t); }
};

hwloc_topology* new_topology(const std::string& what) {
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0) throw InputError("cannot initialise hwloc for " + what);
  return t;
}

int logical_ancestor(hwloc_obj_t obj, hwloc_obj_type_t type) {
  hwloc_obj_t a = hwloc_get_ancestor_obj_by_type(nullptr, type, obj);
  return a != nullptr ? static_cast<int>(a->logical_index) : -1;
}

bool looks_like_xml(const std::string& spec) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(spec, ec)) return true;
  return spec.size() >= 4 && spec.compare(spec.size() - 4, 4, ".xml") == 0;
}

}  // namespace

Topology Topology::detect() {
  hwloc_topology* t = new_topology("this machine");
  if (hwloc_topology_load(t) != 0) {
    const int err = errno;
    hwloc_topology_destroy(t);
    throw InputError(std::string("hwloc cannot detect this machine's topology: ") + std::strerror(err));
  }
  return load(t, "this machine");
}

Topology Topology::from_synthetic(const std::string& spec) {
  if (spec.empty()) throw InputError("empty topology description (expected an hwloc synthetic string such as "
                                     "\"pack:2 [numa] core:4 pu:1\", or an hwloc XML file)");
  if (looks_like_xml(spec)) {
    std::ifstream probe(spec);
    if (!probe) throw InputError("cannot read topology XML file '" + spec + "': " + std::strerror(errno));
    hwloc_topology* t = new_topology("'" + spec + "'");
    if (hwloc_topology_set_xml(t, spec.c_str()) != 0 || hwloc_topology_load(t) != 0) {
      hwloc_topology_destroy(t);
      throw InputError("topology XML file '" + spec + "' is not an hwloc topology hwloc can load");
    }
    return load(t, "xml: " + spec);
  }
  hwloc_topology* t = new_topology("'" + spec + "'");
  if (hwloc_topology_set_synthetic(t, spec.c_str()) != 0 || hwloc_topology_load(t) != 0) {
    hwloc_topology_destroy(t);
    throw InputError("invalid synthetic topology '" + spec +
                     "' (expected an hwloc synthetic description such as \"pack:2 [numa] core:4 pu:1\", "
                     "or the path of an hwloc XML file)");
  }
  return load(t, "synthetic: " + spec);
}

Topology Topology::from_spec(const std::string& spec) { return spec.empty() ? detect() : from_synthetic(spec); }

Topology Topology::load(hwloc_topology* raw, std::string source) {
  Topology topo;
  topo.handle_ = std::shared_ptr<hwloc_topology>(raw, TopologyDeleter{});
  topo.source_ = std::move(source);
  topo.this_machine_ = hwloc_topology_is_thissystem(raw) != 0;
  hwloc_topology_t t = raw;

  // A description without a core level (e.g. "pack:2 pu:4") has PUs only: each is a core then.
  const hwloc_obj_type_t core_type = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
  const int n_nodes = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
  const int n_packages = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);

  for (int i = 0; i < n_nodes; ++i) {
    hwloc_obj_t n = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    NumaNodeInfo info;
    info.index = i;
    info.os_index = static_cast<int>(n->os_index);
    info.package = logical_ancestor(n, HWLOC_OBJ_PACKAGE);
    info.memory_bytes = n->attr != nullptr ? n->attr->numanode.local_memory : 0;
    topo.nodes_.push_back(std::move(info));
  }
  if (topo.nodes_.empty()) topo.nodes_.push_back(NumaNodeInfo{});  // hwloc always has one; be safe

  if (n_packages == 0) {
    PackageInfo p;  // a stand-in for the whole machine
    for (const auto& n : topo.nodes_) p.numa_nodes.push_back(n.index);
    topo.packages_.push_back(std::move(p));
  }
  for (int i = 0; i < n_packages; ++i) {
    hwloc_obj_t p = hwloc_get_obj_by_type(t, HWLOC_OBJ_PACKAGE, static_cast<unsigned>(i));
    PackageInfo info;
    info.index = i;
    info.os_index = static_cast<int>(p->os_index);
    for (const auto& n : topo.nodes_)
      if (n.package == i) info.numa_nodes.push_back(n.index);
    topo.packages_.push_back(std::move(info));
  }

  const int n_cores = hwloc_get_nbobjs_by_type(t, core_type);
  for (int i = 0; i < n_cores; ++i) {
    hwloc_obj_t c = hwloc_get_obj_by_type(t, core_type, static_cast<unsigned>(i));
    CoreInfo info;
    info.index = i;
    info.os_index = c->os_index == HWLOC_UNKNOWN_INDEX ? -1 : static_cast<int>(c->os_index);
    info.package = std::max(0, logical_ancestor(c, HWLOC_OBJ_PACKAGE));
    for (hwloc_obj_t pu = nullptr; (pu = hwloc_get_next_obj_inside_cpuset_by_type(t, c->cpuset, HWLOC_OBJ_PU, pu)) != nullptr;)
      info.pus.push_back(static_cast<int>(pu->os_index));
    // The node whose CPUs contain the core; failing that, one that shares some of them.
    info.numa_node = -1;
    for (int pass = 0; pass < 2 && info.numa_node < 0; ++pass) {
      for (int k = 0; k < n_nodes; ++k) {
        hwloc_obj_t n = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(k));
        const bool hit = pass == 0 ? hwloc_bitmap_isincluded(c->cpuset, n->cpuset) != 0
                                   : hwloc_bitmap_intersects(c->cpuset, n->cpuset) != 0;
        if (hit) {
          info.numa_node = k;
          break;
        }
      }
    }
    info.numa_node = std::max(0, info.numa_node);
    for (hwloc_obj_t a = c->parent; a != nullptr; a = a->parent) {
      if (a->attr == nullptr) continue;
      const int sharing = hwloc_get_nbobjs_inside_cpuset_by_type(t, a->cpuset, core_type);
      if (a->type == HWLOC_OBJ_L1CACHE && info.l1d_bytes == 0) {
        info.l1d_bytes = a->attr->cache.size;
      } else if (a->type == HWLOC_OBJ_L2CACHE && info.l2_bytes == 0) {
        info.l2_bytes = a->attr->cache.size;
        info.l2_sharing = sharing;
      } else if (a->type == HWLOC_OBJ_L3CACHE && info.l3_bytes == 0) {
        info.l3_bytes = a->attr->cache.size;
        info.l3_sharing = sharing;
      }
    }
    topo.pus_ += static_cast<int>(info.pus.size());
    topo.nodes_[static_cast<std::size_t>(info.numa_node)].cores.push_back(i);
    topo.packages_[static_cast<std::size_t>(info.package)].cores.push_back(i);
    topo.cores_.push_back(std::move(info));
  }
  return topo;
}

}  // namespace weft::par
