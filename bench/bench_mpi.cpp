// All-reduce latency across processes (MpiCommunicator) next to the in-process shared-memory
// communicator, with the same protocol for both: per iteration a barrier-free all_reduce_sum of n
// floats timed on rank 0; the median and 10th/90th percentiles of many iterations are printed.
//
//   mpirun --allow-run-as-root -np 2 --bind-to core --mca btl self,vader build/bench/bench_mpi
//   mpirun ... -np 2 --mca btl self,tcp --mca btl_tcp_if_include lo build/bench/bench_mpi   (loopback TCP)
//   build/bench/bench_mpi --shm        (no mpirun: 2 in-process ranks on threads)
// Options: --iters N (default 5000), --floats a,b,... (default 2048,4096), --shm-ranks W (default 2),
// --spin-us U (how long MPI waits poll before sleeping; default the communicator's, 1 ms).
//
// Pipeline stages in different processes (ProcessPipelineMistral) instead, with --pipeline MODEL
// (or WEFT_BENCH_MODEL=MODEL): decode tokens/s of --sequences B (default 4) sequences in
// --micro-batches M (default 2), --tokens T timed steps (default 16, after 2 warm-up steps) from a
// --prompt P token prompt (default 8), --threads N per process (default 1); then per process the
// compute and communication time per token (ProcessPipelineStats) and the bytes it sent per token:
//   mpirun --allow-run-as-root -np 2 --bind-to core --mca btl self,vader build/bench/bench_mpi --pipeline MODEL
//   mpirun ... -np 1 build/bench/bench_mpi --pipeline MODEL --threads 2       (one process, same code)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "parallel/communicator.hpp"
#include "parallel/mpi_config.hpp"
#if WEFT_HAVE_MPI
#include "model/process_pipeline.hpp"
#include "parallel/mpi_communicator.hpp"
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int iters = 5000;
  std::vector<std::size_t> floats = {2048, 4096};
  bool shm = false;
  int shm_ranks = 2;
  long spin_us = -1;  // MpiCommunicator::set_spin; -1 keeps its default
  // --pipeline
  std::string model;
  int sequences = 4, micro_batches = 2, tokens = 16, prompt = 8, threads = 1;
};

Options parse(int argc, char** argv) {
  Options o;
  if (const char* m = std::getenv("WEFT_BENCH_MODEL")) o.model = m;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shm") {
      o.shm = true;
    } else if (a == "--iters" && i + 1 < argc) {
      o.iters = std::max(10, std::atoi(argv[++i]));
    } else if (a == "--spin-us" && i + 1 < argc) {
      o.spin_us = std::atol(argv[++i]);
    } else if (a == "--shm-ranks" && i + 1 < argc) {
      o.shm_ranks = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--pipeline" && i + 1 < argc) {
      o.model = argv[++i];
    } else if (a == "--sequences" && i + 1 < argc) {
      o.sequences = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--micro-batches" && i + 1 < argc) {
      o.micro_batches = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--tokens" && i + 1 < argc) {
      o.tokens = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--prompt" && i + 1 < argc) {
      o.prompt = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--threads" && i + 1 < argc) {
      o.threads = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--floats" && i + 1 < argc) {
      o.floats.clear();
      std::string list = argv[++i];
      for (std::size_t p = 0; p < list.size();) {
        const std::size_t q = list.find(',', p);
        o.floats.push_back(std::stoul(list.substr(p, q - p)));
        p = q == std::string::npos ? list.size() : q + 1;
      }
    } else {
      std::fprintf(stderr, "bench_mpi: unknown option '%s' (see the top of bench/bench_mpi.cpp)\n", a.c_str());
      std::exit(1);
    }
  }
  return o;
}

void report(const char* what, int ranks, std::size_t n, std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  const auto at = [&](double q) { return us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))]; };
  std::printf("%-26s ranks=%d floats=%-6zu median %8.2f us   p10 %8.2f   p90 %8.2f   (%zu iterations)\n", what, ranks,
              n, at(0.5), at(0.1), at(0.9), us.size());
  std::fflush(stdout);
}

void bench_shm(const Options& o) {
  for (std::size_t n : o.floats) {
    const int w = o.shm_ranks;
    weft::par::SharedMemoryWorld world(w);
    std::vector<std::vector<float>> bufs(static_cast<std::size_t>(w), std::vector<float>(n, 1.0f));
    const int total = o.iters + o.iters / 10;  // the first tenth warms up
    std::vector<std::thread> peers;
    for (int r = 1; r < w; ++r)
      peers.emplace_back([&, r] {
        for (int i = 0; i < total; ++i) world.communicator(r).all_reduce_sum(bufs[static_cast<std::size_t>(r)].data(), n);
      });
    std::vector<double> us;
    for (int i = 0; i < total; ++i) {
      const auto t0 = Clock::now();
      world.communicator(0).all_reduce_sum(bufs[0].data(), n);
      const auto t1 = Clock::now();
      if (i >= o.iters / 10) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    for (auto& t : peers) t.join();
    report("shared-memory (threads)", w, n, us);
  }
}

#if WEFT_HAVE_MPI
void bench_mpi(const Options& o, weft::par::MpiCommunicator& comm, weft::par::MpiReduction red, const char* name) {
  comm.set_reduction(red);
  for (std::size_t n : o.floats) {
    std::vector<float> buf(n, 1.0f);
    std::vector<double> us;
    const int total = o.iters + o.iters / 10;
    comm.barrier();
    for (int i = 0; i < total; ++i) {
      const auto t0 = Clock::now();
      comm.all_reduce_sum(buf.data(), n);
      const auto t1 = Clock::now();
      if (i >= o.iters / 10) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      if ((i & 63) == 0) std::fill(buf.begin(), buf.end(), 1.0f);  // keep the values finite
    }
    if (comm.rank() == 0) report(name, comm.world_size(), n, us);
  }
}

// Decode throughput of the model split over the processes, one stage each. Every process feeds
// the same token ids (a generation loop would broadcast rank 0's sampled ids; that is one small
// broadcast per step, left out here).
void bench_pipeline(const Options& o, weft::par::MpiCommunicator& comm) {
  namespace model = weft::model;
  const model::LoadedModel lm = model::load_model(o.model, "");
  const int B = o.sequences, vocab = lm.config.vocab_size;
  model::ProcessPipelineMistral pp(lm, comm, {.threads = o.threads, .max_sequences = B,
                                              .context = o.prompt + o.tokens + 3, .block = o.prompt,
                                              .micro_batches = o.micro_batches});
  const bool root = comm.rank() == 0;
  std::vector<float> logits(root ? static_cast<std::size_t>(B) * static_cast<std::size_t>(vocab) : 0);
  float* out = root ? logits.data() : nullptr;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(std::max(B, o.prompt)));
  for (std::size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<std::int32_t>(3 + (i * 7919) % static_cast<std::size_t>(vocab - 3));
  for (int s = 0; s < B; ++s) pp.prefill(s, 0, {ids.data(), static_cast<std::size_t>(o.prompt)}, out);
  std::vector<int> seqs(static_cast<std::size_t>(B));
  std::vector<std::int64_t> pos(static_cast<std::size_t>(B), o.prompt);
  for (int s = 0; s < B; ++s) seqs[static_cast<std::size_t>(s)] = s;
  const std::span<const std::int32_t> step_ids(ids.data(), static_cast<std::size_t>(B));
  auto step = [&] {
    pp.decode(seqs, pos, step_ids, out);
    for (auto& p : pos) ++p;
  };
  for (int i = 0; i < 2; ++i) step();  // warm-up
  comm.barrier();
  pp.reset_stats();
  const auto t0 = Clock::now();
  for (int i = 0; i < o.tokens; ++i) step();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  // Per process: compute and communication ms per token, KiB sent per token.
  const auto& st = pp.stats();
  const double per = 1.0 / static_cast<double>(st.decode_tokens);
  const float mine[3] = {static_cast<float>(std::chrono::duration<double, std::milli>(st.compute_time).count() * per),
                         static_cast<float>(std::chrono::duration<double, std::milli>(st.comm_time).count() * per),
                         static_cast<float>(static_cast<double>(st.bytes_sent) / 1024.0 * per)};
  std::vector<float> all(3 * static_cast<std::size_t>(comm.world_size()));
  comm.all_gather(mine, 3, all.data());
  if (!root) return;
  std::printf("pipeline %s: %d processes x %d threads, %d sequences, %d micro-batches, %d steps: %.2f tokens/s\n",
              o.model.c_str(), comm.world_size(), o.threads, B, comm.world_size() == 1 ? 1 : pp.micro_batches(),
              o.tokens, static_cast<double>(B) * o.tokens / wall);
  for (int k = 0; k < comm.world_size(); ++k) {
    const float* v = all.data() + 3 * static_cast<std::size_t>(k);
    std::printf("  stage %d (layers %d-%d): compute %.3f ms/token, communication %.3f ms/token (waiting included), "
                "sent %.1f KiB/token\n",
                k, pp.layer_begin(k), pp.layer_end(k) - 1, v[0], v[1], v[2]);
  }
  std::fflush(stdout);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
#if WEFT_HAVE_MPI
  if (!o.shm && weft::par::MpiRuntime::launched_by_mpirun()) {
    weft::par::MpiRuntime mpi(&argc, &argv);
    weft::par::MpiCommunicator comm;
    if (o.spin_us >= 0) comm.set_spin(std::chrono::microseconds(o.spin_us));
    if (!o.model.empty()) {
      bench_pipeline(o, comm);
      comm.barrier();
      return 0;
    }
    bench_mpi(o, comm, weft::par::MpiReduction::RankOrder, "mpi rank-order");
    bench_mpi(o, comm, weft::par::MpiReduction::Native, "mpi MPI_Iallreduce");
    comm.barrier();
    return 0;
  }
#endif
  if (!o.model.empty()) {
    std::fprintf(stderr, "bench_mpi: --pipeline runs under mpirun (-np 1 for one process), in a build with MPI\n");
    return 1;
  }
  if (!o.shm) std::fprintf(stderr, "bench_mpi: not started by mpirun (or built without MPI): timing --shm only\n");
  bench_shm(o);
  return 0;
}
