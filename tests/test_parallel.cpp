// Work distribution (chunk plans), work-stealing statistics and the ExecContext that uses them.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

#include "parallel/exec_context.hpp"
#include "parallel/work_distribution.hpp"
#include "parallel/work_stealing_stats.hpp"
#include "testing.hpp"

using namespace weft::par;

namespace {
constexpr std::size_t kL2 = 2 << 20;  // a fixed L2 per core, so the expectations do not depend on the machine

// Checks the invariants of the plan for (cfg, work, threads) and returns it.
ChunkPlan check_plan(const WorkDistributionConfig& cfg, const WorkShape& work, int threads) {
  const std::int64_t chunk = chunk_rows(cfg, work, threads, kL2);
  const ChunkPlan plan(work.rows, chunk);
  const std::int64_t rows = work.rows, rb = std::max<std::int64_t>(1, work.row_block);
  CAPTURE(rows);
  CAPTURE(work.row_bytes);
  CAPTURE(rb);
  CAPTURE(threads);
  CAPTURE(cfg.min_chunk_size);
  CAPTURE(cfg.max_chunk_size);
  CAPTURE(chunk);
  REQUIRE(chunk >= 1);
  CHECK(chunk <= std::max<std::int64_t>(1, rows));
  CHECK(plan.count() >= 1);
  CHECK(plan.count() <= std::max<std::int64_t>(1, rows));
  if (chunk < rows) CHECK(chunk % rb == 0);  // every chunk but the last starts and ends on a row block
  // Bounds: at least min (or all the rows), at most max, whenever a multiple of the row block fits.
  const auto lo = static_cast<std::int64_t>(cfg.min_chunk_size), hi = static_cast<std::int64_t>(cfg.max_chunk_size);
  CHECK((chunk >= lo || chunk == rows));
  if ((lo + rb - 1) / rb * rb <= hi) CHECK(chunk <= hi);
  // Every row exactly once, no empty chunk (arithmetically, so that huge plans are cheap).
  CHECK(plan.begin(0) == 0);
  CHECK(plan.end(plan.count() - 1) == rows);
  CHECK(plan.begin(plan.count() - 1) < plan.end(plan.count() - 1));
  if (plan.count() > 1) CHECK(plan.end(plan.count() - 2) == plan.begin(plan.count() - 1));
  return plan;
}

// Every row of the plan is covered exactly once when walked chunk by chunk.
void check_cover(const ChunkPlan& plan) {
  std::vector<int> seen(static_cast<std::size_t>(plan.rows()), 0);
  for (std::int64_t i = 0; i < plan.count(); ++i) {
    REQUIRE(plan.begin(i) < plan.end(i));
    for (std::int64_t r = plan.begin(i); r < plan.end(i); ++r) ++seen[static_cast<std::size_t>(r)];
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
}

void spin_for(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}
}  // namespace

TEST_CASE("the default config has the documented values") {
  const WorkDistributionConfig c;
  CHECK(c.min_chunk_size == 64);
  CHECK(c.max_chunk_size == 4096);
  CHECK(c.tasks_per_thread == 4);
  CHECK_FALSE(c.numa_aware);
  CHECK(c.cache_line_size == 64);
}

TEST_CASE("chunk plans respect bounds and row blocks and cover every row once") {
  WorkDistributionConfig odd;  // bounds that are not multiples of the row blocks
  odd.min_chunk_size = 3;
  odd.max_chunk_size = 37;
  for (std::int64_t rows : {1, 2, 3, 5, 15, 16, 17, 63, 64, 65, 100, 1000, 4096, 4097, 14336, 32000, 100000}) {
    for (std::int64_t row_bytes : {0, 4, 6, 100, 128, 8192, 28672, 262144}) {
      for (std::int64_t rb : {1, 4, 16}) {
        for (int threads : {1, 2, 3, 16, 64}) {
          const WorkShape w{rows, row_bytes, rb};
          for (const auto& cfg : {WorkDistributionConfig{}, WorkDistributionConfig::for_matmul(rows, row_bytes / 2),
                                  WorkDistributionConfig::for_attention(8, 4096), odd}) {
            const ChunkPlan plan = check_plan(cfg, w, threads);
            if (rows <= 4097) check_cover(plan);
          }
        }
      }
    }
  }
}

TEST_CASE("chunks hold whole cache lines of row data where the bounds allow") {
  // 6-byte rows: 32 rows make 3 lines. 100-byte rows: 16 rows make 25 lines.
  for (std::int64_t row_bytes : {6, 100, 8192}) {
    for (std::int64_t rb : {1, 4}) {
      const ChunkPlan p = check_plan(WorkDistributionConfig{}, {100000, row_bytes, rb}, 2);
      CAPTURE(row_bytes);
      CHECK(p.chunk() * row_bytes % 64 == 0);
      CHECK(p.chunk() % rb == 0);
    }
  }
}

TEST_CASE("enough chunks per thread to balance, and no more than the cache cap") {
  // A 4096 x 4096 bf16 matrix on 2 threads: 8 KiB rows, the L2 cap (1 MiB) gives 128 rows.
  const auto cfg = WorkDistributionConfig::for_matmul(4096, 4096);
  const ChunkPlan p = check_plan(cfg, {4096, 8192, 16}, 2);
  CHECK(p.chunk() == 128);
  CHECK(p.count() >= 2 * cfg.tasks_per_thread);
  // 16 threads: 4096 / 64 = 64 rows (512 KiB) per chunk, four per thread.
  CHECK(check_plan(cfg, {4096, 8192, 16}, 16).chunk() == 64);
}

TEST_CASE("tiny inputs give one small chunk, never an empty one") {
  for (const auto& cfg : {WorkDistributionConfig{}, WorkDistributionConfig::for_matmul(1, 64)}) {
    const ChunkPlan one = check_plan(cfg, {1, 128, 16}, 2);
    CHECK(one.count() == 1);
    CHECK(one.end(0) == 1);
    const ChunkPlan three = check_plan(cfg, {3, 128, 4}, 2);
    CHECK(three.count() == 1);
    CHECK(three.end(0) == 3);
  }
  // A tiny model's matrix (64 x 64 bf16) is one chunk: scheduling would cost more than it saves.
  CHECK(check_plan(WorkDistributionConfig::for_matmul(64, 64), {64, 128, 16}, 2).count() == 1);
  // Items that are worth a chunk each (long attention) are split even when there are three.
  CHECK(check_plan(WorkDistributionConfig::for_attention(3, 8192), {3, 8192 * 1024, 1}, 2).count() == 3);
  CHECK(ChunkPlan(0, 5).count() == 0);
  CHECK(ChunkPlan(-3, 0).count() == 0);
}

TEST_CASE("huge inputs: 10^9 rows of 128k bf16 columns") {
  const std::int64_t rows = 1'000'000'000, cols = 128 * 1024, row_bytes = cols * 2;
  const auto cfg = WorkDistributionConfig::for_matmul(rows, cols);
  CHECK(cfg.min_chunk_size == 1);  // one 256 KiB row is plenty of work
  for (std::int64_t rb : {1, 16}) {
    const ChunkPlan p = check_plan(cfg, {rows, row_bytes, rb}, 64);
    CAPTURE(rb);
    CHECK(p.chunk() == std::max<std::int64_t>(4, rb));  // half an L2 (4 rows), or one row block
    CHECK(p.count() == (rows + p.chunk() - 1) / p.chunk());
  }
  // Narrow rows: the max bound holds.
  const ChunkPlan narrow = check_plan(WorkDistributionConfig::for_matmul(rows, 16), {rows, 32, 16}, 2);
  CHECK(narrow.chunk() == 4096);
}

TEST_CASE("for_attention: a head per chunk for long sequences, grouped heads for short ones") {
  const auto long_seq = WorkDistributionConfig::for_attention(8, 32768);
  CHECK(long_seq.min_chunk_size == 1);
  CHECK(long_seq.max_chunk_size == 8);
  for (int threads : {2, 16}) {
    const ChunkPlan p = check_plan(long_seq, {8, 32768 * 1024, 1}, threads);
    CHECK(p.chunk() == 1);  // few heads, each long: every head its own task
    CHECK(p.count() == 8);
  }
  CHECK(check_plan(WorkDistributionConfig::for_attention(2, 100000), {2, 100000 * 1024, 1}, 16).count() == 2);
  // A 64-token prefill over 8 KV heads: 512 items, finer chunks for the causal imbalance.
  const ChunkPlan prefill = check_plan(long_seq, {64 * 8, 32768 * 1024, 1}, 2);
  CHECK(prefill.count() >= 2 * long_seq.tasks_per_thread);
  // Early decode (5 keys): the 8 heads together are barely 40 KiB of work, one chunk.
  const auto short_seq = WorkDistributionConfig::for_attention(8, 5);
  CHECK(short_seq.min_chunk_size == 8);
  CHECK(check_plan(short_seq, {8, 5 * 1024, 1}, 2).count() == 1);
  CHECK(WorkDistributionConfig::for_attention(0, 0).min_chunk_size == 1);
}

TEST_CASE("the L2 per core is read from the machine and plausible") {
  const std::size_t l2 = l2_cache_bytes_per_core();
  MESSAGE("L2 per core: " << l2 / 1024 << " KiB");
  CHECK(l2 >= 64 * 1024);
  CHECK(l2 <= std::size_t{1} << 30);
}

TEST_CASE("WorkStealingStats counts what it is told, per slot") {
  WorkStealingStats s(2);
  s.on_task_created(0);
  s.on_task_created(0);
  s.on_task_run(0, 0, 3, 100);
  s.on_task_run(0, 1, 1, 50);
  CHECK(s.tasks_created() == 2);
  CHECK(s.tasks_run() == 2);
  CHECK(s.tasks_stolen() == 1);
  CHECK(s.chunks() == 4);
  CHECK(s.steal_ratio() == doctest::Approx(0.5));
  CHECK(s.slot(1).tasks_stolen == 1);
  CHECK(s.slot(1).busy_ns == 50);
  CHECK(s.slot(7).tasks_run == 0);
  CHECK(s.summary().find("stolen 1") != std::string::npos);
  s.reset();
  CHECK(s.tasks_created() == 0);
  CHECK(s.tasks_run() == 0);
  CHECK(s.steal_ratio() == 0.0);
  CHECK(s.slot(0).busy_ns == 0);
}

TEST_CASE("an unbalanced loop on 2 threads is evened out by stealing, and the stats see it") {
  ExecContext ctx(2);
  ctx.parallel_for(1024, 1, [](std::int64_t, std::int64_t) { spin_for(std::chrono::microseconds(5)); });  // workers up
  ctx.enable_stats(true);
  constexpr std::int64_t kChunks = 64;
  std::vector<std::atomic<int>> seen(kChunks);
  // Chunk 0 takes 20 ms, the rest 50 µs: the thread that runs chunk 0 cannot do anything else
  // meanwhile, so the rest of its share must be stolen by the other thread. That needs the other
  // thread on a core: on a loaded machine (the sanitizer passes run two tests at once on two
  // cores) it may not get one in time, or one thread may be descheduled long enough for the
  // other to take everything, and the loop runs again, up to 5 times.
  const auto evened_out = [&] {
    const WorkStealingStats& st = ctx.stats();
    const std::uint64_t fewer = std::min(st.slot(0).chunks, st.slot(1).chunks);
    return st.tasks_stolen() > 0 && fewer > 0 && fewer < kChunks / 2;
  };
  for (int attempt = 0; attempt < 5 && (attempt == 0 || !evened_out()); ++attempt) {
    ctx.stats().reset();
    for (auto& v : seen) v = 0;
    ctx.parallel_for(kChunks, 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        seen[static_cast<std::size_t>(i)]++;
        spin_for(std::chrono::microseconds(i == 0 ? 20000 : 50));
      }
    });
  }
  const WorkStealingStats& st = ctx.stats();
  MESSAGE("unbalanced loop, 2 threads:\n" << st.summary());
  for (auto& v : seen) CHECK(v == 1);
  CHECK(st.tasks_created() == kChunks);  // chunks of 1 item are never cut: one task per chunk
  CHECK(st.tasks_run() == kChunks);
  CHECK(st.chunks() == kChunks);
  CHECK(st.tasks_stolen() > 0);
  CHECK(st.steal_ratio() > 0.0);
  CHECK(st.slot(0).chunks > 0);
  CHECK(st.slot(1).chunks > 0);
  const std::uint64_t busy = st.slot(0).busy_ns + st.slot(1).busy_ns;
  CHECK(busy >= 20'000'000);
  // The slot that ran chunk 0 ran few chunks: the other one did the rest.
  CHECK(std::min(st.slot(0).chunks, st.slot(1).chunks) < kChunks / 2);
}

TEST_CASE("a loop's pieces start on the plan's unit, hold at most a chunk, and cover every row once") {
  // Rows of 600 bytes in 16-row blocks: pieces must start on multiples of 16 rows (the row block)
  // and of 16 rows (600 * 16 is whole 64-byte lines), so the unit is 16. Rows of the first
  // share are slow, so the other thread steals and the ends of both shares are cut finer.
  ExecContext ctx(2);
  const WorkShape work{.rows = 4000, .row_bytes = 600, .row_block = 16};
  const WorkDistributionConfig cfg = WorkDistributionConfig::for_matmul(work.rows, 300);
  const ChunkPlan plan = plan_chunks(cfg, work, 2);
  REQUIRE(plan.unit() == 16);
  REQUIRE(plan.chunk() % plan.unit() == 0);
  REQUIRE(plan.count() > 2);
  ctx.enable_stats(true);
  bool cut_finer = false;
  for (int attempt = 0; attempt < 5 && (attempt == 0 || ctx.stats().tasks_stolen() == 0 || !cut_finer); ++attempt) {
    ctx.stats().reset();
    std::vector<std::atomic<int>> seen(static_cast<std::size_t>(work.rows));
    std::atomic<bool> finer{false};
    ctx.parallel_for(work, cfg, [&](std::int64_t b, std::int64_t e) {
      CHECK(b % plan.unit() == 0);
      CHECK(b < e);
      CHECK(e - b <= plan.chunk());
      CHECK((e % plan.unit() == 0 || e == work.rows));
      if (e - b < plan.chunk() && e != work.rows) finer = true;
      for (std::int64_t r = b; r < e; ++r) seen[static_cast<std::size_t>(r)]++;
      spin_for(std::chrono::microseconds(b < work.rows / 2 ? 400 : 20));
    });
    for (auto& v : seen) CHECK(v == 1);
    cut_finer = finer;
  }
  MESSAGE("slow first share, 2 threads:\n" << ctx.stats().summary());
  CHECK(ctx.stats().tasks_stolen() > 0);
  CHECK(cut_finer);
  CHECK(ctx.stats().tasks_run() == ctx.stats().tasks_created());
}

TEST_CASE("a loop started inside a loop of the same context runs in place, every row once") {
  ExecContext ctx(2);
  std::vector<std::atomic<int>> seen(64 * 256);
  ctx.parallel_for(64, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i)
      ctx.parallel_for({.rows = 256, .row_bytes = 4096, .row_block = 16}, WorkDistributionConfig{}, [&](std::int64_t rb, std::int64_t re) {
        for (std::int64_t r = rb; r < re; ++r) seen[static_cast<std::size_t>(i * 256 + r)]++;
      });
  });
  for (auto& v : seen) CHECK(v == 1);
}

TEST_CASE("with stats off nothing is counted") {
  ExecContext ctx(2);
  CHECK_FALSE(ctx.stats_enabled());
  std::atomic<std::int64_t> sum{0};
  auto body = [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) sum += i;
  };
  ctx.parallel_for(1000, 7, body);
  ctx.parallel_for({.rows = 100000, .row_bytes = 8, .row_block = 16}, WorkDistributionConfig{}, body);
  CHECK(ctx.stats().tasks_created() == 0);
  CHECK(ctx.stats().tasks_run() == 0);
  CHECK(ctx.stats().chunks() == 0);
  CHECK(ctx.stats().slot(0).busy_ns == 0);
  ctx.enable_stats(true);
  ctx.parallel_for(1000, 7, body);
  const std::uint64_t counted = ctx.stats().tasks_run();
  CHECK(counted == (1000 + 6) / 7);
  ctx.enable_stats(false);
  ctx.parallel_for(1000, 7, body);
  CHECK(ctx.stats().tasks_run() == counted);
  CHECK(sum == 3 * (999 * 1000 / 2) + 99999LL * 100000 / 2);
}

TEST_CASE("one thread runs in place: one task, never stolen") {
  ExecContext ctx(1);
  ctx.enable_stats(true);
  std::vector<int> seen(5000, 0);
  ctx.parallel_for({.rows = 5000, .row_bytes = 64, .row_block = 4}, WorkDistributionConfig{}, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) ++seen[static_cast<std::size_t>(i)];
  });
  CHECK(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
  CHECK(ctx.stats().tasks_created() == 1);
  CHECK(ctx.stats().tasks_run() == 1);
  CHECK(ctx.stats().tasks_stolen() == 0);
}

TEST_CASE("results do not depend on the thread count or the partitioner") {
  // Each row is a long float sum of its own: any change in how rows are grouped into calls
  // that leaked into the arithmetic would show up in the bits.
  const std::int64_t rows = 3000;
  auto compute = [&](int threads, bool numa) {
    ExecContext ctx(threads);
    std::vector<float> out(static_cast<std::size_t>(rows), -1.0f);
    std::vector<std::atomic<int>> calls(static_cast<std::size_t>(rows));
    WorkDistributionConfig cfg = WorkDistributionConfig::for_matmul(rows, 300);
    cfg.numa_aware = numa;
    ctx.parallel_for({.rows = rows, .row_bytes = 600, .row_block = 16}, cfg, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t r = b; r < e; ++r) {
        float acc = 0.0f;
        for (int c = 0; c < 300; ++c) acc += 1.0f / static_cast<float>(r + c + 1);
        out[static_cast<std::size_t>(r)] = acc;
        calls[static_cast<std::size_t>(r)]++;
      }
    });
    for (auto& c : calls) CHECK(c == 1);
    return out;
  };
  const auto one = compute(1, false);
  for (int threads : {2, 3, 4})
    for (bool numa : {false, true}) CHECK(compute(threads, numa) == one);
}

TEST_CASE("the numa-aware (static) partitioner covers every chunk once and keeps chunks fixed") {
  for (int threads : {2, 3}) {
    CAPTURE(threads);
    ExecContext ctx(threads);
    ctx.enable_stats(true);
    WorkDistributionConfig cfg;
    cfg.numa_aware = true;
    cfg.min_chunk_size = 1;
    const std::int64_t chunk = (1000 + 4 * threads - 1) / (4 * threads);  // 1000 rows / (threads * 4 tasks)
    std::vector<std::atomic<int>> seen(1000);
    ctx.parallel_for({.rows = 1000, .row_bytes = 0, .row_block = 1}, cfg, [&](std::int64_t b, std::int64_t e) {
      CHECK(b % chunk == 0);  // whole chunks of the plan, never cut
      CHECK(e == std::min<std::int64_t>(1000, b + chunk));
      for (std::int64_t i = b; i < e; ++i) seen[static_cast<std::size_t>(i)]++;
    });
    for (auto& v : seen) CHECK(v == 1);
    CHECK(ctx.stats().chunks() == static_cast<std::uint64_t>((1000 + chunk - 1) / chunk));
    CHECK(ctx.stats().tasks_run() == ctx.stats().tasks_created());
  }
}

TEST_CASE("row_chunk still answers for older callers") {
  ExecContext ctx(2);
  CHECK(ctx.threads() == 2);
  CHECK(ctx.row_chunk(1, 8192) == 1);
  CHECK(ctx.row_chunk(100000, 8192) >= 64);
}
