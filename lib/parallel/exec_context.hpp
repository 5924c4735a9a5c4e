#pragma once
// The execution context a rank computes in: its threads (a oneTBB arena of a fixed size) and
// how work is split among them. There is no global pool: whoever runs a model passes one in.
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cstdint>

namespace weft::par {

class ExecContext {
 public:
  // threads <= 0 means one per available hardware thread.
  explicit ExecContext(int threads);
  ExecContext(const ExecContext&) = delete;
  ExecContext& operator=(const ExecContext&) = delete;

  int threads() const noexcept { return threads_; }

  // Calls f(begin, end) over [0, n) in chunks of `chunk` items (the last may be shorter), on this
  // context's threads. Each item is handled by exactly one call; which thread runs a chunk does
  // not change the result, so outputs do not depend on the thread count.
  template <class F>
  void parallel_for(std::int64_t n, std::int64_t chunk, F&& f) {
    if (n <= 0) return;
    chunk = std::max<std::int64_t>(1, chunk);
    if (threads_ == 1 || n <= chunk) {
      f(std::int64_t{0}, n);
      return;
    }
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n, chunk),
                        [&](const tbb::blocked_range<std::int64_t>& r) { f(r.begin(), r.end()); },
                        tbb::simple_partitioner());
    });
  }

  // A chunk size for `rows` rows of `row_bytes` each: about four chunks per thread so work
  // stealing can even out, but never so small that per-chunk overhead dominates.
  std::int64_t row_chunk(std::int64_t rows, std::int64_t row_bytes) const noexcept;

 private:
  int threads_;
  tbb::task_arena arena_;
};

}  // namespace weft::par
