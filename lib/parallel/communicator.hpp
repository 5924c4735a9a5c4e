#pragma once
// How ranks talk: the collectives tensor-parallel code needs, behind one interface so the same
// model code runs over in-process ranks (SharedMemoryCommunicator), MPI processes or GPUs.
// Every rank of a world must call the same collectives in the same order with matching sizes;
// each call returns on a rank once that rank's result is complete.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace weft::par {

class Communicator {
 public:
  virtual ~Communicator() = default;

  // This rank's number, 0..world_size()-1.
  virtual int rank() const noexcept = 0;
  // The number of ranks in the world.
  virtual int world_size() const noexcept = 0;

  // data[i] = sum over ranks r of data_r[i], for i < n, on every rank. The sum is taken in rank
  // order (((d_0 + d_1) + d_2) + ...) in f32, so every rank gets the same bits and a run is
  // reproducible. n must be the same on every rank.
  virtual void all_reduce_sum(float* data, std::size_t n) = 0;

  // out = in_0 ++ in_1 ++ ... (n_per_rank floats from each rank, in rank order), on every rank.
  // `in` may be out + rank()*n_per_rank (gathering in place).
  virtual void all_gather(const float* in, std::size_t n_per_rank, float* out) = 0;

  // The same with counts[r] floats from rank r (an uneven split); counts is the same on every
  // rank and has world_size() entries; in has counts[rank()] floats and may be its own place
  // in out.
  virtual void all_gatherv(const float* in, std::span<const std::size_t> counts, float* out) = 0;

  // Copies `bytes` bytes at data on rank `root` to data on every other rank.
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;

  // Returns once every rank has called barrier().
  virtual void barrier() = 0;
};

class SharedMemoryWorld;

// One rank's side of an in-process world: collectives through shared memory and atomics.
// All-reduce is reduce-scatter then all-gather over the ranks' own buffers (no staging copy):
// each rank sums its slice (whole cache lines, 16 floats) of every rank's buffer, then copies
// the other ranks' reduced slices. Waits spin briefly, then sleep (atomic wait), so a world with
// more ranks than cores still makes progress. Use from one thread per rank; a mismatch between
// ranks (different collective or size) is a programming error and aborts with a message.
class SharedMemoryCommunicator final : public Communicator {
 public:
  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override;
  void all_reduce_sum(float* data, std::size_t n) noexcept override;
  void all_gather(const float* in, std::size_t n_per_rank, float* out) noexcept override;
  void all_gatherv(const float* in, std::span<const std::size_t> counts, float* out) noexcept override;
  void broadcast(void* data, std::size_t bytes, int root) noexcept override;
  void barrier() noexcept override;

 private:
  friend class SharedMemoryWorld;
  SharedMemoryCommunicator(SharedMemoryWorld& world, int rank) : world_(world), rank_(rank) {}
  void publish(int op, const void* ptr, std::size_t n) noexcept;
  void check_same(int op, std::size_t n) const noexcept;

  SharedMemoryWorld& world_;
  int rank_;
};

// The shared state of `world_size` in-process ranks and one communicator per rank. The world
// owns the communicators and must outlive every use of them.
class SharedMemoryWorld {
 public:
  // A world of world_size ranks (1..1024; throws UsageError outside). Waiting ranks spin for up
  // to `spin` before sleeping: the default spins when the ranks fit on the machine's hardware
  // threads and sleeps at once when they do not.
  explicit SharedMemoryWorld(int world_size, std::chrono::nanoseconds spin = std::chrono::nanoseconds(-1));
  ~SharedMemoryWorld();
  SharedMemoryWorld(const SharedMemoryWorld&) = delete;
  SharedMemoryWorld& operator=(const SharedMemoryWorld&) = delete;

  // The number of ranks.
  int world_size() const noexcept { return n_; }
  // Rank r's communicator (0 <= r < world_size()), owned by the world; hand it to rank r's thread.
  SharedMemoryCommunicator& communicator(int r) noexcept { return *comms_[static_cast<std::size_t>(r)]; }

 private:
  friend class SharedMemoryCommunicator;
  struct alignas(64) Slot {
    const void* ptr = nullptr;  // the rank's buffer for the current collective
    std::size_t n = 0;          // its size (floats or bytes)
    int op = 0;                 // which collective, to catch mismatched calls
  };
  // All ranks wait until the last one arrives (generation barrier: the last arriver resets the
  // count and bumps the generation; memory before arrival is visible to everyone after).
  void arrive_and_wait() noexcept;

  int n_;
  std::chrono::nanoseconds spin_;
  std::unique_ptr<Slot[]> slots_;
  std::vector<std::unique_ptr<SharedMemoryCommunicator>> comms_;
  alignas(64) std::atomic<std::uint32_t> count_{0};
  alignas(64) std::atomic<std::uint32_t> generation_{0};
};

}  // namespace weft::par
