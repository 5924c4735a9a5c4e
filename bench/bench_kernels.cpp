// Kernel microbenchmarks (Google Benchmark), single thread:
//   read/<size>                        plain vectorized sum over a buffer: the bandwidth to beat
//   matvec/<isa>/<dtype>/<rows>x<cols>/<hot|dram>
//                                      one vector through every compiled ISA's matvec; "hot" reuses
//                                      one matrix (it may sit in L2/L3), "dram" rotates through
//                                      copies of it totalling >= 512 MiB so each call streams from
//                                      memory, as a decode step through a real model does
//   matmul/<isa>/<dtype>/5632x2048/n:<n>
//                                      prefill with n vectors sharing each weight load (GFLOP/s)
//   bf16method/<dpbf16|shift>/<rows>x<cols>/<hot|dram>
//                                      the two AVX512_BF16 matvec methods for bf16 weights
// bytes_per_second counts the weight bytes read (the vectors are small next to them).
// Filter with --benchmark_filter, e.g. --benchmark_filter='matvec/.*/dram'.
#include <benchmark/benchmark.h>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/dtype.hpp"
#include "core/tensor.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/kernels_config.hpp"

using namespace weft;
namespace k = weft::kernels;

namespace {

constexpr std::size_t kDramBytes = std::size_t{512} << 20;

struct Shape {
  std::int64_t rows, cols;
};
constexpr Shape kShapes[] = {{2048, 2048}, {5632, 2048}, {32000, 2048}};
constexpr DType kDtypes[] = {DType::F32, DType::F16, DType::BF16};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// copies x (rows, cols) matrices of dtype d back to back, filled with ordinary (normal, non-zero)
// values: subnormals would slow the FMAs down and zeros could flatter a clever CPU.
struct Weights {
  AlignedBuffer<std::byte> storage;
  std::size_t bytes = 0;
  int copies = 1;
  Shape shape{};
  DType dtype{};

  Weights(DType d, Shape s, bool dram) : shape(s), dtype(d) {
    bytes = dtype_bytes(d, static_cast<std::size_t>(s.rows * s.cols));
    copies = dram ? static_cast<int>(std::max<std::size_t>(2, (kDramBytes + bytes - 1) / bytes)) : 1;
    storage.resize(bytes * static_cast<std::size_t>(copies));
    // One row of values, repeated.
    std::vector<std::byte> row(dtype_bytes(d, static_cast<std::size_t>(s.cols)));
    for (std::int64_t c = 0; c < s.cols; ++c) {
      const float v = 0.01f * static_cast<float>(c % 13 - 6) + 0.005f;
      if (d == DType::F32) {
        std::memcpy(row.data() + 4 * c, &v, 4);
      } else {
        const std::uint16_t h = d == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
        std::memcpy(row.data() + 2 * c, &h, 2);
      }
    }
    for (std::size_t off = 0; off < storage.size(); off += row.size())
      std::memcpy(storage.data() + off, row.data(), std::min(row.size(), storage.size() - off));
  }
  TensorView view(std::int64_t i) const {
    return make_view_2d(storage.data() + static_cast<std::size_t>(i % copies) * bytes, dtype, shape.rows, shape.cols);
  }
};

using MatvecFn = void (*)(const TensorView&, const float*, float*, std::int64_t, std::int64_t) noexcept;

void bench_matvec(benchmark::State& state, MatvecFn fn, DType d, Shape s, bool dram) {
  const Weights w(d, s, dram);
  std::vector<float> x(static_cast<std::size_t>(s.cols), 0.5f), y(static_cast<std::size_t>(s.rows));
  std::int64_t i = 0;
  for (auto _ : state) {
    fn(w.view(i++), x.data(), y.data(), 0, s.rows);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(w.bytes));
  state.counters["copies"] = w.copies;
}

void bench_matmul(benchmark::State& state, const k::KernelTable* t, DType d, Shape s, std::int64_t n) {
  const Weights w(d, s, false);
  std::vector<float> x(static_cast<std::size_t>(s.cols * n), 0.5f), y(static_cast<std::size_t>(s.rows * n));
  for (auto _ : state) {
    t->matmul(w.view(0), x.data(), s.cols, n, y.data(), s.rows, 0, s.rows);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(w.bytes));
  state.counters["GFLOPS"] = benchmark::Counter(static_cast<double>(2 * s.rows * s.cols * n) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// A plain read of the whole buffer: four independent vector accumulators of the widest vectors the
// base flags allow (AVX-512 under -march=native on the development machine).
void bench_read(benchmark::State& state, std::size_t bytes) {
  using B = xsimd::batch<float>;
  const std::size_t n = bytes / sizeof(float) / (4 * B::size) * (4 * B::size);
  AlignedBuffer<float> buf(n);
  for (std::size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 7);
  for (auto _ : state) {
    B a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
    const float* p = buf.data();
    for (std::size_t i = 0; i < n; i += 4 * B::size) {
      a0 += B::load_aligned(p + i);
      a1 += B::load_aligned(p + i + B::size);
      a2 += B::load_aligned(p + i + 2 * B::size);
      a3 += B::load_aligned(p + i + 3 * B::size);
    }
    float s = xsimd::hadd((a0 + a1) + (a2 + a3));
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(n * sizeof(float)));
}

std::string shape_name(Shape s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

void register_all() {
  for (std::size_t mib : {8, 512}) {
    benchmark::RegisterBenchmark(("read/" + std::to_string(mib) + "MiB").c_str(),
                                 [mib](benchmark::State& st) { bench_read(st, mib << 20); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  for (k::Isa isa : k::compiled_isas()) {
    const k::KernelTable* t = k::kernel_table(isa);
    if (t == nullptr) continue;  // the CPU cannot run it
    for (DType d : kDtypes)
      for (Shape s : kShapes)
        for (bool dram : {false, true}) {
          const std::string name = "matvec/" + std::string(t->name) + "/" + lower(dtype_name(d)) + "/" +
                                   shape_name(s) + (dram ? "/dram" : "/hot");
          benchmark::RegisterBenchmark(name.c_str(),
                                       [t, d, s, dram](benchmark::State& st) { bench_matvec(st, t->matvec, d, s, dram); })
              ->Unit(benchmark::kMicrosecond)
              ->UseRealTime();
        }
    for (DType d : kDtypes)
      for (std::int64_t n : {1, 4, 16, 64}) {
        const Shape s{5632, 2048};
        const std::string name = "matmul/" + std::string(t->name) + "/" + lower(dtype_name(d)) + "/" + shape_name(s) +
                                 "/n:" + std::to_string(n);
        benchmark::RegisterBenchmark(name.c_str(), [t, d, s, n](benchmark::State& st) { bench_matmul(st, t, d, s, n); })
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      }
  }
#if WEFT_KERNELS_AVX512BF16
  if (k::isa_available(k::Isa::Avx512Bf16)) {
    const std::pair<const char*, MatvecFn> methods[] = {{"dpbf16", &k::detail::avx512bf16_matvec_dpbf16},
                                                         {"shift", &k::detail::avx512bf16_matvec_shift}};
    for (Shape s : kShapes)
      for (bool dram : {false, true})
        for (auto [name, fn] : methods) {
          const std::string full = std::string("bf16method/") + name + "/" + shape_name(s) + (dram ? "/dram" : "/hot");
          benchmark::RegisterBenchmark(full.c_str(), [fn = fn, s, dram](benchmark::State& st) {
            bench_matvec(st, fn, DType::BF16, s, dram);
          })->Unit(benchmark::kMicrosecond)->UseRealTime();
        }
  }
#endif
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("weft.detected_isa", std::string(k::isa_name(k::detected_isa())));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
