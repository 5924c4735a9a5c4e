// A small MPI job that fails on purpose, run by tests/mpi_fault.py under mpirun:
//   test_mpi_fault hang      rank 1 stops answering (sleeps) after a few all-reduces
//   test_mpi_fault kill      rank 1 dies (SIGKILL) after a few all-reduces
//   test_mpi_fault step      rank 1 stops answering inside a step run by the command channel
//   test_mpi_fault ok        nobody fails: the job runs 200 all-reduces and exits 0
// The wrapper checks that the job ends within a few seconds of the timeout, with a non-zero
// status and the message naming the operation and the silent rank.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "parallel/mpi_command_channel.hpp"
#include "parallel/mpi_communicator.hpp"

namespace {

void fail_here(const std::string& mode, int rank) {
  if (rank != 1) return;
  if (mode == "kill") {
    std::fprintf(stderr, "test_mpi_fault: rank 1 kills itself\n");
    std::fflush(stderr);
    std::raise(SIGKILL);
  }
  if (mode == "hang" || mode == "step") {
    std::fprintf(stderr, "test_mpi_fault: rank 1 stops answering\n");
    std::fflush(stderr);
    std::this_thread::sleep_for(std::chrono::seconds(120));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "ok";
  if (mode != "ok" && mode != "hang" && mode != "kill" && mode != "step") {
    std::fprintf(stderr, "usage: test_mpi_fault ok|hang|kill|step\n");
    return 1;
  }
  weft::par::MpiRuntime mpi(&argc, &argv);
  weft::par::MpiCommunicator comm;
  constexpr std::size_t n = 4097;
  constexpr int kFailAt = 5;
  std::vector<float> v(n);

  if (mode == "step") {
    weft::par::MpiCommandChannel channel(comm);
    int steps = 0;
    auto step = [&](const weft::par::StepCommand& c) {
      if (c.kind != weft::par::Command::Decode) return;
      if (++steps == kFailAt) fail_here(mode, comm.rank());
      std::fill(v.begin(), v.end(), 1.0f);
      comm.all_reduce_sum(v.data(), n);
    };
    if (channel.is_root()) {
      for (int t = 0; t < 200; ++t) {
        const std::int32_t token = t;
        channel.dispatch({weft::par::Command::Decode, t, 1, &token}, sizeof token, step);
      }
      channel.dispatch({weft::par::Command::Stop, 0, 0, nullptr}, 0, step);
    } else {
      channel.serve(step);
    }
  } else {
    for (int i = 0; i < 200; ++i) {
      if (i == kFailAt) fail_here(mode, comm.rank());
      std::fill(v.begin(), v.end(), 1.0f);
      comm.all_reduce_sum(v.data(), n);
      if (v[0] != static_cast<float>(comm.world_size())) {
        std::fprintf(stderr, "test_mpi_fault: wrong sum %g\n", static_cast<double>(v[0]));
        return 1;
      }
    }
  }
  comm.barrier();
  if (mpi.is_root()) std::printf("test_mpi_fault: %s: done\n", mode.c_str());
  return 0;
}
