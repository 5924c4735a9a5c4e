// Topology (hwloc, real and synthetic), rank placement, in-process ranks (arena, pinning,
// NUMA memory) and the rank group that drives them in lockstep.
#include <hwloc.h>
#include <oneapi/tbb/task_arena.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "parallel/placement.hpp"
#include "parallel/rank.hpp"
#include "parallel/rank_group.hpp"
#include "parallel/topology.hpp"
#include "testing.hpp"
#include "weft/error.hpp"
#include "weft/model.hpp"
#include "weft/parallel.hpp"
#include "weft/topology.hpp"

using namespace weft::par;
namespace fs = std::filesystem;

namespace {
constexpr const char* kTwoSockets = "pack:2 [numa] core:4 pu:1";

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::set<int> this_thread_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  pthread_getaffinity_np(pthread_self(), sizeof set, &set);
  std::set<int> out;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &set)) out.insert(i);
  return out;
}
}  // namespace

TEST_CASE("a synthetic two-socket topology: packages, NUMA nodes, cores, PUs") {
  const Topology t = Topology::from_synthetic(kTwoSockets);
  CHECK_FALSE(t.is_this_machine());
  CHECK(t.source().find(kTwoSockets) != std::string::npos);
  REQUIRE(t.packages().size() == 2);
  REQUIRE(t.numa_nodes().size() == 2);
  REQUIRE(t.cores().size() == 8);
  CHECK(t.pu_count() == 8);
  CHECK(t.numa_nodes()[0].cores == std::vector<int>{0, 1, 2, 3});
  CHECK(t.numa_nodes()[1].cores == std::vector<int>{4, 5, 6, 7});
  CHECK(t.numa_nodes()[1].package == 1);
  CHECK(t.packages()[1].numa_nodes == std::vector<int>{1});
  for (const auto& c : t.cores()) {
    CHECK(c.pus.size() == 1);
    CHECK(c.numa_node == c.index / 4);
    CHECK(c.package == c.index / 4);
  }
}

TEST_CASE("a synthetic topology with caches, memory and two threads per core") {
  const Topology t = Topology::from_synthetic("pack:2 [numa(memory=1GB)] l3:1 l2:4 l1d:1 core:1 pu:2");
  REQUIRE(t.cores().size() == 8);
  CHECK(t.pu_count() == 16);
  CHECK(t.numa_nodes()[0].memory_bytes == 1000000000ull);
  const CoreInfo& c = t.cores()[5];
  CHECK(c.pus.size() == 2);
  CHECK(c.l1d_bytes > 0);
  CHECK(c.l2_bytes > c.l1d_bytes);
  CHECK(c.l3_bytes > c.l2_bytes);
  CHECK(c.l2_sharing == 1);
  CHECK(c.l3_sharing == 4);
  // Without a core level every PU stands for a core.
  const Topology p = Topology::from_synthetic("pack:2 pu:3");
  CHECK(p.cores().size() == 6);
  CHECK(p.numa_nodes().size() == 1);
}

TEST_CASE("this machine's topology") {
  const Topology t = Topology::detect();
  CHECK(t.is_this_machine());
  REQUIRE(!t.cores().empty());
  REQUIRE(!t.numa_nodes().empty());
  CHECK(t.pu_count() >= static_cast<int>(t.cores().size()));
  std::size_t in_nodes = 0;
  for (const auto& n : t.numa_nodes()) in_nodes += n.cores.size();
  CHECK(in_nodes == t.cores().size());
  for (const auto& c : t.cores()) CHECK(!c.pus.empty());
}

TEST_CASE("bad topology descriptions and files are InputErrors that name them") {
  for (const char* bad : {"pack:2 [numa] core:four pu:1", "garbage", "core:0"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(Topology::from_synthetic(bad), weft::InputError);
    CHECK(error_of([&] { Topology::from_synthetic(bad); }).find(bad) != std::string::npos);
  }
  CHECK_THROWS_AS(Topology::from_synthetic(""), weft::InputError);
  const std::string missing = "/nonexistent/dir/topo.xml";
  CHECK_THROWS_AS(Topology::from_synthetic(missing), weft::InputError);
  CHECK(error_of([&] { Topology::from_synthetic(missing); }).find(missing) != std::string::npos);
  const fs::path junk = fs::temp_directory_path() / ("weft_topo_junk_" + std::to_string(::getpid()) + ".xml");
  std::ofstream(junk) << "this is not xml";
  CHECK_THROWS_AS(Topology::from_synthetic(junk.string()), weft::InputError);
  CHECK(error_of([&] { Topology::from_synthetic(junk.string()); }).find(junk.string()) != std::string::npos);
  fs::remove(junk);
}

TEST_CASE("an hwloc XML file gives the topology it describes") {
  const Topology t = Topology::from_synthetic(kTwoSockets);
  const fs::path xml = fs::temp_directory_path() / ("weft_topo_" + std::to_string(::getpid()) + ".xml");
  REQUIRE(hwloc_topology_export_xml(t.handle(), xml.c_str(), 0) == 0);
  const Topology x = Topology::from_synthetic(xml.string());
  fs::remove(xml);
  CHECK(x.source() == "xml: " + xml.string());
  CHECK(x.packages().size() == 2);
  CHECK(x.numa_nodes().size() == 2);
  CHECK(x.cores().size() == 8);
  CHECK(x.numa_nodes()[1].cores == std::vector<int>{4, 5, 6, 7});
}

TEST_CASE("placement: one rank per NUMA node, nodes split among more ranks, never more ranks than cores") {
  const Topology t = Topology::from_synthetic(kTwoSockets);
  const auto two = place_ranks(t, 2);
  REQUIRE(two.size() == 2);
  CHECK(two[0].numa_node == 0);
  CHECK(two[1].numa_node == 1);
  CHECK(two[0].cores == std::vector<int>{0, 1, 2, 3});
  CHECK(two[1].cores == std::vector<int>{4, 5, 6, 7});
  CHECK(two[1].pus == std::vector<int>{4, 5, 6, 7});
  CHECK(two[1].threads == 4);

  const auto four = place_ranks(t, 4);
  REQUIRE(four.size() == 4);
  for (int r = 0; r < 4; ++r) {
    CAPTURE(r);
    CHECK(four[r].rank == r);
    CHECK(four[r].numa_node == r / 2);
    CHECK(four[r].cores == std::vector<int>{2 * r, 2 * r + 1});
    CHECK(four[r].threads == 2);
  }

  const auto one = place_ranks(t, 1);
  CHECK(one[0].cores.size() == 8);
  CHECK(one[0].numa_nodes == std::vector<int>{0, 1});

  const auto three = place_ranks(t, 3);  // 2 + 1: no node gets more than its share
  std::size_t total = 0;
  for (const auto& p : three) total += p.cores.size();
  CHECK(total == 8);
  CHECK(three[0].numa_node == 0);
  CHECK(three[2].numa_node == 1);

  const auto eight = place_ranks(t, 8);
  for (int r = 0; r < 8; ++r) CHECK(eight[r].cores == std::vector<int>{r});

  const auto narrow = place_ranks(t, 2, 2);
  CHECK(narrow[1].cores == std::vector<int>{4, 5});
  CHECK(narrow[1].threads == 2);

  CHECK_THROWS_AS(place_ranks(t, 9), weft::UsageError);
  const std::string msg = error_of([&] { place_ranks(t, 9); });
  CHECK(msg.find("9 ranks") != std::string::npos);
  CHECK(msg.find("8 cores") != std::string::npos);
  CHECK_THROWS_AS(place_ranks(t, 0), weft::UsageError);

  // Four nodes, two ranks: each rank spans two whole nodes.
  const auto spans = place_ranks(Topology::from_synthetic("pack:2 numa:2 core:2 pu:1"), 2);
  CHECK(spans[0].numa_nodes == std::vector<int>{0, 1});
  CHECK(spans[1].numa_nodes == std::vector<int>{2, 3});
  CHECK(spans[1].cores == std::vector<int>{4, 5, 6, 7});
}

TEST_CASE("integer lists print compactly") {
  CHECK(format_int_list({}) == "");
  CHECK(format_int_list({3}) == "3");
  CHECK(format_int_list({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10,11");
  CHECK(format_int_list({5, 4, 6, 9}) == "4-6,9");
}

TEST_CASE("an unplaced rank: its context runs loops inside its arena; allocate gives zeroed memory") {
  Rank r(0, 2);
  CHECK(r.threads() == 2);
  CHECK_FALSE(r.pinned());
  std::atomic<int> outside{0}, rows{0};
  r.execute([&] {
    r.context().parallel_for(1000, 10, [&](std::int64_t b, std::int64_t e) {
      if (tbb::this_task_arena::max_concurrency() != 2) ++outside;
      rows += static_cast<int>(e - b);
    });
  });
  CHECK(outside == 0);
  CHECK(rows == 1000);
  NumaBuffer buf = r.allocate(10000);
  REQUIRE(buf.data() != nullptr);
  CHECK(buf.size() == 10000);
  CHECK_FALSE(buf.bound());
  CHECK(reinterpret_cast<std::uintptr_t>(buf.data()) % 4096 == 0);
  const auto* bytes = buf.as<unsigned char>();
  bool zero = true;
  for (std::size_t i = 0; i < buf.size(); ++i) zero = zero && bytes[i] == 0;
  CHECK(zero);
  NumaBuffer moved = std::move(buf);
  CHECK(moved.size() == 10000);
  CHECK(buf.data() == nullptr);
}

TEST_CASE("ranks on a synthetic topology run unpinned, without failing") {
  const Topology t = Topology::from_synthetic(kTwoSockets);
  const auto places = place_ranks(t, 2);
  Rank r(t, places[1]);
  CHECK(r.index() == 1);
  CHECK(r.threads() == 4);
  CHECK_FALSE(r.pinned());
  CHECK(r.pin_note().find("not this machine") != std::string::npos);
  CHECK_FALSE(r.pin_current_thread());
  std::atomic<std::int64_t> sum{0};
  r.context().parallel_for(100, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) sum += i;
  });
  CHECK(sum == 4950);
  NumaBuffer buf = r.allocate(1 << 20);
  CHECK_FALSE(buf.bound());
  CHECK(buf.as<float>()[12345] == 0.0f);
}

TEST_CASE("ranks on this machine pin their worker threads to their cores and bind their memory") {
  const Topology t = Topology::detect();
  const int cores = static_cast<int>(t.cores().size());
  // The last rank's workers: two threads on one core when the machine is small.
  const int ranks = std::min(2, cores);
  const auto places = place_ranks(t, ranks, 2);
  Rank r(t, places.back());
  MESSAGE("rank " << r.index() << " PUs " << format_int_list(r.placement().pus) << ", pinned: " << r.pinned()
                  << (r.pinned() ? "" : " (" + r.pin_note() + ")"));
  const std::set<int> want(r.placement().pus.begin(), r.placement().pus.end());
  std::mutex m;
  std::set<std::set<int>> worker_sets;
  r.context().parallel_for(64, 1, [&](std::int64_t, std::int64_t) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(300);
    while (std::chrono::steady_clock::now() < until) {
    }
    if (tbb::this_task_arena::current_thread_index() != 0) {
      std::lock_guard lock(m);
      worker_sets.insert(this_thread_cpus());
    }
  });
  if (!r.pinned()) {
    MESSAGE("binding is not allowed here: " << r.pin_note());
  } else if (worker_sets.empty()) {
    MESSAGE("no TBB worker joined the arena: pinning not observed");
  } else {
    CHECK(worker_sets.size() == 1);
    CHECK(*worker_sets.begin() == want);
  }
  NumaBuffer buf = r.allocate(1 << 20);
  MESSAGE("memory bound to node " << r.placement().numa_node << ": " << buf.bound());
  CHECK(buf.as<float>()[1000] == 0.0f);
  buf.as<float>()[1000] = 1.0f;
}

TEST_CASE("a rank group runs each step on every rank, inside its arena, on its own thread") {
  for (int n : {1, 2, 3, 4}) {
    CAPTURE(n);
    RankGroup g(n, 2);
    CHECK(g.size() == n);
    std::vector<std::thread::id> ids(static_cast<std::size_t>(n));
    std::vector<int> conc(static_cast<std::size_t>(n), 0);
    std::vector<std::int64_t> sums(static_cast<std::size_t>(n), 0);
    g.run([&](int r) {
      ids[static_cast<std::size_t>(r)] = std::this_thread::get_id();
      conc[static_cast<std::size_t>(r)] = tbb::this_task_arena::max_concurrency();
      std::atomic<std::int64_t> s{0};
      g.rank(r).context().parallel_for(1000, 7, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) s += i * (r + 1);
      });
      sums[static_cast<std::size_t>(r)] = s;
    });
    CHECK(ids[0] == std::this_thread::get_id());
    CHECK(std::set<std::thread::id>(ids.begin(), ids.end()).size() == static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) {
      CHECK(conc[static_cast<std::size_t>(r)] == 2);
      CHECK(sums[static_cast<std::size_t>(r)] == 499500 * (r + 1));
    }
    CHECK(g.steps() == 1);
  }
}

TEST_CASE("10,000 empty steps complete: no lost wakeups") {
  for (int n : {2, 3, 4}) {
    CAPTURE(n);
    RankGroup g(n, 1);
    std::vector<std::uint64_t> count(static_cast<std::size_t>(n) * 16, 0);  // a cache line per rank
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 10000; ++i) g.run([&](int r) { ++count[static_cast<std::size_t>(r) * 16]; });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE(n << " ranks: 10,000 steps in " << s * 1e3 << " ms (" << s * 1e6 / 10000 << " us per step)");
    CHECK(g.steps() == 10000);
    for (int r = 0; r < n; ++r) CHECK(count[static_cast<std::size_t>(r) * 16] == 10000);
  }
}

TEST_CASE("commands carry their payload; errors come back to the caller; stop joins") {
  RankGroup g(3, 1);
  const std::int32_t tokens[] = {5, 6, 7};
  std::vector<std::int64_t> seen(3, 0);
  StepCommand cmd{Command::Decode, 40, 3, tokens};
  g.dispatch(cmd, [&](int r, const StepCommand& c) {
    seen[static_cast<std::size_t>(r)] = c.position + static_cast<const std::int32_t*>(c.data)[r];
  });
  CHECK(seen == std::vector<std::int64_t>{45, 46, 47});

  CHECK_THROWS_WITH_AS(g.run([](int r) {
    if (r >= 1) throw std::runtime_error("rank " + std::to_string(r) + " failed");
  }),
                       "rank 1 failed", std::runtime_error);
  int ran = 0;
  g.run([&](int r) {
    if (r == 0) ++ran;
  });
  CHECK(ran == 1);  // still usable after a failed step

  std::atomic<int> stops{0};
  g.dispatch({Command::Stop}, [&](int, const StepCommand& c) { stops += c.kind == Command::Stop; });
  CHECK(stops == 3);
  CHECK_THROWS_AS(g.run([](int) {}), weft::UsageError);
  g.stop();  // idempotent
}

TEST_CASE("idle ranks use almost no CPU") {
  RankGroup g(4, 2);
  std::atomic<std::int64_t> sink{0};
  for (int i = 0; i < 50; ++i)
    g.run([&](int r) {
      g.rank(r).context().parallel_for(64, 4, [&](std::int64_t b, std::int64_t e) { sink += e - b; });
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // TBB workers finish their own short spin
  const double c0 = process_cpu_seconds();
  const auto w0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double cpu = process_cpu_seconds() - c0;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  MESSAGE("4 idle ranks: " << cpu * 1e3 << " ms CPU over " << wall * 1e3 << " ms (" << 100 * cpu / wall << "% of a core)");
  CHECK(cpu / wall < 0.05);
  CHECK(sink == 50 * 4 * 64);
}

TEST_CASE("a placed rank group on this machine and on a synthetic topology") {
  const Topology t = Topology::detect();
  RankGroup g(t, place_ranks(t, std::min<int>(2, static_cast<int>(t.cores().size()))));
  std::atomic<int> ran{0};
  g.run([&](int) { ++ran; });
  CHECK(ran == g.size());
  const Topology s = Topology::from_synthetic(kTwoSockets);
  RankGroup gs(s, place_ranks(s, 4));
  for (int i = 0; i < 100; ++i) gs.run([&](int) { ++ran; });
  CHECK(ran == g.size() + 400);
  CHECK_FALSE(gs.rank(3).pinned());
}

TEST_CASE("public: describe_topology and ParallelConfig") {
  const weft::TopologyInfo info = weft::describe_topology(kTwoSockets, 2);
  CHECK(info.numa_nodes.size() == 2);
  REQUIRE(info.ranks.size() == 2);
  CHECK(info.ranks[0].numa_node != info.ranks[1].numa_node);
  CHECK(info.text().find("NUMA nodes: 2") != std::string::npos);
  CHECK(info.json().find("\"ranks\"") != std::string::npos);
  CHECK_THROWS_AS(weft::describe_topology("nonsense"), weft::InputError);
  CHECK_THROWS_AS(weft::describe_topology(kTwoSockets, 9), weft::UsageError);

  weft::ModelInfo m;
  m.n_heads = 32, m.n_kv_heads = 8, m.dim = 4096, m.hidden_dim = 14336;
  CHECK(weft::ParallelConfig::for_model(m, info).tensor_parallel_size == 2);
  CHECK(weft::ParallelConfig::for_model(m, info).topology == kTwoSockets);
  CHECK(weft::ParallelConfig::for_model(m, weft::describe_topology("pack:3 [numa] core:2 pu:1")).tensor_parallel_size == 2);
  CHECK(weft::ParallelConfig::for_model(m, weft::describe_topology("pack:1 [numa] core:2 pu:1")).tensor_parallel_size == 1);
  CHECK(weft::ParallelConfig::for_model(m).tensor_parallel_size >= 1);
  CHECK(weft::ParallelConfig::tensor_parallel(4).world_size() == 4);
  CHECK(weft::ParallelConfig::pipeline(2).micro_batches == 4);
  CHECK_THROWS_AS(weft::ParallelConfig::tensor_parallel(0), weft::UsageError);
}
