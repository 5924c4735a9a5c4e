#include "parallel/rank_group.hpp"

#include "parallel/spin.hpp"
#include "weft/error.hpp"

namespace weft::par {

RankGroup::RankGroup(const Topology& topo, const std::vector<RankPlacement>& placements) : placed_(true) {
  if (placements.empty()) throw UsageError("a rank group needs at least one rank");
  for (const auto& p : placements) ranks_.push_back(std::make_unique<Rank>(topo, p));
  start();
}

RankGroup::RankGroup(int ranks, int threads_per_rank) {
  if (ranks < 1) throw UsageError("a rank group needs at least one rank, got " + std::to_string(ranks));
  for (int r = 0; r < ranks; ++r) ranks_.push_back(std::make_unique<Rank>(r, threads_per_rank));
  start();
}

RankGroup::~RankGroup() { stop(); }

void RankGroup::start() {
  unsigned threads = 0;
  for (const auto& r : ranks_) threads += static_cast<unsigned>(r->threads());
  const unsigned hw = std::thread::hardware_concurrency();
  spin_ = hw == 0 || threads <= hw ? kSpin : std::chrono::nanoseconds(0);
  errors_.resize(ranks_.size());
  drivers_.reserve(ranks_.size());
  for (int r = 1; r < size(); ++r) drivers_.emplace_back([this, r] { driver_loop(r); });
}

void RankGroup::run_step(int r) noexcept {
  try {
    Rank& rk = rank(r);
    rk.execute([&] { call_(fn_, r); });
  } catch (...) {
    errors_[static_cast<std::size_t>(r)] = std::current_exception();
  }
}

void RankGroup::driver_loop(int r) noexcept {
  if (placed_) rank(r).pin_current_thread();
  std::uint64_t seen = 0;
  for (;;) {
    seen = detail::wait_while_equal(seq_, seen, spin_);
    if (stopping_.load(std::memory_order_relaxed)) return;  // ordered by the acquire on seq_
    run_step(r);
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining_.notify_one();
  }
}

void RankGroup::run_erased(Call call, void* fn) {
  if (stopped_) throw UsageError("the rank group was stopped: no more steps can run");
  call_ = call;
  fn_ = fn;
  remaining_.store(size() - 1, std::memory_order_relaxed);
  seq_.fetch_add(1, std::memory_order_release);  // publishes call_, fn_ and remaining_
  seq_.notify_all();
  run_step(0);
  for (int left = remaining_.load(std::memory_order_acquire); left != 0; left = remaining_.load(std::memory_order_acquire))
    detail::wait_while_equal(remaining_, left, spin_);
  for (auto& e : errors_) {
    if (e) {
      std::exception_ptr first = e;
      for (auto& x : errors_) x = nullptr;
      std::rethrow_exception(first);
    }
  }
}

void RankGroup::stop() noexcept {
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true, std::memory_order_relaxed);
  seq_.fetch_add(1, std::memory_order_release);
  seq_.notify_all();
  for (auto& t : drivers_)
    if (t.joinable()) t.join();
  drivers_.clear();
}

}  // namespace weft::par
