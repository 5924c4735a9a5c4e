#pragma once
// An in-process rank: a oneTBB arena of a fixed number of threads whose worker threads are
// pinned (hwloc) to the rank's cores, an ExecContext over that arena for the kernels, and
// memory on the rank's NUMA node. Where pinning cannot be done (a synthetic or XML topology,
// binding refused by the OS) the rank says so once on stderr and runs unpinned.
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "parallel/exec_context.hpp"
#include "parallel/placement.hpp"
#include "parallel/topology.hpp"

namespace weft::par {

// Zero-filled bytes owned by one rank, on its NUMA node where the machine allows. Move-only.
class NumaBuffer {
 public:
  NumaBuffer() = default;
  NumaBuffer(NumaBuffer&& o) noexcept { swap(o); }
  NumaBuffer& operator=(NumaBuffer&& o) noexcept {
    NumaBuffer(std::move(o)).swap(*this);
    return *this;
  }
  NumaBuffer(const NumaBuffer&) = delete;
  NumaBuffer& operator=(const NumaBuffer&) = delete;
  ~NumaBuffer();

  // The first byte (page-aligned; nullptr when empty).
  void* data() noexcept { return data_; }
  const void* data() const noexcept { return data_; }
  // The buffer's bytes as T (the buffer is page-aligned, so any T fits).
  template <class T>
  T* as() noexcept { return static_cast<T*>(data_); }
  template <class T>
  const T* as() const noexcept { return static_cast<const T*>(data_); }
  // Bytes requested.
  std::size_t size() const noexcept { return bytes_; }
  // True when hwloc bound the pages to the rank's node; false when they were placed by first
  // touch from the rank's threads (or the topology is not this machine's).
  bool bound() const noexcept { return static_cast<bool>(topo_); }

 private:
  friend class Rank;
  void swap(NumaBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    std::swap(alloc_bytes_, o.alloc_bytes_);
    std::swap(topo_, o.topo_);
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0, alloc_bytes_ = 0;
  std::shared_ptr<hwloc_topology> topo_;  // set when allocated by hwloc_alloc_membind
};

class Rank {
 public:
  // An unplaced rank `index` of `threads` threads (<= 0: one per hardware thread); its threads
  // are not pinned and its memory comes from the ordinary allocator.
  Rank(int index, int threads);
  // Rank placement.rank, placed on `topo`: placement.threads threads whose TBB worker threads
  // bind to placement.pus on entering the arena, memory on placement.numa_node. The topology's
  // hwloc handle is shared, not copied.
  Rank(const Topology& topo, const RankPlacement& placement);
  ~Rank();
  Rank(const Rank&) = delete;
  Rank& operator=(const Rank&) = delete;

  // This rank's number in its group.
  int index() const noexcept { return index_; }
  // Threads of the rank's arena.
  int threads() const noexcept { return context_->threads(); }
  // The placement it was made with (no cores for an unplaced rank).
  const RankPlacement& placement() const noexcept { return placement_; }
  // True while worker threads are being pinned: a placed rank on this machine whose binding has
  // not failed. Thread-safe.
  bool pinned() const noexcept;
  // Why the rank is not pinned ("" when pinned()).
  std::string pin_note() const;

  // The execution context over this rank's arena: kernels called with it run on the rank's
  // threads. Owned by the rank; use from one thread at a time (the rank's driver).
  ExecContext& context() noexcept { return *context_; }
  // The rank's arena.
  tbb::task_arena& arena() noexcept { return context_->arena(); }
  // Runs f() inside the rank's arena on the calling thread (which joins it as its first
  // slot) and returns its result.
  template <class F>
  decltype(auto) execute(F&& f) {
    return context_->arena().execute(std::forward<F>(f));
  }

  // Pins the calling thread to this rank's PUs (for the thread that drives the rank, which
  // TBB does not report as a worker). Returns whether it is pinned now; never throws.
  bool pin_current_thread() noexcept;

  // `bytes` zero-filled bytes on this rank's NUMA node: hwloc_alloc_membind on this machine,
  // else page-aligned memory first touched (zeroed) by the rank's own threads. Not for the hot
  // path. Throws std::bad_alloc when memory runs out.
  NumaBuffer allocate(std::size_t bytes);

 private:
  class Pinner;
  friend class Pinner;
  bool bind_thread() noexcept;  // binds the calling thread; reports the first failure
  void disable_pinning(const std::string& why) noexcept;

  int index_ = 0;
  RankPlacement placement_;
  std::optional<Topology> topo_;  // shares the hwloc handle; empty for an unplaced rank
  void* cpuset_ = nullptr;        // hwloc_bitmap_t of placement_.pus
  void* nodeset_ = nullptr;       // hwloc_bitmap_t of the memory node
  std::atomic<bool> pinning_{false};
  mutable std::mutex note_mutex_;
  std::string note_;
  std::unique_ptr<ExecContext> context_;
  std::unique_ptr<Pinner> pinner_;  // declared after context_: stops observing before the arena goes
};

}  // namespace weft::par
