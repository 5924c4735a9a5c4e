#pragma once
// The execution context a rank computes in: its threads (a oneTBB arena of a fixed size) and
// how work is split among them. There is no global pool: whoever runs a model passes one in.
//
// A parallel loop is cut into the chunks of a ChunkPlan (work_distribution.hpp) and run over
// chunk indices with oneTBB's simple_partitioner: the index range is split in halves down to
// single chunks, each split-off half is a task that idle threads may steal. The partitioner
// is explicit, not auto_partitioner, because auto re-splits chunks on demand: the chunk plan,
// which is aligned to the kernel's row block and to cache lines, would not be what runs.
// With numa_aware the context uses static_partitioner instead: the same chunks go to the same
// thread slots on every call (first-touch pages stay local) and there is no stealing.
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <chrono>
#include <cstdint>

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

  // Calls f(begin, end) once per chunk of the plan that cfg gives for `work` on this context's
  // threads. Every row is in exactly one call and chunks start on the kernel's row block, so a
  // kernel that computes each row (or row block) on its own gives results that do not depend
  // on the thread count. One thread, or a single chunk, makes one call f(0, rows) in place.
  template <class F>
  void parallel_for(const WorkShape& work, const WorkDistributionConfig& cfg, F&& f) {
    run(plan_chunks(cfg, work, threads_), cfg.numa_aware, f);
  }

  // Calls f(begin, end) over [0, n) in chunks of `chunk` items (the last may be shorter), with
  // the same guarantees; for callers that already know their chunk.
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
  // A range of chunk indices that remembers the thread slot that created the task holding it.
  // oneTBB builds the split-off right half in the thread that then spawns it as a new task,
  // and the left half stays in the running task, so `creator` is always the task's creator.
  struct ChunkRange {
    std::int64_t begin, end;
    int creator;
    WorkStealingStats* stats;

    ChunkRange(std::int64_t b, std::int64_t e, int c, WorkStealingStats* s) : begin(b), end(e), creator(c), stats(s) {}
    ChunkRange(ChunkRange& r, tbb::split) : begin(r.begin + (r.end - r.begin) / 2), end(r.end), creator(0), stats(r.stats) {
      r.end = begin;
      if (stats != nullptr) stats->on_task_created(creator = slot_index());
    }
    bool empty() const noexcept { return begin >= end; }
    bool is_divisible() const noexcept { return end - begin > 1; }
  };

  static int slot_index() noexcept { return tbb::this_task_arena::current_thread_index(); }
  static std::uint64_t now_ns() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch()).count());
  }

  template <class F>
  void run(const ChunkPlan& plan, bool pinned, F& f) {
    const std::int64_t count = plan.count();
    if (count == 0) return;
    WorkStealingStats* const st = recording_;
    if (threads_ == 1 || count == 1) {  // in place, on the caller (counted as slot 0)
      const std::uint64_t t0 = st != nullptr ? now_ns() : 0;
      f(std::int64_t{0}, plan.rows());
      if (st != nullptr) {
        st->on_task_created(0);
        st->on_task_run(0, 0, 1, now_ns() - t0);
      }
      return;
    }
    arena_.execute([&] {
      auto body = [&](const ChunkRange& r) {
        const std::uint64_t t0 = st != nullptr ? now_ns() : 0;
        for (std::int64_t i = r.begin; i < r.end; ++i) f(plan.begin(i), plan.end(i));
        if (st != nullptr) st->on_task_run(r.creator, slot_index(), static_cast<std::uint64_t>(r.end - r.begin), now_ns() - t0);
      };
      const int self = st != nullptr ? slot_index() : 0;
      if (st != nullptr) st->on_task_created(self);
      const ChunkRange all(0, count, self, st);
      if (pinned)
        tbb::parallel_for(all, body, tbb::static_partitioner());
      else
        tbb::parallel_for(all, body, tbb::simple_partitioner());
    });
  }

  int threads_;
  tbb::task_arena arena_;
  WorkStealingStats stats_;
  WorkStealingStats* recording_ = nullptr;
};

}  // namespace weft::par
