// All-reduce latency of the in-process shared-memory communicator (Google Benchmark):
//   all_reduce/ranks:<w>/floats:<n>   one all_reduce_sum of n floats among w ranks, timed on rank 0
// The other ranks are threads that run the same number of all-reduces. With more ranks than
// hardware threads the waits sleep instead of spinning, and latency is the OS's wake-up time.
#include <benchmark/benchmark.h>

#include <thread>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "parallel/communicator.hpp"

namespace {

void all_reduce(benchmark::State& state) {
  const int w = static_cast<int>(state.range(0));
  const auto n = static_cast<std::size_t>(state.range(1));
  weft::par::SharedMemoryWorld world(w);
  const auto iterations = static_cast<std::int64_t>(state.max_iterations);
  std::vector<weft::AlignedBuffer<float>> bufs(static_cast<std::size_t>(w));
  for (auto& b : bufs) {
    b.resize(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = 1e-3f * static_cast<float>(i % 97);
  }
  std::vector<std::thread> peers;
  for (int r = 1; r < w; ++r)
    peers.emplace_back([&, r] {
      auto& c = world.communicator(r);
      for (std::int64_t i = 0; i < iterations; ++i) c.all_reduce_sum(bufs[static_cast<std::size_t>(r)].data(), n);
    });
  auto& c0 = world.communicator(0);
  for (auto _ : state) {
    c0.all_reduce_sum(bufs[0].data(), n);
    benchmark::DoNotOptimize(bufs[0].data());
  }
  for (auto& t : peers) t.join();
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(n * sizeof(float)));
  state.counters["hw_threads"] = std::thread::hardware_concurrency();
}

}  // namespace

BENCHMARK(all_reduce)
    ->ArgNames({"ranks", "floats"})
    ->ArgsProduct({{2, 4}, {2048, 4096}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
