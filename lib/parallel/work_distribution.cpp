#include "parallel/work_distribution.hpp"

#include <hwloc.h>
#include <unistd.h>

#include <numeric>

namespace weft::par {

namespace {
// A task that is spawned and run by its creator costs ~0.1 µs in oneTBB, a stolen one ~1-2 µs;
// a core streams ~10-20 GB/s, so 64 KiB of weights is ~3-6 µs of work. Chunks of at least this
// many bytes keep scheduling overhead at a few percent even when a chunk is stolen.
constexpr std::int64_t kMinChunkBytes = 64 * 1024;
// Weights are stored in bf16/f16 (2 bytes); an f32 checkpoint only makes chunks larger in bytes.
constexpr std::int64_t kWeightBytes = 2;
// One key and one value row of a 128-wide head in f32: what attention streams per head and key.
constexpr std::int64_t kAttentionBytesPerKey = 2 * 128 * 4;
constexpr std::size_t kFallbackL2 = 1 << 20;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return a / b + (a % b != 0); }

// The fewest rows whose data is whole cache lines (1 when the row size is unknown).
std::int64_t rows_per_line(const WorkDistributionConfig& cfg, const WorkShape& work) {
  const std::int64_t line = static_cast<std::int64_t>(std::max<std::size_t>(1, cfg.cache_line_size));
  return work.row_bytes > 0 ? line / std::gcd(line, work.row_bytes) : 1;
}

// The finest cut of `work` that keeps a chunk of `chunk` rows aligned: the row block, times
// what it takes to make whole cache lines of row data when `chunk` is made of those.
std::int64_t cut_unit(const WorkDistributionConfig& cfg, const WorkShape& work, std::int64_t chunk) {
  const std::int64_t rb = std::max<std::int64_t>(1, work.row_block);
  const std::int64_t lines = std::lcm(rb, rows_per_line(cfg, work));
  return chunk % lines == 0 ? lines : rb;
}

// L2 per core from hwloc: the first L2 cache divided by the cores that share it.
std::size_t hwloc_l2_per_core() noexcept {
  hwloc_topology_t topo = nullptr;
  if (hwloc_topology_init(&topo) != 0) return 0;
  std::size_t bytes = 0;
  if (hwloc_topology_load(topo) == 0) {
    if (hwloc_obj_t l2 = hwloc_get_obj_by_type(topo, HWLOC_OBJ_L2CACHE, 0); l2 != nullptr && l2->attr != nullptr) {
      const int cores = hwloc_get_nbobjs_inside_cpuset_by_type(topo, l2->cpuset, HWLOC_OBJ_CORE);
      bytes = static_cast<std::size_t>(l2->attr->cache.size) / static_cast<std::size_t>(std::max(1, cores));
    }
  }
  hwloc_topology_destroy(topo);
  return bytes;
}
}  // namespace

WorkDistributionConfig WorkDistributionConfig::for_matmul(std::int64_t rows, std::int64_t cols) {
  // Enough rows that a chunk carries kMinChunkBytes of weights, but never more than the matrix:
  // a small matrix becomes one chunk (run on the calling thread, no scheduling at all).
  WorkDistributionConfig c;
  if (cols > 0) {
    const std::int64_t min_rows = ceil_div(kMinChunkBytes, cols * kWeightBytes);
    c.min_chunk_size = static_cast<std::size_t>(std::clamp<std::int64_t>(min_rows, 1, std::max<std::int64_t>(1, rows)));
  }
  c.max_chunk_size = std::max(c.min_chunk_size, c.max_chunk_size);
  return c;
}

WorkDistributionConfig WorkDistributionConfig::for_attention(int n_heads, std::int64_t seq_len) {
  // A head over a long sequence is plenty of work alone, so one head may be a chunk; over a
  // short one (early decode) heads are grouped until a chunk streams kMinChunkBytes. Head costs
  // vary (in a causal prefill, token t reads t+1 keys), so aim for more, finer chunks per thread.
  WorkDistributionConfig c;
  const std::int64_t heads = std::max(1, n_heads);
  const std::int64_t per_head = std::max<std::int64_t>(1, seq_len) * kAttentionBytesPerKey;
  c.min_chunk_size = static_cast<std::size_t>(std::clamp<std::int64_t>(ceil_div(kMinChunkBytes, per_head), 1, heads));
  c.max_chunk_size = static_cast<std::size_t>(heads);
  c.tasks_per_thread = 8;
  return c;
}

std::size_t l2_cache_bytes_per_core() noexcept {
  static const std::size_t bytes = [] {
    if (const std::size_t b = hwloc_l2_per_core(); b > 0) return b;
#ifdef _SC_LEVEL2_CACHE_SIZE
    if (const long b = sysconf(_SC_LEVEL2_CACHE_SIZE); b > 0) return static_cast<std::size_t>(b);
#endif
    return kFallbackL2;
  }();
  return bytes;
}

std::int64_t chunk_rows(const WorkDistributionConfig& cfg, const WorkShape& work, int threads,
                        std::size_t l2_bytes) noexcept {
  const std::int64_t rows = work.rows;
  if (rows <= 1) return 1;
  const std::int64_t rb = std::max<std::int64_t>(1, work.row_block);
  const std::int64_t row_bytes = std::max<std::int64_t>(0, work.row_bytes);
  const std::int64_t tasks = std::int64_t{std::max(1, threads)} * std::max(1, cfg.tasks_per_thread);

  // Bounds. A chunk's bytes are capped at half the core's L2: the last chunk to finish sets the
  // loop's tail, and streaming half an L2 (~1 MiB) from memory takes tens of µs, which bounds
  // it; kernels that come back to their rows (prefill's token loop, attention's score pass)
  // also find them still in L2. The other half is left to the activations every row reads.
  // The cache cap never goes below the minimum: a chunk smaller than that does not pay.
  const std::int64_t lo = static_cast<std::int64_t>(std::clamp<std::size_t>(cfg.min_chunk_size, 1, INT64_MAX));
  std::int64_t hi = std::max(lo, static_cast<std::int64_t>(std::min<std::size_t>(cfg.max_chunk_size, INT64_MAX)));
  if (row_bytes > 0) hi = std::clamp(static_cast<std::int64_t>(l2_bytes / 2) / row_bytes, lo, hi);

  // The target: tasks_per_thread chunks per thread, so that when one thread is slowed (another
  // process, a stolen cache, a costlier head) the others can take its remaining chunks.
  const std::int64_t target = std::clamp(ceil_div(rows, tasks), lo, hi);

  // Alignment. Chunks start on the kernel's row block, so that a row is computed by the same
  // code path (full block or tail) whatever the chunk size, and results do not depend on the
  // thread count. Where it fits in the bounds, also on whole cache lines of row data: then no
  // line is fetched by two threads, and outputs laid out like the rows see no false sharing.
  const std::int64_t line_rows = rows_per_line(cfg, work);
  auto fit = [&](std::int64_t unit) -> std::int64_t {  // the multiple of unit in [lo, hi] next to target
    const std::int64_t up = ceil_div(target, unit) * unit;
    if (up <= hi) return up;
    const std::int64_t down = target / unit * unit;
    return down >= lo ? down : 0;
  };
  std::int64_t chunk = fit(std::lcm(rb, line_rows));
  if (chunk == 0) chunk = fit(rb);
  if (chunk == 0) chunk = ceil_div(target, rb) * rb;  // the row block wins over the bounds
  return std::min(chunk, rows);
}

ChunkPlan plan_chunks(const WorkDistributionConfig& cfg, const WorkShape& work, int threads) noexcept {
  const std::int64_t chunk = chunk_rows(cfg, work, threads, l2_cache_bytes_per_core());
  return ChunkPlan(work.rows, chunk, cut_unit(cfg, work, chunk));
}

}  // namespace weft::par
