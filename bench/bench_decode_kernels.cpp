// The decode kernels alone: every weight matrix of a model, in decode order, through the active
// kernels on T threads that each take an equal share of every matrix's rows and never wait for
// one another (the results are thrown away). No parallel regions, no serial work between them,
// no attention: what the kernels can read when nothing else costs anything, next to the read
// bandwidth measured in the same run. `weft bench` gives the model's real decode speed; the
// difference between the two is what the rest of a decode step costs. A model of mixed dtypes
// (Q4_K_M) also gets each dtype's matrices measured alone.
//
//   build/bench/bench_decode_kernels MODEL [THREADS ...]   (default: 1 2; weights repacked and
//                                                           copied into huge-page memory, as
//                                                           `weft bench --no-mmap` does)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "kernels/kernels.hpp"
#include "model/weights.hpp"
#include "weft/system.hpp"

using namespace weft;
namespace k = weft::kernels;

namespace {

// Rows [begin, end) of every matrix's share t of T, in 16-row blocks like the model's chunks.
void pass(const std::vector<const TensorView*>& mats, int threads, int t, std::byte* xq, const float* x, float* y) {
  for (const TensorView* w : mats) {
    const std::int64_t share = (w->rows / threads + 15) / 16 * 16;
    const std::int64_t b = std::min(w->rows, t * share), e = std::min(w->rows, b + share);
    if (b >= e) continue;
    if (dtype_is_quantized(w->dtype)) {
      k::quantize_act(w->dtype, x, w->cols, xq);
      k::matmul_q(*w, xq, 1, y, w->rows, b, e);
    } else {
      k::matmul(*w, x, w->cols, 1, y, w->rows, b, e);
    }
  }
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [THREADS ...]\n", argv[0]);
    return 2;
  }
  std::vector<int> counts;
  for (int i = 2; i < argc; ++i) counts.push_back(std::max(1, std::atoi(argv[i])));
  if (counts.empty()) counts = {1, 2};
  const model::LoadedModel m = model::load_model(argv[1], "", false, true);
  std::vector<const TensorView*> mats;
  for (const auto& L : m.weights.layers)
    for (const TensorView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) mats.push_back(w);
  mats.push_back(&m.weights.lm_head);
  double bytes = 0;
  std::int64_t widest = 0, tallest = 0;
  for (const TensorView* w : mats) bytes += static_cast<double>(w->bytes()), widest = std::max(widest, w->cols), tallest = std::max(tallest, w->rows);
  std::printf("%s: %zu matrices, %.2f GB per pass\n", argv[1], mats.size(), bytes / 1e9);
  for (int threads : counts) {
    std::vector<AlignedBuffer<float>> x(threads), y(threads);
    std::vector<AlignedBuffer<std::byte>> xq(threads);
    for (int t = 0; t < threads; ++t) {
      x[t].resize(static_cast<std::size_t>(widest));
      for (std::size_t i = 0; i < x[t].size(); ++i) x[t][i] = 0.01f * static_cast<float>(i % 37) - 0.18f;
      y[t].resize(static_cast<std::size_t>(tallest));
      xq[t].resize(std::max(k::act_bytes(DType::Q4_K, widest), k::act_bytes(DType::Q8_0, widest)));
    }
    // The median GB/s of 5 passes over mats_of.
    const auto measure = [&](const std::vector<const TensorView*>& mats_of, double bytes_of) {
      std::vector<double> gbs;
      for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        {
          std::vector<std::jthread> pool;
          for (int t = 0; t < threads; ++t)
            pool.emplace_back([&, t] { pass(mats_of, threads, t, xq[t].data(), x[t].data(), y[t].data()); });
        }
        gbs.push_back(bytes_of / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 1e9);
      }
      std::sort(gbs.begin(), gbs.end());
      return gbs[2];
    };
    const double all = measure(mats, bytes);
    const double read = measure_read_bandwidth(threads, std::size_t{1} << 30, true, 9).median_gbs;
    std::printf("threads %d: kernels %.1f GB/s (median of 5 passes), read bandwidth %.1f GB/s: %.1f %%\n", threads, all,
                read, 100.0 * all / read);
    // A model of mixed dtypes (Q4_K_M: Q4_K and Q6_K): each dtype's matrices alone.
    std::vector<DType> dtypes;
    for (const TensorView* w : mats)
      if (std::find(dtypes.begin(), dtypes.end(), w->dtype) == dtypes.end()) dtypes.push_back(w->dtype);
    if (dtypes.size() > 1) {
      for (DType d : dtypes) {
        std::vector<const TensorView*> part;
        double part_bytes = 0;
        for (const TensorView* w : mats)
          if (w->dtype == d) part.push_back(w), part_bytes += static_cast<double>(w->bytes());
        const double g = measure(part, part_bytes);
        const std::string_view name = dtype_name(d);
        std::printf("  %.*s alone (%.0f %% of the bytes): %.1f GB/s, %.1f %%\n", static_cast<int>(name.size()), name.data(),
                    100.0 * part_bytes / bytes, g, 100.0 * g / read);
      }
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_decode_kernels: %s\n", e.what());
  return 1;
}
