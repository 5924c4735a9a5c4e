#include "parallel/rank.hpp"

#include <hwloc.h>
#include <sys/mman.h>
#include <oneapi/tbb/task_scheduler_observer.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace weft::par {

namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::int64_t kTouchChunkPages = 64;  // 256 KiB per first-touch task

// Each distinct reason to run unpinned is reported once per process, not once per rank or thread.
void warn_once(std::atomic<bool>& said, const std::string& message) {
  if (!said.exchange(true)) std::fprintf(stderr, "weft: warning: %s\n", message.c_str());
}
std::atomic<bool> g_warned_not_this_machine{false}, g_warned_bind_failed{false}, g_warned_not_allowed{false};

// Ranks are told apart by a number that is never reused, so a worker thread's memory of the
// rank it is bound to cannot be fooled by a new rank at a freed rank's address.
std::atomic<std::uint64_t> g_next_rank_id{1};
thread_local std::uint64_t t_bound_rank_id = 0;

}  // namespace

NumaBuffer::~NumaBuffer() {
  if (data_ == nullptr) return;
  if (topo_)
    hwloc_free(topo_.get(), data_, alloc_bytes_);
  else
    std::free(data_);
}

// Binds each TBB worker thread that enters the rank's arena to the rank's PUs. The thread that
// calls execute() is not a worker and is left alone (its owner pins it: pin_current_thread).
class Rank::Pinner : public tbb::task_scheduler_observer {
 public:
  explicit Pinner(Rank& rank) : tbb::task_scheduler_observer(rank.arena()), rank_(rank), id_(g_next_rank_id++) {
    observe(true);
  }
  ~Pinner() override { observe(false); }
  void on_scheduler_entry(bool is_worker) override {
    // Workers are shared by all arenas; one that comes back to the arena it is bound to costs
    // nothing, one that comes from another arena is bound again (one system call).
    if (!is_worker || t_bound_rank_id == id_) return;
    if (rank_.bind_thread()) t_bound_rank_id = id_;
  }

 private:
  Rank& rank_;
  std::uint64_t id_;
};

Rank::Rank(int index, int threads) : index_(index), context_(std::make_unique<ExecContext>(threads)) {
  placement_.rank = index;
  placement_.threads = context_->threads();
  note_ = "the rank was made without a placement";
}

Rank::Rank(const Topology& topo, const RankPlacement& placement)
    : index_(placement.rank), placement_(placement), topo_(topo),
      context_(std::make_unique<ExecContext>(std::max(1, placement.threads))) {
  hwloc_topology_t t = topo.handle();
  hwloc_bitmap_t cpus = hwloc_bitmap_alloc();
  for (int pu : placement.pus) hwloc_bitmap_set(cpus, static_cast<unsigned>(pu));
  cpuset_ = cpus;
  if (hwloc_obj_t node = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(placement.numa_node)))
    nodeset_ = hwloc_bitmap_dup(node->nodeset);

  const std::string who = "rank " + std::to_string(index_) + " (PUs " + format_int_list(placement.pus) + ")";
  if (!topo.is_this_machine()) {
    note_ = "the topology (" + topo.source() + ") is not this machine's";
    warn_once(g_warned_not_this_machine, "ranks placed on a topology that is not this machine's (" + topo.source() +
                                             ") run unpinned, with memory placed by first touch");
    return;
  }
  if (placement.pus.empty() || !hwloc_bitmap_isincluded(cpus, hwloc_topology_get_allowed_cpuset(t))) {
    note_ = who + " names PUs this process may not use";
    warn_once(g_warned_not_allowed, note_ + "; running unpinned");
    return;
  }
  pinning_.store(true);
  pinner_ = std::make_unique<Pinner>(*this);
}

Rank::~Rank() {
  pinner_.reset();
  context_.reset();
  if (cpuset_ != nullptr) hwloc_bitmap_free(static_cast<hwloc_bitmap_t>(cpuset_));
  if (nodeset_ != nullptr) hwloc_bitmap_free(static_cast<hwloc_bitmap_t>(nodeset_));
}

bool Rank::pinned() const noexcept { return pinning_.load(std::memory_order_relaxed); }

std::string Rank::pin_note() const {
  std::lock_guard lock(note_mutex_);
  return pinned() ? std::string() : note_;
}

void Rank::disable_pinning(const std::string& why) noexcept {
  try {
    {
      std::lock_guard lock(note_mutex_);
      note_ = why;
    }
    pinning_.store(false);
    warn_once(g_warned_bind_failed, why + "; running unpinned");
  } catch (...) {
    pinning_.store(false);
  }
}

bool Rank::bind_thread() noexcept {
  if (!pinned()) return false;
  if (hwloc_set_cpubind(topo_->handle(), static_cast<hwloc_const_bitmap_t>(cpuset_), HWLOC_CPUBIND_THREAD) == 0)
    return true;
  const int err = errno;
  try {
    disable_pinning("binding a thread of rank " + std::to_string(index_) + " to PUs " + format_int_list(placement_.pus) +
                    " failed: " + std::strerror(err));
  } catch (...) {
    pinning_.store(false);
  }
  return false;
}

bool Rank::pin_current_thread() noexcept { return bind_thread(); }

NumaBuffer Rank::allocate(std::size_t bytes) {
  NumaBuffer buf;
  if (bytes == 0) return buf;
  const std::size_t alloc = (bytes + kPage - 1) / kPage * kPage;
  if (topo_ && topo_->is_this_machine() && nodeset_ != nullptr) {
    void* p = hwloc_alloc_membind(topo_->handle(), alloc, static_cast<hwloc_const_bitmap_t>(nodeset_),
                                  HWLOC_MEMBIND_BIND, HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT);
    if (p != nullptr) {
      buf.data_ = p;
      buf.topo_ = topo_->shared_handle();
    }
  }
  if (buf.data_ == nullptr) {
    buf.data_ = std::aligned_alloc(kPage, alloc);
    if (buf.data_ == nullptr) throw std::bad_alloc();
  }
  buf.bytes_ = bytes;
  buf.alloc_bytes_ = alloc;
  // Rank memory holds weight shards that every decode step streams: on 2 MiB pages they take far
  // fewer TLB misses (as the loader's --no-mmap copies). Advised before the first touch, so that
  // transparent huge pages in "madvise" mode back them from the start; a refusal changes nothing.
  if (alloc >= kHugePage) ::madvise(buf.data_, alloc, MADV_HUGEPAGE);
  // Zeroed by the rank's threads: unbound pages land on the node of the thread that touches them.
  auto* base = static_cast<std::byte*>(buf.data_);
  const auto pages = static_cast<std::int64_t>(alloc / kPage);
  context_->parallel_for(pages, kTouchChunkPages, [&](std::int64_t b, std::int64_t e) {
    std::memset(base + static_cast<std::size_t>(b) * kPage, 0, static_cast<std::size_t>(e - b) * kPage);
  });
  return buf;
}

}  // namespace weft::par
