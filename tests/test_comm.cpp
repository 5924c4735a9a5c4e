// The shared-memory communicator: all-reduce (bit-exact, rank-ordered sums), all-gather (even
// and uneven), broadcast and barrier, for world sizes 1-4, awkward lengths, many iterations
// and more ranks than cores.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <utility>
#include <thread>
#include <vector>

#include "parallel/communicator.hpp"
#include "parallel/hierarchical_communicator.hpp"
#include "parallel/rank_group.hpp"
#include "testing.hpp"
#include "weft/error.hpp"

using namespace weft::par;

namespace {

// Runs f(comm) on world_size threads, one per rank, and joins them.
void run_world(SharedMemoryWorld& world, const std::function<void(SharedMemoryCommunicator&)>& f) {
  std::vector<std::thread> threads;
  for (int r = 1; r < world.world_size(); ++r) threads.emplace_back([&, r] { f(world.communicator(r)); });
  f(world.communicator(0));
  for (auto& t : threads) t.join();
}

// Values of very different magnitudes, so that a different summation order gives different bits.
float value(int rank, std::size_t i, int iter = 0) {
  std::uint32_t h = (static_cast<std::uint32_t>(rank) * 7919u + static_cast<std::uint32_t>(i) * 104729u +
                     static_cast<std::uint32_t>(iter) * 15485863u) * 2654435761u;  // unsigned: wraps, no UB
  h ^= h >> 13;
  const float mant = static_cast<float>(h % 100000) / 100000.0f - 0.5f;
  const int e = static_cast<int>((h >> 20) % 16) - 8;
  return std::ldexp(mant, e);
}

std::vector<float> serial_sum(int world, std::size_t n, int iter = 0) {
  std::vector<float> s(n);
  for (std::size_t i = 0; i < n; ++i) {
    float acc = value(0, i, iter);
    for (int r = 1; r < world; ++r) acc += value(r, i, iter);
    s[i] = acc;
  }
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("all_reduce_sum equals the serial rank-ordered sum bit for bit, on every rank") {
  for (int w : {1, 2, 3, 4}) {
    SharedMemoryWorld world(w);
    CHECK(world.world_size() == w);
    for (std::size_t n : {std::size_t{1}, std::size_t{15}, std::size_t{16}, std::size_t{17}, std::size_t{1000},
                          std::size_t{4097}}) {
      CAPTURE(w);
      CAPTURE(n);
      const std::vector<float> want = serial_sum(w, n);
      std::vector<std::vector<float>> got(static_cast<std::size_t>(w));
      run_world(world, [&](SharedMemoryCommunicator& c) {
        CHECK(c.world_size() == w);
        std::vector<float> d(n);
        for (std::size_t i = 0; i < n; ++i) d[i] = value(c.rank(), i);
        c.all_reduce_sum(d.data(), n);
        got[static_cast<std::size_t>(c.rank())] = std::move(d);
      });
      for (int r = 0; r < w; ++r) {
        CAPTURE(r);
        CHECK(same_bits(got[static_cast<std::size_t>(r)], want));
      }
    }
  }
}

TEST_CASE("repeated mixed collectives on one world") {
  SharedMemoryWorld world(3);
  std::atomic<int> bad{0};
  run_world(world, [&](SharedMemoryCommunicator& c) {
    for (int it = 0; it < 200; ++it) {
      const std::size_t n = 1 + static_cast<std::size_t>(it * 37 % 300);
      std::vector<float> d(n);
      for (std::size_t i = 0; i < n; ++i) d[i] = value(c.rank(), i, it);
      c.all_reduce_sum(d.data(), n);
      if (!same_bits(d, serial_sum(3, n, it))) ++bad;
      float root_value[4] = {0, 0, 0, 0};
      const int root = it % 3;
      if (c.rank() == root) root_value[0] = static_cast<float>(it), root_value[3] = -1;
      c.broadcast(root_value, sizeof root_value, root);
      if (root_value[0] != static_cast<float>(it) || root_value[3] != -1) ++bad;
      float mine = static_cast<float>(c.rank() * 1000 + it), all[3];
      c.all_gather(&mine, 1, all);
      for (int r = 0; r < 3; ++r)
        if (all[r] != static_cast<float>(r * 1000 + it)) ++bad;
    }
  });
  CHECK(bad == 0);
}

TEST_CASE("10,000 all-reduces with more ranks than cores") {
  const int w = std::max(4, static_cast<int>(std::thread::hardware_concurrency()) + 2);
  SharedMemoryWorld world(w);
  std::atomic<int> bad{0};
  const auto t0 = std::chrono::steady_clock::now();
  run_world(world, [&](SharedMemoryCommunicator& c) {
    float d[17];
    for (int it = 0; it < 10000; ++it) {
      for (int i = 0; i < 17; ++i) d[i] = static_cast<float>(c.rank() + it + i);
      c.all_reduce_sum(d, 17);
      const float want = static_cast<float>(w * (it) + w * (w - 1) / 2);
      for (int i = 0; i < 17; ++i)
        if (d[i] != want + static_cast<float>(w * i)) ++bad;
    }
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE(w << " ranks on " << std::thread::hardware_concurrency() << " hardware threads: 10,000 all-reduces in "
            << s * 1e3 << " ms");
  CHECK(bad == 0);
}

TEST_CASE("all_gather with equal counts, in place, and all_gatherv with uneven counts") {
  for (int w : {1, 2, 3, 4}) {
    CAPTURE(w);
    SharedMemoryWorld world(w);
    std::atomic<int> bad{0};
    run_world(world, [&](SharedMemoryCommunicator& c) {
      const std::size_t m = 5;
      std::vector<float> in(m), out(m * static_cast<std::size_t>(w), -1.0f);
      for (std::size_t i = 0; i < m; ++i) in[i] = static_cast<float>(c.rank() * 100 + static_cast<int>(i));
      c.all_gather(in.data(), m, out.data());
      for (int r = 0; r < w; ++r)
        for (std::size_t i = 0; i < m; ++i)
          if (out[static_cast<std::size_t>(r) * m + i] != static_cast<float>(r * 100 + static_cast<int>(i))) ++bad;
      // In place: each rank's part already sits at its offset.
      std::vector<float> inplace(m * static_cast<std::size_t>(w), -1.0f);
      for (std::size_t i = 0; i < m; ++i) inplace[static_cast<std::size_t>(c.rank()) * m + i] = in[i];
      c.all_gather(inplace.data() + static_cast<std::size_t>(c.rank()) * m, m, inplace.data());
      if (inplace != out) ++bad;
      // Uneven: rank r sends counts[r] floats (some send none).
      const std::size_t all_counts[4] = {3, 0, 7, 1};
      std::vector<std::size_t> counts(all_counts, all_counts + w);
      std::size_t total = 0, off = 0;
      for (int r = 0; r < w; ++r) {
        if (r < c.rank()) off += counts[static_cast<std::size_t>(r)];
        total += counts[static_cast<std::size_t>(r)];
      }
      std::vector<float> mine(counts[static_cast<std::size_t>(c.rank())]);
      for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = static_cast<float>(off + i);
      std::vector<float> got(total, -1.0f);
      c.all_gatherv(mine.data(), counts, got.data());
      for (std::size_t i = 0; i < total; ++i)
        if (got[i] != static_cast<float>(i)) ++bad;
    });
    CHECK(bad == 0);
  }
}

TEST_CASE("broadcast from every root; barrier orders everyone's writes") {
  for (int w : {1, 2, 3, 4}) {
    CAPTURE(w);
    SharedMemoryWorld world(w);
    std::atomic<int> bad{0}, arrived{0};
    run_world(world, [&](SharedMemoryCommunicator& c) {
      for (int root = 0; root < w; ++root) {
        std::vector<char> buf(1001, static_cast<char>(c.rank()));
        if (c.rank() == root)
          for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(i * 7 + static_cast<std::size_t>(root));
        c.broadcast(buf.data(), buf.size(), root);
        for (std::size_t i = 0; i < buf.size(); ++i)
          if (buf[i] != static_cast<char>(i * 7 + static_cast<std::size_t>(root))) ++bad;
        c.broadcast(buf.data(), 0, root);  // nothing to send is fine
      }
      for (int it = 1; it <= 100; ++it) {
        arrived.fetch_add(1);
        c.barrier();
        if (arrived.load() < it * w) ++bad;
        c.barrier();
      }
    });
    CHECK(bad == 0);
  }
}

TEST_CASE("communicators driven by a rank group") {
  RankGroup g(4, 1);
  SharedMemoryWorld world(4);
  std::vector<float> result(4 * 33);
  for (int step = 0; step < 100; ++step) {
    g.run([&](int r) {
      float d[33];
      for (int i = 0; i < 33; ++i) d[i] = static_cast<float>(r * step + i);
      world.communicator(r).all_reduce_sum(d, 33);
      std::memcpy(result.data() + r * 33, d, sizeof d);
    });
    for (int r = 0; r < 4; ++r)
      for (int i = 0; i < 33; ++i) REQUIRE(result[static_cast<std::size_t>(r * 33 + i)] == static_cast<float>(6 * step + 4 * i));
  }
}

TEST_CASE("two levels: P simulated processes x L in-process ranks equal the flat world") {
  // Each "process" is a SharedMemoryWorld of L ranks; an outer world of P ranks joins their
  // in-process rank 0s, as MPI does across real processes.
  const std::pair<int, int> shapes[] = {{1, 1}, {1, 3}, {2, 1}, {2, 2}, {3, 2}, {2, 3}};
  for (const auto& [P, L] : shapes) {
    CAPTURE(P);
    CAPTURE(L);
    const int W = P * L;
    std::vector<std::unique_ptr<SharedMemoryWorld>> locals;
    for (int p = 0; p < P; ++p) locals.push_back(std::make_unique<SharedMemoryWorld>(L));
    SharedMemoryWorld outer(P);
    std::atomic<int> bad{0}, arrived{0};
    std::vector<std::thread> threads;
    auto body = [&](int p, int l) {
      HierarchicalCommunicator c(locals[static_cast<std::size_t>(p)]->communicator(l), l == 0 ? &outer.communicator(p) : nullptr,
                                 p, P);
      if (c.rank() != p * L + l || c.world_size() != W) ++bad;
      for (int iter = 0; iter < 20; ++iter) {
        for (std::size_t n : {std::size_t{1}, std::size_t{17}, std::size_t{4097}}) {
          std::vector<float> d(n);
          for (std::size_t i = 0; i < n; ++i) d[i] = value(c.rank(), i, iter);
          c.all_reduce_sum(d.data(), n);
          for (std::size_t i = 0; i < n; ++i) {
            // Per process in rank order, then across processes in order.
            float total = 0;
            for (int q = 0; q < P; ++q) {
              float s = value(q * L, i, iter);
              for (int m = 1; m < L; ++m) s += value(q * L + m, i, iter);
              total = q == 0 ? s : total + s;
            }
            if (std::memcmp(&d[i], &total, sizeof total) != 0) ++bad;
          }
        }
        // all_gather: rank-major blocks; all_gatherv with uneven counts (some ranks send none).
        const std::size_t m = 3;
        std::vector<float> in(m), out(m * static_cast<std::size_t>(W), -1.0f);
        for (std::size_t i = 0; i < m; ++i) in[i] = static_cast<float>(c.rank() * 100 + static_cast<int>(i) + iter);
        c.all_gather(in.data(), m, out.data());
        for (int r = 0; r < W; ++r)
          for (std::size_t i = 0; i < m; ++i)
            if (out[static_cast<std::size_t>(r) * m + i] != static_cast<float>(r * 100 + static_cast<int>(i) + iter)) ++bad;
        std::vector<std::size_t> counts(static_cast<std::size_t>(W));
        std::size_t total = 0, off = 0;
        for (int r = 0; r < W; ++r) {
          counts[static_cast<std::size_t>(r)] = static_cast<std::size_t>((r * 5 + iter) % 4);
          if (r < c.rank()) off += counts[static_cast<std::size_t>(r)];
          total += counts[static_cast<std::size_t>(r)];
        }
        std::vector<float> mine(counts[static_cast<std::size_t>(c.rank())]);
        for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = static_cast<float>(off + i);
        std::vector<float> got(total, -1.0f);
        c.all_gatherv(mine.data(), counts, got.data());
        for (std::size_t i = 0; i < total; ++i)
          if (got[i] != static_cast<float>(i)) ++bad;
        // broadcast from every rank, then a barrier that orders everyone's writes.
        for (int root = 0; root < W; ++root) {
          std::vector<char> buf(333, static_cast<char>(c.rank()));
          if (c.rank() == root)
            for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(i * 3 + static_cast<std::size_t>(root + iter));
          c.broadcast(buf.data(), buf.size(), root);
          for (std::size_t i = 0; i < buf.size(); ++i)
            if (buf[i] != static_cast<char>(i * 3 + static_cast<std::size_t>(root + iter))) ++bad;
        }
        arrived.fetch_add(1);
        c.barrier();
        if (arrived.load() < (iter + 1) * W) ++bad;
        c.barrier();
      }
    };
    for (int r = 1; r < W; ++r) threads.emplace_back(body, r / L, r % L);
    body(0, 0);
    for (auto& t : threads) t.join();
    CHECK(bad == 0);
  }
  // Only in-process rank 0 talks across processes, and it must.
  SharedMemoryWorld local(2), outer(2);
  CHECK_THROWS_AS(HierarchicalCommunicator(local.communicator(1), &outer.communicator(0), 0, 2), weft::UsageError);
  CHECK_THROWS_AS(HierarchicalCommunicator(local.communicator(0), nullptr, 0, 2), weft::UsageError);
  CHECK_THROWS_AS(HierarchicalCommunicator(local.communicator(0), &outer.communicator(1), 0, 2), weft::UsageError);
}

TEST_CASE("world sizes outside [1, 1024] are usage errors") {
  CHECK_THROWS_AS(SharedMemoryWorld(0), weft::UsageError);
  CHECK_THROWS_AS(SharedMemoryWorld(2000), weft::UsageError);
}
