#pragma once
// The machine as hwloc sees it, reduced to what rank placement needs: packages, NUMA nodes (with
// their memory), cores with their PUs (hardware threads, by OS index) and the data caches each
// core sits under. A Topology is either this machine's (detect) or a described one (a synthetic
// hwloc string or an hwloc XML file), so that placement can be tried on machines one does not
// have; only a topology of this machine can bind threads and memory.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct hwloc_topology;  // hwloc's handle type, `hwloc_topology_t` is a pointer to it

namespace weft::par {

struct CoreInfo {
  int index = 0;              // logical index among the cores, 0..cores-1
  int os_index = -1;          // the OS's number for the core (-1: unknown)
  int package = 0;            // logical index of its package
  int numa_node = 0;          // logical index of the NUMA node whose CPUs include it
  std::vector<int> pus;       // OS indices of its hardware threads
  std::size_t l1d_bytes = 0;  // size of the L1 data cache above it (0: unknown)
  std::size_t l2_bytes = 0;   // size of the L2 cache above it (0: unknown)
  std::size_t l3_bytes = 0;   // size of the L3 cache above it (0: unknown)
  int l2_sharing = 0;         // cores under that L2 (0: no L2)
  int l3_sharing = 0;         // cores under that L3 (0: no L3)
};

struct NumaNodeInfo {
  int index = 0;                  // logical index, 0..nodes-1
  int os_index = -1;              // the OS's node number
  int package = -1;               // logical index of the package it lies in (-1: spans several or none)
  std::uint64_t memory_bytes = 0; // memory local to the node
  std::vector<int> cores;         // logical indices of the cores whose PUs it covers
};

struct PackageInfo {
  int index = 0;            // logical index, 0..packages-1
  int os_index = -1;        // the OS's socket number (-1: a stand-in when hwloc reports no package)
  std::vector<int> numa_nodes;  // logical indices of the NUMA nodes inside it
  std::vector<int> cores;       // logical indices of its cores
};

class Topology {
 public:
  // This machine's topology, as hwloc detects it (restricted to the CPUs this process may use).
  // Throws weft::InputError when hwloc cannot load it.
  static Topology detect();

  // A topology from `spec`: an hwloc synthetic description such as "pack:2 [numa] core:4 pu:1",
  // or the path of an hwloc XML file (`lstopo file.xml`). A spec that names an existing file, or
  // ends in ".xml", is read as XML. Throws weft::InputError naming the spec when hwloc rejects
  // the description or the file cannot be read or parsed.
  static Topology from_synthetic(const std::string& spec);

  // `spec` as from_synthetic, or this machine when spec is empty.
  static Topology from_spec(const std::string& spec);

  // Where the topology came from: "this machine", "synthetic: ...", "xml: PATH".
  const std::string& source() const noexcept { return source_; }
  // True when this topology describes the machine the process runs on: only then can threads
  // be pinned and memory bound with it.
  bool is_this_machine() const noexcept { return this_machine_; }

  const std::vector<PackageInfo>& packages() const noexcept { return packages_; }
  const std::vector<NumaNodeInfo>& numa_nodes() const noexcept { return nodes_; }
  const std::vector<CoreInfo>& cores() const noexcept { return cores_; }
  // Hardware threads over all cores.
  int pu_count() const noexcept { return pus_; }

  // hwloc's handle, shared by every copy of this Topology; valid while any copy lives. hwloc
  // allows concurrent read-only use (binding, allocation) from many threads.
  hwloc_topology* handle() const noexcept { return handle_.get(); }
  // The same handle, shared: whoever keeps it keeps the hwloc topology alive.
  const std::shared_ptr<hwloc_topology>& shared_handle() const noexcept { return handle_; }

 private:
  Topology() = default;
  static Topology load(hwloc_topology* raw, std::string source);

  std::shared_ptr<hwloc_topology> handle_;
  std::string source_;
  bool this_machine_ = false;
  std::vector<PackageInfo> packages_;
  std::vector<NumaNodeInfo> nodes_;
  std::vector<CoreInfo> cores_;
  int pus_ = 0;
};

}  // namespace weft::par
