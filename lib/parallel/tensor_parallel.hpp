#pragma once
// Tensor-parallel building blocks, Megatron's naming. A linear layer's weight W is (out, in),
// row-major, y = W x:
//   ColumnParallel: split the output features (W's rows). Each rank computes its part of y from
//                   the whole x; no communication (q, k, v, gate, up; lm_head then gathers).
//   RowParallel:    split the input features (W's columns). Each rank multiplies its columns by
//                   its slice of x and the partial sums are all-reduced (o, down).
// Paired column then row (the MLP) needs one all-reduce: the column layer's local output is
// exactly the row layer's local input.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/tensor.hpp"
#include "parallel/communicator.hpp"
#include "parallel/exec_context.hpp"
#include "parallel/rank.hpp"

namespace weft::par {

enum class TensorParallelStrategy { None, ColumnParallel, RowParallel };

// "none", "column", "row".
std::string_view strategy_name(TensorParallelStrategy s) noexcept;

// Which rank of how many, and how a dimension is split among them. A dimension of n items is
// split in units of `granule` items (a head's width, a quantization block): units/world_size
// each, and the first units % world_size ranks hold one unit more. When world_size * granule
// divides n every rank holds n / world_size.
struct TensorParallelConfig {
  int world_size = 1;
  int rank = 0;

  // A checked config: 1 <= world_size, 0 <= rank < world_size; throws UsageError otherwise.
  static TensorParallelConfig make(int world_size, int rank);

  // Items of an n-item dimension on this rank.
  std::int64_t local_size(std::int64_t n, std::int64_t granule = 1) const noexcept;
  // The first of this rank's items.
  std::int64_t local_offset(std::int64_t n, std::int64_t granule = 1) const noexcept;
  // Items on every rank, in rank order (the counts all_gatherv takes).
  std::vector<std::size_t> split_sizes(std::int64_t n, std::int64_t granule = 1) const;
  // True when n splits evenly: world_size * granule divides n.
  bool divides(std::int64_t n, std::int64_t granule = 1) const noexcept;
  // Throws UsageError "NAME (N) is not divisible by tensor-parallel size W" unless world_size
  // divides n (e.g. require_divisible("num_key_value_heads", 8)).
  void require_divisible(std::string_view name, std::int64_t n) const;
};

// How to cut one weight.
struct ShardOptions {
  std::string name;            // names the tensor in errors ("layers.0.mlp.down_proj")
  std::int64_t granule = 1;    // split in units of this many rows (column) or columns (row)
  bool allow_uneven = false;   // false: throw UsageError unless the split is even
};

// One rank's part of a weight, in memory the shard owns (the rank's NUMA node when made with a
// Rank). `view` is (local rows, cols) for ColumnParallel, (rows, local cols) for RowParallel,
// the whole tensor for None. Move-only.
struct WeightShard {
  TensorView view;
  TensorParallelStrategy strategy = TensorParallelStrategy::None;
  std::int64_t offset = 0;  // first row (column-parallel) or column (row-parallel) of the full tensor
  NumaBuffer numa;                // storage when made for a Rank
  AlignedBuffer<std::byte> heap;  // storage otherwise
};

// The non-owning view of the rows a column-parallel rank holds (no copy: rows are contiguous).
// Checks as make_shard does.
TensorView column_shard_view(const TensorView& w, const TensorParallelConfig& tp, const ShardOptions& opt = {});

// Copies this rank's part of w (rows for ColumnParallel, columns for RowParallel, all of it for
// None) into memory the shard owns: on `rank`'s NUMA node, written by its threads, when rank is
// given, else the ordinary heap. A 1-D tensor (a norm weight) can only be replicated (None).
// Throws UsageError when the split dimension is not divisible (unless opt.allow_uneven) naming
// the tensor, the dimension and both numbers, or when a column slice of a block-quantized
// tensor would cut a block. Not for the hot path.
WeightShard make_shard(const TensorView& w, TensorParallelStrategy strategy, const TensorParallelConfig& tp,
                       const ShardOptions& opt = {}, Rank* rank = nullptr);

// The layers. n is the number of tokens; vectors of a token are contiguous, tokens follow each
// other (x[t * width + i]). The rank's threads (ctx) split the rows. No allocation; the
// collectives synchronise with the other ranks, which must make the matching call.

// y_local = W_shard x: x holds n x in_features (the full input), y_local n x shard.rows.
void column_parallel_linear(ExecContext& ctx, const TensorView& shard, const float* x, float* y_local,
                            int n = 1) noexcept;

// Column-parallel, then the ranks' parts gathered: y holds n x full_rows on every rank, where
// full_rows is the sum of rows_per_rank (this rank's entry must be shard.rows). For n > 1,
// scratch holds n * full_rows floats (the gather is rank-major; unused for n == 1, where y is
// gathered in place).
void column_parallel_linear_gather(ExecContext& ctx, Communicator& comm, const TensorView& shard, const float* x,
                                   std::span<const std::size_t> rows_per_rank, float* y, int n = 1,
                                   float* scratch = nullptr) noexcept;

// y = sum over ranks of W_shard x_local: x_local holds n x shard.cols (this rank's slice of the
// input features), y n x shard.rows, all-reduced so every rank holds the full result.
void row_parallel_linear(ExecContext& ctx, Communicator& comm, const TensorView& shard, const float* x_local,
                         float* y, int n = 1) noexcept;

// The SwiGLU MLP with gate and up column-parallel and down row-parallel, one all-reduce:
// hidden = silu(gate_shard x) * (up_shard x) (n x gate_shard.rows, scratch the caller owns),
// y = all_reduce(down_shard hidden) (n x down_shard.rows). down_shard.cols must equal
// gate_shard.rows: shard gate/up and down with the same split (granule) of hidden_dim.
void mlp_tensor_parallel(ExecContext& ctx, Communicator& comm, const TensorView& gate_shard, const TensorView& up_shard,
                         const TensorView& down_shard, const float* x, float* hidden, float* y, int n = 1) noexcept;

}  // namespace weft::par
