#pragma once
// A group of in-process ranks driven in lockstep, the way a tensor-parallel model runs: rank 0
// is the caller's thread, ranks 1.. each have a driver thread. The caller broadcasts each step
// (a callable, or a Command with its payload); every rank runs it inside its own arena, and
// the caller returns when all have finished. Idle driver threads sleep (std::atomic::wait on
// a step sequence number after a short bounded spin): an idle group costs no CPU.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "parallel/placement.hpp"
#include "parallel/rank.hpp"
#include "parallel/topology.hpp"

namespace weft::par {

// What a model step is; the payload travels with it (StepCommand). Open and Close start and end
// a session of the processes of an MPI job (model/processes.cpp); Stop ends the group.
enum class Command : std::uint8_t { Prefill, Decode, Reset, Stop, Open, Close };
inline constexpr Command kLastCommand = Command::Close;

// A command and a small payload, read by every rank during the step (the caller keeps any
// pointed-to data alive and unchanged until dispatch() returns).
struct StepCommand {
  Command kind = Command::Decode;
  std::int64_t position = 0;     // first position of the tokens
  std::int64_t count = 0;        // number of tokens (or other items)
  const void* data = nullptr;    // e.g. the token ids
};

class RankGroup {
 public:
  // One rank per placement on `topo` (placements from place_ranks), each with its own driver
  // thread but rank 0, whose steps run on the caller's thread. Driver threads pin themselves to
  // their rank's PUs; the caller's thread is left as it is (rank(0).pin_current_thread() pins it).
  RankGroup(const Topology& topo, const std::vector<RankPlacement>& placements);
  // `ranks` unplaced ranks of `threads_per_rank` threads each (tests, machines without hwloc
  // placement).
  RankGroup(int ranks, int threads_per_rank);
  // Stops and joins the driver threads.
  ~RankGroup();
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  // The number of ranks.
  int size() const noexcept { return static_cast<int>(ranks_.size()); }
  // Rank r (0 <= r < size()); owned by the group.
  Rank& rank(int r) noexcept { return *ranks_[static_cast<std::size_t>(r)]; }

  // Runs step(r) for every rank r at once, each inside rank r's arena (rank 0 on the calling
  // thread), and returns when all have returned. If steps throw, the exception of the lowest
  // rank is rethrown after all have finished. Allocates nothing. Call from one thread (the one
  // that drives the group), never from inside a step; throws UsageError after stop().
  template <class F>
  void run(F&& step) {
    using Fn = std::remove_reference_t<F>;
    run_erased([](void* f, int r) { (*static_cast<Fn*>(f))(r); }, const_cast<void*>(static_cast<const void*>(&step)));
  }

  // Broadcasts `cmd`: runs handler(r, cmd) on every rank as run() does. A Stop command runs the
  // handler everywhere and then stops the group.
  template <class F>
  void dispatch(const StepCommand& cmd, F&& handler) {
    run([&](int r) { handler(r, cmd); });
    if (cmd.kind == Command::Stop) stop();
  }

  // Wakes the driver threads with the stop flag and joins them; later run() calls throw.
  // Idempotent; call from the driving thread.
  void stop() noexcept;

  // Steps run so far.
  std::uint64_t steps() const noexcept {
    return seq_.load(std::memory_order_relaxed) - (stopping_.load(std::memory_order_relaxed) ? 1 : 0);
  }

  // How long idle drivers (and the caller, waiting for them) spin before sleeping, when the
  // ranks' threads fit on the machine's hardware threads; with more threads than that, a spinning
  // waiter would only keep the thread it waits for off the core, so waiters sleep at once.
  static constexpr std::chrono::nanoseconds kSpin = std::chrono::microseconds(20);

 private:
  using Call = void (*)(void*, int);
  void start();
  void run_erased(Call call, void* fn);
  void driver_loop(int r) noexcept;
  void run_step(int r) noexcept;

  std::vector<std::unique_ptr<Rank>> ranks_;
  std::vector<std::thread> drivers_;
  std::vector<std::exception_ptr> errors_;
  Call call_ = nullptr;
  void* fn_ = nullptr;
  std::chrono::nanoseconds spin_{0};
  bool placed_ = false;
  bool stopped_ = false;
  std::atomic<bool> stopping_{false};
  alignas(64) std::atomic<std::uint64_t> seq_{0};  // bumped once per step (and once to stop)
  alignas(64) std::atomic<int> remaining_{0};      // drivers still running the current step
};

}  // namespace weft::par
