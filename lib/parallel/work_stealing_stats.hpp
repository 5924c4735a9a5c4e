#pragma once
// What a context's parallel loops really did: tasks created, tasks run by a thread slot other
// than the one that created them (stolen), and chunks and busy time per thread slot. For an
// ExecContext a task is one call of the loop body (one piece of rows); it is created by the slot
// whose share of the loop it comes from, and stolen when another slot runs it. Counters
// are per slot and cache-line padded, so recording never contends; a context that has stats
// off holds a null pointer and pays one branch per chunk.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace weft::par {

class WorkStealingStats {
 public:
  struct Slot {
    std::uint64_t tasks_created = 0;  // tasks this slot created (split off or started)
    std::uint64_t tasks_run = 0;      // tasks this slot ran
    std::uint64_t tasks_stolen = 0;   // of those, created by another slot
    std::uint64_t chunks = 0;         // chunks this slot ran
    std::uint64_t busy_ns = 0;        // time this slot spent inside chunks
  };

  // Stats for thread slots [0, slots) (at least one).
  explicit WorkStealingStats(int slots = 1);

  // The number of thread slots counted.
  int slots() const noexcept { return n_; }
  // The counters of slot i.
  Slot slot(int i) const noexcept;
  // The tasks created, over all slots.
  std::uint64_t tasks_created() const noexcept;
  // The tasks run, over all slots.
  std::uint64_t tasks_run() const noexcept;
  // The tasks run by a slot other than the one that created them, over all slots.
  std::uint64_t tasks_stolen() const noexcept;
  // The chunks run, over all slots.
  std::uint64_t chunks() const noexcept;
  // The fraction of the tasks run that were stolen (0 when none ran).
  double steal_ratio() const noexcept;
  // Sets every counter to zero.
  void reset() noexcept;
  // A few lines: the totals, then one line per slot that did anything.
  std::string summary() const;

  // Records that `slot` created a task (called by whichever thread takes the task).
  void on_task_created(int slot) noexcept;
  // Records that `slot` ran a task created by `creator`, of `chunks` chunks taking `ns`.
  void on_task_run(int creator, int slot, std::uint64_t chunks, std::uint64_t ns) noexcept;

 private:
  struct alignas(64) Counters {
    std::atomic<std::uint64_t> created{0}, run{0}, stolen{0}, chunks{0}, busy_ns{0};
  };
  Counters& at(int slot) noexcept { return slots_[slot < 0 || slot >= n_ ? n_ - 1 : slot]; }

  int n_;
  std::unique_ptr<Counters[]> slots_;
};

}  // namespace weft::par
