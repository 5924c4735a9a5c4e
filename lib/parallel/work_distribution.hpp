#pragma once
// How a rank's work is cut into chunks for its threads. A loop over `rows` independent items
// (matrix rows, attention heads × tokens) is described by a WorkShape; a WorkDistributionConfig
// says how fine to cut it; plan_chunks turns both, plus the thread count and the cache sizes,
// into a ChunkPlan: equal chunks of `chunk` rows (the last may be shorter), iterated by index
// without allocating.
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace weft::par {

struct WorkDistributionConfig {
  std::size_t min_chunk_size = 64;    // rows; below this per-task overhead (~1 µs) stops paying off
  std::size_t max_chunk_size = 4096;  // rows; above this the last chunk to finish sets the tail
  int tasks_per_thread = 4;           // chunks per thread, so stealing can even out a slow one
  bool numa_aware = false;            // keep chunk -> thread slot fixed across calls (no stealing)
  std::size_t cache_line_size = 64;   // chunk boundaries fall on whole cache lines where possible

  // A config for a (rows, cols) weight matrix read row by row (matvec, matmul).
  static WorkDistributionConfig for_matmul(std::int64_t rows, std::int64_t cols);
  // A config for attention over n_heads independent heads that each read seq_len keys and values.
  static WorkDistributionConfig for_attention(int n_heads, std::int64_t seq_len);
};

// The work of one parallel loop.
struct WorkShape {
  std::int64_t rows = 0;       // independent items; each is computed by exactly one call
  std::int64_t row_bytes = 0;  // bytes of memory one item streams (0: unknown)
  std::int64_t row_block = 1;  // the kernel's row block: chunks start on multiples of it
};

// Chunks of `chunk` rows over [0, rows): chunk i is [begin(i), end(i)). `unit` is the finest cut
// that keeps the plan's alignment (the kernel's row block, and whole cache lines where the
// chunk has them): a scheduler may run a chunk in pieces of whole units, e.g. to even out the
// end of a loop, and results stay the same.
class ChunkPlan {
 public:
  // A plan of chunks of `chunk` rows (at least 1) over `rows` rows (none when rows <= 0), cut
  // no finer than `unit` rows (default: whole chunks; a unit that does not divide the chunk
  // also means whole chunks).
  constexpr ChunkPlan(std::int64_t rows, std::int64_t chunk, std::int64_t unit = 0) noexcept
      : rows_(std::max<std::int64_t>(0, rows)), chunk_(std::max<std::int64_t>(1, chunk)),
        unit_(unit > 0 && chunk_ % unit == 0 ? unit : chunk_) {}

  // The number of rows the plan covers.
  constexpr std::int64_t rows() const noexcept { return rows_; }
  // The rows in each chunk but possibly the last.
  constexpr std::int64_t chunk() const noexcept { return chunk_; }
  // The finest cut in rows: a divisor of chunk(); pieces start on multiples of it.
  constexpr std::int64_t unit() const noexcept { return unit_; }
  // The number of chunks (0 for no rows; never more than rows).
  constexpr std::int64_t count() const noexcept { return rows_ / chunk_ + (rows_ % chunk_ != 0); }
  // The first row of chunk i.
  constexpr std::int64_t begin(std::int64_t i) const noexcept { return i * chunk_; }
  // One past the last row of chunk i.
  constexpr std::int64_t end(std::int64_t i) const noexcept { return std::min(rows_, (i + 1) * chunk_); }

 private:
  std::int64_t rows_, chunk_, unit_;
};

// The L2 cache bytes one core can count on (hwloc; else sysconf; else 1 MiB), read once.
std::size_t l2_cache_bytes_per_core() noexcept;

// The chunk, in rows, for `work` on `threads` threads under `cfg`, given `l2_bytes` of L2 per
// core. Always in [1, max(1, rows)]; a multiple of work.row_block unless it is all the rows.
std::int64_t chunk_rows(const WorkDistributionConfig& cfg, const WorkShape& work, int threads,
                        std::size_t l2_bytes) noexcept;

// The chunk plan for `work` on `threads` threads under `cfg`, on this machine's caches; its unit
// is the row block, times what makes whole cache lines of row data when the chunk has them.
ChunkPlan plan_chunks(const WorkDistributionConfig& cfg, const WorkShape& work, int threads) noexcept;

}  // namespace weft::par
