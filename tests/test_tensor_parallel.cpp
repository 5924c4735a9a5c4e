// Tensor-parallel primitives over in-process ranks: splits, shards, column- and row-parallel
// linear layers and the MLP, each against the single-rank result (F32 and BF16 weights).
#include <cmath>
#include <cstring>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/dtype.hpp"
#include "kernels/kernels.hpp"
#include "parallel/communicator.hpp"
#include "parallel/rank_group.hpp"
#include "parallel/tensor_parallel.hpp"
#include "testing.hpp"
#include "weft/error.hpp"

using namespace weft;
using namespace weft::par;
using weft::testing::expect_close;

namespace {

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

float uniform(std::uint64_t& s) {
  s = s * 6364136223846793005ULL + 1442695040888963407ULL;
  return static_cast<float>((s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

// A (rows, cols) matrix of small random values stored as `t`.
struct Matrix {
  AlignedBuffer<std::byte> bytes;
  TensorView view;
  Matrix(std::int64_t rows, std::int64_t cols, DType t, std::uint64_t seed, float scale = 0.1f) {
    const std::size_t n = static_cast<std::size_t>(rows * cols);
    bytes.resize(dtype_bytes(t, n));
    for (std::size_t i = 0; i < n; ++i) {
      const float v = uniform(seed) * scale;
      if (t == DType::F32)
        reinterpret_cast<float*>(bytes.data())[i] = v;
      else
        reinterpret_cast<std::uint16_t*>(bytes.data())[i] = f32_to_bf16(v);
    }
    view = make_view_2d(bytes.data(), t, rows, cols);
  }
};

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  for (auto& x : v) x = uniform(seed);
  return v;
}

std::vector<float> reference_linear(const TensorView& w, const float* x, int n) {
  std::vector<float> y(static_cast<std::size_t>(w.rows) * static_cast<std::size_t>(n));
  for (int t = 0; t < n; ++t)
    kernels::matvec(w, x + static_cast<std::size_t>(t) * static_cast<std::size_t>(w.cols),
                    y.data() + static_cast<std::size_t>(t) * static_cast<std::size_t>(w.rows), 0, w.rows);
  return y;
}

constexpr double kTol = 1e-5;
}  // namespace

TEST_CASE("splits: even, uneven, in granules; sizes and offsets tile the dimension") {
  const TensorParallelConfig two{2, 1};
  CHECK(two.local_size(4096) == 2048);
  CHECK(two.local_offset(4096) == 2048);
  CHECK(two.divides(4096));
  CHECK(two.divides(4096, 128));
  CHECK_FALSE(two.divides(4096 + 64, 128));
  for (int w : {1, 2, 3, 4, 5}) {
    for (std::int64_t n : {0, 1, 7, 100, 1024, 4097}) {
      for (std::int64_t g : {1, 16, 128}) {
        CAPTURE(w);
        CAPTURE(n);
        CAPTURE(g);
        std::int64_t next = 0;
        const auto sizes = TensorParallelConfig{w, 0}.split_sizes(n, g);
        for (int r = 0; r < w; ++r) {
          const TensorParallelConfig c{w, r};
          CHECK(c.local_offset(n, g) == next);
          CHECK(c.local_size(n, g) >= 0);
          CHECK(static_cast<std::size_t>(c.local_size(n, g)) == sizes[static_cast<std::size_t>(r)]);
          if (c.local_offset(n, g) + c.local_size(n, g) < n) CHECK(c.local_size(n, g) % g == 0);
          next += c.local_size(n, g);
        }
        CHECK(next == n);
      }
    }
  }
  // 3 ranks over 8 heads of 128: 3, 3, 2 heads.
  CHECK(TensorParallelConfig{3, 0}.split_sizes(1024, 128) == std::vector<std::size_t>{384, 384, 256});
  CHECK_THROWS_AS(TensorParallelConfig::make(0, 0), UsageError);
  CHECK_THROWS_AS(TensorParallelConfig::make(2, 2), UsageError);
  CHECK(TensorParallelConfig::make(2, 1).rank == 1);
}

TEST_CASE("dimension checks name the dimension and both numbers") {
  const TensorParallelConfig three{3, 0};
  CHECK_THROWS_AS(three.require_divisible("num_key_value_heads", 8), UsageError);
  CHECK(error_of([&] { three.require_divisible("num_key_value_heads", 8); }) ==
        "num_key_value_heads (8) is not divisible by tensor-parallel size 3");
  CHECK_NOTHROW(three.require_divisible("num_attention_heads", 24));
  Matrix m(10, 12, DType::F32, 1);
  const std::string col = error_of([&] {
    make_shard(m.view, TensorParallelStrategy::ColumnParallel, {4, 0}, {.name = "layers.0.self_attn.q_proj"});
  });
  CHECK(col == "layers.0.self_attn.q_proj: out_features (10) is not divisible by tensor-parallel size 4");
  const std::string row = error_of([&] {
    make_shard(m.view, TensorParallelStrategy::RowParallel, {5, 0}, {.name = "layers.0.mlp.down_proj"});
  });
  CHECK(row == "layers.0.mlp.down_proj: in_features (12) is not divisible by tensor-parallel size 5");
  CHECK_THROWS_AS(column_shard_view(m.view, {3, 0}, {.name = "w"}), UsageError);
  CHECK_NOTHROW(make_shard(m.view, TensorParallelStrategy::RowParallel, {5, 0}, {.name = "w", .allow_uneven = true}));
  const TensorView norm = make_view_1d(m.bytes.data(), DType::F32, 12);
  CHECK_THROWS_AS(make_shard(norm, TensorParallelStrategy::ColumnParallel, {2, 0}, {.name = "norm"}), UsageError);
  CHECK(make_shard(norm, TensorParallelStrategy::None, {2, 1}).view.cols == 12);
}

TEST_CASE("shards hold the right rows or columns, also of block-quantized tensors") {
  for (DType t : {DType::F32, DType::BF16}) {
    Matrix m(8, 12, t, 7);
    const std::size_t es = dtype_bytes(t, 1);
    for (int r = 0; r < 4; ++r) {
      CAPTURE(r);
      const TensorParallelConfig tp{4, r};
      const WeightShard c = make_shard(m.view, TensorParallelStrategy::ColumnParallel, tp);
      CHECK(c.view.rows == 2);
      CHECK(c.view.cols == 12);
      CHECK(c.offset == 2 * r);
      CHECK(std::memcmp(c.view.data, m.view.row(2 * r), 2 * m.view.row_bytes()) == 0);
      const TensorView v = column_shard_view(m.view, tp);
      CHECK(v.data == m.view.row(2 * r));
      const WeightShard rs = make_shard(m.view, TensorParallelStrategy::RowParallel, tp);
      CHECK(rs.view.rows == 8);
      CHECK(rs.view.cols == 3);
      for (int i = 0; i < 8; ++i)
        CHECK(std::memcmp(rs.view.row(i), m.view.row(i) + 3 * r * es, 3 * es) == 0);
    }
  }
  // Q8_0: 32 elements in 34 bytes per block. 64 columns split in two whole blocks; 32 cannot be.
  AlignedBuffer<std::byte> q(4 * 2 * 34);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<std::byte>(i);
  const TensorView qv = make_view_2d(q.data(), DType::Q8_0, 4, 64);
  const WeightShard qs = make_shard(qv, TensorParallelStrategy::RowParallel, {2, 1}, {.name = "q8"});
  CHECK(qs.view.cols == 32);
  CHECK(qs.view.row_bytes() == 34);
  for (int i = 0; i < 4; ++i) CHECK(std::memcmp(qs.view.row(i), qv.row(i) + 34, 34) == 0);
  const TensorView narrow = make_view_2d(q.data(), DType::Q8_0, 8, 32);
  CHECK_THROWS_AS(make_shard(narrow, TensorParallelStrategy::RowParallel, {2, 0}, {.name = "q8"}), UsageError);
  CHECK(error_of([&] { make_shard(narrow, TensorParallelStrategy::RowParallel, {2, 0}, {.name = "q8"}); }).find("32") !=
        std::string::npos);
}

TEST_CASE("column-, row-parallel linear and the TP MLP equal the single-rank result") {
  // Every dimension divides by 1, 2, 3 and 4.
  const std::int64_t dim = 96, hidden = 192, out = 144;
  for (DType t : {DType::F32, DType::BF16}) {
    const Matrix wq(out, dim, t, 11), wo(dim, out, t, 12), gate(hidden, dim, t, 13), up(hidden, dim, t, 14),
        down(dim, hidden, t, 15);
    for (int n : {1, 3}) {
      const std::vector<float> x = random_vector(static_cast<std::size_t>(dim * n), 99);
      const std::vector<float> xo = random_vector(static_cast<std::size_t>(out * n), 98);
      const std::vector<float> want_col = reference_linear(wq.view, x.data(), n);
      const std::vector<float> want_row = reference_linear(wo.view, xo.data(), n);
      std::vector<float> h(static_cast<std::size_t>(hidden * n)), want_mlp;
      for (int i = 0; i < n; ++i)
        kernels::matvec_silu_mul(gate.view, up.view, x.data() + i * dim, h.data() + i * hidden, 0, hidden);
      want_mlp = reference_linear(down.view, h.data(), n);

      for (int w : {1, 2, 3, 4}) {
        for (int threads : {1, 2}) {
          CAPTURE(dtype_name(t));
          CAPTURE(n);
          CAPTURE(w);
          CAPTURE(threads);
          RankGroup group(w, threads);
          SharedMemoryWorld world(w);
          std::vector<std::vector<float>> col(static_cast<std::size_t>(w)), row(col), mlp(col), local(col);
          group.run([&](int r) {
            Rank& rank = group.rank(r);
            Communicator& comm = world.communicator(r);
            const TensorParallelConfig tp = TensorParallelConfig::make(w, r);
            const WeightShard q = make_shard(wq.view, TensorParallelStrategy::ColumnParallel, tp, {.name = "q"}, &rank);
            const WeightShard o = make_shard(wo.view, TensorParallelStrategy::RowParallel, tp, {.name = "o"}, &rank);
            const WeightShard g = make_shard(gate.view, TensorParallelStrategy::ColumnParallel, tp, {.name = "gate"}, &rank);
            const WeightShard u = make_shard(up.view, TensorParallelStrategy::ColumnParallel, tp, {.name = "up"}, &rank);
            const WeightShard d = make_shard(down.view, TensorParallelStrategy::RowParallel, tp, {.name = "down"}, &rank);
            auto& mine = local[static_cast<std::size_t>(r)];
            mine.resize(static_cast<std::size_t>(q.view.rows * n));
            column_parallel_linear(rank.context(), q.view, x.data(), mine.data(), n);

            auto& y = col[static_cast<std::size_t>(r)];
            y.assign(static_cast<std::size_t>(out * n), 0.0f);
            std::vector<float> scratch(static_cast<std::size_t>(out * n));
            const auto rows = tp.split_sizes(out);
            column_parallel_linear_gather(rank.context(), comm, q.view, x.data(), rows, y.data(), n, scratch.data());

            // Row-parallel: this rank's slice of the input features of each token.
            std::vector<float> xs(static_cast<std::size_t>(o.view.cols * n));
            for (int i = 0; i < n; ++i)
              std::memcpy(xs.data() + i * o.view.cols, xo.data() + i * out + o.offset,
                          static_cast<std::size_t>(o.view.cols) * sizeof(float));
            auto& yr = row[static_cast<std::size_t>(r)];
            yr.assign(static_cast<std::size_t>(dim * n), 0.0f);
            row_parallel_linear(rank.context(), comm, o.view, xs.data(), yr.data(), n);

            std::vector<float> hid(static_cast<std::size_t>(g.view.rows * n));
            auto& ym = mlp[static_cast<std::size_t>(r)];
            ym.assign(static_cast<std::size_t>(dim * n), 0.0f);
            mlp_tensor_parallel(rank.context(), comm, g.view, u.view, d.view, x.data(), hid.data(), ym.data(), n);
          });
          // Column-parallel pieces, concatenated per token, are the full output.
          std::vector<float> joined;
          for (int i = 0; i < n; ++i)
            for (int r = 0; r < w; ++r) {
              const auto& l = local[static_cast<std::size_t>(r)];
              const std::size_t lr = l.size() / static_cast<std::size_t>(n);
              joined.insert(joined.end(), l.begin() + static_cast<std::ptrdiff_t>(i * lr),
                            l.begin() + static_cast<std::ptrdiff_t>((i + 1) * lr));
            }
          expect_close(joined, want_col, kTol);
          for (int r = 0; r < w; ++r) {
            CAPTURE(r);
            expect_close(col[static_cast<std::size_t>(r)], want_col, kTol);
            expect_close(row[static_cast<std::size_t>(r)], want_row, kTol);
            expect_close(mlp[static_cast<std::size_t>(r)], want_mlp, kTol);
            // Every rank holds the same bits after the all-reduce.
            CHECK(std::memcmp(row[static_cast<std::size_t>(r)].data(), row[0].data(), row[0].size() * sizeof(float)) == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("uneven splits: 3 ranks over dimensions that do not divide") {
  const std::int64_t dim = 40, hidden = 100, out = 100;
  const Matrix wq(out, dim, DType::BF16, 21), wo(dim, out, DType::F32, 22), gate(hidden, dim, DType::F32, 23),
      up(hidden, dim, DType::F32, 24), down(dim, hidden, DType::BF16, 25);
  const std::vector<float> x = random_vector(dim, 5), xo = random_vector(out, 6);
  const std::vector<float> want_col = reference_linear(wq.view, x.data(), 1), want_row = reference_linear(wo.view, xo.data(), 1);
  std::vector<float> h(hidden);
  kernels::matvec_silu_mul(gate.view, up.view, x.data(), h.data(), 0, hidden);
  const std::vector<float> want_mlp = reference_linear(down.view, h.data(), 1);
  for (int w : {3, 4}) {
    CAPTURE(w);
    RankGroup group(w, 1);
    SharedMemoryWorld world(w);
    std::vector<std::vector<float>> col(static_cast<std::size_t>(w)), row(col), mlp(col);
    group.run([&](int r) {
      const TensorParallelConfig tp{w, r};
      const ShardOptions uneven{.name = "w", .granule = 16, .allow_uneven = true};
      const WeightShard q = make_shard(wq.view, TensorParallelStrategy::ColumnParallel, tp, uneven);
      const WeightShard o = make_shard(wo.view, TensorParallelStrategy::RowParallel, tp, uneven);
      const WeightShard g = make_shard(gate.view, TensorParallelStrategy::ColumnParallel, tp, uneven);
      const WeightShard u = make_shard(up.view, TensorParallelStrategy::ColumnParallel, tp, uneven);
      const WeightShard d = make_shard(down.view, TensorParallelStrategy::RowParallel, tp, uneven);
      Communicator& comm = world.communicator(r);
      auto& y = col[static_cast<std::size_t>(r)];
      y.assign(out, 0.0f);
      column_parallel_linear_gather(group.rank(r).context(), comm, q.view, x.data(), tp.split_sizes(out, 16), y.data());
      auto& yr = row[static_cast<std::size_t>(r)];
      yr.assign(dim, 0.0f);
      row_parallel_linear(group.rank(r).context(), comm, o.view, xo.data() + o.offset, yr.data());
      std::vector<float> hid(static_cast<std::size_t>(g.view.rows) + 1);
      auto& ym = mlp[static_cast<std::size_t>(r)];
      ym.assign(dim, 0.0f);
      mlp_tensor_parallel(group.rank(r).context(), comm, g.view, u.view, d.view, x.data(), hid.data(), ym.data());
    });
    for (int r = 0; r < w; ++r) {
      CAPTURE(r);
      expect_close(col[static_cast<std::size_t>(r)], want_col, kTol);
      expect_close(row[static_cast<std::size_t>(r)], want_row, kTol);
      expect_close(mlp[static_cast<std::size_t>(r)], want_mlp, kTol);
    }
  }
}
