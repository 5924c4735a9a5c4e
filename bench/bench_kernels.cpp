// Kernel microbenchmarks (Google Benchmark), single thread:
//   read/<size>/streams:<s>[/threads:<t>]
//                                      plain vectorized sum over a buffer: the bandwidth to beat
//   matvec/<isa>/<dtype>/<rows>x<cols>/<hot|dram>
//                                      one vector through every compiled ISA's matvec; "hot" reuses
//                                      one matrix (it may sit in L2/L3), "dram" rotates through
//                                      copies of it totalling >= 512 MiB so each call streams from
//                                      memory, as a decode step through a real model does
//   matmul/<isa>/<dtype>/5632x2048/n:<n>
//                                      prefill with n vectors sharing each weight load (GFLOP/s)
//   bf16method/<dpbf16|dpbf16x3|shift>/<rows>x<cols>/<hot|dram>
//                                      the AVX512_BF16 matvec methods for bf16 weights
//   matvec_q/<isa>/<Q8_0|Q4_0|Q4_K|Q6_K>/<rows>x<cols>/<hot|dram>[/il][/threads:<t>]
//                                      quantized weights (GGUF block formats), one vector quantized
//                                      once outside the loop, as a decode step does; 512x2048/hot
//                                      sits in L2 and measures the kernel's compute rate
//   attend/<reference|isa>/keys:<n>    one KV head's decode attention (8 query heads of 64), bytes =
//                                      the keys and values read
//   matmul_q/<isa>/<type>/5632x2048/n:<n>
//                                      prefill on quantized weights (GFLOP/s)
// Weights and read buffers are on transparent huge pages, as weights copied into memory are.
// bytes_per_second counts the weight bytes read (the vectors are small next to them), per second of
// CPU time: on a shared machine a descheduled benchmark would otherwise be charged for the wait.
// The /threads:<t> variants (512 MiB reads, dram matvecs) run t copies at once, each on its own
// buffers, and count wall-clock time: the bytes of all threads per second, the two cores sharing
// the memory bandwidth as they do in a two-thread decode.
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
#include "core/quant.hpp"
#include "core/tensor.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/kernels.hpp"
#include "kernels/kernels_config.hpp"
#include "parallel/exec_context.hpp"  // smallmm/*/threads:2

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
    storage.resize(bytes * static_cast<std::size_t>(copies), true);
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

// Quantized weights: one row of typical values quantized by quantize_row, repeated, in copies of
// the matrix like Weights above.
struct QWeights {
  AlignedBuffer<std::byte> storage;
  std::size_t bytes = 0;
  int copies = 1;
  Shape shape{};
  DType dtype{};

  int interleave = 0;

  QWeights(DType d, Shape s, bool dram, bool interleaved = false) : shape(s), dtype(d) {
    bytes = dtype_bytes(d, static_cast<std::size_t>(s.rows * s.cols));
    copies = dram ? static_cast<int>(std::max<std::size_t>(2, (kDramBytes + bytes - 1) / bytes)) : 1;
    storage.resize(bytes * static_cast<std::size_t>(copies), true);
    std::vector<float> values(static_cast<std::size_t>(s.cols));
    for (std::int64_t c = 0; c < s.cols; ++c) values[static_cast<std::size_t>(c)] = 0.01f * static_cast<float>((c * 7) % 29 - 14) + 0.003f;
    std::vector<std::byte> row(dtype_bytes(d, static_cast<std::size_t>(s.cols)));
    quantize_row(d, values.data(), s.cols, row.data());
    for (std::size_t off = 0; off < storage.size(); off += row.size())
      std::memcpy(storage.data() + off, row.data(), std::min(row.size(), storage.size() - off));
    if (interleaved) {  // every copy in the kernels' 16-row layout (TensorView::interleave)
      std::vector<std::byte> plain(bytes);
      for (int c = 0; c < copies; ++c) {
        std::byte* p = storage.data() + static_cast<std::size_t>(c) * bytes;
        std::memcpy(plain.data(), p, bytes);
        interleave_rows(d, plain.data(), s.rows, s.cols, p);
      }
      interleave = kInterleaveRows;
    }
  }
  TensorView view(std::int64_t i) const {
    TensorView v = make_view_2d(storage.data() + static_cast<std::size_t>(i % copies) * bytes, dtype, shape.rows, shape.cols);
    v.interleave = interleave;
    return v;
  }
};

void bench_matvec_q(benchmark::State& state, const k::KernelTable* t, DType d, Shape s, bool dram, bool il) {
  const QWeights w(d, s, dram, il);
  std::vector<float> x(static_cast<std::size_t>(s.cols)), y(static_cast<std::size_t>(s.rows));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.5f + 0.001f * static_cast<float>(i % 17);
  std::vector<std::byte> xq(k::act_bytes(d, s.cols));
  t->quantize_act(d, x.data(), s.cols, xq.data());
  std::int64_t i = 0;
  for (auto _ : state) {
    t->matvec_q(w.view(i++), xq.data(), y.data(), 0, s.rows);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(w.bytes));
  state.counters["copies"] = w.copies;
}

void bench_matmul_q(benchmark::State& state, const k::KernelTable* t, DType d, Shape s, std::int64_t n, bool il) {
  const QWeights w(d, s, false, il);
  std::vector<float> x(static_cast<std::size_t>(s.cols)), y(static_cast<std::size_t>(s.rows * n));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.5f + 0.001f * static_cast<float>(i % 17);
  const std::size_t stride = k::act_bytes(d, s.cols);
  std::vector<std::byte> xq(stride * static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) t->quantize_act(d, x.data(), s.cols, xq.data() + j * stride);
  for (auto _ : state) {
    t->matmul_q(w.view(0), xq.data(), n, y.data(), s.rows, 0, s.rows);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(w.bytes));
  state.counters["GFLOPS"] = benchmark::Counter(static_cast<double>(2 * s.rows * s.cols * n) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

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

// A plain read of the whole buffer, in `streams` equal parts read side by side (one vector from each
// per step, like a matvec reading four rows), with the widest vectors the base flags allow (AVX-512
// under -march=native on the development machine). More streams keep more cache-line fetches in
// flight; the best of these is the single-thread read bandwidth the kernels are judged against.
void bench_read(benchmark::State& state, std::size_t bytes, int streams) {
  using B = xsimd::batch<float>;
  const std::size_t per = bytes / sizeof(float) / static_cast<std::size_t>(streams) / B::size * B::size;
  AlignedBuffer<float> buf;
  buf.resize(per * static_cast<std::size_t>(streams), true);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(i & 7);
  for (auto _ : state) {
    B acc[8] = {};
    const float* p = buf.data();
    for (std::size_t i = 0; i < per; i += B::size)
      for (int s = 0; s < streams; ++s) acc[s] += B::load_aligned(p + static_cast<std::size_t>(s) * per + i);
    B total(0.0f);
    for (int s = 0; s < streams; ++s) total += acc[s];
    float sum = xsimd::hadd(total);
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(buf.size() * sizeof(float)));
}

// One decode step's attention for one KV head: 8 query heads of 64 (TinyLlama's grouping) over
// `keys` keys of a KV cache with 4 KV heads (rows of 256 floats), through a table's attend.
void bench_attend(benchmark::State& state, const k::KernelTable* t, std::int64_t keys) {
  constexpr int group = 8, hd = 64, stride = 4 * hd;
  std::vector<float> q(group * hd), kc(static_cast<std::size_t>(keys * stride)), vc(kc.size());
  for (std::size_t i = 0; i < kc.size(); ++i) kc[i] = 0.01f * static_cast<float>(i % 23) - 0.1f, vc[i] = 0.02f * static_cast<float>(i % 19);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = 0.05f * static_cast<float>(i % 7);
  std::vector<float> scores(static_cast<std::size_t>(group * keys)), out(group * hd);
  const k::KvRun run{kc.data(), vc.data(), keys};
  for (auto _ : state) {
    t->attend(q.data(), group, hd, 0.125f, &run, 1, stride, scores.data(), keys, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * keys * 2 * hd * static_cast<std::int64_t>(sizeof(float)));
}

std::string shape_name(Shape s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

// ---- small-batch decode matmul (batched decode, n = 2..16 sequences) -------------------------------
//   smallmm/<isa>/<dtype>/5632x2048/n:<n>/<hot|dram>/threads:<1|2>
// One decode step's MLP-sized matmul for n sequences. "dram" rotates through copies of the matrix
// (>= 512 MiB) so that every call streams its weights from memory, as a batched decode step does;
// "hot" reuses one copy (23 MiB: L3). threads:2 runs the rows on a 2-thread ExecContext with the
// chunking the model's linear() uses (16-row blocks, WorkDistributionConfig::for_matmul). Times
// are wall-clock (UseRealTime); GFLOPS counts 2 * rows * cols * n per call.
void bench_small_matmul(benchmark::State& state, const k::KernelTable* t, DType d, Shape s, std::int64_t n, bool dram,
                        par::ExecContext* ctx) {
  const Weights w(d, s, dram);
  std::vector<float> x(static_cast<std::size_t>(s.cols * n)), y(static_cast<std::size_t>(s.rows * n));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.5f + 0.001f * static_cast<float>(i % 17);
  const par::WorkShape work{.rows = s.rows, .row_bytes = static_cast<std::int64_t>(w.bytes / static_cast<std::size_t>(s.rows)),
                            .row_block = 16};
  const par::WorkDistributionConfig cfg = par::WorkDistributionConfig::for_matmul(s.rows, s.cols);
  std::int64_t i = 0;
  for (auto _ : state) {
    const TensorView v = w.view(i++);
    if (ctx != nullptr) {
      ctx->parallel_for(work, cfg, [&](std::int64_t b, std::int64_t e) {
        t->matmul(v, x.data(), s.cols, n, y.data(), s.rows, b, e);
      });
    } else {
      t->matmul(v, x.data(), s.cols, n, y.data(), s.rows, 0, s.rows);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(w.bytes));
  state.counters["GFLOPS"] = benchmark::Counter(static_cast<double>(2 * s.rows * s.cols * n) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void register_small_matmul() {
  static par::ExecContext two(2);
  for (k::Isa isa : k::compiled_isas()) {
    const k::KernelTable* t = k::kernel_table(isa);
    if (t == nullptr) continue;
    for (DType d : {DType::BF16, DType::F16})
      for (bool dram : {true, false})
        for (int threads : {1, 2})
          for (std::int64_t n : {1, 2, 4, 8, 16}) {
            const Shape s{5632, 2048};
            const std::string name = "smallmm/" + std::string(t->name) + "/" + lower(dtype_name(d)) + "/" +
                                     shape_name(s) + "/n:" + std::to_string(n) + (dram ? "/dram" : "/hot") +
                                     "/threads:" + std::to_string(threads);
            par::ExecContext* ctx = threads == 2 ? &two : nullptr;
            benchmark::RegisterBenchmark(name.c_str(), [t, d, s, n, dram, ctx](benchmark::State& st) {
              bench_small_matmul(st, t, d, s, n, dram, ctx);
            })->Unit(benchmark::kMicrosecond)->UseRealTime();
          }
  }
}
// ---- end of the small-batch decode matmul block -----------------------------------------------------


void register_all() {
  for (std::size_t mib : {8, 512})
    for (int streams : {1, 4, 8}) {
      const std::string name = "read/" + std::to_string(mib) + "MiB/streams:" + std::to_string(streams);
      auto* b = benchmark::RegisterBenchmark(name.c_str(), [mib, streams](benchmark::State& st) {
        bench_read(st, mib << 20, streams);
      });
      b->Unit(benchmark::kMillisecond);
      if (mib == 512) b->Threads(1)->Threads(2)->UseRealTime();  // both cores streaming, as a decode step does
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
              ->Unit(benchmark::kMicrosecond);
        }
    for (DType d : kDtypes)
      for (std::int64_t n : {1, 4, 16, 64}) {
        const Shape s{5632, 2048};
        const std::string name = "matmul/" + std::string(t->name) + "/" + lower(dtype_name(d)) + "/" + shape_name(s) +
                                 "/n:" + std::to_string(n);
        benchmark::RegisterBenchmark(name.c_str(), [t, d, s, n](benchmark::State& st) { bench_matmul(st, t, d, s, n); })
            ->Unit(benchmark::kMicrosecond);
      }
  }
  std::vector<const k::KernelTable*> attend_tables{&k::reference_table()};
  for (k::Isa isa : k::compiled_isas())
    if (const k::KernelTable* t = k::kernel_table(isa)) attend_tables.push_back(t);
  for (const k::KernelTable* t : attend_tables)
    for (std::int64_t keys : {64, 512, 2048}) {
      const std::string name = "attend/" + std::string(t->name) + "/keys:" + std::to_string(keys);
      benchmark::RegisterBenchmark(name.c_str(), [t, keys](benchmark::State& st) { bench_attend(st, t, keys); })
          ->Unit(benchmark::kMicrosecond);
    }
  constexpr DType kQuantDtypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};
  for (k::Isa isa : k::compiled_isas()) {
    const k::KernelTable* t = k::kernel_table(isa);
    if (t == nullptr) continue;
    // "/il": the weights in the interleaved layout, for the dtypes this table reads that way natively.
    const auto layouts = [t](DType d) {
      return ((t->interleaved >> static_cast<int>(d)) & 1u) ? std::vector<bool>{false, true} : std::vector<bool>{false};
    };
    for (DType d : kQuantDtypes)
      for (Shape s : {Shape{512, 2048}, kShapes[1], kShapes[2]})
        for (bool dram : {false, true})
          for (bool il : layouts(d)) {
            // 512x2048 fits L2 in every format: there the kernel's instruction cost alone shows.
            if (s.rows == 512 && dram) continue;
            const std::string name = "matvec_q/" + std::string(t->name) + "/" + std::string(dtype_name(d)) + "/" +
                                     shape_name(s) + (dram ? "/dram" : "/hot") + (il ? "/il" : "");
            auto* b = benchmark::RegisterBenchmark(name.c_str(), [t, d, s, dram, il](benchmark::State& st) {
              bench_matvec_q(st, t, d, s, dram, il);
            });
            b->Unit(benchmark::kMicrosecond);
            if (dram) b->Threads(1)->Threads(2)->UseRealTime();
          }
    for (DType d : kQuantDtypes)
      for (std::int64_t n : {4, 16, 64})
        for (bool il : layouts(d)) {
          const Shape s{5632, 2048};
          const std::string name = "matmul_q/" + std::string(t->name) + "/" + std::string(dtype_name(d)) + "/" +
                                   shape_name(s) + "/n:" + std::to_string(n) + (il ? "/il" : "");
          benchmark::RegisterBenchmark(name.c_str(), [t, d, s, n, il](benchmark::State& st) {
            bench_matmul_q(st, t, d, s, n, il);
          })->Unit(benchmark::kMicrosecond);
        }
  }
#if WEFT_KERNELS_AVX512BF16
  if (k::isa_available(k::Isa::Avx512Bf16)) {
    const std::pair<const char*, MatvecFn> methods[] = {{"dpbf16", &k::detail::avx512bf16_matvec_dpbf16},
                                                         {"dpbf16x3", &k::detail::avx512bf16_matvec_dpbf16x3},
                                                         {"shift", &k::detail::avx512bf16_matvec_shift}};
    // 256x2048 bf16 (1 MiB) stays in L2, where the instruction count rather than memory decides.
    for (Shape s : {Shape{256, 2048}, kShapes[0], kShapes[1], kShapes[2]})
      for (bool dram : {false, true})
        for (auto [name, fn] : methods) {
          const std::string full = std::string("bf16method/") + name + "/" + shape_name(s) + (dram ? "/dram" : "/hot");
          benchmark::RegisterBenchmark(full.c_str(), [fn = fn, s, dram](benchmark::State& st) {
            bench_matvec(st, fn, DType::BF16, s, dram);
          })->Unit(benchmark::kMicrosecond);
        }
  }
#endif
  register_small_matmul();  // the small-batch decode block above
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
