#include "parallel/tensor_parallel.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <numeric>

#include "core/quant.hpp"
#include "kernels/kernels.hpp"
#include "weft/error.hpp"

namespace weft::par {

namespace {

namespace k = weft::kernels;

// Chunks start on whole 16-row blocks, as in the single-rank forward pass, so a row is computed
// by the same kernel path whatever the thread count.
constexpr std::int64_t kRowBlock = 64 / sizeof(float);

std::int64_t start_unit(std::int64_t units, int world, int r) noexcept {
  const std::int64_t base = units / world, extra = units % world;
  return r * base + std::min<std::int64_t>(r, extra);
}

std::string dims_error(const ShardOptions& opt, const char* dim, std::int64_t n, std::int64_t granule, int world) {
  std::string name = opt.name.empty() ? std::string("tensor") : opt.name;
  std::string msg = name + ": " + dim + " (" + std::to_string(n) + ") is not divisible by tensor-parallel size " +
                    std::to_string(world);
  if (granule > 1) msg += " in units of " + std::to_string(granule);
  return msg;
}

void linear_rows(ExecContext& ctx, const TensorView& w, const float* x, float* y, int n) noexcept {
  const WorkShape work{.rows = w.rows, .row_bytes = static_cast<std::int64_t>(w.row_bytes()), .row_block = kRowBlock};
  if (n == 1)
    ctx.parallel_for(work, WorkDistributionConfig::for_matmul(w.rows, w.cols),
                     [&](std::int64_t b, std::int64_t e) { k::matvec(w, x, y, b, e); });
  else
    ctx.parallel_for(work, WorkDistributionConfig::for_matmul(w.rows, w.cols),
                     [&](std::int64_t b, std::int64_t e) { k::matmul(w, x, w.cols, n, y, w.rows, b, e); });
}

}  // namespace

std::string_view strategy_name(TensorParallelStrategy s) noexcept {
  switch (s) {
    case TensorParallelStrategy::None: return "none";
    case TensorParallelStrategy::ColumnParallel: return "column";
    case TensorParallelStrategy::RowParallel: return "row";
  }
  return "?";
}

TensorParallelConfig TensorParallelConfig::make(int world_size, int rank) {
  if (world_size < 1) throw UsageError("tensor-parallel size must be at least 1, got " + std::to_string(world_size));
  if (rank < 0 || rank >= world_size)
    throw UsageError("tensor-parallel rank " + std::to_string(rank) + " is outside [0, " + std::to_string(world_size) + ")");
  return TensorParallelConfig{world_size, rank};
}

std::int64_t TensorParallelConfig::local_offset(std::int64_t n, std::int64_t granule) const noexcept {
  const std::int64_t g = std::max<std::int64_t>(1, granule), units = (std::max<std::int64_t>(0, n) + g - 1) / g;
  return std::min(std::max<std::int64_t>(0, n), start_unit(units, world_size, rank) * g);
}

std::int64_t TensorParallelConfig::local_size(std::int64_t n, std::int64_t granule) const noexcept {
  const std::int64_t g = std::max<std::int64_t>(1, granule), nn = std::max<std::int64_t>(0, n), units = (nn + g - 1) / g;
  const std::int64_t end = std::min(nn, start_unit(units, world_size, rank + 1) * g);
  return end - local_offset(n, granule);
}

std::vector<std::size_t> TensorParallelConfig::split_sizes(std::int64_t n, std::int64_t granule) const {
  std::vector<std::size_t> out;
  for (int r = 0; r < world_size; ++r)
    out.push_back(static_cast<std::size_t>(TensorParallelConfig{world_size, r}.local_size(n, granule)));
  return out;
}

bool TensorParallelConfig::divides(std::int64_t n, std::int64_t granule) const noexcept {
  const std::int64_t g = std::max<std::int64_t>(1, granule);
  return n % (g * world_size) == 0;
}

void TensorParallelConfig::require_divisible(std::string_view name, std::int64_t n) const {
  if (n % world_size != 0)
    throw UsageError(std::string(name) + " (" + std::to_string(n) + ") is not divisible by tensor-parallel size " +
                     std::to_string(world_size));
}

TensorView column_shard_view(const TensorView& w, const TensorParallelConfig& tp, const ShardOptions& opt) {
  if (!opt.allow_uneven && !tp.divides(w.rows, opt.granule))
    throw UsageError(dims_error(opt, "out_features", w.rows, opt.granule, tp.world_size));
  return w.row_slice(tp.local_offset(w.rows, opt.granule), tp.local_size(w.rows, opt.granule));
}

WeightShard make_shard(const TensorView& w, TensorParallelStrategy strategy, const TensorParallelConfig& tp,
                       const ShardOptions& opt, Rank* rank) {
  const std::string name = opt.name.empty() ? std::string("tensor") : opt.name;
  if (tp.world_size < 1 || tp.rank < 0 || tp.rank >= tp.world_size)
    (void)TensorParallelConfig::make(tp.world_size, tp.rank);  // throws the explanation
  if (strategy != TensorParallelStrategy::None && w.ndim < 2)
    throw UsageError(name + " is 1-D: it cannot be split for tensor parallelism, only replicated");

  WeightShard s;
  s.strategy = strategy;
  std::int64_t rows = w.rows, cols = w.cols, row0 = 0, col0 = 0;
  if (strategy == TensorParallelStrategy::ColumnParallel) {
    const std::int64_t g = std::max<std::int64_t>(1, opt.granule);
    if (!opt.allow_uneven && !tp.divides(w.rows, g))
      throw UsageError(dims_error(opt, "out_features", w.rows, g, tp.world_size));
    row0 = tp.local_offset(w.rows, g);
    rows = tp.local_size(w.rows, g);
    s.offset = row0;
  } else if (strategy == TensorParallelStrategy::RowParallel) {
    // A block-quantized row can only be cut between blocks.
    const auto block = static_cast<std::int64_t>(dtype_block_size(w.dtype));
    const std::int64_t g = std::lcm(std::max<std::int64_t>(1, opt.granule), block);
    if (w.cols % block != 0)
      throw UsageError(name + ": in_features (" + std::to_string(w.cols) + ") is not a whole number of " +
                       std::string(dtype_name(w.dtype)) + " blocks (" + std::to_string(block) + ")");
    if (!opt.allow_uneven && !tp.divides(w.cols, g))
      throw UsageError(dims_error(opt, "in_features", w.cols, g, tp.world_size));
    col0 = tp.local_offset(w.cols, g);
    cols = tp.local_size(w.cols, g);
    s.offset = col0;
  }

  const std::size_t src_row_bytes = w.row_bytes();
  const std::size_t row_bytes = dtype_bytes(w.dtype, static_cast<std::size_t>(cols));
  const std::size_t col_skip = dtype_bytes(w.dtype, static_cast<std::size_t>(col0));
  const std::size_t bytes = row_bytes * static_cast<std::size_t>(rows);
  std::byte* dst = nullptr;
  if (bytes > 0) {
    if (rank != nullptr) {
      s.numa = rank->allocate(bytes);
      dst = s.numa.as<std::byte>();
    } else {
      s.heap.resize(bytes);
      dst = s.heap.data();
    }
  }
  // An interleaved source (core/quant.hpp) is read row by row in the file's layout; the shard is
  // interleaved again below.
  auto copy_rows = [&](std::int64_t b, std::int64_t e) {
    std::vector<std::byte> plain(w.interleave != 0 ? src_row_bytes : 0);
    for (std::int64_t r = b; r < e; ++r) {
      const std::byte* src = static_cast<const std::byte*>(w.data) + static_cast<std::size_t>(row0 + r) * src_row_bytes;
      if (w.interleave != 0) {
        read_row(w, row0 + r, plain.data());
        src = plain.data();
      }
      std::memcpy(dst + static_cast<std::size_t>(r) * row_bytes, src + col_skip, row_bytes);
    }
  };
  if (bytes > 0) {
    if (rank != nullptr)  // written by the rank's threads, next to where they will read it
      rank->context().parallel_for(rows, std::max<std::int64_t>(1, (1 << 20) / static_cast<std::int64_t>(row_bytes)), copy_rows);
    else
      copy_rows(0, rows);
  }
  s.view = TensorView{dst, w.dtype, rows, cols, w.ndim};
  if (w.interleave != 0 && bytes > 0) {
    const std::vector<std::byte> plain(dst, dst + bytes);
    interleave_rows(w.dtype, plain.data(), rows, cols, dst);
    s.view.interleave = w.interleave;
  }
  return s;
}

void column_parallel_linear(ExecContext& ctx, const TensorView& shard, const float* x, float* y_local, int n) noexcept {
  linear_rows(ctx, shard, x, y_local, n);
}

void column_parallel_linear_gather(ExecContext& ctx, Communicator& comm, const TensorView& shard, const float* x,
                                   std::span<const std::size_t> rows_per_rank, float* y, int n, float* scratch) noexcept {
  const int w = comm.world_size(), me = comm.rank();
  assert(rows_per_rank.size() == static_cast<std::size_t>(w));
  assert(rows_per_rank[static_cast<std::size_t>(me)] == static_cast<std::size_t>(shard.rows));
  std::size_t off = 0, full = 0;
  for (int r = 0; r < w; ++r) {
    if (r < me) off += rows_per_rank[static_cast<std::size_t>(r)];
    full += rows_per_rank[static_cast<std::size_t>(r)];
  }
  if (n == 1) {
    linear_rows(ctx, shard, x, y + off, 1);
    comm.all_gatherv(y + off, rows_per_rank, y);
    return;
  }
  // n tokens: this rank's n x local block, gathered rank-major into scratch, then interleaved.
  assert(scratch != nullptr);
  linear_rows(ctx, shard, x, y, n);
  constexpr int kStackRanks = 64;
  std::size_t stack_counts[kStackRanks];
  std::vector<std::size_t> heap_counts;
  std::size_t* counts = stack_counts;
  if (w > kStackRanks) {
    heap_counts.resize(static_cast<std::size_t>(w));
    counts = heap_counts.data();
  }
  for (int r = 0; r < w; ++r) counts[r] = rows_per_rank[static_cast<std::size_t>(r)] * static_cast<std::size_t>(n);
  comm.all_gatherv(y, std::span<const std::size_t>(counts, static_cast<std::size_t>(w)), scratch);
  std::size_t base = 0, col = 0;
  for (int r = 0; r < w; ++r) {
    const std::size_t c = rows_per_rank[static_cast<std::size_t>(r)];
    for (int t = 0; t < n; ++t)
      std::memcpy(y + static_cast<std::size_t>(t) * full + col, scratch + base + static_cast<std::size_t>(t) * c,
                  c * sizeof(float));
    base += c * static_cast<std::size_t>(n);
    col += c;
  }
}

void row_parallel_linear(ExecContext& ctx, Communicator& comm, const TensorView& shard, const float* x_local, float* y,
                         int n) noexcept {
  if (shard.cols > 0)
    linear_rows(ctx, shard, x_local, y, n);
  else  // an uneven split left this rank no columns: it adds zeros
    std::memset(y, 0, static_cast<std::size_t>(shard.rows) * static_cast<std::size_t>(n) * sizeof(float));
  comm.all_reduce_sum(y, static_cast<std::size_t>(shard.rows) * static_cast<std::size_t>(n));
}

void mlp_tensor_parallel(ExecContext& ctx, Communicator& comm, const TensorView& gate_shard, const TensorView& up_shard,
                         const TensorView& down_shard, const float* x, float* hidden, float* y, int n) noexcept {
  assert(gate_shard.rows == up_shard.rows && gate_shard.cols == up_shard.cols);
  assert(down_shard.cols == gate_shard.rows);
  const WorkShape work{.rows = gate_shard.rows,
                       .row_bytes = static_cast<std::int64_t>(gate_shard.row_bytes() + up_shard.row_bytes()),
                       .row_block = kRowBlock};
  const auto cfg = WorkDistributionConfig::for_matmul(gate_shard.rows, 2 * gate_shard.cols);
  if (n == 1)
    ctx.parallel_for(work, cfg, [&](std::int64_t b, std::int64_t e) { k::matvec_silu_mul(gate_shard, up_shard, x, hidden, b, e); });
  else
    ctx.parallel_for(work, cfg, [&](std::int64_t b, std::int64_t e) {
      k::matmul_silu_mul(gate_shard, up_shard, x, gate_shard.cols, n, hidden, gate_shard.rows, b, e);
    });
  row_parallel_linear(ctx, comm, down_shard, hidden, y, n);
}

}  // namespace weft::par
