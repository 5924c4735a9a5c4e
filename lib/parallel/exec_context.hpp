#pragma once
// The execution context a rank computes in: its threads (a oneTBB arena of a fixed size) and
// how work is split among them. There is no global pool: whoever runs a model passes one in.
//
// A parallel loop is planned by a ChunkPlan (work_distribution.hpp) and run as one oneTBB task
// per thread slot, spread by static_partitioner. The plan's units are dealt out as one
// contiguous share per slot. A slot takes pieces from the front of its own share: whole chunks,
// then halves of what is left, so its last pieces are small. A slot whose share is used up
// steals from the back of the fullest other share: half of what is left there, at most a
// chunk. So a slow or late thread's work is taken over, and the loop ends within about one
// small piece of balance. A share is one 64-bit word (front and back unit, compare-and-swap),
// so stealing never takes a lock; a slot that never gets a thread has its share stolen whole.
// This replaces oneTBB's own range splitting (simple_partitioner), which leaves the tail of a
// loop at a whole chunk and costs a spawned task per chunk (paired decode runs, 1.1B shape, two
// threads: the shares took 2-5 % off a quantized step and 0-1.5 % off a BF16/F16 one).
// With numa_aware, each share is whole chunks and is run only by its own task: the same
// chunks go to the same task on every call, so first-touch pages stay local; no stealing.
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "parallel/work_distribution.hpp"
#include "parallel/work_stealing_stats.hpp"

namespace weft::par {

class ExecContext {
 public:
  // A context of `threads` threads; threads <= 0 means one per available hardware thread.
  explicit ExecContext(int threads);
  ExecContext(const ExecContext&) = delete;
  ExecContext& operator=(const ExecContext&) = delete;

  // The number of threads (arena slots) this context runs loops on.
  int threads() const noexcept { return threads_; }

  // The oneTBB arena the loops run in: a rank (parallel/rank.hpp) attaches its thread pinning
  // to it and runs whole steps inside it. Owned by the context; valid while the context lives.
  tbb::task_arena& arena() noexcept { return arena_; }

  // Calls f(begin, end) over the rows of the plan that cfg gives for `work` on this context's
  // threads: every row is in exactly one call, and calls start on multiples of the plan's
  // unit (the kernel's row block at least), so a kernel that computes each row (or row block)
  // on its own gives results that do not depend on the thread count. A call covers at most one
  // chunk. One thread, or a single chunk, makes one call f(0, rows) in place; so does a loop
  // started from inside another loop of the same context (its shares are in use).
  template <class F>
  void parallel_for(const WorkShape& work, const WorkDistributionConfig& cfg, F&& f) {
    run(plan_chunks(cfg, work, threads_), cfg.numa_aware, f);
  }

  // Calls f(begin, end) over [0, n) in whole chunks of `chunk` items (the last may be
  // shorter), with the same guarantees; for callers that already know their chunk.
  template <class F>
  void parallel_for(std::int64_t n, std::int64_t chunk, F&& f) {
    run(ChunkPlan(n, chunk), false, f);
  }

  // The chunk the default config gives for `rows` rows of `row_bytes` each (older callers).
  std::int64_t row_chunk(std::int64_t rows, std::int64_t row_bytes) const noexcept;

  // Turns recording into stats() on or off; off costs one null check per chunk.
  void enable_stats(bool on) noexcept { recording_ = on ? &stats_ : nullptr; }
  // Whether loops are being recorded.
  bool stats_enabled() const noexcept { return recording_ != nullptr; }
  // What the loops run since the last reset did (counted only while enabled).
  const WorkStealingStats& stats() const noexcept { return stats_; }
  // The same, to reset.
  WorkStealingStats& stats() noexcept { return stats_; }

 private:
  // One slot's share of a loop, in plan units: [front, back) packed as front << 32 | back.
  struct alignas(64) Share {
    std::atomic<std::uint64_t> word{0};
  };
  static constexpr std::uint64_t pack(std::int64_t front, std::int64_t back) noexcept {
    return static_cast<std::uint64_t>(front) << 32 | static_cast<std::uint64_t>(back);
  }
  static constexpr std::int64_t front_of(std::uint64_t w) noexcept { return static_cast<std::int64_t>(w >> 32); }
  static constexpr std::int64_t back_of(std::uint64_t w) noexcept { return static_cast<std::int64_t>(w & 0xffffffffu); }

  static int slot_index() noexcept { return tbb::this_task_arena::current_thread_index(); }
  static std::uint64_t now_ns() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch()).count());
  }

  // Takes up to `most` units from the front of share s, and with `shrink` never more than half
  // of what is left (rounded up), so the last pieces get small; false when the share is empty.
  bool take_front(int s, std::int64_t most, bool shrink, std::int64_t& b, std::int64_t& e) noexcept {
    std::atomic<std::uint64_t>& w = shares_[s].word;
    std::uint64_t cur = w.load(std::memory_order_relaxed);
    for (;;) {
      b = front_of(cur);
      const std::int64_t back = back_of(cur);
      if (b >= back) return false;
      e = b + std::min(most, shrink ? (back - b + 1) / 2 : back - b);
      if (w.compare_exchange_weak(cur, pack(e, back), std::memory_order_relaxed)) return true;
    }
  }

  // Steals up to `most` units from the back of the fullest share (half of what is left there,
  // at least one unit); sets `victim`; false when every share is empty.
  bool steal_back(std::int64_t most, int& victim, std::int64_t& b, std::int64_t& e) noexcept {
    for (;;) {
      victim = -1;
      std::int64_t left = 0;
      for (int s = 0; s < threads_; ++s) {
        const std::uint64_t cur = shares_[s].word.load(std::memory_order_relaxed);
        if (back_of(cur) - front_of(cur) > left) {
          left = back_of(cur) - front_of(cur);
          victim = s;
        }
      }
      if (victim < 0) return false;
      std::atomic<std::uint64_t>& w = shares_[victim].word;
      std::uint64_t cur = w.load(std::memory_order_relaxed);
      while (front_of(cur) < back_of(cur)) {
        e = back_of(cur);
        b = e - std::min(most, std::max<std::int64_t>(1, (e - front_of(cur)) / 2));
        if (w.compare_exchange_weak(cur, pack(front_of(cur), b), std::memory_order_relaxed)) return true;
      }
    }
  }

  template <class F>
  void run(const ChunkPlan& plan, bool pinned, F& f) {
    const std::int64_t count = plan.count();
    if (count == 0) return;
    WorkStealingStats* const st = recording_;
    // f(b, e) as one task of share `owner`, run by slot `self`.
    const auto task = [&](int owner, int self, std::int64_t b, std::int64_t e) {
      const std::uint64_t t0 = st != nullptr ? now_ns() : 0;
      f(b, e);
      if (st != nullptr) {
        st->on_task_created(owner);
        st->on_task_run(owner, self, 1, now_ns() - t0);
      }
    };
    if (threads_ == 1 || count == 1 || running_.exchange(true, std::memory_order_acquire)) {
      task(0, 0, 0, plan.rows());  // in place, on the caller (counted as slot 0)
      return;
    }
    // Units: the plan's unit, or a multiple of it when the loop has more than 2^31 of them.
    const std::int64_t rows = plan.rows();
    std::int64_t unit = plan.unit();
    if (const std::int64_t n = rows / unit + 1; n > (std::int64_t{1} << 31)) unit *= n / (std::int64_t{1} << 31) + 1;
    const std::int64_t units = rows / unit + (rows % unit != 0);
    const std::int64_t per_chunk = std::max<std::int64_t>(1, plan.chunk() / unit);
    // Shares: whole chunks when pinned (each task runs exactly its chunks), else whole units.
    const std::int64_t quanta = pinned ? count : units, quantum = pinned ? per_chunk : 1;
    const auto edge = [&](int s) { return s == threads_ ? units : std::min(units, quanta * s / threads_ * quantum); };
    for (int s = 0; s < threads_; ++s) shares_[s].word.store(pack(edge(s), edge(s + 1)), std::memory_order_relaxed);
    // One piece [b, e) of units.
    const auto piece = [&](int owner, int self, std::int64_t b, std::int64_t e) {
      task(owner, self, b * unit, std::min(rows, e * unit));
    };
    arena_.execute([&] {
      tbb::parallel_for(
          tbb::blocked_range<int>(0, threads_, 1),
          [&](const tbb::blocked_range<int>& tasks) {
            const int self = slot_index();
            std::int64_t b = 0, e = 0;
            if (pinned) {  // task i runs share i, chunk by chunk
              for (int i = tasks.begin(); i < tasks.end(); ++i)
                while (take_front(i, per_chunk, false, b, e)) piece(i, self, b, e);
              return;
            }
            if (self >= 0 && self < threads_)
              while (take_front(self, per_chunk, true, b, e)) piece(self, self, b, e);
            int victim = 0;
            while (steal_back(per_chunk, victim, b, e)) piece(victim, self, b, e);
          },
          tbb::static_partitioner());
    });
    running_.store(false, std::memory_order_release);
  }

  int threads_;
  std::unique_ptr<Share[]> shares_;
  std::atomic<bool> running_{false};  // a loop is using shares_
  tbb::task_arena arena_;
  WorkStealingStats stats_;
  WorkStealingStats* recording_ = nullptr;
};

}  // namespace weft::par
