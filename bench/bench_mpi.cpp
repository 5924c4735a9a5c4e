// All-reduce latency across processes (MpiCommunicator) next to the in-process shared-memory
// communicator, with the same protocol for both: per iteration a barrier-free all_reduce_sum of n
// floats timed on rank 0; the median and 10th/90th percentiles of many iterations are printed.
//
//   mpirun --allow-run-as-root -np 2 --bind-to core --mca btl self,vader build/bench/bench_mpi
//   mpirun ... -np 2 --mca btl self,tcp --mca btl_tcp_if_include lo build/bench/bench_mpi   (loopback TCP)
//   build/bench/bench_mpi --shm        (no mpirun: 2 in-process ranks on threads)
// Options: --iters N (default 5000), --floats a,b,... (default 2048,4096), --shm-ranks W (default 2),
// --spin-us U (how long MPI waits poll before sleeping; default the communicator's, 1 ms).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "parallel/communicator.hpp"
#include "parallel/mpi_config.hpp"
#if WEFT_HAVE_MPI
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
};

Options parse(int argc, char** argv) {
  Options o;
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
#endif

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
#if WEFT_HAVE_MPI
  if (!o.shm && weft::par::MpiRuntime::launched_by_mpirun()) {
    weft::par::MpiRuntime mpi(&argc, &argv);
    weft::par::MpiCommunicator comm;
    if (o.spin_us >= 0) comm.set_spin(std::chrono::microseconds(o.spin_us));
    bench_mpi(o, comm, weft::par::MpiReduction::RankOrder, "mpi rank-order");
    bench_mpi(o, comm, weft::par::MpiReduction::Native, "mpi MPI_Iallreduce");
    comm.barrier();
    return 0;
  }
#endif
  if (!o.shm) std::fprintf(stderr, "bench_mpi: not started by mpirun (or built without MPI): timing --shm only\n");
  bench_shm(o);
  return 0;
}
