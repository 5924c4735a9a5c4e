#pragma once
// Ranks in other processes and on other hosts, over Open MPI. Compiled only when the build found
// MPI (parallel/mpi_config.hpp defines WEFT_HAVE_MPI 1); include this header only then.
//
// Every blocking operation is built from non-blocking MPI calls polled with MPI_Test under a
// deadline (default 60 s, WEFT_MPI_TIMEOUT seconds, set_timeout()), so a peer that died or stopped
// answering ends the job with a message naming the operation, this rank, the peer and the timeout,
// instead of hanging forever. Polling spins for up to 1 ms (WEFT_MPI_SPIN_US), then sleeps with an
// exponential backoff, so a rank waiting on a slow peer costs little CPU. MPI errors come back as MpiError with the MPI
// error string (the communicators use MPI_ERRORS_RETURN).
//
// Threading: MPI is initialised with MPI_THREAD_FUNNELED, so every MPI call (this class, the
// command channel) must come from the thread that created the MpiRuntime. In-process ranks nest
// inside an MPI rank: in-process rank 0 runs on the caller's thread (RankGroup) and is the one
// that talks to the other processes.
// weft uses MPI's C API; Open MPI's (deprecated) C++ bindings only add warnings.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parallel/communicator.hpp"
#include "weft/error.hpp"

namespace weft::par {

// An MPI call failed (the message has the call, the rank and MPI's own error string), or an
// operation timed out with MpiTimeoutAction::Throw.
class MpiError : public Error {
 public:
  using Error::Error;
};

// The exit status of a job that MpiCommunicator ends because a peer stopped answering.
inline constexpr int kMpiFaultExitCode = 3;

// What a blocking operation does when its deadline passes: print the message to stderr and end
// the whole job with MPI_Abort (the default; nothing else is safe once a collective is half done),
// or throw MpiError, after which the caller must end the job itself (MpiRuntime::abort).
enum class MpiTimeoutAction : std::uint8_t { Abort, Throw };

// How all_reduce_sum adds. RankOrder keeps Communicator's contract: the sum is taken in rank order
// in f32, so the result has the same bits on every rank and as an in-process
// SharedMemoryCommunicator of the same world size (one round of point-to-point messages, every
// rank sending its whole vector to every other, while that is at most 64 KiB per rank; beyond,
// reduce-scatter by point-to-point messages, then MPI_Iallgatherv). Native calls
// MPI_Iallreduce: Open MPI also gives every rank the same result, but the order of the additions
// depends on its algorithm, so results can differ from a single process in the last bits.
enum class MpiReduction : std::uint8_t { RankOrder, Native };

// Initialises MPI for this process on construction (MPI_Init_thread) and finalises it on
// destruction; one per process, created on the thread that will make every MPI call.
class MpiRuntime {
 public:
  // Initialises MPI with at least thread level `required` (MPI_THREAD_FUNNELED by default) and
  // sets MPI_ERRORS_RETURN on MPI_COMM_WORLD. argc/argv may be null. Throws UsageError if MPI is
  // already initialised or cannot give the thread level.
  explicit MpiRuntime(int* argc = nullptr, char*** argv = nullptr, int required = MPI_THREAD_FUNNELED);
  // Finalises MPI (MPI_Finalize, which waits for the other processes). When the destructor runs
  // during stack unwinding (an exception escaped), it calls MPI_Abort instead: the other ranks
  // may be waiting in a collective that this rank will never reach.
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  // This process's rank in MPI_COMM_WORLD.
  int rank() const noexcept { return rank_; }
  // The number of processes in MPI_COMM_WORLD.
  int world_size() const noexcept { return size_; }
  // True on rank 0, the process that reads the input and prints.
  bool is_root() const noexcept { return rank_ == 0; }
  // The thread level MPI provided (MPI_THREAD_FUNNELED or higher).
  int thread_level() const noexcept { return provided_; }

  // Prints "weft: rank R: message" to stderr (if message is not empty) and ends every process of
  // the job with exit status `code` (MPI_Abort on MPI_COMM_WORLD). Use it when this rank fails
  // and the others may be waiting for it. Safe to call without a runtime, after MPI_Init.
  [[noreturn]] static void abort(int code, std::string_view message = {}) noexcept;

  // True when this process was started by mpirun/mpiexec (Open MPI, or a PMI launcher such as
  // MPICH's hydra or Slurm's srun), judged from the environment; a CLI uses it to decide whether
  // to initialise MPI at all.
  static bool launched_by_mpirun() noexcept;

 private:
  int rank_ = 0;
  int size_ = 1;
  int provided_ = 0;
  int uncaught_ = 0;
};

// Counters of one MpiCommunicator, for "communication time per token" figures.
struct MpiCommStats {
  std::uint64_t operations = 0;      // calls made (collectives, send/recv, command broadcasts)
  std::uint64_t bytes_sent = 0;      // payload bytes this rank handed to MPI to send
  std::chrono::nanoseconds time{0};  // wall time spent inside those calls, waiting included
};

class MpiCommandChannel;

// One rank's side of an MPI communicator (MPI_COMM_WORLD by default), implementing Communicator
// plus point-to-point send/recv for pipeline stages in other processes. It duplicates the given
// communicator twice (one for its own collectives, one for send/recv), so its traffic never
// matches anyone else's messages. Use from the MPI thread only; not thread-safe.
class MpiCommunicator final : public Communicator {
 public:
  // Wraps `comm` (collective over comm: every rank constructs its MpiCommunicator together). The
  // timeout starts at default_timeout(). Throws MpiError if MPI is not initialised.
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD);
  // Frees the duplicated communicators (skipped when MPI is already finalised).
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return size_; }

  // data[i] = sum over ranks of data_r[i] on every rank (see MpiReduction for the order).
  // n must be the same on every rank. Throws MpiError on an MPI failure.
  void all_reduce_sum(float* data, std::size_t n) override;
  // out = in_0 ++ in_1 ++ ..., n_per_rank floats each, on every rank; in may be out + rank()*n_per_rank.
  void all_gather(const float* in, std::size_t n_per_rank, float* out) override;
  // The same with counts[r] floats from rank r; counts has world_size() entries, equal on every rank.
  void all_gatherv(const float* in, std::span<const std::size_t> counts, float* out) override;
  // Copies `bytes` bytes at data on rank `root` to data on every other rank.
  void broadcast(void* data, std::size_t bytes, int root) override;
  // Returns once every rank has called barrier().
  void barrier() override;

  // Sends n floats at data to rank `dest` (not this rank) with `tag` (0..32767) and returns once
  // the buffer may be reused. Matches a recv(…, source = this rank, same tag) on dest; messages
  // between two ranks with the same tag arrive in the order they were sent.
  void send(const float* data, std::size_t n, int dest, int tag = 0);
  // Receives exactly n floats from rank `source` with `tag` into data; a message of another
  // length is a UsageError naming both lengths.
  void recv(float* data, std::size_t n, int source, int tag = 0);
  // send() and recv() for raw bytes (e.g. a command or token ids for the next pipeline stage).
  void send_bytes(const void* data, std::size_t bytes, int dest, int tag = 0);
  void recv_bytes(void* data, std::size_t bytes, int source, int tag = 0);

  // The longest any one operation may wait for its peers (zero: wait forever, not recommended).
  void set_timeout(std::chrono::milliseconds timeout) noexcept { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }
  // What happens when the deadline passes (Abort by default).
  void set_timeout_action(MpiTimeoutAction action) noexcept { action_ = action; }
  // The all-reduce algorithm (RankOrder by default).
  void set_reduction(MpiReduction reduction) noexcept { reduction_ = reduction; }
  MpiReduction reduction() const noexcept { return reduction_; }
  // How long a waiting call polls (yielding the core after the first 20 us) before it starts to
  // sleep with a backoff; default default_spin(). Polling keeps MPI's progress going: Open MPI's
  // TCP transport in particular answers late, by milliseconds, to a process that sleeps. Zero
  // sleeps at once, which suits more processes than cores.
  void set_spin(std::chrono::nanoseconds spin) noexcept { spin_ = spin; }

  // Counters since construction or reset_stats().
  const MpiCommStats& stats() const noexcept { return stats_; }
  void reset_stats() noexcept { stats_ = {}; }

  // The communicator this one was built on (e.g. to split it for a hierarchy).
  MPI_Comm base() const noexcept { return base_; }

  // The timeout from WEFT_MPI_TIMEOUT (seconds, a decimal number; 0 waits forever), or 60 s when
  // it is unset. Throws UsageError naming the variable when its value is not a number >= 0.
  static std::chrono::milliseconds default_timeout();
  // The polling time from WEFT_MPI_SPIN_US (whole microseconds), or 1 ms when it is unset. Throws
  // UsageError naming the variable when its value is not a whole number in [0, 10^7].
  static std::chrono::nanoseconds default_spin();

 private:
  friend class MpiCommandChannel;
  struct Wait {
    const char* op;                  // the operation, for the message
    std::size_t items;               // its size, for the message
    const char* unit;                // "floats", "bytes"
    std::chrono::milliseconds timeout;
    bool idle = false;               // waiting for work, not for a peer inside a step: sleep longer
  };
  // Waits for all `reqs` (their peers in `peers`, -1 for a collective) until the deadline.
  // statuses, if not null, receives one status per request.
  void wait_all(std::span<MPI_Request> reqs, std::span<const int> peers, const Wait& w,
                MPI_Status* statuses = nullptr);
  [[noreturn]] void timed_out(std::span<MPI_Request> reqs, std::span<const int> peers, const Wait& w);
  void check(int rc, const char* call, std::string_view what) const;
  void check_rank(int r, const char* op, const char* role) const;
  void reduce_rank_order(float* data, std::size_t n);
  void broadcast_with(void* data, std::size_t bytes, int root, const Wait& w);

  MPI_Comm base_ = MPI_COMM_NULL;
  MPI_Comm coll_ = MPI_COMM_NULL;  // this class's collectives and the all-reduce's messages
  MPI_Comm p2p_ = MPI_COMM_NULL;   // send/recv
  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds timeout_;
  std::chrono::nanoseconds spin_;
  MpiTimeoutAction action_ = MpiTimeoutAction::Abort;
  MpiReduction reduction_ = MpiReduction::RankOrder;
  MpiCommStats stats_;
  // Reused between calls so a steady decode loop allocates nothing.
  std::vector<float> scratch_;
  std::vector<MPI_Request> reqs_;
  std::vector<int> peers_;
  std::vector<int> counts_;
  std::vector<int> displs_;
};

}  // namespace weft::par
