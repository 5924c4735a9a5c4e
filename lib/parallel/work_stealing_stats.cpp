#include "parallel/work_stealing_stats.hpp"

#include <algorithm>
#include <cstdio>

namespace weft::par {

namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;
}

WorkStealingStats::WorkStealingStats(int slots)
    : n_(std::max(1, slots)), slots_(std::make_unique<Counters[]>(static_cast<std::size_t>(n_))) {}

WorkStealingStats::Slot WorkStealingStats::slot(int i) const noexcept {
  if (i < 0 || i >= n_) return {};
  const Counters& c = slots_[i];
  return {c.created.load(kRelaxed), c.run.load(kRelaxed), c.stolen.load(kRelaxed), c.chunks.load(kRelaxed),
          c.busy_ns.load(kRelaxed)};
}

std::uint64_t WorkStealingStats::tasks_created() const noexcept {
  std::uint64_t s = 0;
  for (int i = 0; i < n_; ++i) s += slots_[i].created.load(kRelaxed);
  return s;
}

std::uint64_t WorkStealingStats::tasks_run() const noexcept {
  std::uint64_t s = 0;
  for (int i = 0; i < n_; ++i) s += slots_[i].run.load(kRelaxed);
  return s;
}

std::uint64_t WorkStealingStats::tasks_stolen() const noexcept {
  std::uint64_t s = 0;
  for (int i = 0; i < n_; ++i) s += slots_[i].stolen.load(kRelaxed);
  return s;
}

std::uint64_t WorkStealingStats::chunks() const noexcept {
  std::uint64_t s = 0;
  for (int i = 0; i < n_; ++i) s += slots_[i].chunks.load(kRelaxed);
  return s;
}

double WorkStealingStats::steal_ratio() const noexcept {
  const std::uint64_t run = tasks_run();
  return run == 0 ? 0.0 : static_cast<double>(tasks_stolen()) / static_cast<double>(run);
}

void WorkStealingStats::reset() noexcept {
  for (int i = 0; i < n_; ++i) {
    Counters& c = slots_[i];
    for (auto* a : {&c.created, &c.run, &c.stolen, &c.chunks, &c.busy_ns}) a->store(0, kRelaxed);
  }
}

std::string WorkStealingStats::summary() const {
  char line[160];
  std::snprintf(line, sizeof line, "tasks created %llu, run %llu, stolen %llu (%.1f%%), chunks %llu\n",
                static_cast<unsigned long long>(tasks_created()), static_cast<unsigned long long>(tasks_run()),
                static_cast<unsigned long long>(tasks_stolen()), 100.0 * steal_ratio(),
                static_cast<unsigned long long>(chunks()));
  std::string out = line;
  for (int i = 0; i < n_; ++i) {
    const Slot s = slot(i);
    if (s.tasks_created == 0 && s.tasks_run == 0) continue;
    std::snprintf(line, sizeof line, "  slot %d: created %llu, ran %llu (%llu stolen), chunks %llu, busy %.3f ms\n", i,
                  static_cast<unsigned long long>(s.tasks_created), static_cast<unsigned long long>(s.tasks_run),
                  static_cast<unsigned long long>(s.tasks_stolen), static_cast<unsigned long long>(s.chunks),
                  static_cast<double>(s.busy_ns) * 1e-6);
    out += line;
  }
  return out;
}

void WorkStealingStats::on_task_created(int slot) noexcept { at(slot).created.fetch_add(1, kRelaxed); }

void WorkStealingStats::on_task_run(int creator, int slot, std::uint64_t chunks, std::uint64_t ns) noexcept {
  Counters& c = at(slot);
  c.run.fetch_add(1, kRelaxed);
  if (creator != slot) c.stolen.fetch_add(1, kRelaxed);
  c.chunks.fetch_add(chunks, kRelaxed);
  c.busy_ns.fetch_add(ns, kRelaxed);
}

}  // namespace weft::par
