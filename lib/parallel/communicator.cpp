#include "parallel/communicator.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "parallel/spin.hpp"
#include "weft/error.hpp"

namespace weft::par {

namespace {

constexpr std::size_t kLineFloats = 64 / sizeof(float);
constexpr std::size_t kBlock = 256;  // floats summed per pass through the ranks' buffers (1 KiB on the stack)
constexpr std::chrono::nanoseconds kDefaultSpin = std::chrono::microseconds(50);

enum Op : int { kAllReduce = 1, kAllGather, kAllGatherV, kBroadcast };
const char* op_name(int op) {
  switch (op) {
    case kAllReduce: return "all_reduce_sum";
    case kAllGather: return "all_gather";
    case kAllGatherV: return "all_gatherv";
    case kBroadcast: return "broadcast";
  }
  return "?";
}

// Rank r's slice [lo, hi) of n floats split into whole cache lines; late ranks may get none.
void slice_of(std::size_t n, int world, int r, std::size_t& lo, std::size_t& hi) noexcept {
  const std::size_t lines = (n + kLineFloats - 1) / kLineFloats;
  const std::size_t per = (lines + static_cast<std::size_t>(world) - 1) / static_cast<std::size_t>(world) * kLineFloats;
  lo = std::min(n, per * static_cast<std::size_t>(r));
  hi = std::min(n, lo + per);
}

void copy_floats(float* dst, const float* src, std::size_t n) noexcept {
  if (dst != src && n > 0) std::memcpy(dst, src, n * sizeof(float));
}

}  // namespace

SharedMemoryWorld::SharedMemoryWorld(int world_size, std::chrono::nanoseconds spin) : n_(world_size) {
  if (world_size < 1 || world_size > 1024)
    throw UsageError("shared-memory world size must be in [1, 1024], got " + std::to_string(world_size));
  if (spin.count() < 0) {
    const unsigned hw = std::thread::hardware_concurrency();
    spin = hw == 0 || static_cast<unsigned>(world_size) <= hw ? kDefaultSpin : std::chrono::nanoseconds(0);
  }
  spin_ = spin;
  slots_ = std::make_unique<Slot[]>(static_cast<std::size_t>(n_));
  for (int r = 0; r < n_; ++r) comms_.emplace_back(new SharedMemoryCommunicator(*this, r));
}

SharedMemoryWorld::~SharedMemoryWorld() = default;

void SharedMemoryWorld::arrive_and_wait() noexcept {
  if (n_ == 1) return;
  // The generation is read before arriving: it cannot move until this rank has arrived.
  const std::uint32_t gen = generation_.load(std::memory_order_acquire);
  if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<std::uint32_t>(n_)) {
    count_.store(0, std::memory_order_relaxed);  // ordered before the release below
    generation_.store(gen + 1, std::memory_order_release);
    generation_.notify_all();
    return;
  }
  detail::wait_while_equal(generation_, gen, spin_);
}

int SharedMemoryCommunicator::world_size() const noexcept { return world_.n_; }

void SharedMemoryCommunicator::publish(int op, const void* ptr, std::size_t n) noexcept {
  SharedMemoryWorld::Slot& s = world_.slots_[static_cast<std::size_t>(rank_)];
  s.ptr = ptr;
  s.n = n;
  s.op = op;
}

void SharedMemoryCommunicator::check_same(int op, std::size_t n) const noexcept {
  for (int r = 0; r < world_.n_; ++r) {
    const SharedMemoryWorld::Slot& s = world_.slots_[static_cast<std::size_t>(r)];
    if (s.op != op || s.n != n) {
      std::fprintf(stderr,
                   "weft: SharedMemoryCommunicator: rank %d called %s(n=%zu) while rank %d called %s(n=%zu); every "
                   "rank must call the same collectives with the same sizes\n",
                   rank_, op_name(op), n, r, op_name(s.op), s.n);
      std::abort();
    }
  }
}

void SharedMemoryCommunicator::all_reduce_sum(float* data, std::size_t n) noexcept {
  const int w = world_.n_;
  if (w == 1 || n == 0) return;
  publish(kAllReduce, data, n);
  world_.arrive_and_wait();  // every buffer is complete and published
  check_same(kAllReduce, n);
  const auto* slots = world_.slots_.get();

  // Reduce-scatter: this rank sums its slice of all buffers, in rank order, into its own buffer.
  // Only this rank reads or writes that slice of any buffer during this phase.
  std::size_t lo, hi;
  slice_of(n, w, rank_, lo, hi);
  float acc[kBlock];
  for (std::size_t b = lo; b < hi; b += kBlock) {
    const std::size_t m = std::min(kBlock, hi - b);
    const float* p0 = static_cast<const float*>(slots[0].ptr) + b;
    for (std::size_t i = 0; i < m; ++i) acc[i] = p0[i];
    for (int r = 1; r < w; ++r) {
      const float* p = static_cast<const float*>(slots[r].ptr) + b;
      for (std::size_t i = 0; i < m; ++i) acc[i] += p[i];
    }
    std::memcpy(data + b, acc, m * sizeof(float));
  }
  world_.arrive_and_wait();  // every slice is reduced

  // All-gather: copy the other ranks' reduced slices from their buffers into this one.
  for (int r = 0; r < w; ++r) {
    if (r == rank_) continue;
    slice_of(n, w, r, lo, hi);
    copy_floats(data + lo, static_cast<const float*>(slots[r].ptr) + lo, hi - lo);
  }
  world_.arrive_and_wait();  // nobody reads this rank's buffer any more: the caller may reuse it
}

void SharedMemoryCommunicator::all_gather(const float* in, std::size_t n_per_rank, float* out) noexcept {
  const int w = world_.n_;
  if (w == 1) {
    copy_floats(out, in, n_per_rank);
    return;
  }
  publish(kAllGather, in, n_per_rank);
  world_.arrive_and_wait();
  check_same(kAllGather, n_per_rank);
  for (int r = 0; r < w; ++r)
    copy_floats(out + static_cast<std::size_t>(r) * n_per_rank, static_cast<const float*>(world_.slots_[r].ptr), n_per_rank);
  world_.arrive_and_wait();
}

void SharedMemoryCommunicator::all_gatherv(const float* in, std::span<const std::size_t> counts, float* out) noexcept {
  const int w = world_.n_;
  if (counts.size() != static_cast<std::size_t>(w)) {
    std::fprintf(stderr, "weft: SharedMemoryCommunicator::all_gatherv: %zu counts for a world of %d ranks\n",
                 counts.size(), w);
    std::abort();
  }
  if (w == 1) {
    copy_floats(out, in, counts[0]);
    return;
  }
  // Each rank publishes its own count and checks everyone's against its own counts, so the
  // ranks agree on the split.
  publish(kAllGatherV, in, counts[static_cast<std::size_t>(rank_)]);
  world_.arrive_and_wait();
  std::size_t off = 0;
  for (int r = 0; r < w; ++r) {
    const auto& s = world_.slots_[static_cast<std::size_t>(r)];
    if (s.op != kAllGatherV || s.n != counts[static_cast<std::size_t>(r)]) {
      std::fprintf(stderr,
                   "weft: SharedMemoryCommunicator: rank %d called all_gatherv expecting %zu floats from rank %d, "
                   "which called %s(n=%zu)\n",
                   rank_, counts[static_cast<std::size_t>(r)], r, op_name(s.op), s.n);
      std::abort();
    }
    copy_floats(out + off, static_cast<const float*>(s.ptr), s.n);
    off += s.n;
  }
  world_.arrive_and_wait();
}

void SharedMemoryCommunicator::broadcast(void* data, std::size_t bytes, int root) noexcept {
  const int w = world_.n_;
  if (root < 0 || root >= w) {
    std::fprintf(stderr, "weft: SharedMemoryCommunicator::broadcast: root %d outside a world of %d ranks\n", root, w);
    std::abort();
  }
  if (w == 1) return;
  publish(kBroadcast, data, bytes);
  world_.arrive_and_wait();
  check_same(kBroadcast, bytes);
  if (rank_ != root && bytes > 0 && data != world_.slots_[static_cast<std::size_t>(root)].ptr)
    std::memcpy(data, world_.slots_[static_cast<std::size_t>(root)].ptr, bytes);
  world_.arrive_and_wait();
}

void SharedMemoryCommunicator::barrier() noexcept { world_.arrive_and_wait(); }

}  // namespace weft::par
